package sqlstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"custody"
	"custody/batch"
	"custody/sqlstore"
)

func jobRecord(id, state string) *batch.JobRecord {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &batch.JobRecord{JobMeta: batch.JobMeta{ID: id, PoolID: "pool1", State: state, ETag: "0x1",
		CreationTime: now, LastModified: now, StateTransitionTime: now}, Sealed: []byte{0x01, 0xff, 0x00}}
}

func TestBatchDataStore(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.BatchDataStore{DB: db}

		// Jobs: ids compare case-insensitively, per account.
		for i, id := range []string{"Job-A", "job-b", "job-c", "job-d"} {
			state := batch.JobActive
			if i%2 == 1 {
				state = batch.JobDisabled
			}
			if err := s.CreateJob(ctx, "Acct1", jobRecord(id, state)); err != nil {
				t.Fatalf("create %s: %v", id, err)
			}
		}
		err := s.CreateJob(ctx, "acct1", jobRecord("JOB-A", batch.JobActive))
		if custody.ErrorCode(err) != "JobExists" {
			t.Errorf("duplicate job: %v, want JobExists", err)
		}
		if err := s.CreateJob(ctx, "acct2", jobRecord("job-a", batch.JobActive)); err != nil {
			t.Errorf("same id in another account: %v", err)
		}
		j, err := s.Job(ctx, "ACCT1", "job-a")
		if err != nil || j.ID != "Job-A" || j.PoolID != "pool1" || string(j.Sealed) != "\x01\xff\x00" || !j.EndTime.IsZero() || j.CreationTime.IsZero() {
			t.Fatalf("read job: %+v %v", j, err)
		}
		if _, err := s.Job(ctx, "acct1", "nope"); custody.ErrorCode(err) != "JobNotFound" {
			t.Errorf("missing job: %v", err)
		}
		page, err := s.ListJobs(ctx, "acct1", batch.ListOptions{Limit: 2})
		if err != nil || len(page) != 2 || page[0].ID != "Job-A" || page[1].ID != "job-b" {
			t.Fatalf("first page: %v %v", page, err)
		}
		page, err = s.ListJobs(ctx, "acct1", batch.ListOptions{After: "job-b", Limit: 10, States: []string{batch.JobDisabled}})
		if err != nil || len(page) != 1 || page[0].ID != "job-d" {
			t.Fatalf("disabled after job-b: %v %v", page, err)
		}

		// Updates compare and swap on the etag.
		j.State, j.ETag, j.Sealed = batch.JobCompleted, "0x2", []byte{0x01, 0x02}
		if err := s.UpdateJob(ctx, "acct1", j, "0x9"); custody.ErrorKind(err) != custody.KindPreconditionFailed {
			t.Errorf("update with a stale etag: %v", err)
		}
		if err := s.UpdateJob(ctx, "acct1", j, "0x1"); err != nil {
			t.Fatalf("update: %v", err)
		}
		if got, _ := s.Job(ctx, "acct1", "job-a"); got.State != batch.JobCompleted || got.ETag != "0x2" {
			t.Errorf("after update: %+v", got)
		}
		j.ID = "nope"
		if err := s.UpdateJob(ctx, "acct1", j, "0x2"); custody.ErrorCode(err) != "JobNotFound" {
			t.Errorf("update a missing job: %v", err)
		}

		// Tasks: a batch insert reports which already existed.
		mk := func(id string) *batch.TaskRecord {
			return &batch.TaskRecord{TaskMeta: batch.TaskMeta{JobID: "Job-A", ID: id, State: batch.TaskActive, ETag: "0x1"}, Sealed: []byte{1}}
		}
		created, err := s.CreateTasks(ctx, "acct1", []*batch.TaskRecord{mk("t1"), mk("t2")})
		if err != nil || !created[0] || !created[1] {
			t.Fatalf("create tasks: %v %v", created, err)
		}
		created, err = s.CreateTasks(ctx, "acct1", []*batch.TaskRecord{mk("T1"), mk("t3")})
		if err != nil || created[0] || !created[1] {
			t.Fatalf("create tasks again: %v %v, want [false true]", created, err)
		}
		tk, err := s.Task(ctx, "acct1", "JOB-A", "t2")
		if err != nil || tk.ID != "t2" || tk.JobID != "Job-A" {
			t.Fatalf("read task: %+v %v", tk, err)
		}
		if o := tk.Outcome; o.ExitCode != nil || o.Result != "" || o.NodeID != "" || !o.LastRetryTime.IsZero() || tk.SealedFailureMessage != nil {
			t.Errorf("a new task has an outcome: %+v %q", o, tk.SealedFailureMessage)
		}
		// The state and the run's outcome are written together.
		exit := -3
		retried := time.Now().UTC().Truncate(time.Microsecond)
		tk.State, tk.ETag, tk.RetryCount = batch.TaskCompleted, "0x2", 3
		tk.Outcome = batch.TaskOutcome{ExitCode: &exit, Result: batch.TaskFailure, FailureCode: "FailureExitCode", PoolID: "pool1", NodeID: "node-1",
			LastRetryTime: retried, LastRequeueTime: retried.Add(time.Second)}
		tk.SealedFailureMessage = []byte{0x01, 0x00, 0xfe}
		if err := s.UpdateTask(ctx, "acct1", tk, "0x1"); err != nil {
			t.Fatal(err)
		}
		got, err := s.Task(ctx, "acct1", "job-a", "t2")
		if err != nil {
			t.Fatal(err)
		}
		if o := got.Outcome; o.ExitCode == nil || *o.ExitCode != -3 || o.Result != batch.TaskFailure || o.FailureCode != "FailureExitCode" ||
			o.PoolID != "pool1" || o.NodeID != "node-1" || !o.LastRetryTime.Equal(retried) || !o.LastRequeueTime.Equal(retried.Add(time.Second)) ||
			string(got.SealedFailureMessage) != "\x01\x00\xfe" || got.State != batch.TaskCompleted {
			t.Errorf("outcome read back: %+v %q", o, got.SealedFailureMessage)
		}
		// A new run clears it.
		got.State, got.ETag, got.Outcome, got.SealedFailureMessage = batch.TaskRunning, "0x3", batch.TaskOutcome{PoolID: "pool1", NodeID: "node-2"}, nil
		if err := s.UpdateTask(ctx, "acct1", got, "0x2"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Task(ctx, "acct1", "job-a", "t2"); got.Outcome.ExitCode != nil || got.Outcome.Result != "" || got.SealedFailureMessage != nil || got.Outcome.NodeID != "node-2" {
			t.Errorf("outcome after a new start: %+v %q", got.Outcome, got.SealedFailureMessage)
		}
		got.State, got.ETag, got.Outcome.Result = batch.TaskCompleted, "0x2", batch.TaskFailure
		if err := s.UpdateTask(ctx, "acct1", got, "0x3"); err != nil {
			t.Fatal(err)
		}
		ok := mk("t4")
		ok.State, ok.Outcome.Result = batch.TaskCompleted, batch.TaskSuccess
		if _, err := s.CreateTasks(ctx, "acct1", []*batch.TaskRecord{ok}); err != nil {
			t.Fatal(err)
		}
		if c, err := s.TaskCounts(ctx, "acct1", "job-a"); err != nil || c != (batch.TaskCounts{Active: 2, Completed: 2, Succeeded: 1, Failed: 1}) {
			t.Errorf("task counts: %+v %v", c, err)
		}
		if err := s.DeleteTask(ctx, "acct1", "job-a", "t4"); err != nil {
			t.Fatal(err)
		}
		states, err := s.TaskStates(ctx, "acct1", "job-a")
		if err != nil || states[batch.TaskActive] != 2 || states[batch.TaskCompleted] != 1 {
			t.Errorf("task states: %v %v", states, err)
		}
		ts, err := s.ListTasks(ctx, "acct1", "job-a", batch.ListOptions{States: []string{batch.TaskActive}})
		if err != nil || len(ts) != 2 {
			t.Errorf("active tasks: %v %v", ts, err)
		}
		if err := s.DeleteTask(ctx, "acct1", "job-a", "t1"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteTask(ctx, "acct1", "job-a", "t1"); custody.ErrorCode(err) != "TaskNotFound" {
			t.Errorf("delete a deleted task: %v", err)
		}
		if err := s.DeleteJob(ctx, "acct1", "job-a"); err != nil {
			t.Fatal(err)
		}
		if states, _ := s.TaskStates(ctx, "acct1", "job-a"); len(states) != 0 {
			t.Errorf("tasks left after their job was deleted: %v", states)
		}

		// Certificates.
		c := &batch.CertificateRecord{CertificateMeta: batch.CertificateMeta{ThumbprintAlgorithm: "sha1", Thumbprint: "abcd", State: batch.CertificateActive}, Sealed: []byte{1}}
		if err := s.CreateCertificate(ctx, "acct1", c); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateCertificate(ctx, "acct1", c); custody.ErrorCode(err) != "CertificateExists" {
			t.Errorf("duplicate certificate: %v", err)
		}
		c.State = batch.CertificateDeleting
		if err := s.UpdateCertificate(ctx, "acct1", c); err != nil {
			t.Fatal(err)
		}
		cs, err := s.ListCertificates(ctx, "acct1", batch.ListOptions{})
		if err != nil || len(cs) != 1 || cs[0].State != batch.CertificateDeleting {
			t.Errorf("certificates: %v %v", cs, err)
		}

		// Deleting an account's data leaves other accounts alone.
		if err := s.DeleteAccountData(ctx, "ACCT1"); err != nil {
			t.Fatal(err)
		}
		if js, _ := s.ListJobs(ctx, "acct1", batch.ListOptions{}); len(js) != 0 {
			t.Errorf("jobs left: %d", len(js))
		}
		if _, err := s.Certificate(ctx, "acct1", "sha1", "abcd"); custody.ErrorCode(err) != "CertificateNotFound" {
			t.Errorf("certificate after account delete: %v", err)
		}
		if js, _ := s.ListJobs(ctx, "acct2", batch.ListOptions{}); len(js) != 1 || !strings.EqualFold(js[0].ID, "job-a") {
			t.Errorf("other account's jobs: %v", js)
		}
	})
}
