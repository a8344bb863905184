package compat_test

import (
	"context"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
)

// TestComputeJobPriorityAndMaxParallel: on one node with 4 slots, the tasks
// of a job with priority 100 start before those of a job with priority 0
// added first, and a job with maxParallelTasks 1 runs its tasks one at a
// time, as the tasks' start and end times read through azbatch show.
func TestComputeJobPriorityAndMaxParallel(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-prio", "computeprio")
	c := dataClient(t, ts, "computeprio")
	ctx := context.Background()
	mustPool(t, c, "p1", 1, 4)

	job := func(id string, prio, maxPar *int32) {
		t.Helper()
		if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(id), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
			Priority: prio, MaxParallelTasks: maxPar}, nil); err != nil {
			t.Fatalf("create job %s: %v", id, err)
		}
	}
	add := func(jobID, prefix string, n int, cmd string) []string {
		t.Helper()
		var g azbatch.TaskGroup
		var ids []string
		for i := 0; i < n; i++ {
			id := prefix + strconv.Itoa(i)
			ids = append(ids, id)
			g.Value = append(g.Value, azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr(cmd)})
		}
		r, err := c.CreateTaskCollection(ctx, jobID, g, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range r.Value {
			if *res.Status != azbatch.TaskAddStatusSuccess {
				t.Fatalf("add %s: %v", *res.TaskID, *res.Status)
			}
		}
		return ids
	}
	type span struct {
		id         string
		start, end time.Time
	}
	spans := func(jobID string, ids []string) []span {
		t.Helper()
		var out []span
		for _, id := range ids {
			tk := waitTask(t, c, jobID, id, 20*time.Second)
			ei := tk.ExecutionInfo
			if ei == nil || ei.StartTime == nil || ei.EndTime == nil {
				t.Fatalf("task %s/%s: executionInfo %+v", jobID, id, ei)
			}
			out = append(out, span{id, *ei.StartTime, *ei.EndTime})
		}
		return out
	}

	job("a", nil, nil)
	job("b", to.Ptr[int32](100), nil)
	// Fill the 4 slots, so that a's and b's tasks queue behind them.
	job("fill", nil, nil)
	fill := add("fill", "f", 4, "sleep 1.5")
	waitFor(t, 10*time.Second, "the filler tasks to run", func() (bool, string) {
		for _, id := range fill {
			if st := *taskState(t, c, "fill", id).State; st != azbatch.TaskStateRunning {
				return false, id + " " + string(st)
			}
		}
		return true, ""
	})
	aIDs := add("a", "a", 4, "sleep 0.3")
	bIDs := add("b", "b", 4, "sleep 0.3")
	as, bs := spans("a", aIDs), spans("b", bIDs)
	var lastB time.Time
	for _, s := range bs {
		if s.start.After(lastB) {
			lastB = s.start
		}
	}
	for _, s := range as {
		if s.start.Before(lastB) {
			t.Errorf("task a/%s (priority 0) started at %s, before b's last task (priority 100) at %s",
				s.id, s.start.Format(time.StampMicro), lastB.Format(time.StampMicro))
		}
	}

	// maxParallelTasks 1: 4 free slots, yet one task at a time.
	job("serial", nil, to.Ptr[int32](1))
	ss := spans("serial", add("serial", "s", 3, "sleep 0.3"))
	sort.Slice(ss, func(i, j int) bool { return ss[i].start.Before(ss[j].start) })
	for i := 1; i < len(ss); i++ {
		if ss[i].start.Before(ss[i-1].end) {
			t.Errorf("with maxParallelTasks 1, %s (%s) started before %s ended (%s)", ss[i].id,
				ss[i].start.Format(time.StampMicro), ss[i-1].id, ss[i-1].end.Format(time.StampMicro))
		}
	}
	// maxParallelTasks 0 is refused, as in Azure.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("zero"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		MaxParallelTasks: to.Ptr[int32](0)}, nil); err == nil {
		t.Error("a job with maxParallelTasks 0 was created")
	}
}
