package sqlstore_test

import (
	"context"
	"testing"

	"custody/batch"
	"custody/sqlstore"
)

// TestTaskRunsMigration: tasks stored before the task-run columns existed
// read back with no outcome after the migration, and the migration can be
// rolled back and applied again.
func TestTaskRunsMigration(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		p, err := db.Migrations()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.DownTo(ctx, 5); err != nil {
			t.Fatalf("roll back to 5: %v", err)
		}
		if _, err := db.SQL().ExecContext(ctx, `INSERT INTO batch_tasks (account_key, job_key, id_key, job_id, id, state, previous_state, etag,
			created_at, last_modified, state_since, previous_state_since, retry_count, requeue_count, start_time, end_time, spec)
			VALUES ('acct1', 'job-a', 't1', 'Job-A', 'T1', 'completed', 'running', '0x1', 1, 2, 3, 4, 1, 0, 5, 6, $1)`, []byte{0x01, 0x02}); err != nil {
			t.Fatalf("insert a task of the old schema: %v", err)
		}
		if _, err := p.Up(ctx); err != nil {
			t.Fatalf("migrate up again: %v", err)
		}
		s := &sqlstore.BatchDataStore{DB: db}
		tk, err := s.Task(ctx, "acct1", "job-a", "t1")
		if err != nil {
			t.Fatal(err)
		}
		if tk.State != batch.TaskCompleted || tk.RetryCount != 1 || tk.Outcome != (batch.TaskOutcome{}) || tk.SealedFailureMessage != nil {
			t.Errorf("old task after the migration: %+v", tk)
		}
		if c, err := s.TaskCounts(ctx, "acct1", "job-a"); err != nil || c != (batch.TaskCounts{Completed: 1, Succeeded: 1}) {
			t.Errorf("task counts of an old completed task: %+v %v", c, err)
		}
	})
}
