package cli_test

import (
	"strings"
	"testing"
	"time"

	"custody/server"
	"custody/server/servertest"
)

// TestBatchJobScheduleCommands drives job schedules through the CLI: create
// with az's flags, show, list, the jobs a schedule created, disable,
// enable, terminate (and az's stop) and delete.
func jsonAt(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, _ := v.(map[string]any)
		v = mm[k]
	}
	return v
}

func TestBatchJobScheduleCommands(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	mustRun(t, dir, "batch", "account", "create", "-n", "clisched", "-g", "rg1", "-l", "westus2")
	acct := []string{"--account-name", "clisched"}
	batch := func(args ...string) string {
		t.Helper()
		return mustRun(t, dir, append(append([]string{"batch"}, args...), acct...)...)
	}
	fail := func(want string, args ...string) string {
		t.Helper()
		return mustFail(t, dir, want, append(append([]string{"batch"}, args...), acct...)...)
	}

	s := decode[map[string]any](t, batch("job-schedule", "create", "--id", "nightly", "--pool-id", "pool1",
		"--recurrence-interval", "P1D", "--start-window", "1h", "--priority", "5", "--on-all-tasks-complete", "terminatejob",
		"--metadata", "team=blue", "owner=ops", "--job-metadata", "kind=nightly"))
	sched, _ := s["schedule"].(map[string]any)
	job, _ := s["jobSpecification"].(map[string]any)
	if s["id"] != "nightly" || s["state"] != "active" || sched["recurrenceInterval"] != "P1D" || sched["startWindow"] != "PT3600S" ||
		job["priority"] != float64(5) || job["onAllTasksComplete"] != "terminatejob" || len(s["metadata"].([]any)) != 2 || len(job["metadata"].([]any)) != 1 {
		t.Fatalf("job-schedule create = %v", s)
	}
	if p, _ := job["poolInfo"].(map[string]any); p["poolId"] != "pool1" {
		t.Errorf("poolInfo = %v", job["poolInfo"])
	}
	// Its first job is created at once, named as Azure names it.
	var jobs string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if jobs = strings.TrimSpace(batch("job", "list", "--job-schedule-id", "nightly", "--query", "[].id", "-o", "tsv")); jobs != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if jobs != "nightly:job-1" {
		t.Fatalf("jobs of the schedule = %q", jobs)
	}
	if got := strings.TrimSpace(batch("job-schedule", "show", "--job-schedule-id", "nightly", "--query", "executionInfo.recentJob.id", "-o", "tsv")); got != "nightly:job-1" {
		t.Errorf("recentJob = %q", got)
	}
	fail("ERROR: argument --recurrence-interval", "job-schedule", "create", "--id", "x", "--pool-id", "p", "--recurrence-interval", "daily")
	fail("ERROR: (InvalidPropertyValue)", "job-schedule", "create", "--id", "x", "--pool-id", "p", "--recurrence-interval", "PT30S")
	fail("ERROR: argument --do-not-run-until", "job-schedule", "create", "--id", "x", "--pool-id", "p", "--do-not-run-until", "tomorrow")
	fail("ERROR: the following arguments are required: --pool-id", "job-schedule", "create", "--id", "x")

	batch("job-schedule", "create", "--id", "later", "--pool-id", "pool1", "--do-not-run-until", "2099-01-01T00:00:00Z")
	if got := strings.TrimSpace(batch("job-schedule", "disable", "--job-schedule-id", "later", "--query", "state", "-o", "tsv")); got != "disabled" {
		t.Errorf("state after disable = %q", got)
	}
	if ids := strings.Fields(batch("job-schedule", "list", "--filter", "state eq 'active'", "--query", "[].id", "-o", "tsv")); strings.Join(ids, ",") != "nightly" {
		t.Errorf("active schedules = %v", ids)
	}
	batch("job-schedule", "enable", "--job-schedule-id", "later")
	table := batch("job-schedule", "list", "-o", "table")
	if !strings.Contains(table, "NextRunTime") || !strings.Contains(table, "later") || !strings.Contains(table, "nightly:job-1") {
		t.Errorf("job-schedule table:\n%s", table)
	}
	if got := strings.TrimSpace(batch("job-schedule", "terminate", "--job-schedule-id", "nightly", "--query", "state", "-o", "tsv")); got != "completed" && got != "terminating" {
		t.Errorf("state after terminate = %q", got)
	}
	if got := strings.TrimSpace(batch("job", "show", "--job-id", "nightly:job-1", "--query", "state", "-o", "tsv")); got != "completed" {
		t.Errorf("the schedule's job after terminate = %q", got)
	}
	// set patches; reset replaces (keeping the job specification it does
	// not change).
	s = decode[map[string]any](t, batch("job-schedule", "set", "--job-schedule-id", "later", "--metadata", "owner=dev",
		"--recurrence-interval", "PT2H", "--do-not-run-until", "2099-01-01T00:00:00Z"))
	if sched, _ := s["schedule"].(map[string]any); sched["recurrenceInterval"] != "PT2H" || len(s["metadata"].([]any)) != 1 {
		t.Errorf("after set: %v", s)
	}
	fail("ERROR: nothing to set", "job-schedule", "set", "--job-schedule-id", "later")
	s = decode[map[string]any](t, batch("job-schedule", "reset", "--job-schedule-id", "later", "--pool-id", "pool2",
		"--do-not-run-until", "2099-01-01T00:00:00Z"))
	sched, _ = s["schedule"].(map[string]any)
	if p := jsonAt(s, "jobSpecification", "poolInfo", "poolId"); p != "pool2" || sched["recurrenceInterval"] != nil || s["metadata"] != nil {
		t.Errorf("after reset: %v", s)
	}
	batch("job-schedule", "stop", "--job-schedule-id", "later")
	batch("job-schedule", "delete", "--job-schedule-id", "nightly", "--yes")
	fail("ERROR: (JobScheduleNotFound)", "job-schedule", "show", "--job-schedule-id", "nightly")
	fail("ERROR: (JobNotFound)", "job", "show", "--job-id", "nightly:job-1")
}
