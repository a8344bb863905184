package compat_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"custody/cli"
	"custody/server"
	"custody/server/servertest"
	"custody/sqlstore"
)

// The compute tests start real node agents: the test binary re-executes
// itself as `custody node` (see TestMain).
const agentEnv = "CUSTODY_TEST_NODE_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) == "1" {
		os.Exit(runTestAgent(os.Args[1:]))
	}
	if os.Getenv(msiEnv) != "" {
		os.Exit(runTestMSI(os.Getenv(msiEnv)))
	}
	os.Exit(m.Run())
}

// runTestAgent runs `custody node` with args, as the custody binary would.
func runTestAgent(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return cli.Main(ctx, args, os.Stdin, os.Stdout, os.Stderr)
}

// remoteAgent returns the command that runs a node agent by hand, as an
// operator on another machine would, with the node credential in a file.
func remoteAgent(t testing.TB, ts *servertest.TestServer, server, credential string) *exec.Cmd {
	t.Helper()
	credFile := filepath.Join(t.TempDir(), "node.credential")
	if err := os.WriteFile(credFile, []byte(credential), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "node", "--server", server, "--connect", ts.Endpoint.Address, "--ca-file", ts.Endpoint.CAFile,
		"--credential-file", credFile, "--root", filepath.Join(t.TempDir(), "node"))
	cmd.Env = append(os.Environ(), agentEnv+"=1")
	return cmd
}

// computeServer starts a server whose local nodes are this test binary.
func computeServer(t testing.TB) *servertest.TestServer {
	t.Helper()
	t.Setenv(agentEnv, "1")
	ts := servertest.New(t, func(c *server.Config) {
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
		if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
			c.NodeLog = os.Stderr
		}
	})
	return ts
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last: %s)", d, what, last)
}

func nodeStates(t testing.TB, c *azbatch.Client, pool string) []string {
	t.Helper()
	var out []string
	p := c.NewListNodesPager(pool, nil)
	for p.More() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list nodes: %v", err)
		}
		for _, n := range page.Value {
			out = append(out, string(*n.State))
		}
	}
	return out
}

func waitNodes(t testing.TB, c *azbatch.Client, pool string, n int, state string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d %s nodes", n, state), func() (bool, string) {
		st := nodeStates(t, c, pool)
		count := 0
		for _, s := range st {
			if s == state {
				count++
			}
		}
		return count == n && len(st) == n, strings.Join(st, ",")
	})
}

func mustPool(t testing.TB, c *azbatch.Client, id string, nodes, slots int32) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr(id), VMSize: to.Ptr("standard_d2s_v3"),
		TargetDedicatedNodes: to.Ptr(nodes), TaskSlotsPerNode: to.Ptr(slots)}, nil); err != nil {
		t.Fatalf("create pool: %v", err)
	}
	waitNodes(t, c, id, int(nodes), "idle")
}

func taskState(t testing.TB, c *azbatch.Client, job, task string) azbatch.Task {
	t.Helper()
	r, err := c.GetTask(context.Background(), job, task, nil)
	if err != nil {
		t.Fatalf("get task %s: %v", task, err)
	}
	return r.Task
}

func waitTask(t testing.TB, c *azbatch.Client, job, task string, d time.Duration) azbatch.Task {
	t.Helper()
	var tk azbatch.Task
	waitFor(t, d, "task "+task+" to complete", func() (bool, string) {
		tk = taskState(t, c, job, task)
		return *tk.State == azbatch.TaskStateCompleted, string(*tk.State)
	})
	return tk
}

func readTaskFile(t testing.TB, c *azbatch.Client, job, task, path string) string {
	t.Helper()
	r, err := c.GetTaskFile(context.Background(), job, task, path, nil)
	if err != nil {
		t.Fatalf("get %s of task %s: %v", path, task, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// TestComputeFiftyTasks runs 50 tasks on a pool of 2 local nodes and reads
// states, exit codes, retries and stdout back through azbatch.
func TestComputeFiftyTasks(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-compute", "compute1")
	c := dataClient(t, ts, "compute1")
	ctx := context.Background()
	mustPool(t, c, "p1", 2, 2)

	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	code := func(i int) int {
		switch {
		case i%10 == 3:
			return 3
		case i%10 == 7:
			return 1 // retried twice, then failed
		}
		return 0
	}
	for batchStart := 0; batchStart < 50; batchStart += 25 {
		var g azbatch.TaskGroup
		for i := batchStart; i < batchStart+25; i++ {
			tc := azbatch.CreateTaskContent{ID: to.Ptr("t" + strconv.Itoa(i)),
				CommandLine:         to.Ptr(fmt.Sprintf(`echo "out $AZ_BATCH_TASK_ID $MY_VAR"; exit %d`, code(i))),
				EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr("MY_VAR"), Value: to.Ptr("v" + strconv.Itoa(i))}}}
			if code(i) == 1 {
				tc.Constraints = &azbatch.TaskConstraints{MaxTaskRetryCount: to.Ptr[int32](2)}
			}
			g.Value = append(g.Value, tc)
		}
		r, err := c.CreateTaskCollection(ctx, "j1", g, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range r.Value {
			if *res.Status != azbatch.TaskAddStatusSuccess {
				t.Fatalf("add %s: %v", *res.TaskID, *res.Status)
			}
		}
	}
	for i := 0; i < 50; i++ {
		id := "t" + strconv.Itoa(i)
		tk := waitTask(t, c, "j1", id, 60*time.Second)
		ei := tk.ExecutionInfo
		if ei == nil || ei.ExitCode == nil || int(*ei.ExitCode) != code(i) {
			t.Errorf("task %s: executionInfo %+v, want exit code %d", id, ei, code(i))
			continue
		}
		wantRetries := int32(0)
		if code(i) == 1 {
			wantRetries = 2
		}
		if *ei.RetryCount != wantRetries {
			t.Errorf("task %s: retryCount %d, want %d", id, *ei.RetryCount, wantRetries)
		}
		wantResult := azbatch.TaskExecutionResultSuccess
		if code(i) != 0 {
			wantResult = azbatch.TaskExecutionResultFailure
		}
		if ei.Result == nil || *ei.Result != wantResult {
			t.Errorf("task %s: result %v, want %s", id, ei.Result, wantResult)
		}
		if got, want := readTaskFile(t, c, "j1", id, "stdout.txt"), fmt.Sprintf("out %s v%d\n", id, i); got != want {
			t.Errorf("task %s stdout = %q, want %q", id, got, want)
		}
	}
	files := map[string]bool{}
	fp := c.NewListTaskFilesPager("j1", "t0", &azbatch.ListTaskFilesOptions{Recursive: to.Ptr(true)})
	for fp.More() {
		page, err := fp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range page.Value {
			files[*f.Name] = *f.IsDirectory
		}
	}
	if isDir, ok := files["wd"]; !ok || !isDir || files["stdout.txt"] || files["stderr.txt"] {
		t.Errorf("task files = %v, want stdout.txt, stderr.txt and the directory wd", files)
	}
	if _, ok := files["stdout.txt"]; !ok {
		t.Errorf("task files = %v lack stdout.txt", files)
	}
	props, err := c.GetTaskFileProperties(ctx, "j1", "t0", "stdout.txt", nil)
	if err != nil || props.ContentLength == nil || *props.ContentLength != int64(len("out t0 v0\n")) {
		t.Errorf("stdout.txt properties: %+v %v", props, err)
	}
	counts, err := c.GetJobTaskCounts(ctx, "j1", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Exit codes 3 and 1 (after its retries) fail: 10 of the 50.
	if tc := counts.TaskCounts; *tc.Completed != 50 || *tc.Succeeded != 40 || *tc.Failed != 10 {
		t.Errorf("task counts = completed %d, succeeded %d, failed %d; want 50, 40, 10", *tc.Completed, *tc.Succeeded, *tc.Failed)
	}
}

// procAlive reports whether pid runs and is not a zombie.
func procAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestComputeWallClockAndTerminate: maxWallClockTime kills a long task;
// terminate kills a task's whole process tree.
func TestComputeWallClockAndTerminate(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-compute2", "compute2")
	c := dataClient(t, ts, "compute2")
	ctx := context.Background()
	mustPool(t, c, "p1", 1, 2)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("slow"), CommandLine: to.Ptr("sleep 60"),
		Constraints: &azbatch.TaskConstraints{MaxWallClockTime: to.Ptr("PT1S")}}, nil); err != nil {
		t.Fatal(err)
	}
	// Every process of the tree carries this setting: the host finds them
	// by it.
	treeEnv := "CUSTODY_TEST_TREE=" + strconv.FormatInt(time.Now().UnixNano(), 36)
	name, value, _ := strings.Cut(treeEnv, "=")
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("tree"),
		CommandLine:         to.Ptr(`sleep 300 & sh -c 'sleep 300' & wait`),
		EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr(name), Value: to.Ptr(value)}}}, nil); err != nil {
		t.Fatal(err)
	}
	tk := waitTask(t, c, "j1", "slow", 20*time.Second)
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("the wall clock kill took %s", el)
	}
	if fi := tk.ExecutionInfo.FailureInfo; fi == nil || *fi.Code != "MaxWallClockTimeExceeded" || *tk.ExecutionInfo.Result != azbatch.TaskExecutionResultFailure {
		t.Errorf("slow task executionInfo = %+v, want failure MaxWallClockTimeExceeded", tk.ExecutionInfo)
	}
	// The tree: the task's shell and, below it, both sleeps.
	var pids []int
	waitFor(t, 20*time.Second, "the tree task to start its children", func() (bool, string) {
		pids = procsWithEnv(treeEnv)
		sleeps := 0
		var comms []string
		for _, p := range pids {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/comm")
			comm := strings.TrimSpace(string(b))
			comms = append(comms, comm)
			if comm == "sleep" {
				sleeps++
			}
		}
		return sleeps == 2 && len(pids) > 2, strings.Join(comms, ",")
	})
	for _, p := range pids {
		if !procAlive(p) {
			t.Fatalf("process %d of the tree is not running before terminate", p)
		}
	}
	if _, err := c.TerminateTask(ctx, "j1", "tree", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the process tree to be gone", func() (bool, string) {
		for _, p := range pids {
			if procAlive(p) {
				return false, "pid " + strconv.Itoa(p) + " alive"
			}
		}
		if left := procsWithEnv(treeEnv); len(left) > 0 {
			return false, fmt.Sprintf("pids %v of the tree alive", left)
		}
		return true, ""
	})
	if tk := taskState(t, c, "j1", "tree"); *tk.State != azbatch.TaskStateCompleted {
		t.Errorf("terminated task state = %s", *tk.State)
	}
}

// TestComputeKeyLossAndReturn revokes a customer-managed key while tasks
// run: the nodes go unusable, the task processes are killed and requeued;
// when access returns every task runs again and completes exactly once.
func TestComputeKeyLossAndReturn(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) {
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
		c.KeyProbeInterval = probeInterval
	})
	t.Setenv(agentEnv, "1")
	e := &cmkEnv{t: t, ts: ts, ctx: context.Background(), tok: adminToken(t, ts), accts: batchClient(t, ts), rg: "rg-cmk"}
	MustGroup(t, ts, e.tok, e.rg)
	var err error
	if e.vaults, err = armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts)); err != nil {
		t.Fatal(err)
	}
	cs := e.newCase("loss", true)
	c := dataClient(t, ts, cs.account)
	ctx := context.Background()
	mustPool(t, c, "p1", 2, 2)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	// Each task marks its start and end; its processes carry a setting of
	// their own, by which the host finds them.
	m := newMarkServer(t)
	const n = 4
	runEnv := func(id string) string { return "CUSTODY_TEST_TASK=" + t.Name() + "-" + id }
	for i := 0; i < n; i++ {
		id := "t" + strconv.Itoa(i)
		cmd := m.Mark(id+"-start") + "; sleep 2; " + m.Mark(id+"-end")
		name, value, _ := strings.Cut(runEnv(id), "=")
		if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr(cmd),
			EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr(name), Value: to.Ptr(value)}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "all tasks to start", func() (bool, string) {
		for i := 0; i < n; i++ {
			if m.Count("t"+strconv.Itoa(i)+"-start") == 0 {
				return false, "t" + strconv.Itoa(i)
			}
		}
		return true, ""
	})
	var pids []int
	for i := 0; i < n; i++ {
		id := "t" + strconv.Itoa(i)
		ps := procsWithEnv(runEnv(id))
		if len(ps) == 0 {
			t.Fatalf("task %s marked its start, yet the host sees none of its processes", id)
		}
		pids = append(pids, ps...)
	}

	// Revoke: remove the identity's access policy.
	e.policy(cs.vault, cs.principal, armkeyvault.AccessPolicyUpdateKindRemove)
	e.waitLocked(cs.account, cs.keyName)
	waitFor(t, 10*time.Second, "nodes to become unusable", func() (bool, string) {
		st := ts.Compute.NodeStates(cs.account, "p1")
		for _, s := range st {
			if s != "unusable" {
				return false, strings.Join(st, ",")
			}
		}
		return len(st) == 2, strings.Join(st, ",")
	})
	waitFor(t, 10*time.Second, "the task processes to be gone", func() (bool, string) {
		for _, p := range pids {
			if procAlive(p) {
				return false, strconv.Itoa(p)
			}
		}
		for i := 0; i < n; i++ {
			if ps := procsWithEnv(runEnv("t" + strconv.Itoa(i))); len(ps) > 0 {
				return false, fmt.Sprintf("t%d: %v", i, ps)
			}
		}
		return true, ""
	})
	store := &sqlstore.BatchDataStore{DB: ts.DB}
	for i := 0; i < n; i++ {
		r, err := store.Task(ctx, cs.account, "j1", "t"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if r.RequeueCount < 1 || r.State != "active" {
			t.Errorf("task %s after the key loss: state %s requeueCount %d, want active and requeued", r.ID, r.State, r.RequeueCount)
		}
	}
	// runs returns the marks of task id, in order.
	runs := func(id string) []string {
		var out []string
		for _, l := range m.Marks() {
			if l == id+"-start" || l == id+"-end" {
				out = append(out, strings.TrimPrefix(l, id+"-"))
			}
		}
		return out
	}
	// Nothing starts while locked.
	time.Sleep(1500 * time.Millisecond)
	for i := 0; i < n; i++ {
		if got := runs("t" + strconv.Itoa(i)); len(got) != 1 {
			t.Errorf("task t%d ran while the key was inaccessible: %v", i, got)
		}
	}

	// Restore access: the nodes come back and every task completes once.
	e.grant(cs.vault, cs.principal)
	e.waitAvailable(cs.account)
	for i := 0; i < n; i++ {
		id := "t" + strconv.Itoa(i)
		tk := waitTask(t, c, "j1", id, 30*time.Second)
		if *tk.ExecutionInfo.ExitCode != 0 || *tk.ExecutionInfo.RequeueCount < 1 {
			t.Errorf("task %s: %+v", id, tk.ExecutionInfo)
		}
		if got := runs(id); strings.Join(got, " ") != "start start end" {
			t.Errorf("task %s ran %v; want start (killed), start, end", id, got)
		}
	}
	waitNodes(t, c, "p1", 2, "idle")
}

// TestComputeNodeLossRequeues kills a node agent while its tasks run: they
// are requeued and complete on the other node.
func TestComputeNodeLossRequeues(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-compute3", "compute3")
	c := dataClient(t, ts, "compute3")
	ctx := context.Background()
	mustPool(t, c, "p1", 2, 1)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("sleep 2; echo ran on $AZ_BATCH_NODE_ID")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var victim string
	waitFor(t, 20*time.Second, "task a to run", func() (bool, string) {
		tk := taskState(t, c, "j1", "a")
		if *tk.State == azbatch.TaskStateRunning && tk.NodeInfo != nil {
			victim = *tk.NodeInfo.NodeID
			return true, ""
		}
		return false, string(*tk.State)
	})
	// Kill the agent process of that node (SIGKILL: no goodbye).
	entries, _ := os.ReadDir("/proc")
	killed := false
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + ent.Name() + "/cmdline")
		if strings.Contains(string(cmdline), victim) && strings.Contains(string(cmdline), "--root") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = true
		}
	}
	if !killed {
		t.Fatalf("found no agent process for node %s", victim)
	}
	tk := waitTask(t, c, "j1", "a", 30*time.Second)
	if *tk.ExecutionInfo.RequeueCount < 1 || *tk.ExecutionInfo.ExitCode != 0 || *tk.NodeInfo.NodeID == victim {
		t.Errorf("task a after its node died: %+v on %v", tk.ExecutionInfo, tk.NodeInfo.NodeID)
	}
	waitTask(t, c, "j1", "b", 30*time.Second)
}

// msiEnv makes the test binary, run as a task, get a token with
// azidentity's ManagedIdentityCredential for the client id it names.
const msiEnv = "CUSTODY_TEST_MSI_CLIENT_ID"

func runTestMSI(clientID string) int {
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(tok.Token)
	return 0
}

// TestComputeManagedIdentityInTask: a task on a pool with a user-assigned
// identity gets a token for it through azidentity's App Service source.
func TestComputeManagedIdentityInTask(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-msi", "computemsi")
	tok := adminToken(t, ts)
	principal := MustIdentity(t, ts, tok, "rg-msi", "pool-id")
	rid := identityPath(ts, "rg-msi", "pool-id")
	c := dataClient(t, ts, "computemsi")
	ctx := context.Background()
	// azbatch has no identity on CreatePoolContent (Azure sets it through
	// the management plane); the data plane here takes it in the body.
	body := `{"id":"p1","vmSize":"standard_a1_v2","targetDedicatedNodes":1,"identity":{"type":"UserAssigned","userAssignedIdentities":[{"resourceId":"` + rid + `"}]}}`
	if r := batchRaw(t, ts, batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret), "POST", "computemsi", "/pools?api-version="+dataAPIVersion, body); r.Status != 201 {
		t.Fatalf("create pool: %d %s", r.Status, r.Body)
	}
	waitNodes(t, c, "p1", 1, "idle")
	p, err := c.GetPool(ctx, "p1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity == nil || len(p.Identity.UserAssignedIdentities) != 1 || *p.Identity.UserAssignedIdentities[0].PrincipalID != principal {
		t.Fatalf("pool identity = %+v", p.Identity)
	}
	clientID := *p.Identity.UserAssignedIdentities[0].ClientID
	// The task runs this test binary, which it sees only in its node's
	// directories.
	const binName = "custody-msi-test"
	copyToNodeShared(t, ts, "computemsi", "p1", binName)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("msi"), CommandLine: to.Ptr(`"$AZ_BATCH_NODE_SHARED_DIR/` + binName + `"`),
		EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr(msiEnv), Value: to.Ptr(clientID)}}}, nil); err != nil {
		t.Fatal(err)
	}
	tk := waitTask(t, c, "j1", "msi", 30*time.Second)
	if *tk.ExecutionInfo.ExitCode != 0 {
		t.Fatalf("the task failed: %s", readTaskFile(t, c, "j1", "msi", "stderr.txt"))
	}
	jwt := strings.TrimSpace(readTaskFile(t, c, "j1", "msi", "stdout.txt"))
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("stdout is not a JWT: %q", jwt)
	}
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		OID string `json:"oid"`
	}
	if err := json.Unmarshal(claims, &cl); err != nil || cl.OID != principal {
		t.Errorf("token oid = %q, want the pool identity %s (%v)", cl.OID, principal, err)
	}
}

// copyToNodeShared copies this test binary, executable by all, into the
// shared directory of every node of the pool, as name.
func copyToNodeShared(t testing.TB, ts *servertest.TestServer, account, pool, name string) {
	t.Helper()
	nodes, err := filepath.Glob(filepath.Join(ts.NodeRoot(), account, pool, "*"))
	if err != nil || len(nodes) == 0 {
		t.Fatalf("no node directory of pool %s under %s (%v)", pool, ts.NodeRoot(), err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		shared := filepath.Join(n, "shared")
		if err := os.MkdirAll(shared, 0o755); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(shared, name)
		if err := os.WriteFile(dst, self, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestComputePoolLifecycle: start task before work, node files, resize up
// and down, remove a node, reboot, node counts, update and delete.
func TestComputePoolLifecycle(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-pools", "computepools")
	c := dataClient(t, ts, "computepools")
	ctx := context.Background()
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_d2s_v3"), TargetDedicatedNodes: to.Ptr[int32](1),
		DisplayName: to.Ptr("first pool"), Metadata: []azbatch.MetadataItem{{Name: to.Ptr("team"), Value: to.Ptr("blue")}},
		StartTask: &azbatch.StartTask{CommandLine: to.Ptr(`echo started $GREETING; echo ready > $AZ_BATCH_NODE_SHARED_DIR/ready`), WaitForSuccess: to.Ptr(true),
			EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr("GREETING"), Value: to.Ptr("hi")}}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_d2s_v3")}, nil); err == nil || !strings.Contains(err.Error(), "PoolExists") {
		t.Errorf("second create: %v, want PoolExists", err)
	}
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p2"), VMSize: to.Ptr("no_such_size")}, nil); err == nil || !strings.Contains(err.Error(), "InvalidPropertyValue") {
		t.Errorf("bad vmSize: %v", err)
	}
	waitNodes(t, c, "p1", 1, "idle")
	p, err := c.GetPool(ctx, "p1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *p.DisplayName != "first pool" || *p.AllocationState != azbatch.AllocationStateSteady || *p.CurrentDedicatedNodes != 1 || *p.StartTask.CommandLine == "" || len(p.Metadata) != 1 {
		t.Errorf("pool = %+v", p.Pool)
	}
	var nodeID string
	pager := c.NewListNodesPager("p1", nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range page.Value {
			nodeID = *n.ID
			if n.StartTaskInfo == nil || *n.StartTaskInfo.State != azbatch.StartTaskStateCompleted || *n.StartTaskInfo.ExitCode != 0 {
				t.Errorf("start task info = %+v", n.StartTaskInfo)
			}
		}
	}
	f, err := c.GetNodeFile(ctx, "p1", nodeID, "startup/stdout.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f.Body)
	f.Body.Close()
	if string(b) != "started hi\n" {
		t.Errorf("start task stdout = %q", b)
	}
	names := map[string]bool{}
	fp := c.NewListNodeFilesPager("p1", nodeID, &azbatch.ListNodeFilesOptions{Recursive: to.Ptr(true)})
	for fp.More() {
		page, err := fp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, nf := range page.Value {
			names[*nf.Name] = true
		}
	}
	if !names["startup/stdout.txt"] || !names["shared/ready"] {
		t.Errorf("node files = %v", names)
	}

	// Grow to 2, shrink by removing the first node.
	if _, err := c.ResizePool(ctx, "p1", azbatch.ResizePoolContent{TargetDedicatedNodes: to.Ptr[int32](2)}, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, "p1", 2, "idle")
	if _, err := c.RemoveNodes(ctx, "p1", azbatch.RemoveNodeContent{NodeList: []string{nodeID}}, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, "p1", 1, "idle")
	if _, err := c.GetNode(ctx, "p1", nodeID, nil); err == nil || !strings.Contains(err.Error(), "NodeNotFound") {
		t.Errorf("removed node: %v", err)
	}
	pager = c.NewListNodesPager("p1", nil)
	page, err := pager.NextPage(ctx)
	if err != nil || len(page.Value) != 1 {
		t.Fatalf("nodes after removal: %v %v", page.Value, err)
	}
	if _, err := c.RebootNode(ctx, "p1", *page.Value[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, "p1", 1, "idle")
	counts := c.NewListPoolNodeCountsPager(nil)
	cp, err := counts.NextPage(ctx)
	if err != nil || len(cp.Value) != 1 || *cp.Value[0].Dedicated.Idle != 1 {
		t.Errorf("node counts: %+v %v", cp.Value, err)
	}
	if _, err := c.UpdatePool(ctx, "p1", azbatch.UpdatePoolContent{Metadata: []azbatch.MetadataItem{{Name: to.Ptr("team"), Value: to.Ptr("red")}}}, nil); err != nil {
		t.Fatal(err)
	}
	if p, err := c.GetPool(ctx, "p1", nil); err != nil || *p.Metadata[0].Value != "red" || *p.DisplayName != "first pool" {
		t.Errorf("after update: %+v %v", p.Metadata, err)
	}
	if _, err := c.DeletePool(ctx, "p1", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the pool to be gone", func() (bool, string) {
		_, err := c.GetPool(ctx, "p1", nil)
		return err != nil && strings.Contains(err.Error(), "PoolNotFound"), fmt.Sprint(err)
	})
}

// TestComputeDependenciesSlotsAndJobEnd: dependsOn by ids and ranges, a
// failed dependency blocks, requiredSlots, and onAllTasksComplete
// terminatejob.
func TestComputeDependenciesSlotsAndJobEnd(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-deps", "computedeps")
	c := dataClient(t, ts, "computedeps")
	ctx := context.Background()
	mustPool(t, c, "p1", 1, 2)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}, UsesTaskDependencies: to.Ptr(true)}, nil); err != nil {
		t.Fatal(err)
	}
	// Tasks mark their runs, in order.
	m := newMarkServer(t)
	task := func(id, cmd string, deps *azbatch.TaskDependencies, slots int32) azbatch.CreateTaskContent {
		return azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr(cmd), DependsOn: deps, RequiredSlots: to.Ptr(slots)}
	}
	g := azbatch.TaskGroup{Value: []azbatch.CreateTaskContent{
		task("3", m.Mark("3"), &azbatch.TaskDependencies{TaskIDRanges: []azbatch.TaskIDRange{{Start: to.Ptr[int32](1), End: to.Ptr[int32](2)}}}, 1),
		task("1", "sleep 0.3; "+m.Mark("1"), nil, 1),
		task("2", "sleep 0.3; "+m.Mark("2"), nil, 1),
		task("wide", m.Mark("wide"), &azbatch.TaskDependencies{TaskIDs: []string{"3"}}, 2),
		task("bad", "exit 4", nil, 1),
		task("blocked", m.Mark("blocked"), &azbatch.TaskDependencies{TaskIDs: []string{"bad"}}, 1),
	}}
	if _, err := c.CreateTaskCollection(ctx, "j1", g, nil); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c, "j1", "wide", 20*time.Second)
	waitTask(t, c, "j1", "bad", 20*time.Second)
	lines := m.Marks()
	if len(lines) != 4 || lines[2] != "3" || lines[3] != "wide" {
		t.Errorf("run order = %v, want 1 and 2 (any order), then 3, then wide", lines)
	}
	time.Sleep(500 * time.Millisecond)
	if tk := taskState(t, c, "j1", "blocked"); *tk.State != azbatch.TaskStateActive {
		t.Errorf("task blocked by a failed dependency is %s, want active", *tk.State)
	}
	// A job that ends when its tasks do.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j2"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		OnAllTasksComplete: to.Ptr(azbatch.OnAllTasksCompleteTerminateJob)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTaskCollection(ctx, "j2", azbatch.TaskGroup{Value: []azbatch.CreateTaskContent{task("x", "true", nil, 1), task("y", "true", nil, 1)}}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "job j2 to complete", func() (bool, string) {
		j, err := c.GetJob(ctx, "j2", nil)
		if err != nil {
			return false, err.Error()
		}
		return *j.State == azbatch.JobStateCompleted, string(*j.State)
	})
}

// TestComputeRemoteAgent: with local nodes off, an admin issues a node
// credential and an agent started by hand joins and runs tasks.
func TestComputeRemoteAgent(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true; c.NodePoll = time.Second })
	mustBatchAccount(t, ts, "rg-remote", "computeremote")
	c := dataClient(t, ts, "computeremote")
	ctx := context.Background()
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_d2s_v3"), TargetDedicatedNodes: to.Ptr[int32](1)}, nil); err != nil {
		t.Fatal(err)
	}
	if st := nodeStates(t, c, "p1"); len(st) != 0 {
		t.Fatalf("local nodes are off, yet the pool has nodes %v", st)
	}
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	r := batchRaw(t, ts, tok, "POST", "computeremote", "/pools/p1/nodecredentials?api-version="+dataAPIVersion, "")
	if r.Status != 201 {
		t.Fatalf("node credential: %d %s", r.Status, r.Body)
	}
	var nc struct{ NodeID, Credential, Server string }
	if err := json.Unmarshal(r.Body, &nc); err != nil || nc.Credential == "" {
		t.Fatalf("node credential body %s: %v", r.Body, err)
	}
	cmd := remoteAgent(t, ts, nc.Server, nc.Credential)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitNodes(t, c, "p1", 1, "idle")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("t"), CommandLine: to.Ptr("echo remote $AZ_BATCH_NODE_ID")}, nil); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c, "j1", "t", 20*time.Second)
	if got := readTaskFile(t, c, "j1", "t", "stdout.txt"); got != "remote "+nc.NodeID+"\n" {
		t.Errorf("stdout = %q", got)
	}
	// A wrong credential is refused.
	bad := MustDo(t, ts, "", "POST", "batch", "/node/v1/sync", `{"running":[]}`)
	if bad.Status != 401 {
		t.Errorf("sync without a credential: %d %s", bad.Status, bad.Body)
	}
}

// TestComputePoolCertificates: certificates a pool references are
// installed in each node's certificates directory.
func TestComputePoolCertificates(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-certs", "computecerts")
	c := dataClient(t, ts, "computecerts")
	ctx := context.Background()
	der, tp := selfSignedCert(t, "pool-cert")
	if _, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString(der)), Format: to.Ptr(azbatch.CertificateFormatCER)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_a1_v2"), TargetDedicatedNodes: to.Ptr[int32](1),
		CertificateReferences: []azbatch.CertificateReference{{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1")}}}, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, "p1", 1, "idle")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	var out string
	waitFor(t, 20*time.Second, "the certificate on the node", func() (bool, string) {
		id := "t" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("sha1sum < $AZ_BATCH_CERTIFICATES_DIR/sha1-" + tp + ".cer")}, nil); err != nil {
			t.Fatal(err)
		}
		waitTask(t, c, "j1", id, 10*time.Second)
		out = readTaskFile(t, c, "j1", id, "stdout.txt")
		return strings.HasPrefix(out, tp), out
	})
}

// TestComputeRestartRequeues: tasks left running when the server stops are
// requeued when it starts again, and run on the new nodes.
func TestComputeRestartRequeues(t *testing.T) {
	t.Setenv(agentEnv, "1")
	dir := t.TempDir()
	cfg := func(c *server.Config) {
		c.DataDir = dir
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
	}
	ts := servertest.New(t, cfg)
	mustBatchAccount(t, ts, "rg-restart", "computerestart")
	c := dataClient(t, ts, "computerestart")
	ctx := context.Background()
	mustPool(t, c, "p1", 1, 1)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	m := newMarkServer(t)
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("t"),
		CommandLine: to.Ptr("if " + m.Has("marker") + "; then echo second; else " + m.Mark("marker") + "; sleep 60; fi")}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the task to start", func() (bool, string) {
		return m.Count("marker") > 0, fmt.Sprint(m.Marks())
	})
	ts.Close()

	ts2 := servertest.New(t, cfg)
	c2 := dataClient(t, ts2, "computerestart")
	tk := waitTask(t, c2, "j1", "t", 30*time.Second)
	if *tk.ExecutionInfo.RequeueCount != 1 || *tk.ExecutionInfo.ExitCode != 0 {
		t.Errorf("after restart: %+v", tk.ExecutionInfo)
	}
	if got := readTaskFile(t, c2, "j1", "t", "stdout.txt"); got != "second\n" {
		t.Errorf("stdout = %q", got)
	}
}
