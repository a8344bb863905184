package compute_test

import (
	"reflect"
	"strconv"
	"testing"
	"time"

	"custody/batch"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// clock gives the data service creation times a second apart, so jobs of
// equal priority have a definite creation order.
func (h *harness) clock() {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	h.data.Now = func() time.Time { n++; return t0.Add(time.Duration(n) * time.Second) }
}

func (h *harness) tasksOf(job string, n int) {
	h.t.Helper()
	var ts []batch.NewTask
	for i := 0; i < n; i++ {
		ts = append(ts, batch.NewTask{ID: job + strconv.Itoa(i), Spec: batch.TaskSpec{CommandLine: "x"}})
	}
	h.add(job, ts...)
}

func ids(ps []placed) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.TaskID)
	}
	return out
}

func TestHarnessJobPriority(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testJobPriority)
}

func testJobPriority(t *testing.T, db *sqlstore.DB) {
	h := newHarness(t, db, 1, 2)
	h.clock()
	// Created in this order; ids sort otherwise, so equal priorities show
	// creation order winning over id order.
	h.job("low", batch.JobSpec{Priority: i32(-10)})
	h.job("z", batch.JobSpec{})
	h.job("high", batch.JobSpec{Priority: i32(100)})
	h.job("a", batch.JobSpec{})
	for _, j := range []string{"low", "z", "high", "a"} {
		h.tasksOf(j, 2)
	}
	var order []string
	for round := 0; round < 10; round++ {
		ps := h.step()
		if len(ps) == 0 {
			break
		}
		order = append(order, ids(ps)...)
		for _, p := range ps {
			h.finish(p, 0, false)
		}
	}
	want := []string{"high0", "high1", "z0", "z1", "a0", "a1", "low0", "low1"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("start order = %v, want %v", order, want)
	}
}

func TestHarnessPriorityUpdate(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testPriorityUpdate)
}

func testPriorityUpdate(t *testing.T, db *sqlstore.DB) {
	h := newHarness(t, db, 1, 1)
	h.job("a", batch.JobSpec{})
	h.job("b", batch.JobSpec{})
	h.tasksOf("a", 3)
	h.tasksOf("b", 3)
	ps := h.step()
	if got := ids(ps); !reflect.DeepEqual(got, []string{"a0"}) {
		t.Fatalf("first = %v, want a0", got)
	}
	// PATCH: b goes ahead from the next pass on.
	if _, err := h.data.UpdateJob(h.ctx, "acct", "b", "", batch.JobUpdate{Priority: i32(5)}); err != nil {
		t.Fatal(err)
	}
	h.finish(ps[0], 0, false)
	ps = h.step()
	if got := ids(ps); !reflect.DeepEqual(got, []string{"b0"}) {
		t.Fatalf("after b's priority rose = %v, want b0", got)
	}
	// PUT: a's priority above b's; properties not given return to defaults.
	if _, err := h.data.ReplaceJob(h.ctx, "acct", "a", "", batch.JobSpec{Priority: i32(1000), PoolInfo: batch.PoolInfo{PoolID: "p1"}}); err != nil {
		t.Fatal(err)
	}
	h.finish(ps[0], 0, false)
	ps = h.step()
	if got := ids(ps); !reflect.DeepEqual(got, []string{"a1"}) {
		t.Fatalf("after a was replaced with priority 1000 = %v, want a1", got)
	}
}

func TestHarnessMaxParallelTasks(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testMaxParallelTasks)
}

func testMaxParallelTasks(t *testing.T, db *sqlstore.DB) {
	h := newHarness(t, db, 2, 4) // 8 slots
	h.job("capped", batch.JobSpec{Priority: i32(10), MaxParallelTasks: i32(2)})
	h.job("free", batch.JobSpec{MaxParallelTasks: i32(-1)})
	h.tasksOf("capped", 5)
	h.tasksOf("free", 2)
	running := func() int {
		st, err := h.store.TaskStates(h.ctx, "acct", "capped")
		if err != nil {
			t.Fatal(err)
		}
		return st[batch.TaskRunning]
	}
	// One pass: 2 of capped (the cap, though 6 more slots are free) and
	// both of free.
	ps := h.step()
	if got := ids(ps); !reflect.DeepEqual(got, []string{"capped0", "capped1", "free0", "free1"}) {
		t.Fatalf("first pass = %v", got)
	}
	if n := running(); n != 2 {
		t.Fatalf("capped has %d running", n)
	}
	// Passes while both still run start nothing more of capped.
	if more := h.step(); len(more) != 0 {
		t.Fatalf("started past maxParallelTasks: %v", ids(more))
	}
	var live []placed
	for _, p := range ps {
		if p.JobID == "capped" {
			live = append(live, p)
		}
	}
	done := 2
	for len(live) > 0 {
		// One ends: exactly one more may start.
		h.finish(live[0], 0, false)
		live = live[1:]
		more := h.step()
		if done < 5 && len(more) != 1 {
			t.Fatalf("after a run ended: %v", ids(more))
		}
		live = append(live, more...)
		done += len(more)
		if n := running(); n > 2 {
			t.Fatalf("capped has %d running", n)
		}
	}
	if done != 5 {
		t.Errorf("capped started %d tasks, want 5", done)
	}
	// Raising the limit through an update lets more start at once.
	h.job("later", batch.JobSpec{MaxParallelTasks: i32(1)})
	h.tasksOf("later", 4)
	if ps := h.step(); len(ps) != 1 {
		t.Fatalf("later's first pass = %v", ids(ps))
	}
	if _, err := h.data.UpdateJob(h.ctx, "acct", "later", "", batch.JobUpdate{MaxParallelTasks: i32(3)}); err != nil {
		t.Fatal(err)
	}
	if ps := h.step(); len(ps) != 2 {
		t.Fatalf("after raising maxParallelTasks to 3 = %v", ids(ps))
	}
	if _, err := h.data.UpdateJob(h.ctx, "acct", "later", "", batch.JobUpdate{MaxParallelTasks: i32(0)}); err == nil {
		t.Error("maxParallelTasks 0 was accepted")
	}
}
