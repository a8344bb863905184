package cli

import (
	"net/http"

	"github.com/spf13/cobra"
)

// Task reactivate and the job preparation and release task status, as az
// spells them: `az batch task reactivate` and
// `az batch job prep-release-status list`.

func (a *app) taskReactivateCmd() *cobra.Command {
	var t batchTarget
	var job, id string
	cmd := &cobra.Command{Use: "reactivate", Short: "Make a task that completed with a failure active again (retry count back to 0)", Args: cobra.NoArgs,
		Example: `  custody batch task reactivate --job-id job1 --task-id task1`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			if err := requireFlag("--task-id", id); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodPost, taskPath(job, id)+"/reactivate", nil)
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&job, "job-id", "", "the job id")
	cmd.Flags().StringVar(&id, "task-id", "", "the task id")
	return cmd
}

func (a *app) jobPrepReleaseStatusCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "prep-release-status", Short: "The job preparation and release tasks of a job, per node"}
	var t batchTarget
	var job string
	list := &cobra.Command{Use: "list", Short: "List the job's preparation and release task executions on the nodes that ran them", Args: cobra.NoArgs,
		Example: `  custody batch job prep-release-status list --job-id job1 -o table`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			l, err := a.dataListAll(cmd.Context(), &t, jobPath(job)+"/jobpreparationandreleasetaskstatus")
			if err != nil {
				return err
			}
			return a.print(l, prepReleaseTable)
		}}
	t.flags(list)
	list.Flags().StringVar(&job, "job-id", "", "the job id")
	cmd.AddCommand(list)
	return cmd
}

// prepReleaseTable is the table for job preparation and release task
// statuses.
func prepReleaseTable(v any) any {
	return rows(v, func(m map[string]any) row {
		return newRow("PoolId", m["poolId"], "NodeId", m["nodeId"],
			"PrepState", nested(m, "jobPreparationTaskExecutionInfo", "state"), "PrepExitCode", nested(m, "jobPreparationTaskExecutionInfo", "exitCode"),
			"ReleaseState", nested(m, "jobReleaseTaskExecutionInfo", "state"), "ReleaseExitCode", nested(m, "jobReleaseTaskExecutionInfo", "exitCode"))
	})
}
