package cli_test

import (
	"strings"
	"testing"

	"custody/server"
	"custody/server/servertest"
)

// TestBatchPoolCommands drives pool create, show, list, set, resize and
// delete and node list through the CLI (no nodes: local nodes are off).
func TestBatchPoolCommands(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	mustRun(t, dir, "batch", "account", "create", "-n", "clipools", "-g", "rg1", "-l", "westus2")
	acct := []string{"--account-name", "clipools"}

	p := decode[map[string]any](t, mustRun(t, dir, append([]string{"batch", "pool", "create", "--id", "p1", "--vm-size", "Standard_D2s_v3",
		"--start-task-command-line", "echo hi", "--metadata", "team=blue"}, acct...)...))
	if p["id"] != "p1" || p["vmSize"] != "standard_d2s_v3" || p["state"] != "active" {
		t.Fatalf("pool create = %v", p)
	}
	if st, _ := p["startTask"].(map[string]any); st["commandLine"] != "echo hi" {
		t.Errorf("startTask = %v", p["startTask"])
	}
	out := mustRun(t, dir, append([]string{"batch", "pool", "list", "-o", "table"}, acct...)...)
	if !strings.Contains(out, "p1") || !strings.Contains(out, "standard_d2s_v3") {
		t.Errorf("pool list table:\n%s", out)
	}
	p = decode[map[string]any](t, mustRun(t, dir, append([]string{"batch", "pool", "set", "--pool-id", "p1", "--metadata", "team=red"}, acct...)...))
	if md, _ := p["metadata"].([]any); len(md) != 1 || md[0].(map[string]any)["value"] != "red" {
		t.Errorf("metadata after set = %v", p["metadata"])
	}
	p = decode[map[string]any](t, mustRun(t, dir, append([]string{"batch", "pool", "resize", "--pool-id", "p1", "--target-dedicated-nodes", "3"}, acct...)...))
	if p["targetDedicatedNodes"] != float64(3) || p["allocationState"] != "resizing" {
		t.Errorf("after resize = %v %v", p["targetDedicatedNodes"], p["allocationState"])
	}
	if out := mustRun(t, dir, append([]string{"batch", "node", "list", "--pool-id", "p1"}, acct...)...); strings.TrimSpace(out) != "[]" {
		t.Errorf("node list = %s", out)
	}
	mustFail(t, dir, "ERROR: (PoolNotFound)", append([]string{"batch", "pool", "show", "--pool-id", "nope"}, acct...)...)
	mustFail(t, dir, "ERROR: (InvalidPropertyValue)", append([]string{"batch", "pool", "create", "--id", "p2", "--vm-size", "galactic"}, acct...)...)
	mustRun(t, dir, append([]string{"batch", "pool", "delete", "--pool-id", "p1", "--yes"}, acct...)...)
}
