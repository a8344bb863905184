package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Batch jobs, with az's names and flags (az batch job create|show|list|set|
// reset|delete|disable|enable|stop). The job's customer fields travel as
// the Batch REST API spells them, so a --json-file written for az works
// here unchanged.

func (a *app) batchJobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Manage batch jobs"}
	cmd.AddCommand(a.jobCreateCmd(), a.jobShowCmd(), a.jobListCmd(), a.jobSetCmd(false), a.jobSetCmd(true),
		a.jobDeleteCmd(), a.jobDisableCmd(), a.jobEnableCmd(), a.jobStopCmd(), a.jobPrepReleaseStatusCmd())
	return cmd
}

// ---- helpers shared by the job, task and certificate commands ----

// withQuery appends q to path.
func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// listQueryFlags are az's --filter and --select of list commands.
type listQueryFlags struct{ filter, sel string }

func (l *listQueryFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.filter, "filter", "", "an OData $filter clause, e.g. \"state eq 'active'\"")
	cmd.Flags().StringVar(&l.sel, "select", "", "an OData $select clause: the properties to return, comma-separated")
}

func (l *listQueryFlags) values() url.Values {
	q := url.Values{}
	if l.filter != "" {
		q.Set("$filter", l.filter)
	}
	if l.sel != "" {
		q.Set("$select", l.sel)
	}
	return q
}

// dataListAll lists path on the account's data plane and follows
// odata.nextLink to the last page.
func (a *app) dataListAll(ctx context.Context, t *batchTarget, path string) ([]any, error) {
	v, _, err := a.data(ctx, t, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	all := []any{}
	for {
		m, _ := v.(map[string]any)
		items, _ := m["value"].([]any)
		for _, it := range items {
			all = append(all, stripMetadata(it))
		}
		next, _ := m["odata.nextLink"].(string)
		if next == "" {
			return all, nil
		}
		c, err := a.client(ctx)
		if err != nil {
			return nil, err
		}
		if v, _, err = c.call(ctx, http.MethodGet, next, batchScope, nil); err != nil {
			return nil, err
		}
	}
}

// readJSONFile reads a --json-file (az also takes @path).
func readJSONFile(path string) (any, error) {
	path = strings.TrimPrefix(path, "@")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--json-file: %w", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("--json-file: %s is not valid JSON: %v", path, err)
	}
	return v, nil
}

// readJSONObject reads a --json-file that must hold one JSON object.
func readJSONObject(path string) (map[string]any, error) {
	v, err := readJSONFile(path)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("--json-file: %s must hold a JSON object", strings.TrimPrefix(path, "@"))
	}
	return m, nil
}

// isoDuration accepts an ISO 8601 duration (PT1H30M, P2D), which it passes
// on, or a Go-style or clock duration (90m, 1h30m, 01:30:00), which it
// converts.
func isoDuration(flag, v string) (string, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(strings.ToUpper(v), "P") {
		return strings.ToUpper(v), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return "PT" + strconv.FormatInt(int64(d/time.Second), 10) + "S", nil
	}
	if parts := strings.Split(v, ":"); len(parts) == 3 {
		var n [3]int
		ok := true
		for i, p := range parts {
			x, err := strconv.Atoi(p)
			if err != nil || x < 0 {
				ok = false
			}
			n[i] = x
		}
		if ok {
			return fmt.Sprintf("PT%dH%dM%dS", n[0], n[1], n[2]), nil
		}
	}
	return "", fmt.Errorf("argument %s: %q is not a duration; use ISO 8601 (PT1H30M) or 1h30m", flag, v)
}

// nameValueArgs lets one NAME=VALUE flag (--metadata, --environment-settings)
// take several space-separated values, as az's does: `--metadata a=1 b=2`
// leaves b=2 as a positional argument, accepted only when that flag is set.
func nameValueArgs(flag string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 && !cmd.Flags().Changed(flag) {
			return fmt.Errorf("unrecognized arguments: %s", strings.Join(args, " "))
		}
		for _, x := range args {
			if strings.HasPrefix(x, "-") || !strings.Contains(x, "=") {
				return fmt.Errorf("unrecognized arguments: %s", x)
			}
		}
		return nil
	}
}

// nameValueList builds [{name, value}] from a flag's values and the
// positional rest; "" values are skipped.
func nameValueList(flag string, vals, extra []string) ([]map[string]string, error) {
	var all []string
	for _, v := range append(append([]string{}, vals...), extra...) {
		if v != "" {
			all = append(all, v)
		}
	}
	l, err := parseNameValues(all)
	if err != nil {
		return nil, fmt.Errorf("argument %s: %w", flag, err)
	}
	if l == nil {
		l = []map[string]string{}
	}
	return l, nil
}

// rows applies one to a value or each item of a list.
func rows(v any, one func(map[string]any) row) any {
	if l, ok := v.([]any); ok {
		out := make([]row, len(l))
		for i, x := range l {
			m, _ := x.(map[string]any)
			out[i] = one(m)
		}
		return out
	}
	m, _ := v.(map[string]any)
	return one(m)
}

func nested(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// jobTable is the table for jobs.
func jobTable(v any) any {
	return rows(v, func(m map[string]any) row {
		return newRow("Id", m["id"], "State", m["state"], "PoolId", nested(m, "poolInfo", "poolId"),
			"Priority", m["priority"], "CreationTime", m["creationTime"])
	})
}

// ---- jobs ----

func jobPath(id string) string { return "/jobs/" + url.PathEscape(id) }

// jobSpecFlags are the flags that write a job's properties (create, set,
// reset).
type jobSpecFlags struct {
	poolID, wallClock, onAllComplete string
	metadata                         []string
	priority, retries, maxParallel   int
	usesDeps, preempt                bool
}

func (f *jobSpecFlags) add(cmd *cobra.Command, create bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.poolID, "pool-id", "", "the id of the pool the job's tasks run on")
	fs.StringArrayVar(&f.metadata, "metadata", nil, "space-separated NAME=VALUE metadata")
	fs.IntVar(&f.priority, "priority", 0, "the job's priority, -1000 to 1000")
	fs.IntVar(&f.maxParallel, "max-parallel-tasks", 0, "the most tasks of the job that run at once (-1: no limit)")
	fs.BoolVar(&f.preempt, "allow-task-preemption", false, "whether higher-priority jobs may requeue this job's tasks")
	fs.StringVar(&f.wallClock, "job-max-wall-clock-time", "", "the longest the job may run (ISO 8601 duration, e.g. PT2H)")
	fs.IntVar(&f.retries, "job-max-task-retry-count", 0, "how often each task may be retried (-1: without limit)")
	// The shorter spellings are accepted too.
	fs.StringVar(&f.wallClock, "max-wall-clock-time", "", "same as --job-max-wall-clock-time")
	fs.IntVar(&f.retries, "max-task-retry-count", 0, "same as --job-max-task-retry-count")
	_ = fs.MarkHidden("max-wall-clock-time")
	_ = fs.MarkHidden("max-task-retry-count")
	if create {
		fs.BoolVar(&f.usesDeps, "uses-task-dependencies", false, "whether the job's tasks may depend on each other")
	} else {
		fs.StringVar(&f.onAllComplete, "on-all-tasks-complete", "", "what happens when all tasks are complete: noaction or terminatejob")
	}
}

// anySet reports whether a property flag is given.
func (f *jobSpecFlags) anySet(cmd *cobra.Command) string {
	for _, n := range []string{"pool-id", "metadata", "priority", "max-parallel-tasks", "allow-task-preemption",
		"job-max-wall-clock-time", "job-max-task-retry-count", "max-wall-clock-time", "max-task-retry-count",
		"uses-task-dependencies", "on-all-tasks-complete"} {
		if cmd.Flags().Lookup(n) != nil && cmd.Flags().Changed(n) {
			return "--" + n
		}
	}
	return ""
}

// apply writes the given flags into body, as the REST API spells them.
func (f *jobSpecFlags) apply(cmd *cobra.Command, body map[string]any, extra []string) error {
	ch := cmd.Flags().Changed
	if f.poolID != "" {
		body["poolInfo"] = map[string]any{"poolId": f.poolID}
	}
	if ch("metadata") {
		md, err := nameValueList("--metadata", f.metadata, extra)
		if err != nil {
			return err
		}
		body["metadata"] = md
	}
	if ch("priority") {
		body["priority"] = f.priority
	}
	if ch("max-parallel-tasks") {
		body["maxParallelTasks"] = f.maxParallel
	}
	if ch("allow-task-preemption") {
		body["allowTaskPreemption"] = f.preempt
	}
	if ch("uses-task-dependencies") {
		body["usesTaskDependencies"] = f.usesDeps
	}
	if f.onAllComplete != "" {
		v := strings.ToLower(f.onAllComplete)
		if v != "noaction" && v != "terminatejob" {
			return fmt.Errorf("argument --on-all-tasks-complete: invalid choice: '%s' (choose from 'noaction', 'terminatejob')", f.onAllComplete)
		}
		body["onAllTasksComplete"] = v
	}
	cons := map[string]any{}
	if f.wallClock != "" {
		d, err := isoDuration("--job-max-wall-clock-time", f.wallClock)
		if err != nil {
			return err
		}
		cons["maxWallClockTime"] = d
	}
	if ch("job-max-task-retry-count") || ch("max-task-retry-count") {
		cons["maxTaskRetryCount"] = f.retries
	}
	if len(cons) > 0 {
		body["constraints"] = cons
	}
	return nil
}

// showJob prints the job as the server has it now.
func (a *app) showJob(ctx context.Context, t *batchTarget, id string) error {
	v, _, err := a.data(ctx, t, http.MethodGet, jobPath(id), nil)
	if err != nil {
		return err
	}
	return a.print(stripMetadata(v), jobTable)
}

func (a *app) jobCreateCmd() *cobra.Command {
	var t batchTarget
	var f jobSpecFlags
	var id, jsonFile string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Add a job to the account; its tasks run on the pool it names",
		Example: `  custody batch job create --id job1 --pool-id pool1 --account-name mybatchaccount
  custody batch job create --id job2 --pool-id pool1 --priority 100 --metadata team=blue owner=ops
  custody batch job create --json-file job.json   # {"id": "job3", "poolInfo": {"poolId": "pool1"}, ...}`,
		Args: nameValueArgs("metadata"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if jsonFile != "" {
				if n := f.anySet(cmd); n != "" {
					return fmt.Errorf("--json-file holds the whole job; it cannot be combined with %s", n)
				}
				m, err := readJSONObject(jsonFile)
				if err != nil {
					return err
				}
				body = m
				if id != "" {
					body["id"] = id
				}
			} else {
				if err := requireFlag("--id", id); err != nil {
					return err
				}
				if err := requireFlag("--pool-id", f.poolID); err != nil {
					return err
				}
				body["id"] = id
				if err := f.apply(cmd, body, args); err != nil {
					return err
				}
			}
			jid, _ := body["id"].(string)
			if jid == "" {
				return errors.New("the job has no id: give --id or an \"id\" in the --json-file")
			}
			if _, _, err := a.data(cmd.Context(), &t, http.MethodPost, "/jobs", body); err != nil {
				return err
			}
			return a.showJob(cmd.Context(), &t, jid)
		},
	}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "id", "", "the job id")
	cmd.Flags().StringVar(&jsonFile, "json-file", "", "a file holding the job in JSON (the Batch REST API's job add body); the other job flags are then not used")
	f.add(cmd, true)
	return cmd
}

func (a *app) jobShowCmd() *cobra.Command {
	var t batchTarget
	var id, sel string
	cmd := &cobra.Command{Use: "show", Short: "Show a job", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", id); err != nil {
				return err
			}
			q := url.Values{}
			if sel != "" {
				q.Set("$select", sel)
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, withQuery(jobPath(id), q), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), jobTable)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-id", "", "the job id")
	cmd.Flags().StringVar(&sel, "select", "", "an OData $select clause")
	return cmd
}

func (a *app) jobListCmd() *cobra.Command {
	var t batchTarget
	var lq listQueryFlags
	var schedule string
	cmd := &cobra.Command{Use: "list", Short: "List the account's jobs, or those a job schedule created", Args: cobra.NoArgs,
		Example: `  custody batch job list --filter "state eq 'active'" -o table
  custody batch job list --job-schedule-id nightly`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/jobs"
			if schedule != "" {
				path = schedulePath(schedule) + "/jobs"
			}
			l, err := a.dataListAll(cmd.Context(), &t, withQuery(path, lq.values()))
			if err != nil {
				return err
			}
			return a.print(l, jobTable)
		}}
	t.flags(cmd)
	lq.add(cmd)
	cmd.Flags().StringVar(&schedule, "job-schedule-id", "", "list only the jobs this job schedule created")
	return cmd
}

// jobSetCmd is set (PATCH: only what is given changes) or, with replace,
// reset (PUT: what is not given goes back to its default).
func (a *app) jobSetCmd(replace bool) *cobra.Command {
	var t batchTarget
	var f jobSpecFlags
	var id, jsonFile string
	use, short, method := "set", "Update a job's properties; those not given keep their values", http.MethodPatch
	if replace {
		use, short, method = "reset", "Replace a job's properties; those not given go back to their defaults", http.MethodPut
	}
	cmd := &cobra.Command{Use: use, Short: short, Args: nameValueArgs("metadata"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := requireFlag("--job-id", id); err != nil {
				return err
			}
			body := map[string]any{}
			if jsonFile != "" {
				if n := f.anySet(cmd); n != "" {
					return fmt.Errorf("--json-file holds the job's properties; it cannot be combined with %s", n)
				}
				m, err := readJSONObject(jsonFile)
				if err != nil {
					return err
				}
				body = m
			} else {
				if err := f.apply(cmd, body, args); err != nil {
					return err
				}
				if !replace && len(body) == 0 {
					return errors.New("nothing to set: give --json-file or at least one property flag (--priority, --metadata, --pool-id, ...)")
				}
			}
			if _, ok := body["poolInfo"]; replace && !ok {
				// A replace needs the pool; keep the job's current one.
				cur, _, err := a.data(ctx, &t, http.MethodGet, jobPath(id)+"?$select=poolInfo", nil)
				if err != nil {
					return err
				}
				if m, ok := cur.(map[string]any); ok && m["poolInfo"] != nil {
					body["poolInfo"] = m["poolInfo"]
				}
			}
			if _, _, err := a.data(ctx, &t, method, jobPath(id), body); err != nil {
				return err
			}
			return a.showJob(ctx, &t, id)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-id", "", "the job id")
	cmd.Flags().StringVar(&jsonFile, "json-file", "", "a file holding the job's properties in JSON; the other property flags are then not used")
	f.add(cmd, false)
	return cmd
}

func (a *app) jobDeleteCmd() *cobra.Command {
	var t batchTarget
	var id string
	var yes bool
	cmd := &cobra.Command{Use: "delete", Short: "Delete a job and its tasks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", id); err != nil {
				return err
			}
			if err := a.confirm(yes); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodDelete, jobPath(id), nil)
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-id", "", "the job id")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}

func (a *app) jobDisableCmd() *cobra.Command {
	var t batchTarget
	var id, disable string
	cmd := &cobra.Command{Use: "disable", Short: "Disable a job: no new tasks start", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", id); err != nil {
				return err
			}
			if err := requireFlag("--disable-tasks", disable); err != nil {
				return err
			}
			v := strings.ToLower(disable)
			if v != "requeue" && v != "terminate" && v != "wait" {
				return fmt.Errorf("argument --disable-tasks: invalid choice: '%s' (choose from 'requeue', 'terminate', 'wait')", disable)
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodPost, jobPath(id)+"/disable", map[string]any{"disableTasks": v})
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-id", "", "the job id")
	cmd.Flags().StringVar(&disable, "disable-tasks", "", "what to do with running tasks: requeue, terminate or wait")
	return cmd
}

func (a *app) jobEnableCmd() *cobra.Command {
	var t batchTarget
	var id string
	cmd := &cobra.Command{Use: "enable", Short: "Enable a disabled job: its tasks may start again", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", id); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodPost, jobPath(id)+"/enable", nil)
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-id", "", "the job id")
	return cmd
}

func (a *app) jobStopCmd() *cobra.Command {
	var t batchTarget
	var id, reason string
	cmd := &cobra.Command{Use: "stop", Short: "Terminate a job: its running tasks are stopped and it completes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", id); err != nil {
				return err
			}
			var body any
			if reason != "" {
				body = map[string]any{"terminateReason": reason}
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodPost, jobPath(id)+"/terminate", body)
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-id", "", "the job id")
	cmd.Flags().StringVar(&reason, "terminate-reason", "", "the reason recorded as the job's terminateReason")
	return cmd
}
