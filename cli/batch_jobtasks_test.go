package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"custody/server"
	"custody/server/servertest"
)

// TestBatchJobTasksCommands: a job with manager, preparation and release
// tasks from --json-file as az takes it, task reactivate and the
// preparation and release task status (no nodes: nothing runs).
func TestBatchJobTasksCommands(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	mustRun(t, dir, "batch", "account", "create", "-n", "clijobtasks", "-g", "rg1", "-l", "westus2")
	acct := []string{"--account-name", "clijobtasks"}
	batch := func(args ...string) string {
		t.Helper()
		return mustRun(t, dir, append(append([]string{"batch"}, args...), acct...)...)
	}
	fail := func(want string, args ...string) string {
		t.Helper()
		return mustFail(t, dir, want, append(append([]string{"batch"}, args...), acct...)...)
	}
	b, err := json.Marshal(map[string]any{"id": "job1", "poolInfo": map[string]any{"poolId": "pool1"},
		"onTaskFailure":      "performexitoptionsjobaction",
		"jobManagerTask":     map[string]any{"id": "manager", "commandLine": "/bin/sh -c 'echo manage'", "killJobOnCompletion": false, "runExclusive": false},
		"jobPreparationTask": map[string]any{"commandLine": "echo prepare", "waitForSuccess": true, "rerunOnNodeRebootAfterSuccess": false},
		"jobReleaseTask":     map[string]any{"id": "cleanup", "commandLine": "echo release", "maxWallClockTime": "PT5M"},
	})
	if err != nil {
		t.Fatal(err)
	}
	jobFile := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(jobFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	j := decode[map[string]any](t, batch("job", "create", "--json-file", jobFile))
	if m, _ := j["jobManagerTask"].(map[string]any); m["id"] != "manager" || m["killJobOnCompletion"] != false {
		t.Errorf("jobManagerTask = %v", j["jobManagerTask"])
	}
	if p, _ := j["jobPreparationTask"].(map[string]any); p["commandLine"] != "echo prepare" || p["rerunOnNodeRebootAfterSuccess"] != false {
		t.Errorf("jobPreparationTask = %v", j["jobPreparationTask"])
	}
	if r, _ := j["jobReleaseTask"].(map[string]any); r["id"] != "cleanup" || r["maxWallClockTime"] != "PT5M" {
		t.Errorf("jobReleaseTask = %v", j["jobReleaseTask"])
	}
	// The job manager is a task of the job.
	m := decode[map[string]any](t, batch("task", "show", "--job-id", "job1", "--task-id", "manager"))
	if m["state"] != "active" || m["commandLine"] != "/bin/sh -c 'echo manage'" {
		t.Errorf("manager task = %v", m)
	}
	fail("ERROR: (TaskIdSameAsJobReleaseTask)", "task", "create", "--job-id", "job1", "--task-id", "cleanup", "--command-line", "true")
	// Reactivate: refused while active; a terminated task (failed) is
	// active again.
	fail("ERROR: (TaskNotCompleted)", "task", "reactivate", "--job-id", "job1", "--task-id", "manager")
	batch("task", "stop", "--job-id", "job1", "--task-id", "manager")
	if st := strings.TrimSpace(batch("task", "show", "--job-id", "job1", "--task-id", "manager", "--query", "executionInfo.result", "-o", "tsv")); st != "failure" {
		t.Fatalf("terminated task result = %q", st)
	}
	batch("task", "reactivate", "--job-id", "job1", "--task-id", "manager")
	if st := strings.TrimSpace(batch("task", "show", "--job-id", "job1", "--task-id", "manager", "--query", "state", "-o", "tsv")); st != "active" {
		t.Errorf("reactivated task state = %q", st)
	}
	fail("ERROR: the following arguments are required: --task-id", "task", "reactivate", "--job-id", "job1")
	// No node ran the preparation task: an empty status list.
	if out := strings.TrimSpace(batch("job", "prep-release-status", "list", "--job-id", "job1")); out != "[]" {
		t.Errorf("status list = %s", out)
	}
	batch("job", "create", "--id", "job2", "--pool-id", "pool1")
	fail("ERROR: (JobPreparationTaskNotSpecified)", "job", "prep-release-status", "list", "--job-id", "job2")
	fail("ERROR: (InvalidPropertyValue)", "task", "create", "--job-id", "job2", "--json-file", writeFile(t, `{"id":"t","commandLine":"true","exitConditions":{"default":{"jobAction":"terminate"}}}`))
}

func writeFile(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.json")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
