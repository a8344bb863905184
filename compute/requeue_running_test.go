package compute_test

import (
	"testing"
	"time"

	"custody/batch"
	"custody/compute"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// TestHarnessRequeueRunningHolds: at start-up, RequeueRunning requeues the
// tasks left running (requeueCount+1) except those whose stored node the
// caller holds, which stay running on that node until they are requeued
// with their node (once).
func TestHarnessRequeueRunningHolds(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testRequeueRunningHolds)
}

func testRequeueRunningHolds(t *testing.T, db *sqlstore.DB) {
	h := newHarness(t, db, 2, 1)
	h.job("j", batch.JobSpec{})
	h.add("j", batch.NewTask{ID: "a", Spec: batch.TaskSpec{CommandLine: "a"}}, batch.NewTask{ID: "b", Spec: batch.TaskSpec{CommandLine: "b"}})
	ps := h.step()
	if len(ps) != 2 {
		t.Fatalf("placed %v", ps)
	}
	onN1 := ""
	for _, p := range ps {
		if p.NodeID == "n1" {
			onN1 = p.TaskID
		}
	}
	onN0 := map[string]string{"a": "b", "b": "a"}[onN1]
	held, err := h.tasks.RequeueRunning(h.ctx, "acct", func(nodeID string) bool { return nodeID == "n1" })
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 1 || held[0] != (compute.HeldTask{Account: "acct", JobID: "j", TaskID: onN1, NodeID: "n1", RequiredSlots: 1}) {
		t.Fatalf("held %+v, want %s on n1", held, onN1)
	}
	if r := h.task("j", onN0); r.State != batch.TaskActive || r.RequeueCount != 1 || r.Outcome.NodeID != "" {
		t.Errorf("the task on n0: %s, requeued %d, node %q", r.State, r.RequeueCount, r.Outcome.NodeID)
	}
	if r := h.task("j", onN1); r.State != batch.TaskRunning || r.RequeueCount != 0 || r.Outcome.NodeID != "n1" {
		t.Errorf("the held task: %s, requeued %d, node %q", r.State, r.RequeueCount, r.Outcome.NodeID)
	}
	if rs, err := h.tasks.Runnable(h.ctx, "acct", "p1", 10); err != nil || len(rs) != 1 || rs[0].TaskID != onN0 {
		t.Errorf("runnable %v %v, want only %s", rs, err, onN0)
	}
	// Its node's agent joins again: the held task is requeued, once.
	for i := 0; i < 2; i++ {
		res := compute.RunResult{NodeID: "n1", ExitCode: -1, EndTime: time.Now(), Outcome: compute.OutcomeRequeue}
		if err := h.tasks.FinishTask(h.ctx, "acct", "j", onN1, res); err != nil {
			t.Fatal(err)
		}
	}
	if r := h.task("j", onN1); r.State != batch.TaskActive || r.RequeueCount != 1 {
		t.Errorf("the held task after its node joined: %s, requeued %d", r.State, r.RequeueCount)
	}
}
