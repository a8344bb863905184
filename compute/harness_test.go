package compute_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"custody/batch"
	"custody/compute"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// harness drives the scheduler over the real store (SQLite or PostgreSQL): Runnable,
// Place, StartTask and FinishTask, with simulated nodes whose runs end as
// the test says.
type harness struct {
	t     *testing.T
	ctx   context.Context
	data  *batch.DataService
	tasks *compute.BatchTasks
	store *sqlstore.BatchDataStore
	nodes []compute.SlotNode
}

type fixedKeys struct {
	a   *batch.Account
	dek *batch.DEK
}

func (k fixedKeys) DEK(context.Context, string) (*batch.Account, *batch.DEK, error) {
	return k.a, k.dek, nil
}

func newHarness(t *testing.T, db *sqlstore.DB, nodes, slots int) *harness {
	t.Helper()
	ctx := context.Background()
	dek, err := batch.NewDEK(batch.GenerateDEKBytes(), 1)
	if err != nil {
		t.Fatal(err)
	}
	keys := fixedKeys{&batch.Account{Name: "acct", UID: "uid-1"}, dek}
	store := &sqlstore.BatchDataStore{DB: db}
	data := &batch.DataService{Keys: keys, Store: store}
	h := &harness{t: t, ctx: ctx, data: data, store: store, tasks: &compute.BatchTasks{Keys: keys, Data: data, Store: store}}
	for i := 0; i < nodes; i++ {
		h.nodes = append(h.nodes, compute.SlotNode{ID: "n" + strconv.Itoa(i), Free: slots})
	}
	return h
}

func (h *harness) job(id string, spec batch.JobSpec) {
	h.t.Helper()
	spec.PoolInfo = batch.PoolInfo{PoolID: "p1"}
	if _, err := h.data.AddJob(h.ctx, "acct", id, spec); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) add(job string, ts ...batch.NewTask) {
	h.t.Helper()
	res, err := h.data.AddTasks(h.ctx, "acct", job, ts)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			h.t.Fatal(r.Err)
		}
	}
}

type placed struct {
	compute.Placement
	run compute.TaskRun
}

// step places runnable tasks on free slots and starts them.
func (h *harness) step() []placed {
	h.t.Helper()
	free := 0
	for _, n := range h.nodes {
		free += n.Free
	}
	rs, err := h.tasks.Runnable(h.ctx, "acct", "p1", free)
	if err != nil {
		h.t.Fatal(err)
	}
	var cs []compute.Candidate
	for _, r := range rs {
		cs = append(cs, compute.Candidate{JobID: r.JobID, TaskID: r.TaskID, RequiredSlots: r.RequiredSlots})
	}
	var out []placed
	for _, p := range compute.Place(h.nodes, cs, "spread") {
		run, ok, err := h.tasks.StartTask(h.ctx, "acct", p.JobID, p.TaskID, p.NodeID, time.Now())
		if err != nil || !ok {
			h.t.Fatalf("start %s: %v %v", p.TaskID, ok, err)
		}
		for i := range h.nodes {
			if h.nodes[i].ID == p.NodeID {
				h.nodes[i].Free -= max(p.RequiredSlots, 1)
			}
		}
		out = append(out, placed{p, run})
	}
	return out
}

// finish ends a placed run with exit code (or as lost with its node).
func (h *harness) finish(p placed, exit int, lost bool) {
	h.t.Helper()
	h.finishWith(p, exit, lost, "", "")
}

// finishWith ends a placed run as finish does, with a failure code and
// message as a node's report gives them.
func (h *harness) finishWith(p placed, exit int, lost bool, code, msg string) {
	h.t.Helper()
	out := compute.Decide(exit != 0, false, lost, p.run.RetryCount, p.run.MaxRetries)
	res := compute.RunResult{NodeID: p.NodeID, ExitCode: exit, Outcome: out, EndTime: time.Now(), FailureCode: code, FailureMessage: msg}
	if err := h.tasks.FinishTask(h.ctx, "acct", p.JobID, p.TaskID, res); err != nil {
		h.t.Fatal(err)
	}
	for i := range h.nodes {
		if h.nodes[i].ID == p.NodeID {
			h.nodes[i].Free += max(p.RequiredSlots, 1)
		}
	}
}

func (h *harness) task(job, id string) *batch.TaskRecord {
	h.t.Helper()
	r, err := h.store.Task(h.ctx, "acct", job, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func i32(v int32) *int32 { return &v }

func TestHarnessRetriesRequeuesAndSlots(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testRetriesRequeuesAndSlots)
}

func testRetriesRequeuesAndSlots(t *testing.T, db *sqlstore.DB) {
	h := newHarness(t, db, 2, 2)
	h.job("j", batch.JobSpec{Constraints: &batch.JobConstraints{MaxTaskRetryCount: i32(1)}})
	h.add("j",
		batch.NewTask{ID: "a", Spec: batch.TaskSpec{CommandLine: "a"}},
		batch.NewTask{ID: "b", Spec: batch.TaskSpec{CommandLine: "b", RequiredSlots: i32(2)}},
		batch.NewTask{ID: "c", Spec: batch.TaskSpec{CommandLine: "c"}},
		batch.NewTask{ID: "d", Spec: batch.TaskSpec{CommandLine: "d", RequiredSlots: i32(2)}},
	)
	first := h.step()
	// 4 slots: a (1) and b (2) fit, c (1) fits, d (2) waits.
	if len(first) != 3 {
		t.Fatalf("first placement = %v", first)
	}
	if st := h.task("j", "d").State; st != batch.TaskActive {
		t.Errorf("d is %s before slots free up", st)
	}
	for _, p := range first {
		switch p.TaskID {
		case "a":
			h.finish(p, 1, false) // retried once (job maxTaskRetryCount 1)
		case "b":
			h.finish(p, 0, true) // node lost: requeued
		case "c":
			h.finish(p, 0, false)
		}
	}
	if r := h.task("j", "a"); r.State != batch.TaskActive || r.RetryCount != 1 {
		t.Errorf("a after a failure: %s retry %d", r.State, r.RetryCount)
	}
	if r := h.task("j", "b"); r.State != batch.TaskActive || r.RequeueCount != 1 || r.RetryCount != 0 {
		t.Errorf("b after node loss: %s requeue %d retry %d", r.State, r.RequeueCount, r.RetryCount)
	}
	for round := 0; round < 5; round++ {
		ps := h.step()
		if len(ps) == 0 {
			break
		}
		for _, p := range ps {
			code := 0
			if p.TaskID == "a" {
				code = 1 // fails again: no retries left
			}
			h.finish(p, code, false)
		}
	}
	for id, want := range map[string]string{"a": batch.TaskCompleted, "b": batch.TaskCompleted, "c": batch.TaskCompleted, "d": batch.TaskCompleted} {
		if r := h.task("j", id); r.State != want {
			t.Errorf("task %s: %s, want %s", id, r.State, want)
		}
	}
	if o := h.task("j", "a").Outcome; o.Result != batch.TaskFailure || o.ExitCode == nil || *o.ExitCode != 1 || o.LastRetryTime.IsZero() {
		t.Errorf("a's outcome = %+v", o)
	}
	if o := h.task("j", "b").Outcome; o.Result != batch.TaskSuccess || o.LastRequeueTime.IsZero() || o.NodeID == "" || o.PoolID != "p1" {
		t.Errorf("b's outcome = %+v", o)
	}
}

func TestHarnessDependenciesAndJobEnd(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testDependenciesAndJobEnd)
}

func testDependenciesAndJobEnd(t *testing.T, db *sqlstore.DB) {
	h := newHarness(t, db, 1, 4)
	yes, term := true, "terminatejob"
	h.job("j", batch.JobSpec{UsesTaskDependencies: &yes, OnAllTasksComplete: &term})
	h.add("j",
		batch.NewTask{ID: "1", Spec: batch.TaskSpec{CommandLine: "x"}},
		batch.NewTask{ID: "2", Spec: batch.TaskSpec{CommandLine: "x"}},
		batch.NewTask{ID: "last", Spec: batch.TaskSpec{CommandLine: "x", DependsOn: &batch.TaskDependencies{TaskIDRanges: []batch.TaskIDRange{{Start: 1, End: 2}}}}},
	)
	ps := h.step()
	if len(ps) != 2 {
		t.Fatalf("placed %v, want only 1 and 2", ps)
	}
	h.finish(ps[0], 0, false)
	if more := h.step(); len(more) != 0 {
		t.Fatalf("last started before all its dependencies completed: %v", more)
	}
	h.finish(ps[1], 0, false)
	ps = h.step()
	if len(ps) != 1 || ps[0].TaskID != "last" {
		t.Fatalf("placed %v, want last", ps)
	}
	h.finish(ps[0], 0, false)
	j, err := h.data.GetJob(h.ctx, "acct", "j")
	if err != nil || j.State != batch.JobCompleted {
		t.Errorf("job after its last task: %v %v", j.State, err)
	}
}

// TestHarnessOutcomePersists: the outcome of each run is in the task's
// record, so a new BatchTasks over the same store (a restarted server)
// reports it, counts it, and still blocks a task on its failed dependency.
func TestHarnessOutcomePersists(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testOutcomePersists)
}

func testOutcomePersists(t *testing.T, db *sqlstore.DB) {
	h := newHarness(t, db, 1, 4)
	yes := true
	h.job("j", batch.JobSpec{UsesTaskDependencies: &yes})
	canary := "canary-4d1e"
	h.add("j",
		batch.NewTask{ID: "ok", Spec: batch.TaskSpec{CommandLine: "x"}},
		batch.NewTask{ID: "bad", Spec: batch.TaskSpec{CommandLine: canary}},
		batch.NewTask{ID: "after", Spec: batch.TaskSpec{CommandLine: "x", DependsOn: &batch.TaskDependencies{TaskIDs: []string{"bad"}}}},
	)
	ps := h.step()
	if len(ps) != 2 {
		t.Fatalf("placed %v, want ok and bad", ps)
	}
	for _, p := range ps {
		if p.TaskID == "bad" {
			h.finishWith(p, 127, false, "CommandProgramNotFound", "The task could not be started: "+canary+": not found")
		} else {
			h.finish(p, 0, false)
		}
	}

	// A restarted server: new services over the same database.
	keys := h.tasks.Keys
	store := &sqlstore.BatchDataStore{DB: db}
	data := &batch.DataService{Keys: keys, Store: store}
	h.tasks, h.data, h.store = &compute.BatchTasks{Keys: keys, Data: data, Store: store}, data, store
	if more := h.step(); len(more) != 0 {
		t.Errorf("after a restart, a task whose dependency failed started: %v", more)
	}
	ok, err := data.GetTask(h.ctx, "acct", "j", "ok")
	if err != nil {
		t.Fatal(err)
	}
	if o := ok.Outcome; o.Result != batch.TaskSuccess || o.ExitCode == nil || *o.ExitCode != 0 || o.NodeID != "n0" || o.PoolID != "p1" || o.FailureCode != "" || ok.FailureMessage != "" {
		t.Errorf("ok after a restart: %+v %q", o, ok.FailureMessage)
	}
	bad, err := data.GetTask(h.ctx, "acct", "j", "bad")
	if err != nil {
		t.Fatal(err)
	}
	if o := bad.Outcome; o.Result != batch.TaskFailure || o.ExitCode == nil || *o.ExitCode != 127 || o.NodeID != "n0" ||
		o.FailureCode != "CommandProgramNotFound" || bad.FailureMessage != "The task could not be started: "+canary+": not found" {
		t.Errorf("bad after a restart: %+v %q", o, bad.FailureMessage)
	}
	c, err := data.JobTaskCounts(h.ctx, "acct", "j")
	if err != nil || c != (batch.TaskCounts{Active: 1, Completed: 2, Succeeded: 1, Failed: 1}) {
		t.Errorf("task counts = %+v, %v", c, err)
	}
	// The failure message quotes the command: it is stored sealed only.
	r := h.task("j", "bad")
	if len(r.SealedFailureMessage) == 0 || bytes.Contains(r.SealedFailureMessage, []byte(canary)) || bytes.Contains(r.Sealed, []byte(canary)) {
		t.Errorf("the failure message is not sealed: %q", r.SealedFailureMessage)
	}
	// Terminating a task records it as failed, and that too is counted.
	if _, err := data.TerminateTask(h.ctx, "acct", "j", "after", ""); err != nil {
		t.Fatal(err)
	}
	after, err := data.GetTask(h.ctx, "acct", "j", "after")
	if err != nil || after.Outcome.Result != batch.TaskFailure || after.Outcome.FailureCode != "TaskEnded" || after.FailureMessage == "" {
		t.Errorf("terminated task: %+v %q %v", after.Outcome, after.FailureMessage, err)
	}
	c, err = data.JobTaskCounts(h.ctx, "acct", "j")
	if err != nil || c != (batch.TaskCounts{Completed: 3, Succeeded: 1, Failed: 2}) {
		t.Errorf("task counts after terminate = %+v, %v", c, err)
	}
}
