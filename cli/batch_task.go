package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

// Batch tasks, with az's names and flags (az batch task create|show|list|
// delete|stop|reset). create takes one task from flags or a --json-file
// holding one task, an array of tasks or {"value": [...]}; a collection is
// added in chunks of 100, the most one request may carry.

// maxTasksPerRequest is the Batch API's limit for an add-collection call.
const maxTasksPerRequest = 100

// addTaskCommands adds az's task commands (create, show, list, delete, stop,
// reset) to the task group.
func (a *app) addTaskCommands(cmd *cobra.Command) {
	cmd.AddCommand(a.taskCreateCmd(), a.taskShowCmd(), a.taskListCmd(), a.taskDeleteCmd(), a.taskStopCmd(), a.taskResetCmd(), a.taskReactivateCmd())
}

func taskPath(job, task string) string { return jobPath(job) + "/tasks/" + url.PathEscape(task) }

// taskTable is the table for tasks.
func taskTable(v any) any {
	return rows(v, func(m map[string]any) row {
		return newRow("Id", m["id"], "State", m["state"], "ExitCode", nested(m, "executionInfo", "exitCode"),
			"NodeId", nested(m, "nodeInfo", "nodeId"), "CommandLine", m["commandLine"])
	})
}

// taskAddResultTable is the table for the results of an add collection.
func taskAddResultTable(v any) any {
	return rows(v, func(m map[string]any) row {
		var msg any
		if e, ok := m["error"].(map[string]any); ok {
			msg = e["code"]
		}
		return newRow("TaskId", m["taskId"], "Status", m["status"], "Error", msg)
	})
}

// taskConstraintFlags are --max-wall-clock-time, --max-task-retry-count and
// --retention-time.
type taskConstraintFlags struct {
	wallClock, retention string
	retries              int
}

func (f *taskConstraintFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.wallClock, "max-wall-clock-time", "", "the longest the task may run (ISO 8601 duration, e.g. PT30M)")
	fs.IntVar(&f.retries, "max-task-retry-count", 0, "how often the task may be retried (-1: without limit)")
	fs.StringVar(&f.retention, "retention-time", "", "how long the task's directory is kept after it completes (ISO 8601 duration)")
}

func (f *taskConstraintFlags) build(cmd *cobra.Command) (map[string]any, error) {
	cons := map[string]any{}
	if f.wallClock != "" {
		d, err := isoDuration("--max-wall-clock-time", f.wallClock)
		if err != nil {
			return nil, err
		}
		cons["maxWallClockTime"] = d
	}
	if f.retention != "" {
		d, err := isoDuration("--retention-time", f.retention)
		if err != nil {
			return nil, err
		}
		cons["retentionTime"] = d
	}
	if cmd.Flags().Changed("max-task-retry-count") {
		cons["maxTaskRetryCount"] = f.retries
	}
	return cons, nil
}

// tasksFromJSON reads a --json-file holding one task (an object with an id),
// an array of tasks, or {"value": [...]}. one is set for a single task.
func tasksFromJSON(path string) (tasks []any, one bool, err error) {
	v, err := readJSONFile(path)
	if err != nil {
		return nil, false, err
	}
	bad := fmt.Errorf("--json-file: %s is not formatted correctly: give one task ({\"id\": ..., \"commandLine\": ...}), an array of tasks, or {\"value\": [tasks]}", strings.TrimPrefix(path, "@"))
	switch x := v.(type) {
	case []any:
		tasks = x
	case map[string]any:
		if l, ok := x["value"].([]any); ok && x["id"] == nil {
			tasks = l
		} else {
			return []any{x}, true, nil
		}
	default:
		return nil, false, bad
	}
	for _, t := range tasks {
		if _, ok := t.(map[string]any); !ok {
			return nil, false, bad
		}
	}
	if len(tasks) == 0 {
		return nil, false, fmt.Errorf("--json-file: %s holds no tasks", strings.TrimPrefix(path, "@"))
	}
	return tasks, false, nil
}

// addTaskCollection adds tasks in chunks of 100, retrying the ones the
// server failed on its side, and returns one result per task.
func (a *app) addTaskCollection(ctx context.Context, t *batchTarget, job string, tasks []any) ([]any, error) {
	results := make([]any, 0, len(tasks))
	for i := 0; i < len(tasks); i += maxTasksPerRequest {
		chunk := tasks[i:min(i+maxTasksPerRequest, len(tasks))]
		for attempt := 0; ; attempt++ {
			v, _, err := a.data(ctx, t, http.MethodPost, jobPath(job)+"/addtaskcollection", map[string]any{"value": chunk})
			if err != nil {
				return nil, err
			}
			m, _ := v.(map[string]any)
			vals, _ := m["value"].([]any)
			var retry []any
			byID := map[string]any{}
			for _, x := range chunk {
				id, _ := x.(map[string]any)["id"].(string)
				byID[id] = x
			}
			for _, r := range vals {
				rm, _ := r.(map[string]any)
				if rm["status"] == "servererror" && attempt < 2 {
					id, _ := rm["taskId"].(string)
					if x, ok := byID[id]; ok {
						retry = append(retry, x)
						continue
					}
				}
				results = append(results, r)
			}
			if len(retry) == 0 {
				break
			}
			chunk = retry
		}
	}
	return results, nil
}

// failedTasks describes the results that are not a success, or "".
func failedTasks(results []any) string {
	var lines []string
	n := 0
	for _, r := range results {
		m, _ := r.(map[string]any)
		if m["status"] == "success" {
			continue
		}
		n++
		if len(lines) < 5 {
			code, msg := "", ""
			if e, ok := m["error"].(map[string]any); ok {
				code, _ = e["code"].(string)
				if mm, ok := e["message"].(map[string]any); ok {
					msg, _ = mm["value"].(string)
					msg, _, _ = strings.Cut(msg, "\nRequestId:")
				}
			}
			lines = append(lines, fmt.Sprintf("%v: (%s) %s", m["taskId"], code, msg))
		}
	}
	if n == 0 {
		return ""
	}
	s := fmt.Sprintf("%d of %d tasks were not added:\n%s", n, len(results), strings.Join(lines, "\n"))
	if n > len(lines) {
		s += fmt.Sprintf("\n... and %d more", n-len(lines))
	}
	return s
}

func (a *app) taskCreateCmd() *cobra.Command {
	var t batchTarget
	var cons taskConstraintFlags
	var job, id, cmdLine, jsonFile, affinity string
	var env []string
	var slots int
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Add a task, or a collection of tasks from a JSON file, to a job",
		Example: `  custody batch task create --job-id job1 --task-id task1 --command-line "/bin/sh -c 'echo hello'" --account-name mybatchaccount
  custody batch task create --job-id job1 --task-id task2 --command-line "printenv GREETING" --environment-settings GREETING=hi MODE=test
  custody batch task create --job-id job1 --json-file tasks.json   # one task, [tasks] or {"value": [tasks]}`,
		Args: nameValueArgs("environment-settings"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			var task map[string]any
			if jsonFile != "" {
				for _, n := range []string{"task-id", "command-line", "environment-settings", "max-wall-clock-time", "max-task-retry-count", "retention-time", "required-slots", "affinity-id"} {
					if cmd.Flags().Changed(n) {
						return fmt.Errorf("--json-file holds the tasks; it cannot be combined with --%s", n)
					}
				}
				tasks, one, err := tasksFromJSON(jsonFile)
				if err != nil {
					return err
				}
				if !one {
					res, err := a.addTaskCollection(ctx, &t, job, tasks)
					if err != nil {
						return err
					}
					if msg := failedTasks(res); msg != "" {
						return errors.New(msg)
					}
					return a.print(res, taskAddResultTable)
				}
				task = tasks[0].(map[string]any)
			} else {
				if err := requireFlag("--task-id", id); err != nil {
					return err
				}
				if err := requireFlag("--command-line", cmdLine); err != nil {
					return err
				}
				task = map[string]any{"id": id, "commandLine": cmdLine}
				if cmd.Flags().Changed("environment-settings") {
					e, err := nameValueList("--environment-settings", env, args)
					if err != nil {
						return err
					}
					task["environmentSettings"] = e
				}
				c, err := cons.build(cmd)
				if err != nil {
					return err
				}
				if len(c) > 0 {
					task["constraints"] = c
				}
				if cmd.Flags().Changed("required-slots") {
					task["requiredSlots"] = slots
				}
				if affinity != "" {
					task["affinityInfo"] = map[string]any{"affinityId": affinity}
				}
			}
			tid, _ := task["id"].(string)
			if tid == "" {
				return errors.New("the task has no id: give an \"id\" in the --json-file")
			}
			if _, _, err := a.data(ctx, &t, http.MethodPost, jobPath(job)+"/tasks", task); err != nil {
				return err
			}
			v, _, err := a.data(ctx, &t, http.MethodGet, taskPath(job, tid), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), taskTable)
		},
	}
	t.flags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&job, "job-id", "", "the job the task belongs to")
	fs.StringVar(&id, "task-id", "", "the task id")
	fs.StringVar(&cmdLine, "command-line", "", "the task's command line (not run in a shell: use /bin/sh -c '...' for shell features)")
	fs.StringArrayVar(&env, "environment-settings", nil, "space-separated NAME=VALUE environment settings")
	fs.IntVar(&slots, "required-slots", 0, "the scheduling slots the task needs (default 1)")
	fs.StringVar(&affinity, "affinity-id", "", "a node id the task should preferably run on")
	fs.StringVar(&jsonFile, "json-file", "", "a file holding one task, an array of tasks or {\"value\": [tasks]} in JSON (the Batch REST API's shape); the other task flags are then not used")
	cons.add(cmd)
	return cmd
}

func (a *app) taskShowCmd() *cobra.Command {
	var t batchTarget
	var job, id, sel string
	cmd := &cobra.Command{Use: "show", Short: "Show a task", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			if err := requireFlag("--task-id", id); err != nil {
				return err
			}
			q := url.Values{}
			if sel != "" {
				q.Set("$select", sel)
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, withQuery(taskPath(job, id), q), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), taskTable)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&job, "job-id", "", "the job id")
	cmd.Flags().StringVar(&id, "task-id", "", "the task id")
	cmd.Flags().StringVar(&sel, "select", "", "an OData $select clause")
	return cmd
}

func (a *app) taskListCmd() *cobra.Command {
	var t batchTarget
	var lq listQueryFlags
	var job string
	cmd := &cobra.Command{Use: "list", Short: "List a job's tasks", Args: cobra.NoArgs,
		Example: `  custody batch task list --job-id job1 --filter "state eq 'completed'" -o table`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			l, err := a.dataListAll(cmd.Context(), &t, withQuery(jobPath(job)+"/tasks", lq.values()))
			if err != nil {
				return err
			}
			return a.print(l, taskTable)
		}}
	t.flags(cmd)
	lq.add(cmd)
	cmd.Flags().StringVar(&job, "job-id", "", "the job id")
	return cmd
}

func (a *app) taskDeleteCmd() *cobra.Command {
	var t batchTarget
	var job, id string
	var yes bool
	cmd := &cobra.Command{Use: "delete", Short: "Delete a task (a running task is stopped first)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			if err := requireFlag("--task-id", id); err != nil {
				return err
			}
			if err := a.confirm(yes); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodDelete, taskPath(job, id), nil)
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&job, "job-id", "", "the job id")
	cmd.Flags().StringVar(&id, "task-id", "", "the task id")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}

func (a *app) taskStopCmd() *cobra.Command {
	var t batchTarget
	var job, id string
	cmd := &cobra.Command{Use: "stop", Short: "Terminate a task: it is stopped if running and marked completed", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			if err := requireFlag("--task-id", id); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodPost, taskPath(job, id)+"/terminate", nil)
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&job, "job-id", "", "the job id")
	cmd.Flags().StringVar(&id, "task-id", "", "the task id")
	return cmd
}

func (a *app) taskResetCmd() *cobra.Command {
	var t batchTarget
	var cons taskConstraintFlags
	var job, id, jsonFile string
	cmd := &cobra.Command{Use: "reset", Short: "Replace a task's constraints; those not given go back to their defaults", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			if err := requireFlag("--task-id", id); err != nil {
				return err
			}
			var body map[string]any
			if jsonFile != "" {
				for _, n := range []string{"max-wall-clock-time", "max-task-retry-count", "retention-time"} {
					if cmd.Flags().Changed(n) {
						return fmt.Errorf("--json-file holds the task's constraints; it cannot be combined with --%s", n)
					}
				}
				m, err := readJSONObject(jsonFile)
				if err != nil {
					return err
				}
				body = m
			} else {
				c, err := cons.build(cmd)
				if err != nil {
					return err
				}
				body = map[string]any{"constraints": c}
			}
			if _, _, err := a.data(ctx, &t, http.MethodPut, taskPath(job, id), body); err != nil {
				return err
			}
			v, _, err := a.data(ctx, &t, http.MethodGet, taskPath(job, id), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), taskTable)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&job, "job-id", "", "the job id")
	cmd.Flags().StringVar(&id, "task-id", "", "the task id")
	cmd.Flags().StringVar(&jsonFile, "json-file", "", "a file holding the task's new properties in JSON ({\"constraints\": {...}})")
	cons.add(cmd)
	return cmd
}
