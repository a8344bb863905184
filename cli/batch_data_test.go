package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"custody/server"
	"custody/server/servertest"
)

// TestBatchJobTaskCertificateCommands drives jobs, tasks and certificates
// through the CLI on a platform-key account (no nodes: tasks stay active).
func TestBatchJobTaskCertificateCommands(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	mustRun(t, dir, "batch", "account", "create", "-n", "clidata", "-g", "rg1", "-l", "westus2")
	acct := []string{"--account-name", "clidata"}
	batch := func(args ...string) string {
		t.Helper()
		return mustRun(t, dir, append(append([]string{"batch"}, args...), acct...)...)
	}
	fail := func(want string, args ...string) string {
		t.Helper()
		return mustFail(t, dir, want, append(append([]string{"batch"}, args...), acct...)...)
	}
	tmp := t.TempDir()
	write := func(name string, v any) string {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// ---- jobs ----
	j := decode[map[string]any](t, batch("job", "create", "--id", "job1", "--pool-id", "pool1", "--priority", "100",
		"--metadata", "team=blue", "owner=ops", "--job-max-wall-clock-time", "PT2H", "--max-task-retry-count", "3", "--uses-task-dependencies"))
	if j["id"] != "job1" || j["state"] != "active" || j["priority"] != float64(100) || j["usesTaskDependencies"] != true {
		t.Fatalf("job create = %v", j)
	}
	if p, _ := j["poolInfo"].(map[string]any); p["poolId"] != "pool1" {
		t.Errorf("poolInfo = %v", j["poolInfo"])
	}
	if md, _ := j["metadata"].([]any); len(md) != 2 || md[1].(map[string]any)["name"] != "owner" || md[1].(map[string]any)["value"] != "ops" {
		t.Errorf("metadata = %v", j["metadata"])
	}
	if c, _ := j["constraints"].(map[string]any); c["maxWallClockTime"] != "PT2H" || c["maxTaskRetryCount"] != float64(3) {
		t.Errorf("constraints = %v", j["constraints"])
	}
	if _, ok := j["odata.metadata"]; ok {
		t.Errorf("odata.metadata is shown: %v", j)
	}

	// A job from a JSON file, as az takes it.
	jobFile := write("job.json", map[string]any{"id": "job2", "displayName": "from a file", "poolInfo": map[string]any{"poolId": "pool1"},
		"commonEnvironmentSettings": []any{map[string]any{"name": "MODE", "value": "file"}}})
	j2 := decode[map[string]any](t, batch("job", "create", "--json-file", jobFile))
	if j2["id"] != "job2" || j2["displayName"] != "from a file" {
		t.Errorf("job from file = %v", j2)
	}
	fail("ERROR: --json-file holds the whole job", "job", "create", "--json-file", jobFile, "--priority", "5")
	fail("ERROR: the following arguments are required: --pool-id", "job", "create", "--id", "job3")
	fail("ERROR: (JobExists)", "job", "create", "--id", "job1", "--pool-id", "pool1")

	// set patches, reset replaces (keeping the pool).
	j = decode[map[string]any](t, batch("job", "set", "--job-id", "job1", "--priority", "7"))
	if j["priority"] != float64(7) || len(j["metadata"].([]any)) != 2 {
		t.Errorf("after set: priority %v metadata %v", j["priority"], j["metadata"])
	}
	j = decode[map[string]any](t, batch("job", "reset", "--job-id", "job1", "--metadata", "only=this"))
	if md, _ := j["metadata"].([]any); len(md) != 1 || j["priority"] != nil && j["priority"] != float64(0) {
		t.Errorf("after reset: priority %v metadata %v", j["priority"], j["metadata"])
	}
	if p, _ := j["poolInfo"].(map[string]any); p["poolId"] != "pool1" {
		t.Errorf("reset lost the pool: %v", j["poolInfo"])
	}
	fail("ERROR: nothing to set", "job", "set", "--job-id", "job1")

	// disable, enable, list --filter.
	fail("ERROR: argument --disable-tasks: invalid choice", "job", "disable", "--job-id", "job2", "--disable-tasks", "later")
	batch("job", "disable", "--job-id", "job2", "--disable-tasks", "requeue")
	if got := strings.TrimSpace(batch("job", "show", "--job-id", "job2", "--query", "state", "-o", "tsv")); got != "disabled" && got != "disabling" {
		t.Errorf("state after disable = %q", got)
	}
	if ids := strings.Fields(batch("job", "list", "--filter", "state eq 'active'", "--query", "[].id", "-o", "tsv")); strings.Join(ids, ",") != "job1" {
		t.Errorf("active jobs = %v, want job1", ids)
	}
	batch("job", "enable", "--job-id", "job2")
	if ids := strings.Fields(batch("job", "list", "--filter", "state eq 'active'", "--query", "[].id", "-o", "tsv")); strings.Join(ids, ",") != "job1,job2" {
		t.Errorf("active jobs after enable = %v", ids)
	}
	table := batch("job", "list", "-o", "table")
	if !strings.Contains(table, "PoolId") || !strings.Contains(table, "job2") || !strings.Contains(table, "pool1") {
		t.Errorf("job table:\n%s", table)
	}

	// ---- tasks ----
	tk := decode[map[string]any](t, batch("task", "create", "--job-id", "job1", "--task-id", "t1", "--command-line", "/bin/sh -c 'echo $GREETING'",
		"--environment-settings", "GREETING=hello", "MODE=test", "--max-wall-clock-time", "PT10M", "--max-task-retry-count", "2"))
	if tk["id"] != "t1" || tk["state"] != "active" || tk["commandLine"] != "/bin/sh -c 'echo $GREETING'" {
		t.Fatalf("task create = %v", tk)
	}
	if env, _ := tk["environmentSettings"].([]any); len(env) != 2 || env[0].(map[string]any)["value"] != "hello" {
		t.Errorf("environmentSettings = %v", tk["environmentSettings"])
	}
	if c, _ := tk["constraints"].(map[string]any); c["maxWallClockTime"] != "PT10M" || c["maxTaskRetryCount"] != float64(2) {
		t.Errorf("task constraints = %v", tk["constraints"])
	}
	if got := strings.TrimSpace(batch("task", "show", "--job-id", "job1", "--task-id", "t1", "--query", "commandLine", "-o", "tsv")); got != "/bin/sh -c 'echo $GREETING'" {
		t.Errorf("show --query commandLine = %q", got)
	}
	// One task from a file.
	one := write("one.json", map[string]any{"id": "t2", "commandLine": "echo two", "displayName": "second"})
	if tk := decode[map[string]any](t, batch("task", "create", "--job-id", "job1", "--json-file", one)); tk["id"] != "t2" || tk["displayName"] != "second" {
		t.Errorf("task from file = %v", tk)
	}
	// 150 tasks as an array (two add-collection calls) and 3 as {"value": [...]}.
	var many []any
	for i := range 150 {
		many = append(many, map[string]any{"id": fmt.Sprintf("bulk%03d", i), "commandLine": fmt.Sprintf("echo %d", i)})
	}
	res := decode[[]map[string]any](t, batch("task", "create", "--job-id", "job2", "--json-file", write("many.json", many)))
	if len(res) != 150 {
		t.Fatalf("add collection: %d results, want 150", len(res))
	}
	seen := map[string]bool{}
	for _, r := range res {
		if r["status"] != "success" {
			t.Errorf("result %v", r)
		}
		seen[r["taskId"].(string)] = true
	}
	if len(seen) != 150 || !seen["bulk000"] || !seen["bulk149"] {
		t.Errorf("results name %d distinct tasks", len(seen))
	}
	wrapped := write("wrapped.json", map[string]any{"value": []any{
		map[string]any{"id": "w1", "commandLine": "echo w1"}, map[string]any{"id": "w2", "commandLine": "echo w2"}, map[string]any{"id": "w3", "commandLine": "echo w3"}}})
	if out := batch("task", "create", "--job-id", "job2", "--json-file", wrapped, "-o", "table"); !strings.Contains(out, "w3") || !strings.Contains(out, "success") {
		t.Errorf("wrapped collection table:\n%s", out)
	}
	if n := strings.TrimSpace(batch("task", "list", "--job-id", "job2", "--query", "length(@)", "-o", "tsv")); n != "153" {
		t.Errorf("job2 has %s tasks, want 153", n)
	}
	if got := strings.TrimSpace(batch("task", "show", "--job-id", "job2", "--task-id", "bulk149", "--query", "commandLine", "-o", "tsv")); got != "echo 149" {
		t.Errorf("bulk149 commandLine = %q", got)
	}
	// More tasks than one list page holds: list follows odata.nextLink.
	batch("job", "create", "--id", "lots", "--pool-id", "pool1")
	var lots []any
	for i := range 1010 {
		lots = append(lots, map[string]any{"id": fmt.Sprintf("lot%04d", i), "commandLine": "true"})
	}
	batch("task", "create", "--job-id", "lots", "--json-file", write("lots.json", lots), "-o", "none")
	ids := strings.Fields(batch("task", "list", "--job-id", "lots", "--filter", "state eq 'active'", "--query", "[].id", "-o", "tsv"))
	if len(ids) != 1010 || ids[0] != "lot0000" || ids[1009] != "lot1009" {
		t.Errorf("lots lists %d active tasks, want 1010", len(ids))
	}
	batch("job", "delete", "--job-id", "lots", "--yes")

	// A collection with a duplicate fails and says which task.
	dup := write("dup.json", []any{map[string]any{"id": "w1", "commandLine": "again"}, map[string]any{"id": "w4", "commandLine": "echo w4"}})
	if msg := fail("ERROR: 1 of 2 tasks were not added", "task", "create", "--job-id", "job2", "--json-file", dup); !strings.Contains(msg, "w1: (TaskExists)") {
		t.Errorf("duplicate message: %s", msg)
	}

	// reset, stop, list --filter, delete.
	tk = decode[map[string]any](t, batch("task", "reset", "--job-id", "job1", "--task-id", "t1", "--max-task-retry-count", "5"))
	if c, _ := tk["constraints"].(map[string]any); c["maxTaskRetryCount"] != float64(5) {
		t.Errorf("constraints after reset = %v", tk["constraints"])
	}
	batch("task", "stop", "--job-id", "job1", "--task-id", "t2")
	if got := strings.TrimSpace(batch("task", "show", "--job-id", "job1", "--task-id", "t2", "--query", "state", "-o", "tsv")); got != "completed" {
		t.Errorf("state after stop = %q", got)
	}
	if ids := strings.Fields(batch("task", "list", "--job-id", "job1", "--filter", "state eq 'active'", "--query", "[].id", "-o", "tsv")); strings.Join(ids, ",") != "t1" {
		t.Errorf("active tasks = %v, want t1", ids)
	}
	if out := batch("task", "list", "--job-id", "job1", "-o", "table"); !strings.Contains(out, "CommandLine") || !strings.Contains(out, "echo two") {
		t.Errorf("task table:\n%s", out)
	}
	batch("task", "delete", "--job-id", "job1", "--task-id", "t2", "--yes")
	fail("ERROR: (TaskNotFound)", "task", "show", "--job-id", "job1", "--task-id", "t2")
	fail("ERROR: the following arguments are required: --command-line", "task", "create", "--job-id", "job1", "--task-id", "t9")
	// The existing file commands are still there.
	fail("ERROR: the following arguments are required: --task-id", "task", "file", "list", "--job-id", "job1")

	// ---- certificates ----
	der := selfSigned(t)
	sum := sha1.Sum(der)
	tp := hex.EncodeToString(sum[:])
	cerPath := filepath.Join(tmp, "server.cer")
	if err := os.WriteFile(cerPath, der, 0o600); err != nil {
		t.Fatal(err)
	}
	c := decode[map[string]any](t, batch("certificate", "create", "--certificate-file", cerPath))
	if c["thumbprint"] != tp || c["thumbprintAlgorithm"] != "sha1" || c["certificateFormat"] != "cer" || c["state"] != "active" {
		t.Fatalf("certificate create = %v", c)
	}
	// The same certificate as PEM, with a wrong thumbprint.
	pemPath := filepath.Join(tmp, "server.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	fail("ERROR: argument --thumbprint: "+strings.Repeat("ab", 20)+" does not match", "certificate", "create", "--certificate-file", pemPath, "--thumbprint", strings.Repeat("AB", 20))
	fail("ERROR: (CertificateExists)", "certificate", "create", "--certificate-file", pemPath)
	if got := strings.TrimSpace(batch("certificate", "show", "--thumbprint", strings.ToUpper(tp), "--query", "state", "-o", "tsv")); got != "active" {
		t.Errorf("certificate state = %q", got)
	}
	if out := batch("certificate", "list", "-o", "table"); !strings.Contains(out, tp) || !strings.Contains(out, "cer") {
		t.Errorf("certificate table:\n%s", out)
	}
	pfxPath := filepath.Join(tmp, "server.pfx")
	if err := os.WriteFile(pfxPath, []byte("not really a pfx"), 0o600); err != nil {
		t.Fatal(err)
	}
	fail("ERROR: the following arguments are required: --thumbprint", "certificate", "create", "--certificate-file", pfxPath, "--password", "pw")
	fail("ERROR: the following arguments are required: --password", "certificate", "create", "--certificate-file", pfxPath, "--thumbprint", strings.Repeat("0", 40))
	batch("certificate", "delete", "--thumbprint", tp, "--yes")
	fail("ERROR: (CertificateNotFound)", "certificate", "show", "--thumbprint", tp)
	if out := strings.TrimSpace(batch("certificate", "list")); out != "[]" {
		t.Errorf("certificates after delete = %s", out)
	}

	// ---- stop and delete jobs; a missing job ----
	batch("job", "stop", "--job-id", "job2", "--terminate-reason", "done here")
	j2 = decode[map[string]any](t, batch("job", "show", "--job-id", "job2"))
	if st := j2["state"]; st != "terminating" && st != "completed" {
		t.Errorf("state after stop = %v", st)
	}
	if r, _ := j2["executionInfo"].(map[string]any); r["terminateReason"] != "done here" {
		t.Errorf("terminateReason = %v", j2["executionInfo"])
	}
	batch("job", "delete", "--job-id", "job1", "--yes")
	msg := fail("ERROR: (JobNotFound) ", "job", "show", "--job-id", "job1")
	if strings.Contains(msg, "answered") || !strings.Contains(strings.ToLower(msg), "job") {
		t.Errorf("missing job message is not the server's: %s", msg)
	}
	fail("ERROR: (JobNotFound) ", "task", "list", "--job-id", "nosuchjob")
	fail("ERROR: (JobNotFound) ", "task", "create", "--job-id", "nosuchjob", "--task-id", "x", "--command-line", "true")
	fail("ERROR: (JobNotFound) ", "job", "delete", "--job-id", "nosuchjob", "--yes")
	if r := run(t, dir, "", "batch", "job", "show", "--job-id", "job2"); r.code != 1 || !strings.HasPrefix(r.stderr, "ERROR: the following arguments are required: --account-name") {
		t.Errorf("without --account-name: exit %d, %q", r.code, r.stderr)
	}
	mustFail(t, dir, "ERROR: (AccountNotFound)", "batch", "job", "list", "--account-name", "nosuchaccount")
}

// selfSigned returns a DER self-signed certificate.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "cli-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
