package sqlstore_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"custody/batch"
	"custody/sqlstore"
)

// countedTasks counts a job's tasks from batch_tasks itself, the way
// TaskCounts did before the counts were kept.
func countedTasks(t *testing.T, db *sqlstore.DB, account, job string) batch.TaskCounts {
	t.Helper()
	rows, err := db.SQL().Query(`SELECT state, result, COUNT(*) FROM batch_tasks WHERE account_key = $1 AND job_key = $2 GROUP BY state, result`, account, job)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var c batch.TaskCounts
	for rows.Next() {
		var st, res string
		var n int32
		if err := rows.Scan(&st, &res, &n); err != nil {
			t.Fatal(err)
		}
		switch st {
		case batch.TaskActive:
			c.Active += n
		case batch.TaskRunning:
			c.Running += n
		case batch.TaskCompleted:
			c.Completed += n
			if res == batch.TaskFailure {
				c.Failed += n
			} else {
				c.Succeeded += n
			}
		}
	}
	return c
}

// TestTaskCountsFollowEveryChange: the kept counts equal a count of the
// tasks after inserts (duplicates not counted), state and result changes,
// updates that change neither, deletes one by one and in batches, many
// concurrent writers to one job (on PostgreSQL: no deadlock between
// writers moving tasks in opposite directions), and the job's deletion.
func TestTaskCountsFollowEveryChange(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.BatchDataStore{DB: db}
		for _, a := range []string{"acct1", "acct2"} {
			if err := s.CreateJob(ctx, a, jobRecord("Job-A", batch.JobActive)); err != nil {
				t.Fatal(err)
			}
		}
		check := func(step string, want batch.TaskCounts) {
			t.Helper()
			got, err := s.TaskCounts(ctx, "acct1", "job-a")
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			if counted := countedTasks(t, db, "acct1", "job-a"); got != counted || got != want {
				t.Fatalf("%s: kept counts %+v, counted %+v, want %+v", step, got, counted, want)
			}
			states, err := s.TaskStates(ctx, "acct1", "job-a")
			if err != nil {
				t.Fatal(err)
			}
			if states[batch.TaskActive] != int(want.Active) || states[batch.TaskRunning] != int(want.Running) || states[batch.TaskCompleted] != int(want.Completed) {
				t.Fatalf("%s: task states %v, want %+v", step, states, want)
			}
		}
		mk := func(id string) *batch.TaskRecord {
			return &batch.TaskRecord{TaskMeta: batch.TaskMeta{JobID: "Job-A", ID: id, State: batch.TaskActive, ETag: "0x1"}, Sealed: []byte{1}}
		}
		var recs []*batch.TaskRecord
		for i := range 300 {
			recs = append(recs, mk(fmt.Sprintf("t%04d", i)))
		}
		for i := 0; i < len(recs); i += 100 {
			if _, err := s.CreateTasks(ctx, "acct1", recs[i:i+100]); err != nil {
				t.Fatal(err)
			}
		}
		// Another account's job of the same id is counted apart.
		if _, err := s.CreateTasks(ctx, "acct2", []*batch.TaskRecord{mk("t0000")}); err != nil {
			t.Fatal(err)
		}
		created, err := s.CreateTasks(ctx, "acct1", []*batch.TaskRecord{mk("T0001"), mk("t0300")})
		if err != nil || created[0] || !created[1] {
			t.Fatalf("insert with a duplicate: %v %v", created, err)
		}
		check("after inserts", batch.TaskCounts{Active: 301})

		update := func(id, state, result string) {
			t.Helper()
			r, err := s.Task(ctx, "acct1", "job-a", id)
			if err != nil {
				t.Fatal(err)
			}
			prev := r.ETag
			r.State, r.Outcome.Result, r.ETag = state, result, prev+"x"
			if err := s.UpdateTask(ctx, "acct1", r, prev); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 20 {
			update(fmt.Sprintf("t%04d", i), batch.TaskRunning, "")
		}
		for i := range 10 {
			update(fmt.Sprintf("t%04d", i), batch.TaskCompleted, batch.TaskSuccess)
		}
		for i := 10; i < 14; i++ {
			update(fmt.Sprintf("t%04d", i), batch.TaskCompleted, batch.TaskFailure)
		}
		check("after state changes", batch.TaskCounts{Active: 281, Running: 6, Completed: 14, Succeeded: 10, Failed: 4})
		update("t0000", batch.TaskCompleted, batch.TaskFailure) // result alone
		update("t0001", batch.TaskCompleted, batch.TaskSuccess) // neither
		check("after a result change", batch.TaskCounts{Active: 281, Running: 6, Completed: 14, Succeeded: 9, Failed: 5})
		if err := s.DeleteTask(ctx, "acct1", "job-a", "t0000"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteTask(ctx, "acct1", "job-a", "t0020"); err != nil {
			t.Fatal(err)
		}
		check("after deletes", batch.TaskCounts{Active: 280, Running: 6, Completed: 13, Succeeded: 9, Failed: 4})

		// Writers on many connections at once: each moves its own tasks
		// active -> running -> active -> running -> completed, while others
		// move theirs the other way round.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Go(func() {
				for i := 100 + w; i < 300; i += 8 {
					id := "t" + fmt.Sprintf("%04d", i)
					for k, st := range []string{batch.TaskRunning, batch.TaskActive, batch.TaskRunning, batch.TaskCompleted} {
						r, err := s.Task(ctx, "acct1", "job-a", id)
						if err != nil {
							errs <- err
							return
						}
						prev := r.ETag
						r.State, r.ETag = st, prev+strconv.Itoa(k)
						if st == batch.TaskCompleted {
							r.Outcome.Result = batch.TaskSuccess
						}
						if err := s.UpdateTask(ctx, "acct1", r, prev); err != nil {
							errs <- fmt.Errorf("task %s to %s: %w", id, st, err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		check("after concurrent writers", batch.TaskCounts{Active: 80, Running: 6, Completed: 213, Succeeded: 209, Failed: 4})
		if err := s.CompactTaskCounts(ctx); err != nil {
			t.Fatal(err)
		}
		check("after compacting", batch.TaskCounts{Active: 80, Running: 6, Completed: 213, Succeeded: 209, Failed: 4})
		var deltas int
		if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM batch_task_count_deltas`).Scan(&deltas); err != nil || deltas >= 64 {
			t.Fatalf("%d count deltas left after compacting (%v)", deltas, err)
		}

		n, err := s.DeleteJobTasks(ctx, "acct1", "job-a", 250)
		if err != nil || n != 250 {
			t.Fatalf("delete a batch: %d %v", n, err)
		}
		r, err := s.ListTasks(ctx, "acct1", "job-a", batch.ListOptions{})
		if err != nil || len(r) != 49 || r[0].ID != "t0252" {
			t.Fatalf("after deleting the first 250 in id order: %d tasks, first %v, %v", len(r), r[0].ID, err)
		}
		check("after a batch delete", countedTasks(t, db, "acct1", "job-a"))
		if err := s.DeleteJob(ctx, "acct1", "job-a"); err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM batch_task_counts WHERE account_key = 'acct1'`).Scan(&rows); err != nil || rows != 0 {
			t.Fatalf("count rows left after the job was deleted: %d %v", rows, err)
		}
		if c, err := s.TaskCounts(ctx, "acct2", "job-a"); err != nil || c != (batch.TaskCounts{Active: 1}) {
			t.Fatalf("the other account's counts: %+v %v", c, err)
		}
		if err := s.DeleteAccountData(ctx, "acct2"); err != nil {
			t.Fatal(err)
		}
		if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM batch_task_counts`).Scan(&rows); err != nil || rows != 0 {
			t.Fatalf("count rows left after the account's data was deleted: %d %v", rows, err)
		}
	})
}

// TestJobsInState lists jobs of every account in one state.
func TestJobsInState(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.BatchDataStore{DB: db}
		for _, j := range []struct{ account, id, state string }{
			{"acct2", "Job-B", batch.JobDeleting}, {"acct1", "job-a", batch.JobDeleting}, {"acct1", "job-c", batch.JobActive},
		} {
			if err := s.CreateJob(ctx, j.account, jobRecord(j.id, j.state)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.JobsInState(ctx, batch.JobDeleting, 10)
		if err != nil || fmt.Sprint(got) != "[[acct1 job-a] [acct2 Job-B]]" {
			t.Fatalf("deleting jobs: %v %v", got, err)
		}
		if got, err := s.JobsInState(ctx, batch.JobDeleting, 1); err != nil || len(got) != 1 {
			t.Fatalf("at most one: %v %v", got, err)
		}
	})
}

// TestDeleteAccountTasks deletes an account's tasks across its jobs a batch
// at a time, leaving other accounts' alone, and keeps the counts.
func TestDeleteAccountTasks(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.BatchDataStore{DB: db}
		for _, a := range []string{"acct1", "acct2"} {
			for _, j := range []string{"Job-A", "job-b"} {
				if err := s.CreateJob(ctx, a, jobRecord(j, batch.JobActive)); err != nil {
					t.Fatal(err)
				}
				var recs []*batch.TaskRecord
				for i := range 75 {
					recs = append(recs, &batch.TaskRecord{TaskMeta: batch.TaskMeta{JobID: j, ID: fmt.Sprintf("t%03d", i), State: batch.TaskActive, ETag: "0x1"}, Sealed: []byte{1}})
				}
				if _, err := s.CreateTasks(ctx, a, recs); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, want := range []int{75, 75, 0} {
			if n, err := s.DeleteAccountTasks(ctx, "acct1", 100); err != nil || n != want {
				t.Fatalf("delete a batch: %d %v, want %d", n, err, want)
			}
		}
		for _, j := range []string{"job-a", "job-b"} {
			if c, err := s.TaskCounts(ctx, "acct1", j); err != nil || c != (batch.TaskCounts{}) {
				t.Fatalf("acct1 %s counts: %+v %v", j, c, err)
			}
			if c, err := s.TaskCounts(ctx, "acct2", j); err != nil || c != (batch.TaskCounts{Active: 75}) || countedTasks(t, db, "acct2", j) != c {
				t.Fatalf("acct2 %s counts: %+v %v", j, c, err)
			}
		}
	})
}

// TestTaskCountsConcurrentBatches: transactions that move tasks in several
// statements (UpdateTasks) between active, running and completed, in
// different orders at once, all commit and leave the counts right. Count
// rows updated in each statement's order deadlocked on PostgreSQL.
func TestTaskCountsConcurrentBatches(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.BatchDataStore{DB: db}
		if err := s.CreateJob(ctx, "acct1", jobRecord("job", batch.JobActive)); err != nil {
			t.Fatal(err)
		}
		cycle := []string{batch.TaskActive, batch.TaskRunning, batch.TaskCompleted}
		const workers, each, rounds = 8, 3, 30
		var recs []*batch.TaskRecord
		for w := range workers {
			for k := range each {
				recs = append(recs, &batch.TaskRecord{TaskMeta: batch.TaskMeta{JobID: "job", ID: fmt.Sprintf("w%d-%d", w, k), State: cycle[(w+k)%3], ETag: "0"}, Sealed: []byte{1}})
			}
		}
		if _, err := s.CreateTasks(ctx, "acct1", recs); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for r := range rounds {
					var ts []*batch.TaskRecord
					var prevs []string
					for k := range each {
						id := fmt.Sprintf("w%d-%d", w, (k+r+w)%each)
						rec, err := s.Task(ctx, "acct1", "job", id)
						if err != nil {
							errs <- err
							return
						}
						prevs = append(prevs, rec.ETag)
						for i, st := range cycle {
							if st == rec.State {
								rec.State = cycle[(i+1)%3]
								break
							}
						}
						rec.ETag += "x"
						ts = append(ts, rec)
					}
					if _, err := s.UpdateTasks(ctx, "acct1", ts, prevs); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Each task moved rounds (a multiple of 3) steps round the cycle.
		want := batch.TaskCounts{Active: workers, Running: workers, Completed: workers, Succeeded: workers}
		if c, err := s.TaskCounts(ctx, "acct1", "job"); err != nil || c != want || countedTasks(t, db, "acct1", "job") != want {
			t.Fatalf("counts %+v %v, want %+v", c, err, want)
		}
	})
}
