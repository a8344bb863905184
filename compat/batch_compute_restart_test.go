package compat_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

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
