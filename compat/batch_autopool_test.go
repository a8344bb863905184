package compat_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/server"
	"custody/server/servertest"
)

// poolGone waits until pool id no longer exists.
func poolGone(t *testing.T, c *azbatch.Client, id string, d time.Duration) {
	t.Helper()
	waitFor(t, d, "pool "+id+" deleted", func() (bool, string) {
		p, err := c.GetPool(context.Background(), id, nil)
		if err != nil {
			return strings.Contains(err.Error(), "PoolNotFound"), err.Error()
		}
		return false, string(*p.State)
	})
}

func jobPool(t *testing.T, c *azbatch.Client, id string) string {
	t.Helper()
	j, err := c.GetJob(context.Background(), id, nil)
	if err != nil {
		t.Fatalf("get job %s: %v", id, err)
	}
	if j.ExecutionInfo == nil || j.ExecutionInfo.PoolID == nil {
		t.Fatalf("job %s has no executionInfo.poolId: %s", id, mustJSON(j))
	}
	return *j.ExecutionInfo.PoolID
}

// TestAutoPools: a job's auto pool is created with it, runs its tasks on
// real nodes and is deleted when the job completes, unless keepAlive; a
// job schedule's auto pool (poolLifetimeOption jobschedule) serves all of
// its jobs and goes with the schedule; with poolLifetimeOption job each of
// its jobs gets a pool of its own.
func TestAutoPools(t *testing.T) {
	t.Setenv(agentEnv, "1")
	ts := servertest.New(t, func(c *server.Config) {
		c.TestJobScheduleMinimum = time.Second
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
	})
	mustBatchAccount(t, ts, "rg-autopool", "autopool")
	c := dataClient(t, ts, "autopool")
	ctx := context.Background()
	poolSpec := &azbatch.PoolSpecification{VMSize: to.Ptr("standard_d2s_v3"), TargetDedicatedNodes: to.Ptr[int32](1),
		Metadata: []azbatch.MetadataItem{meta("made", "auto")}}
	auto := func(prefix string, lifetime azbatch.PoolLifetimeOption, keep bool) *azbatch.PoolInfo {
		return &azbatch.PoolInfo{AutoPoolSpecification: &azbatch.AutoPoolSpecification{AutoPoolIDPrefix: to.Ptr(prefix),
			PoolLifetimeOption: to.Ptr(lifetime), KeepAlive: to.Ptr(keep), Pool: poolSpec}}
	}

	// A job's pool: created with it, its task runs there, gone with it.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("aj"), PoolInfo: auto("ajp", azbatch.PoolLifetimeOptionJob, false),
		OnAllTasksComplete: to.Ptr(azbatch.OnAllTasksCompleteTerminateJob)}, nil); err != nil {
		t.Fatal(err)
	}
	pool := jobPool(t, c, "aj")
	if !strings.HasPrefix(pool, "ajp_") {
		t.Fatalf("auto pool id %q, want the prefix ajp_", pool)
	}
	p, err := c.GetPool(ctx, pool, nil)
	if err != nil || *p.VMSize != "standard_d2s_v3" || *p.TargetDedicatedNodes != 1 || len(p.Metadata) != 1 {
		t.Fatalf("auto pool: %v %s", err, mustJSON(p.Pool))
	}
	j, _ := c.GetJob(ctx, "aj", nil)
	if ap := j.PoolInfo.AutoPoolSpecification; ap == nil || *ap.PoolLifetimeOption != azbatch.PoolLifetimeOptionJob || *ap.Pool.VMSize != "standard_d2s_v3" {
		t.Errorf("job's poolInfo: %s", mustJSON(j.PoolInfo))
	}
	if _, err := c.CreateTask(ctx, "aj", azbatch.CreateTaskContent{ID: to.Ptr("t1"), CommandLine: to.Ptr("/bin/sh -c 'echo on $AZ_BATCH_POOL_ID'")}, nil); err != nil {
		t.Fatal(err)
	}
	tk := waitTask(t, c, "aj", "t1", 60*time.Second)
	if *tk.ExecutionInfo.ExitCode != 0 || *tk.NodeInfo.PoolID != pool {
		t.Fatalf("task on the auto pool: %s %s", mustJSON(tk.ExecutionInfo), mustJSON(tk.NodeInfo))
	}
	poolGone(t, c, pool, 30*time.Second)

	// keepAlive: the pool stays after its job.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("keep"), PoolInfo: auto("keep", azbatch.PoolLifetimeOptionJob, true)}, nil); err != nil {
		t.Fatal(err)
	}
	kept := jobPool(t, c, "keep")
	terminateJob(t, c, "keep")
	time.Sleep(3 * time.Second)
	if _, err := c.GetPool(ctx, kept, nil); err != nil {
		t.Fatalf("a keepAlive auto pool after its job: %v", err)
	}
	// Deleting a job deletes its pool.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("del"), PoolInfo: auto("del", azbatch.PoolLifetimeOptionJob, false)}, nil); err != nil {
		t.Fatal(err)
	}
	delPool := jobPool(t, c, "del")
	if _, err := c.DeleteJob(ctx, "del", nil); err != nil {
		t.Fatal(err)
	}
	poolGone(t, c, delPool, 30*time.Second)

	// A schedule's pool serves every job of the schedule.
	spec := func(lifetime azbatch.PoolLifetimeOption) *azbatch.JobSpecification {
		return &azbatch.JobSpecification{PoolInfo: auto("s"+string(lifetime), lifetime, false)}
	}
	for _, id := range []string{"shared", "own"} {
		lifetime := azbatch.PoolLifetimeOptionJobSchedule
		if id == "own" {
			lifetime = azbatch.PoolLifetimeOptionJob
		}
		if _, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr(id),
			Schedule: &azbatch.JobScheduleConfiguration{RecurrenceInterval: to.Ptr("PT2S")}, JobSpecification: spec(lifetime)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"shared", "own"} {
		waitJobs(t, c, id, 1, 5*time.Second)
		terminateJob(t, c, id+":job-1")
		waitJobs(t, c, id, 2, 6*time.Second)
	}
	shared1, shared2 := jobPool(t, c, "shared:job-1"), jobPool(t, c, "shared:job-2")
	if shared1 != shared2 || !strings.HasPrefix(shared1, "sjobschedule_") {
		t.Errorf("the jobs of a jobschedule-lifetime schedule ran on %s and %s, want one pool", shared1, shared2)
	}
	own1, own2 := jobPool(t, c, "own:job-1"), jobPool(t, c, "own:job-2")
	if own1 == own2 {
		t.Errorf("the jobs of a job-lifetime schedule share pool %s", own1)
	}
	poolGone(t, c, own1, 30*time.Second) // own:job-1 completed
	if _, err := c.GetPool(ctx, shared1, nil); err != nil {
		t.Fatalf("the schedule's pool while the schedule is active: %v", err)
	}
	if _, err := c.TerminateJobSchedule(ctx, "shared", nil); err != nil {
		t.Fatal(err)
	}
	poolGone(t, c, shared1, 30*time.Second)
	if _, err := c.DeleteJobSchedule(ctx, "own", nil); err != nil {
		t.Fatal(err)
	}
	poolGone(t, c, own2, 30*time.Second)

	// An auto pool a schedule cannot create is refused when the schedule
	// is created, not at its first run.
	_, err = c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr("bad"), Schedule: &azbatch.JobScheduleConfiguration{},
		JobSpecification: &azbatch.JobSpecification{PoolInfo: &azbatch.PoolInfo{AutoPoolSpecification: &azbatch.AutoPoolSpecification{
			PoolLifetimeOption: to.Ptr(azbatch.PoolLifetimeOptionJobSchedule), Pool: &azbatch.PoolSpecification{VMSize: to.Ptr("no_such_size")}}}}}, nil)
	wantSDKError(t, "a schedule with a bad auto pool", err, http.StatusBadRequest, "InvalidPropertyValue")
}
