package batch_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"custody"
	"custody/batch"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// addManyTasks adds n tasks (ids t00000, t00001, ...) to a job, 100 a call.
func addManyTasks(t *testing.T, d *batch.DataService, account, job string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += batch.MaxTasksPerCollection {
		var ts []batch.NewTask
		for k := i; k < min(n, i+batch.MaxTasksPerCollection); k++ {
			ts = append(ts, batch.NewTask{ID: fmt.Sprintf("t%05d", k), Spec: batch.TaskSpec{CommandLine: "echo " + fmt.Sprint(k)}})
		}
		res, err := d.AddTasks(ctx, account, job, ts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("add %s: %v", r.TaskID, r.Err)
			}
		}
	}
}

// pageAll lists a job's tasks page after page, following the skip token,
// and returns their ids and the number of pages.
func pageAll(t *testing.T, d *batch.DataService, account, job, filter string, size int) ([]string, int) {
	t.Helper()
	var ids []string
	pages := 0
	token := ""
	for {
		ts, next, err := d.ListTasks(context.Background(), account, job, batch.ListQuery{Filter: filter, MaxResults: size, SkipToken: token})
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		for _, tk := range ts {
			ids = append(ids, tk.ID)
		}
		if next == "" {
			return ids, pages
		}
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		token = next
	}
}

// TestManyTasksPageCountAndDelete: a job of a few thousand tasks pages
// through every task exactly once, in id order, with and without a
// $filter on state; its counts follow state changes; and its deletion runs
// in the background in batches (the job shows deleting meanwhile, accepts
// no tasks) while another account's writes go through between them.
func TestManyTasksPageCountAndDelete(t *testing.T) {
	sqlstoretest.ForEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		d, _ := newDataService(t, db)
		spec := batch.JobSpec{PoolInfo: batch.PoolInfo{PoolID: "pool1"}}
		for _, a := range []string{"acct1", "acct2"} {
			if _, err := d.AddJob(ctx, a, "big", spec); err != nil {
				t.Fatal(err)
			}
		}
		const n = 2250
		addManyTasks(t, d, "acct1", "big", n)

		ids, pages := pageAll(t, d, "acct1", "big", "", 0)
		if len(ids) != n || pages != 3 {
			t.Fatalf("paged %d tasks in %d pages, want %d in 3", len(ids), pages, n)
		}
		for i, id := range ids {
			if want := fmt.Sprintf("t%05d", i); id != want {
				t.Fatalf("task %d of the listing is %s, want %s", i, id, want)
			}
		}
		// Small pages, and the state filter.
		ids, pages = pageAll(t, d, "acct1", "big", "state eq 'active'", 300)
		if len(ids) != n || pages != 8 || ids[0] != "t00000" || ids[n-1] != fmt.Sprintf("t%05d", n-1) {
			t.Fatalf("active tasks: %d in %d pages", len(ids), pages)
		}

		// A filter the store cannot select by index reads at most ten
		// pages' worth a request: short pages with skip tokens, each match
		// once.
		ids, pages = pageAll(t, d, "acct1", "big", "id eq 't02249' or startswith(id, 't0001')", 10)
		if want := "t00010 t00011 t00012 t00013 t00014 t00015 t00016 t00017 t00018 t00019 t02249"; strings.Join(ids, " ") != want || pages < n/110 {
			t.Fatalf("filter on ids: %v in %d pages, want %s in at least %d", ids, pages, want, n/110)
		}

		// Counts follow state changes: terminate every 100th task.
		for i := 0; i < n; i += 100 {
			if _, err := d.TerminateTask(ctx, "acct1", "big", fmt.Sprintf("t%05d", i), ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.DeleteTask(ctx, "acct1", "big", "t00001", ""); err != nil {
			t.Fatal(err)
		}
		c, err := d.JobTaskCounts(ctx, "acct1", "big")
		if want := (batch.TaskCounts{Active: n - 23 - 1, Completed: 23, Failed: 23}); err != nil || c != want {
			t.Fatalf("counts %+v %v, want %+v", c, err, want)
		}
		done, _ := pageAll(t, d, "acct1", "big", "state eq 'completed'", 10)
		if len(done) != 23 || done[0] != "t00000" || done[22] != "t02200" {
			t.Fatalf("completed tasks: %v", done)
		}
		active, _ := pageAll(t, d, "acct1", "big", "state eq 'active'", 0)
		if len(active) != n-24 {
			t.Fatalf("%d active tasks listed, want %d", len(active), n-24)
		}
		// Several states: each read by index, merged in id order.
		either, _ := pageAll(t, d, "acct1", "big", "state eq 'completed' or state eq 'active'", 500)
		if len(either) != n-1 || either[0] != "t00000" || either[1] != "t00002" || either[n-2] != fmt.Sprintf("t%05d", n-1) {
			t.Fatalf("active or completed: %d tasks, want %d in id order", len(either), n-1)
		}
		for i := 1; i < len(either); i++ {
			if either[i] <= either[i-1] {
				t.Fatalf("active or completed: %s after %s", either[i], either[i-1])
			}
		}
		if rare, _ := pageAll(t, d, "acct1", "big", "state eq 'running' or state eq 'completed'", 7); len(rare) != 23 || rare[22] != "t02200" {
			t.Fatalf("running or completed: %v", rare)
		}

		// The deletion: the store pauses after each batch until the test
		// lets it go on.
		gate := &gatedStore{DataStore: d.Store, batchDone: make(chan int), next: make(chan struct{})}
		d.Store = gate
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		ran := make(chan struct{})
		go func() { defer close(ran); d.RunDeletions(runCtx, time.Hour, slog.New(slog.DiscardHandler)) }()
		defer func() { stop(); close(gate.next); <-ran }()
		if err := d.DeleteJob(ctx, "acct1", "big", ""); err != nil {
			t.Fatal(err)
		}
		for b := 1; ; b++ {
			var deleted int
			select {
			case deleted = <-gate.batchDone:
			case <-time.After(20 * time.Second):
				t.Fatalf("batch %d of the deletion did not come", b)
			}
			j, err := d.GetJob(ctx, "acct1", "big")
			if err != nil || j.State != batch.JobDeleting {
				t.Fatalf("job during its deletion: %+v %v", j, err)
			}
			if deleted < batch.DeleteJobBatch {
				if b != 3 {
					t.Fatalf("the deletion took %d batches, want 3", b)
				}
				gate.next <- struct{}{}
				break
			}
			c, err := d.JobTaskCounts(ctx, "acct1", "big")
			if total := c.Active + c.Completed; err != nil || int(total) != n-1-b*batch.DeleteJobBatch {
				t.Fatalf("counts after batch %d: %+v %v", b, c, err)
			}
			// Between two batches: another account's write, and this job
			// refusing new tasks.
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			res, err := d.AddTasks(wctx, "acct2", "big", []batch.NewTask{{ID: fmt.Sprintf("n%d", b), Spec: batch.TaskSpec{CommandLine: "true"}}})
			cancel()
			if err != nil || res[0].Err != nil {
				t.Fatalf("another account's write between batches: %v %v", err, res)
			}
			_, err = d.AddTask(ctx, "acct1", "big", "late", batch.TaskSpec{CommandLine: "true"})
			if custody.ErrorCode(err) != "JobBeingDeleted" {
				t.Fatalf("add a task to a job being deleted: %v", err)
			}
			if err := d.DeleteJob(ctx, "acct1", "big", ""); err != nil {
				t.Fatalf("delete again while deleting: %v", err)
			}
			gate.next <- struct{}{}
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := d.GetJob(ctx, "acct1", "big")
			if custody.ErrorCode(err) == "JobNotFound" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job still there after its tasks were deleted: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if c, err := d.JobTaskCounts(ctx, "acct2", "big"); err != nil || c.Active != 2 {
			t.Fatalf("the other account's job: %+v %v", c, err)
		}
		// A small job goes at once.
		if _, err := d.AddJob(ctx, "acct1", "small", spec); err != nil {
			t.Fatal(err)
		}
		addManyTasks(t, d, "acct1", "small", batch.DeleteJobBatch)
		if err := d.DeleteJob(ctx, "acct1", "small", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetJob(ctx, "acct1", "small"); custody.ErrorCode(err) != "JobNotFound" {
			t.Fatalf("small job after its delete: %v", err)
		}

		// An account's data goes a batch at a time too.
		gate.batchDone = nil
		d.Store = gate.DataStore
		if _, err := d.AddJob(ctx, "acct1", "rest", spec); err != nil {
			t.Fatal(err)
		}
		addManyTasks(t, d, "acct1", "rest", 1200)
		if err := d.DeleteAccountData(ctx, "acct1"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetJob(ctx, "acct1", "rest"); custody.ErrorCode(err) != "JobNotFound" {
			t.Fatalf("job after its account's data was deleted: %v", err)
		}
		var left int
		if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM batch_tasks WHERE account_key = 'acct1'`).Scan(&left); err != nil || left != 0 {
			t.Fatalf("%d tasks left of the deleted account's data (%v)", left, err)
		}
		if c, err := d.JobTaskCounts(ctx, "acct2", "big"); err != nil || c.Active != 2 {
			t.Fatalf("the other account's job after the account's data was deleted: %+v %v", c, err)
		}
	})
}

// gatedStore reports each batch of a job deletion and waits to be let go
// on.
type gatedStore struct {
	batch.DataStore
	batches   atomic.Int32
	batchDone chan int
	next      chan struct{}
}

func (g *gatedStore) DeleteJobTasks(ctx context.Context, account, jobID string, limit int) (int, error) {
	n, err := g.DataStore.DeleteJobTasks(ctx, account, jobID, limit)
	if err != nil {
		return n, err
	}
	g.batches.Add(1)
	select {
	case g.batchDone <- n:
	case <-ctx.Done():
		return n, ctx.Err()
	}
	select {
	case <-g.next:
	case <-ctx.Done():
		return n, ctx.Err()
	}
	return n, nil
}
