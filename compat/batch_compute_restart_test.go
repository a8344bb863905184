package compat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/node"
	"custody/server"
	"custody/server/servertest"
)

// TestComputeRestartKeepsRunOutcomes runs tasks to completion on local
// nodes, restarts the server on the same data (SQLite in the data
// directory, or a PostgreSQL schema) and reads the outcomes back through
// azbatch: exit codes, results, failure info, node info, retry times and
// the job's task counts; a task whose dependency failed stays blocked.
func TestComputeRestartKeepsRunOutcomes(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRestartKeepsRunOutcomes(t, "") })
	t.Run("postgres", func(t *testing.T) { testRestartKeepsRunOutcomes(t, MustPostgresDatabase(t)) })
}

func testRestartKeepsRunOutcomes(t *testing.T, database string) {
	t.Setenv(agentEnv, "1")
	dir := t.TempDir()
	cfg := func(c *server.Config) {
		c.DataDir = dir
		c.Database = database
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
	}
	ts := servertest.New(t, cfg)
	mustBatchAccount(t, ts, "rg-outcomes", "computeoutcomes")
	c := dataClient(t, ts, "computeoutcomes")
	ctx := context.Background()
	mustPool(t, c, "p1", 2, 1)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		UsesTaskDependencies: to.Ptr(true)}, nil); err != nil {
		t.Fatal(err)
	}
	g := azbatch.TaskGroup{Value: []azbatch.CreateTaskContent{
		{ID: to.Ptr("ok"), CommandLine: to.Ptr("exit 0")},
		{ID: to.Ptr("bad"), CommandLine: to.Ptr("exit 3")},
		{ID: to.Ptr("retried"), CommandLine: to.Ptr("exit 5"), Constraints: &azbatch.TaskConstraints{MaxTaskRetryCount: to.Ptr[int32](1)}},
		{ID: to.Ptr("blocked"), CommandLine: to.Ptr("exit 0"), DependsOn: &azbatch.TaskDependencies{TaskIDs: []string{"bad"}}},
	}}
	if _, err := c.CreateTaskCollection(ctx, "j1", g, nil); err != nil {
		t.Fatal(err)
	}
	type want struct {
		exit        int32
		result      azbatch.TaskExecutionResult
		failureCode string
		failureMsg  string
		retries     int32
	}
	wants := map[string]want{
		"ok":      {0, azbatch.TaskExecutionResultSuccess, "", "", 0},
		"bad":     {3, azbatch.TaskExecutionResultFailure, "FailureExitCode", "The task exited with exit code 3.", 0},
		"retried": {5, azbatch.TaskExecutionResultFailure, "FailureExitCode", "The task exited with exit code 5.", 1},
	}
	before := map[string]azbatch.Task{}
	for id := range wants {
		before[id] = waitTask(t, c, "j1", id, 30*time.Second)
	}
	check := func(when string, c *azbatch.Client) {
		t.Helper()
		for id, w := range wants {
			tk := taskState(t, c, "j1", id)
			ei, ni := tk.ExecutionInfo, tk.NodeInfo
			if *tk.State != azbatch.TaskStateCompleted || ei == nil || ei.ExitCode == nil || *ei.ExitCode != w.exit || ei.Result == nil || *ei.Result != w.result ||
				*ei.RetryCount != w.retries {
				t.Errorf("%s: task %s: state %s, executionInfo %s; want exit code %d, result %s, retryCount %d", when, id, *tk.State, mustJSON(ei), w.exit, w.result, w.retries)
				continue
			}
			switch fi := ei.FailureInfo; {
			case w.failureCode == "" && fi != nil:
				t.Errorf("%s: task %s has failureInfo %s", when, id, mustJSON(fi))
			case w.failureCode != "" && (fi == nil || *fi.Code != w.failureCode || *fi.Message != w.failureMsg || *fi.Category != azbatch.ErrorCategoryUserError):
				t.Errorf("%s: task %s: failureInfo %s, want %s %q", when, id, mustJSON(fi), w.failureCode, w.failureMsg)
			}
			if w.retries > 0 && (ei.LastRetryTime == nil || ei.LastRetryTime.IsZero()) {
				t.Errorf("%s: task %s was retried but has no lastRetryTime", when, id)
			}
			if b := before[id]; b.ExecutionInfo.LastRetryTime != nil && (ei.LastRetryTime == nil || !ei.LastRetryTime.Equal(*b.ExecutionInfo.LastRetryTime)) {
				t.Errorf("%s: task %s: lastRetryTime %v, was %v", when, id, ei.LastRetryTime, b.ExecutionInfo.LastRetryTime)
			}
			if ni == nil || ni.NodeID == nil || *ni.NodeID == "" || *ni.PoolID != "p1" || *ni.NodeID != *before[id].NodeInfo.NodeID || ni.NodeURL == nil {
				t.Errorf("%s: task %s: nodeInfo %s, want node %s of pool p1", when, id, mustJSON(ni), mustJSON(before[id].NodeInfo))
			}
		}
		counts, err := c.GetJobTaskCounts(ctx, "j1", nil)
		if err != nil {
			t.Fatalf("%s: task counts: %v", when, err)
		}
		if tc := counts.TaskCounts; *tc.Active != 1 || *tc.Running != 0 || *tc.Completed != 3 || *tc.Succeeded != 1 || *tc.Failed != 2 {
			t.Errorf("%s: task counts %s; want 1 active, 3 completed, 1 succeeded, 2 failed", when, mustJSON(tc))
		}
	}
	check("before the restart", c)
	ts.Close()

	ts2 := servertest.New(t, cfg)
	c2 := dataClient(t, ts2, "computeoutcomes")
	check("after the restart", c2)
	// The restarted scheduler runs new work, yet the task whose dependency
	// failed stays blocked.
	if _, err := c2.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("probe"), CommandLine: to.Ptr("exit 0")}, nil); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c2, "j1", "probe", 30*time.Second)
	time.Sleep(2 * time.Second)
	if tk := taskState(t, c2, "j1", "blocked"); *tk.State != azbatch.TaskStateActive {
		t.Errorf("after the restart, the task blocked by a failed dependency is %s, want active", *tk.State)
	}
}

// TestComputeRemoteAgentRejoinsAfterRestart: with local nodes off, an agent
// started by hand with an issued credential runs a task; the server restarts
// on the same data directory and port while a task runs; the agent resumes
// its node on the restarted server with the same credential: the task
// running across the restart runs on and completes once (not requeued), and
// a new task runs on it. Once the node is removed from its
// pool, its credential is refused, also after another restart.
func TestComputeRemoteAgentRejoinsAfterRestart(t *testing.T) {
	dir := t.TempDir()
	listen := "127.0.0.1:0"
	cfg := func(c *server.Config) {
		c.DataDir = dir
		c.Listen = listen
		c.DisableLocalNodes = true
		c.NodePoll = time.Second
		if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
			c.NodeLog = os.Stderr
		}
	}
	ts := servertest.New(t, cfg)
	listen = ts.Endpoint.Address // restarts listen on the same port
	mustBatchAccount(t, ts, "rg-rejoin", "computerejoin")
	c := dataClient(t, ts, "computerejoin")
	ctx := context.Background()
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_d2s_v3"), TargetDedicatedNodes: to.Ptr[int32](1)}, nil); err != nil {
		t.Fatal(err)
	}
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	r := batchRaw(t, ts, tok, "POST", "computerejoin", "/pools/p1/nodecredentials?api-version="+dataAPIVersion, "")
	if r.Status != 201 {
		t.Fatalf("node credential: %d %s", r.Status, r.Body)
	}
	var nc struct{ NodeID, Credential, Server string }
	if err := json.Unmarshal(r.Body, &nc); err != nil || nc.Credential == "" {
		t.Fatalf("node credential body %s: %v", r.Body, err)
	}
	cmd := remoteAgent(t, ts, nc.Server, nc.Credential)
	if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitNodes(t, c, "p1", 1, "idle")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("before"), CommandLine: to.Ptr("echo before $AZ_BATCH_NODE_ID")}, nil); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c, "j1", "before", 20*time.Second)
	if got := readTaskFile(t, c, "j1", "before", "stdout.txt"); got != "before "+nc.NodeID+"\n" {
		t.Errorf("stdout before the restart = %q", got)
	}
	m := newMarkServer(t)
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("across"),
		CommandLine: to.Ptr("if " + m.Has("marker") + "; then echo second; else " + m.Mark("marker") + "; sleep 4; echo first; fi")}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the task to start", func() (bool, string) {
		return m.Count("marker") > 0, fmt.Sprint(m.Marks())
	})
	ts.Close()

	ts2 := servertest.New(t, cfg)
	if ts2.Endpoint.Address != listen {
		t.Fatalf("the restarted server listens on %s, not %s", ts2.Endpoint.Address, listen)
	}
	c2 := dataClient(t, ts2, "computerejoin")
	tk := waitTask(t, c2, "j1", "across", 40*time.Second)
	if ei := tk.ExecutionInfo; *ei.RequeueCount != 0 || *ei.ExitCode != 0 || tk.NodeInfo == nil || *tk.NodeInfo.NodeID != nc.NodeID {
		t.Errorf("the task running at the restart: executionInfo %s, nodeInfo %s", mustJSON(ei), mustJSON(tk.NodeInfo))
	}
	if got := readTaskFile(t, c2, "j1", "across", "stdout.txt"); got != "first\n" || m.Count("marker") != 1 {
		t.Errorf("stdout of the task running across the restart = %q, %d runs; want it run once, to its end", got, m.Count("marker"))
	}
	if _, err := c2.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("after"), CommandLine: to.Ptr("echo after $AZ_BATCH_NODE_ID")}, nil); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c2, "j1", "after", 20*time.Second)
	if got := readTaskFile(t, c2, "j1", "after", "stdout.txt"); got != "after "+nc.NodeID+"\n" {
		t.Errorf("stdout after the restart = %q", got)
	}
	n, err := c2.GetNode(ctx, "p1", nc.NodeID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *n.TotalTasksRun != 2 {
		t.Errorf("node after the restart: %d tasks run, want 2", *n.TotalTasksRun)
	}
	select {
	case <-exited:
		t.Fatalf("the agent exited: %v", cmd.ProcessState)
	default:
	}

	// Removed from the pool, the node's agent leaves and its credential is
	// refused, in the node channel's error shape.
	if _, err := c2.RemoveNodes(ctx, "p1", azbatch.RemoveNodeContent{NodeList: []string{nc.NodeID}}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent of the removed node did not leave")
	}
	refused := func(ts *servertest.TestServer, when, credential string) {
		t.Helper()
		for _, path := range []string{"/node/v1/sync", "/node/v1/join"} {
			req, err := http.NewRequest("POST", ts.URL("batch")+path, strings.NewReader(`{"running":[],"filesUrl":"http://127.0.0.1:1"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", node.CredentialScheme+" "+credential)
			req.Header.Set("Content-Type", "application/json")
			r := MustSend(t, ts, req)
			var e azureErrorBody
			if err := json.Unmarshal(r.Body, &e); r.Status != 401 || err != nil || e.Error == nil || e.Error.Code != "NodeCredentialInvalid" {
				t.Errorf("%s: %s with the removed node's credential: %d %s", when, path, r.Status, r.Body)
			}
		}
	}
	refused(ts2, "after the removal", nc.Credential)
	ts2.Close()
	ts3 := servertest.New(t, cfg)
	refused(ts3, "after another restart", nc.Credential)
	c3 := dataClient(t, ts3, "computerejoin")
	if st := nodeStates(t, c3, "p1"); len(st) != 0 {
		t.Errorf("after another restart the pool has nodes %v", st)
	}

	// Deleting a pool deletes the credentials of its nodes.
	if _, err := c3.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p2"), VMSize: to.Ptr("standard_d2s_v3"), TargetDedicatedNodes: to.Ptr[int32](1)}, nil); err != nil {
		t.Fatal(err)
	}
	tok = batchToken(t, ts3, ts3.Admin.ClientID, ts3.Admin.ClientSecret)
	r = batchRaw(t, ts3, tok, "POST", "computerejoin", "/pools/p2/nodecredentials?api-version="+dataAPIVersion, "")
	var nc2 struct{ NodeID, Credential string }
	if err := json.Unmarshal(r.Body, &nc2); r.Status != 201 || err != nil || nc2.Credential == "" {
		t.Fatalf("node credential for p2: %d %s", r.Status, r.Body)
	}
	if _, err := c3.DeletePool(ctx, "p2", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "pool p2 to be deleted", func() (bool, string) {
		_, err := c3.GetPool(ctx, "p2", nil)
		return err != nil && strings.Contains(err.Error(), "PoolNotFound"), fmt.Sprint(err)
	})
	ts3.Close()
	ts4 := servertest.New(t, cfg)
	refused(ts4, "after the pool was deleted", nc2.Credential)
}

// startRemoteAgent issues a node credential for a pool and starts an agent
// with it by hand; it returns the node id and the agent's process.
func startRemoteAgent(t *testing.T, ts *servertest.TestServer, account, pool string) (string, *exec.Cmd) {
	t.Helper()
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	r := batchRaw(t, ts, tok, "POST", account, "/pools/"+pool+"/nodecredentials?api-version="+dataAPIVersion, "")
	var nc struct{ NodeID, Credential, Server string }
	if err := json.Unmarshal(r.Body, &nc); r.Status != 201 || err != nil || nc.Credential == "" {
		t.Fatalf("node credential: %d %s", r.Status, r.Body)
	}
	cmd := remoteAgent(t, ts, nc.Server, nc.Credential)
	if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range agentProcs(cmd.Process.Pid) {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return nc.NodeID, cmd
}

// agentProcs returns pid and those of its descendants that run in this
// test's PID namespace: a node agent's own processes, not its tasks'.
func agentProcs(pid int) []int {
	self, _ := os.Readlink("/proc/self/ns/pid")
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		i := strings.LastIndexByte(string(st), ')')
		if err != nil || i < 0 {
			continue
		}
		if f := strings.Fields(string(st[i+1:])); len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				children[ppid] = append(children[ppid], p)
			}
		}
	}
	var out []int
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		p := queue[0]
		if ns, err := os.Readlink("/proc/" + strconv.Itoa(p) + "/ns/pid"); err != nil || ns != self {
			continue
		}
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}

// TestComputeRemoteRestartNeverRunsTwice: two agents started by hand in one
// pool (local nodes off); a long task runs on one of them (A) when the
// server restarts. A is held still over the restart, so it cannot act yet,
// while B joins the restarted server: the task must not start on B while A's
// copy lives. Once A goes on, it resumes its node (its copy runs on and
// completes, not requeued) or, if it was held longer than its watchdog
// allows, joins again having killed its copy (which then runs once more,
// requeued once). Every run marks itself with
// its node and an id it carries in its environment; a sampler checks /proc
// that at no moment are two copies alive.
func TestComputeRemoteRestartNeverRunsTwice(t *testing.T) {
	dir := t.TempDir()
	listen := "127.0.0.1:0"
	cfg := func(c *server.Config) {
		c.DataDir = dir
		c.Listen = listen
		c.DisableLocalNodes = true
		c.NodePoll = time.Second
		if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
			c.NodeLog = os.Stderr
		}
	}
	ts := servertest.New(t, cfg)
	listen = ts.Endpoint.Address
	mustBatchAccount(t, ts, "rg-twice", "computetwice")
	c := dataClient(t, ts, "computetwice")
	ctx := context.Background()
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_d2s_v3"), TargetDedicatedNodes: to.Ptr[int32](2)}, nil); err != nil {
		t.Fatal(err)
	}
	agents := map[string]*exec.Cmd{}
	for i := 0; i < 2; i++ {
		id, cmd := startRemoteAgent(t, ts, "computetwice", "p1")
		agents[id] = cmd
	}
	waitNodes(t, c, "p1", 2, "idle")

	// Every run marks itself "run-{id}" with its node and id, and runs with
	// CUSTODY_TEST_RUN={id} in its environment, by which the host finds
	// its processes.
	m := newMarkServer(t)
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	type copyOf struct {
		node string
		id   string
	}
	// runs lists the node and id of every run so far.
	runs := func() []copyOf {
		var out []copyOf
		for _, name := range m.Marks() {
			if !strings.HasPrefix(name, "run-") {
				continue
			}
			v, _ := m.Value(name)
			if f := strings.Fields(v); len(f) == 2 {
				out = append(out, copyOf{f[0], f[1]})
			}
		}
		return out
	}
	alive := func(r copyOf) bool { return len(procsWithEnv("CUSTODY_TEST_RUN="+r.id)) > 0 }
	var (
		mu       sync.Mutex
		twice    []string
		sampling = make(chan struct{})
		sampled  = make(chan struct{})
	)
	go func() {
		defer close(sampled)
		for {
			select {
			case <-sampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var live []string
			for _, r := range runs() {
				if alive(r) {
					live = append(live, fmt.Sprintf("%s run %s", r.node, r.id))
				}
			}
			if len(live) > 1 {
				mu.Lock()
				twice = append(twice, strings.Join(live, ", "))
				mu.Unlock()
			}
		}
	}()
	stopSampling := func() {
		select {
		case <-sampling:
		default:
			close(sampling)
		}
		<-sampled
	}
	defer stopSampling()

	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	// The first run sleeps long; a later one ends soon.
	cmdline := `exec env CUSTODY_TEST_RUN="` + tag + `-$(date +%s%N)" sh -c '` +
		m.Mark("run-$CUSTODY_TEST_RUN") + ` -d "$AZ_BATCH_NODE_ID $CUSTODY_TEST_RUN"; ` +
		`if ` + m.Has("first") + `; then sleep 1; else ` + m.Mark("first") + `; sleep 10; fi'`
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("long"), CommandLine: to.Ptr(cmdline)}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the task to start", func() (bool, string) {
		rs := runs()
		return len(rs) == 1 && alive(rs[0]), fmt.Sprint(rs)
	})
	first := runs()[0]
	a := agents[first.node]
	var b string
	for id := range agents {
		if id != first.node {
			b = id
		}
	}
	if a == nil || b == "" {
		t.Fatalf("the task runs on %s, not on one of the agents", first.node)
	}

	// A cannot act over the restart (its task keeps running); B rejoins.
	// The agent may run itself again in a namespace of its own: hold every
	// process of it, not only the one started.
	held := agentProcs(a.Process.Pid)
	for _, p := range held {
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	stopped := true
	defer func() {
		if stopped {
			for _, p := range held {
				_ = syscall.Kill(p, syscall.SIGCONT)
			}
		}
	}()
	ts.Close()
	ts2 := servertest.New(t, cfg)
	if ts2.Endpoint.Address != listen {
		t.Fatalf("the restarted server listens on %s, not %s", ts2.Endpoint.Address, listen)
	}
	c2 := dataClient(t, ts2, "computetwice")
	waitFor(t, 10*time.Second, "B to join the restarted server", func() (bool, string) {
		n, err := c2.GetNode(ctx, "p1", b, nil)
		if err != nil {
			return false, err.Error()
		}
		return *n.State == azbatch.NodeStateIdle, string(*n.State)
	})
	// Give the scheduler time to (wrongly) place the task on B.
	time.Sleep(1500 * time.Millisecond)
	if tk := taskState(t, c2, "j1", "long"); *tk.State != azbatch.TaskStateRunning || tk.NodeInfo == nil || *tk.NodeInfo.NodeID != first.node {
		t.Errorf("while A cannot kill its copy, the task is %s on %s; want running on %s", *tk.State, mustJSON(tk.NodeInfo), first.node)
	}
	if rs := runs(); len(rs) != 1 || !alive(first) {
		t.Errorf("while A is held still: runs %v, first alive %v", rs, alive(first))
	}

	// A goes on: it resumes (its copy runs on) or joins again (its copy
	// killed, the task runs once more); either way the task completes.
	for _, p := range held {
		if err := syscall.Kill(p, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	stopped = false
	tk := waitTask(t, c2, "j1", "long", 30*time.Second)
	stopSampling()
	requeued := *tk.ExecutionInfo.RequeueCount
	if ei := tk.ExecutionInfo; (requeued != 0 && requeued != 1) || *ei.ExitCode != 0 || *ei.Result != azbatch.TaskExecutionResultSuccess {
		t.Errorf("the task after A went on: executionInfo %s", mustJSON(ei))
	}
	if rs := runs(); len(rs) != int(requeued)+1 {
		t.Errorf("runs %v, requeued %d times; want one run more than requeues", rs, requeued)
	}
	t.Logf("A resumed its node: %v", requeued == 0)
	if ps := procsWithEnv("CUSTODY_TEST_RUN=" + first.id); len(ps) > 0 {
		t.Errorf("A's first copy (run %s) is still alive: pids %v", first.id, ps)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(twice) > 0 {
		t.Errorf("two copies of the task were alive at once (%d samples), first: %s", len(twice), twice[0])
	}
}
