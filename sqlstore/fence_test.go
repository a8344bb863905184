package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"custody"
	"custody/batch"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// TestFencedTaskWrite: a task write fenced by a settings row lands while the
// row holds the fence's value and is refused (503 ReplicaNotActive, the task
// unchanged) once it holds another. A fenced write sent while a transaction
// is changing the row waits for it and then finds the new value: it never
// lands after the fence moved.
func TestFencedTaskWrite(t *testing.T) {
	db := sqlstoretest.OpenPostgres(t)
	ctx := context.Background()
	s := &sqlstore.BatchDataStore{DB: db}
	if err := s.CreateJob(ctx, "acct", jobRecord("j", batch.JobActive)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTasks(ctx, "acct", []*batch.TaskRecord{{TaskMeta: batch.TaskMeta{JobID: "j", ID: "t", State: batch.TaskActive, ETag: "0x1"}, Sealed: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	sqlDB := db.SQL()
	if _, err := sqlDB.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ('test.epoch', '1')`); err != nil {
		t.Fatal(err)
	}
	fenced := sqlstore.WithFence(ctx, sqlstore.Fence{Key: "test.epoch", Value: "1"})
	write := func(c context.Context, prev, next, state string) error {
		r, err := s.Task(ctx, "acct", "j", "t")
		if err != nil {
			t.Fatal(err)
		}
		r.State, r.ETag = state, next
		return s.UpdateTask(c, "acct", r, prev)
	}
	if err := write(fenced, "0x1", "0x2", batch.TaskRunning); err != nil {
		t.Fatalf("a write under the current fence: %v", err)
	}
	if err := write(fenced, "0x9", "0x3", batch.TaskActive); custody.ErrorKind(err) != custody.KindPreconditionFailed {
		t.Errorf("a fenced write with a stale etag: %v, want 412", err)
	}

	// Another replica takes the lease: its transaction raises the epoch
	// while a fenced write is under way.
	tx, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE settings SET value = '2' WHERE key = 'test.epoch'`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- write(fenced, "0x2", "0x3", batch.TaskActive) }()
	select {
	case err := <-done:
		t.Fatalf("the fenced write did not wait for the epoch change: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if custody.ErrorKind(err) != custody.KindUnavailable || custody.ErrorCode(err) != "ReplicaNotActive" {
		t.Errorf("a fenced write after the epoch moved: %v, want 503 ReplicaNotActive", err)
	}
	if r, _ := s.Task(ctx, "acct", "j", "t"); r.State != batch.TaskRunning || r.ETag != "0x2" {
		t.Errorf("the task after the refused write: %s %s", r.State, r.ETag)
	}
	// Unfenced writes (a single server) are not affected.
	if err := write(ctx, "0x2", "0x4", batch.TaskCompleted); err != nil {
		t.Errorf("an unfenced write: %v", err)
	}
}

// TestPostgresSessionsEndIdleTransactions: the server's sessions end a
// transaction left idle (a frozen server's), releasing its locks.
func TestPostgresSessionsEndIdleTransactions(t *testing.T) {
	db := sqlstoretest.OpenPostgres(t)
	var v string
	if err := db.SQL().QueryRow(`SHOW idle_in_transaction_session_timeout`).Scan(&v); err != nil || v != "10s" {
		t.Errorf("idle_in_transaction_session_timeout = %q, %v; want 10s", v, err)
	}
}
