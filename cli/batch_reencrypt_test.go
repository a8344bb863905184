package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"custody/server"
	"custody/server/servertest"
)

// TestBatchAccountReencryptCommand re-encrypts an account with the CLI:
// without --wait it answers the operation at once; with --wait it prints
// progress lines (stderr is not a terminal here) and then the account,
// whose data key generation moved and whose tasks read back equal.
func TestBatchAccountReencryptCommand(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) {
		c.DisableLocalNodes = true
		c.ReencryptBatch = 10
		c.ReencryptSettle = 100 * time.Millisecond
	})
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	mustRun(t, dir, "batch", "account", "create", "-n", "clire", "-g", "rg1", "-l", "westus2")
	acct := []string{"--account-name", "clire"}
	mustRun(t, dir, append([]string{"batch", "job", "create", "--id", "job1", "--pool-id", "pool1"}, acct...)...)
	var tasks []map[string]any
	for i := 0; i < 300; i++ {
		tasks = append(tasks, map[string]any{"id": "t" + strconv.Itoa(i), "commandLine": "/bin/echo secret " + strconv.Itoa(i)})
	}
	b, err := json.Marshal(tasks)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "tasks.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, append([]string{"batch", "task", "create", "--job-id", "job1", "--json-file", file}, acct...)...)
	before := mustRun(t, dir, append([]string{"batch", "task", "list", "--job-id", "job1"}, acct...)...)

	r := run(t, dir, "", "batch", "account", "reencrypt", "-n", "clire", "-g", "rg1", "--wait")
	if r.code != 0 {
		t.Fatalf("reencrypt --wait: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	t.Logf("reencrypt --wait stderr:\n%s", r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	progress := regexp.MustCompile(`^InProgress: \d+/\d+ records \(\d+%\)`)
	sawProgress := false
	for _, l := range lines[:len(lines)-1] {
		if !progress.MatchString(l) {
			t.Errorf("progress line %q does not match %s", l, progress)
		}
		sawProgress = true
	}
	if !sawProgress || !strings.HasPrefix(lines[len(lines)-1], "Succeeded: 301/301 records re-encrypted") {
		t.Errorf("stderr of reencrypt --wait:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "\r") || strings.Contains(r.stderr, "\x1b") {
		t.Errorf("terminal control characters written to a non-terminal: %q", r.stderr)
	}
	out := decode[map[string]any](t, r.stdout)
	re, _ := out["reencryption"].(map[string]any)
	if re["status"] != "Succeeded" || re["toDataKeyGeneration"] != float64(2) {
		t.Errorf("account after reencrypt --wait: reencryption = %v", re)
	}
	if after := mustRun(t, dir, append([]string{"batch", "task", "list", "--job-id", "job1"}, acct...)...); after != before {
		t.Errorf("tasks differ after the re-encryption")
	}

	// Without --wait: the operation's state at once; a second request
	// while it runs is refused.
	op := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "reencrypt", "-n", "clire", "-g", "rg1"))
	if op["status"] != "InProgress" {
		t.Errorf("reencrypt without --wait = %v", op)
	}
	if r := run(t, dir, "", "batch", "account", "reencrypt", "-n", "clire", "-g", "rg1"); r.code == 0 && !strings.Contains(r.stderr, "ReencryptionInProgress") {
		// It may already have finished on a fast machine: then it started
		// a third one, which is fine too.
		if o := decode[map[string]any](t, r.stdout); o["status"] != "InProgress" {
			t.Errorf("second reencrypt = %v", o)
		}
	} else if r.code != 0 && !strings.Contains(r.stderr, "ReencryptionInProgress") {
		t.Errorf("second reencrypt: exit %d, stderr %s", r.code, r.stderr)
	}
}
