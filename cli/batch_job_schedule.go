package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// Batch job schedules, with az's names and flags (az batch job-schedule
// create|show|list|set|reset|delete|disable|enable|stop; terminate is the
// same as stop). The schedule travels as the Batch REST API spells it, so a
// --json-file written for az works here unchanged.

func (a *app) batchJobScheduleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job-schedule", Short: "Manage batch job schedules: jobs created on a schedule"}
	cmd.AddCommand(a.scheduleCreateCmd(), a.scheduleShowCmd(), a.scheduleListCmd(), a.scheduleSetCmd(false), a.scheduleSetCmd(true), a.scheduleDeleteCmd(),
		a.scheduleActionCmd("disable", "Disable a job schedule: it creates no jobs until enabled"),
		a.scheduleActionCmd("enable", "Enable a disabled job schedule"),
		a.scheduleActionCmd("terminate", "Terminate a job schedule: its active job is terminated and it creates no more"))
	return cmd
}

func schedulePath(id string) string { return "/jobschedules/" + url.PathEscape(id) }

// scheduleTable is the table for job schedules.
func scheduleTable(v any) any {
	return rows(v, func(m map[string]any) row {
		return newRow("Id", m["id"], "State", m["state"], "Recurrence", nested(m, "schedule", "recurrenceInterval"),
			"NextRunTime", nested(m, "executionInfo", "nextRunTime"), "RecentJob", nested(m, "executionInfo", "recentJob", "id"))
	})
}

func (a *app) showSchedule(ctx context.Context, t *batchTarget, id string) error {
	v, _, err := a.data(ctx, t, http.MethodGet, schedulePath(id), nil)
	if err != nil {
		return err
	}
	return a.print(stripMetadata(v), scheduleTable)
}

// isoTime accepts an RFC 3339 time (2030-01-02T03:04:05Z) or a date.
func isoTime(flag, v string) (string, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC().Format(time.RFC3339), nil
		}
	}
	return "", fmt.Errorf("argument %s: %q is not a time; use ISO 8601, e.g. 2030-01-02T03:04:05Z", flag, v)
}

func (a *app) scheduleCreateCmd() *cobra.Command {
	var t batchTarget
	var f jobSpecFlags
	var sf scheduleFlags
	var id, jsonFile, displayName string
	var jobMetadata []string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Add a job schedule: a job on the pool it names at each occurrence, one active job at a time",
		Example: `  custody batch job-schedule create --id nightly --pool-id pool1 --recurrence-interval P1D --start-window PT1H
  custody batch job-schedule create --id once --pool-id pool1 --do-not-run-until 2030-01-02T03:00:00Z
  custody batch job-schedule create --json-file schedule.json   # {"id": ..., "schedule": {...}, "jobSpecification": {...}}`,
		Args: nameValueArgs("metadata"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if jsonFile != "" {
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
				job := map[string]any{}
				// --metadata is the schedule's; the jobs get --job-metadata.
				if err := f.apply(cmd, job, args); err != nil {
					return err
				}
				if md, ok := job["metadata"]; ok {
					body["metadata"] = md
					delete(job, "metadata")
				}
				if len(jobMetadata) > 0 {
					l, err := nameValueList("--job-metadata", jobMetadata, nil)
					if err != nil {
						return err
					}
					job["metadata"] = l
				}
				body["jobSpecification"] = job
				if displayName != "" {
					body["displayName"] = displayName
				}
				sched, err := sf.schedule()
				if err != nil {
					return err
				}
				body["schedule"] = sched
			}
			sid, _ := body["id"].(string)
			if sid == "" {
				return errors.New("the job schedule has no id: give --id or an \"id\" in the --json-file")
			}
			if _, _, err := a.data(cmd.Context(), &t, http.MethodPost, "/jobschedules", body); err != nil {
				return err
			}
			return a.showSchedule(cmd.Context(), &t, sid)
		},
	}
	t.flags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&id, "id", "", "the job schedule id")
	fs.StringVar(&jsonFile, "json-file", "", "a file holding the job schedule in JSON (the Batch REST API's job schedule add body); the other flags are then not used")
	fs.StringVar(&displayName, "display-name", "", "the schedule's display name")
	sf.add(cmd)
	fs.StringArrayVar(&jobMetadata, "job-metadata", nil, "NAME=VALUE metadata of each job the schedule creates")
	f.add(cmd, true)
	fs.StringVar(&f.onAllComplete, "on-all-tasks-complete", "", "what happens when all tasks of a job are complete: noaction or terminatejob")
	return cmd
}

// scheduleFlags are the flags of a schedule's timing.
type scheduleFlags struct{ until, after, recurrence, window string }

func (f *scheduleFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.until, "do-not-run-until", "", "the earliest time a job is created (ISO 8601)")
	fs.StringVar(&f.after, "do-not-run-after", "", "the time after which no job is created (ISO 8601)")
	fs.StringVar(&f.recurrence, "recurrence-interval", "", "the time between the starts of two jobs (ISO 8601 duration, at least PT1M); none: one job")
	fs.StringVar(&f.window, "start-window", "", "how long after its time a job may still be created (ISO 8601 duration, at least PT1M); none: no limit")
}

func (f *scheduleFlags) given() bool {
	return f.until != "" || f.after != "" || f.recurrence != "" || f.window != ""
}

// schedule is the schedule the flags give, as the REST API spells it.
func (f *scheduleFlags) schedule() (map[string]any, error) {
	sched := map[string]any{}
	for _, x := range []struct{ flag, key, v string }{{"--do-not-run-until", "doNotRunUntil", f.until}, {"--do-not-run-after", "doNotRunAfter", f.after}} {
		if x.v != "" {
			tv, err := isoTime(x.flag, x.v)
			if err != nil {
				return nil, err
			}
			sched[x.key] = tv
		}
	}
	for _, x := range []struct{ flag, key, v string }{{"--recurrence-interval", "recurrenceInterval", f.recurrence}, {"--start-window", "startWindow", f.window}} {
		if x.v != "" {
			d, err := isoDuration(x.flag, x.v)
			if err != nil {
				return nil, err
			}
			sched[x.key] = d
		}
	}
	return sched, nil
}

// scheduleSetCmd is set (PATCH: only what is given changes; a schedule
// given replaces the whole schedule) or, with replace, reset (PUT: the
// schedule and metadata not given go back to their defaults).
func (a *app) scheduleSetCmd(replace bool) *cobra.Command {
	var t batchTarget
	var f scheduleFlags
	var id, jsonFile, poolID string
	var metadata []string
	use, short, method := "set", "Update a job schedule; what is not given keeps its value", http.MethodPatch
	if replace {
		use, short, method = "reset", "Replace a job schedule's schedule, job specification and metadata; what is not given goes back to its default", http.MethodPut
	}
	cmd := &cobra.Command{Use: use, Short: short, Args: nameValueArgs("metadata"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := requireFlag("--job-schedule-id", id); err != nil {
				return err
			}
			body := map[string]any{}
			if jsonFile != "" {
				if f.given() || poolID != "" || cmd.Flags().Changed("metadata") {
					return errors.New("--json-file holds the schedule's properties; it cannot be combined with other property flags")
				}
				m, err := readJSONObject(jsonFile)
				if err != nil {
					return err
				}
				body = m
			} else {
				if f.given() {
					sched, err := f.schedule()
					if err != nil {
						return err
					}
					body["schedule"] = sched
				}
				if cmd.Flags().Changed("metadata") {
					md, err := nameValueList("--metadata", metadata, args)
					if err != nil {
						return err
					}
					body["metadata"] = md
				}
				if poolID != "" || replace {
					// The job specification is replaced whole: start from
					// the current one.
					cur, _, err := a.data(ctx, &t, http.MethodGet, schedulePath(id)+"?$select=jobSpecification", nil)
					if err != nil {
						return err
					}
					m, _ := cur.(map[string]any)
					js, _ := nested(m, "jobSpecification").(map[string]any)
					if js == nil {
						js = map[string]any{}
					}
					if poolID != "" {
						js["poolInfo"] = map[string]any{"poolId": poolID}
					}
					body["jobSpecification"] = js
				}
				if !replace && len(body) == 0 {
					return errors.New("nothing to set: give --json-file or at least one property flag (--recurrence-interval, --metadata, --pool-id, ...)")
				}
			}
			if _, _, err := a.data(ctx, &t, method, schedulePath(id), body); err != nil {
				return err
			}
			return a.showSchedule(ctx, &t, id)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-schedule-id", "", "the job schedule id")
	cmd.Flags().StringVar(&jsonFile, "json-file", "", "a file holding the schedule's properties in JSON (schedule, jobSpecification, metadata); the other property flags are then not used")
	cmd.Flags().StringVar(&poolID, "pool-id", "", "the pool the schedule's future jobs run on")
	cmd.Flags().StringArrayVar(&metadata, "metadata", nil, "space-separated NAME=VALUE metadata of the schedule")
	f.add(cmd)
	return cmd
}

func (a *app) scheduleShowCmd() *cobra.Command {
	var t batchTarget
	var id, sel string
	cmd := &cobra.Command{Use: "show", Short: "Show a job schedule", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-schedule-id", id); err != nil {
				return err
			}
			q := url.Values{}
			if sel != "" {
				q.Set("$select", sel)
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, withQuery(schedulePath(id), q), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), scheduleTable)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-schedule-id", "", "the job schedule id")
	cmd.Flags().StringVar(&sel, "select", "", "an OData $select clause")
	return cmd
}

func (a *app) scheduleListCmd() *cobra.Command {
	var t batchTarget
	var lq listQueryFlags
	cmd := &cobra.Command{Use: "list", Short: "List the account's job schedules", Args: cobra.NoArgs,
		Example: `  custody batch job-schedule list --filter "state eq 'active'" -o table`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := a.dataListAll(cmd.Context(), &t, withQuery("/jobschedules", lq.values()))
			if err != nil {
				return err
			}
			return a.print(l, scheduleTable)
		}}
	t.flags(cmd)
	lq.add(cmd)
	return cmd
}

func (a *app) scheduleDeleteCmd() *cobra.Command {
	var t batchTarget
	var id string
	var yes bool
	cmd := &cobra.Command{Use: "delete", Short: "Delete a job schedule and the jobs it created", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-schedule-id", id); err != nil {
				return err
			}
			if err := a.confirm(yes); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodDelete, schedulePath(id), nil)
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-schedule-id", "", "the job schedule id")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}

// scheduleActionCmd is disable, enable or terminate (az's stop, accepted
// as an alias).
func (a *app) scheduleActionCmd(action, short string) *cobra.Command {
	var t batchTarget
	var id string
	cmd := &cobra.Command{Use: action, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-schedule-id", id); err != nil {
				return err
			}
			if _, _, err := a.data(cmd.Context(), &t, http.MethodPost, schedulePath(id)+"/"+action, nil); err != nil {
				return err
			}
			return a.showSchedule(cmd.Context(), &t, id)
		}}
	if action == "terminate" {
		cmd.Aliases = []string{"stop"}
	}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "job-schedule-id", "", "the job schedule id")
	return cmd
}
