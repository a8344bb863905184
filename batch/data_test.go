package batch_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"custody"
	"custody/batch"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// fakeKeys gives each account a fixed UID and DEK.
type fakeKeys map[string]*batch.Account

func (f fakeKeys) DEK(_ context.Context, name string) (*batch.Account, *batch.DEK, error) {
	a, ok := f[name]
	if !ok {
		return nil, nil, custody.Errorf(custody.KindNotFound, "ResourceNotFound", "no account %s", name)
	}
	if a.Key.State == batch.KeyInaccessible {
		return nil, nil, custody.Errorf(custody.KindConflict, "AccountKeyInaccessible", "locked")
	}
	d, err := batch.NewDEK(bytes.Repeat([]byte{byte(len(a.UID))}, 32), 1)
	return a, d, err
}

func newDataService(t *testing.T, db *sqlstore.DB) (*batch.DataService, fakeKeys) {
	t.Helper()
	keys := fakeKeys{
		"acct1": {Name: "acct1", UID: "uid-of-account-one"},
		// The same DEK as acct1 with another UID: only the UID in the
		// associated data tells their ciphertexts apart.
		"acct2": {Name: "acct2", UID: "uid-of-account-two"},
	}
	return &batch.DataService{Keys: keys, Store: &sqlstore.BatchDataStore{DB: db}}, keys
}

func ptr[T any](v T) *T { return &v }

func TestDataSealsCustomerFieldsAndBindsThemToTheirRecord(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testDataSeals)
}

func testDataSeals(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	d, keys := newDataService(t, db)
	canary := "canary-7f3a9e"
	spec := batch.JobSpec{PoolInfo: batch.PoolInfo{PoolID: "pool1"}, DisplayName: ptr(canary + "-display"),
		Metadata: []batch.MetadataItem{{Name: "m", Value: canary + "-metadata"}}}
	for _, id := range []string{"job-a", "job-b"} {
		if _, err := d.AddJob(ctx, "acct1", id, spec); err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
	}
	if _, err := d.AddJob(ctx, "acct2", "job-a", spec); err != nil {
		t.Fatal(err)
	}
	res, err := d.AddTasks(ctx, "acct1", "job-a", []batch.NewTask{{ID: "t1", Spec: batch.TaskSpec{CommandLine: canary + "-command"}}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("add task: %v %v", err, res)
	}

	// Nothing readable in the stored rows; ids and states in the clear.
	var all []byte
	for _, q := range []string{`SELECT spec FROM batch_jobs`, `SELECT spec FROM batch_tasks`} {
		rows, err := db.SQL().Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			if b[0] != 0x01 {
				t.Errorf("stored spec does not start with the format version: %x", b[:5])
			}
			all = append(all, b...)
		}
		rows.Close()
	}
	if bytes.Contains(all, []byte(canary)) {
		t.Fatal("a stored spec holds customer plaintext")
	}
	var state, pool string
	if err := db.SQL().QueryRow(`SELECT state, pool_id FROM batch_jobs WHERE account_key = 'acct1' AND id_key = 'job-a'`).Scan(&state, &pool); err != nil || state != "active" || pool != "pool1" {
		t.Fatalf("clear columns: state %q pool %q err %v", state, pool, err)
	}
	j, err := d.GetJob(ctx, "acct1", "JOB-A")
	if err != nil || *j.Spec.DisplayName != canary+"-display" {
		t.Fatalf("get job: %v %v", j, err)
	}

	// A spec moved to another job of the same account, or to the same job
	// id in another account, does not open.
	move := func(q string, args ...any) {
		t.Helper()
		if _, err := db.SQL().Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	var specA, specB []byte
	if err := db.SQL().QueryRow(`SELECT spec FROM batch_jobs WHERE account_key = 'acct1' AND id_key = 'job-a'`).Scan(&specA); err != nil {
		t.Fatal(err)
	}
	if err := db.SQL().QueryRow(`SELECT spec FROM batch_jobs WHERE account_key = 'acct1' AND id_key = 'job-b'`).Scan(&specB); err != nil {
		t.Fatal(err)
	}
	move(`UPDATE batch_jobs SET spec = $1 WHERE account_key = 'acct1' AND id_key = 'job-a'`, specB)
	if _, err := d.GetJob(ctx, "acct1", "job-a"); custody.ErrorKind(err) != custody.KindInternal {
		t.Errorf("get job with another job's spec: %v, want an internal (authentication) error", err)
	}
	if _, err := d.GetJob(ctx, "acct2", "job-a"); err != nil {
		t.Fatalf("get acct2's own job: %v", err)
	}
	move(`UPDATE batch_jobs SET spec = $1 WHERE account_key = 'acct2' AND id_key = 'job-a'`, specA)
	if _, err := d.GetJob(ctx, "acct2", "job-a"); custody.ErrorKind(err) != custody.KindInternal {
		t.Errorf("get job with another account's spec: %v, want an internal (authentication) error", err)
	}
	// A task spec moved into a job row does not open either.
	var taskSpec []byte
	if err := db.SQL().QueryRow(`SELECT spec FROM batch_tasks`).Scan(&taskSpec); err != nil {
		t.Fatal(err)
	}
	move(`UPDATE batch_jobs SET spec = $1 WHERE account_key = 'acct1' AND id_key = 'job-b'`, taskSpec)
	if _, err := d.GetJob(ctx, "acct1", "job-b"); custody.ErrorKind(err) != custody.KindInternal {
		t.Errorf("get job with a task's spec: %v, want an internal (authentication) error", err)
	}

	// A task's failure message is sealed too, bound to its task.
	if _, err := d.AddJob(ctx, "acct1", "job-c", spec); err != nil {
		t.Fatal(err)
	}
	res, err = d.AddTasks(ctx, "acct1", "job-c", []batch.NewTask{{ID: "t1", Spec: batch.TaskSpec{CommandLine: "x"}}, {ID: "t2", Spec: batch.TaskSpec{CommandLine: "x"}}})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("add tasks: %v %v", err, res)
	}
	for _, id := range []string{"t1", "t2"} {
		if _, err := d.TerminateTask(ctx, "acct1", "job-c", id, ""); err != nil {
			t.Fatal(err)
		}
	}
	if tk, err := d.GetTask(ctx, "acct1", "job-c", "t1"); err != nil || tk.FailureMessage == "" || tk.Outcome.FailureCode != "TaskEnded" {
		t.Fatalf("terminated task: %+v %v", tk, err)
	}
	var failure, result []byte
	if err := db.SQL().QueryRow(`SELECT failure_message, result FROM batch_tasks WHERE account_key = 'acct1' AND job_key = 'job-c' AND id_key = 't2'`).Scan(&failure, &result); err != nil {
		t.Fatal(err)
	}
	if len(failure) == 0 || failure[0] != 0x01 || bytes.Contains(failure, []byte("terminated")) || string(result) != batch.TaskFailure {
		t.Errorf("stored failure message %q (result %q), want it sealed", failure, result)
	}
	move(`UPDATE batch_tasks SET failure_message = $1 WHERE account_key = 'acct1' AND job_key = 'job-c' AND id_key = 't1'`, failure)
	if _, err := d.GetTask(ctx, "acct1", "job-c", "t1"); custody.ErrorKind(err) != custody.KindInternal {
		t.Errorf("get task with another task's failure message: %v, want an internal (authentication) error", err)
	}

	// A locked account refuses every call; deleting its data still works.
	keys["acct1"].Key.State = batch.KeyInaccessible
	if _, err := d.GetJob(ctx, "acct1", "job-a"); custody.ErrorCode(err) != "AccountKeyInaccessible" {
		t.Errorf("get job of a locked account: %v", err)
	}
	if err := d.DeleteAccountData(ctx, "acct1"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM batch_tasks WHERE account_key = 'acct1'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("tasks left after account data delete: %d %v", n, err)
	}
	if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM batch_jobs WHERE account_key = 'acct2'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("other account's jobs after delete: %d %v, want 1", n, err)
	}
}

func TestFilter(t *testing.T) {
	props := map[string]string{"state": "active", "id": "Job-7", "previousstate": ""}
	tests := []struct {
		expr   string
		match  bool
		states string
	}{
		{"", true, ""},
		{"state eq 'active'", true, "active"},
		{"state eq 'ACTIVE'", true, "active"},
		{"state eq 'completed'", false, "completed"},
		{"state eq 'completed' or state eq 'active'", true, "completed,active"},
		{"(state eq 'completed' or state eq 'active')", true, "completed,active"},
		{"state ne 'active'", false, ""},
		{"state eq 'active' and id eq 'job-7'", true, "active"},
		{"state eq 'active' and not (id eq 'job-7')", false, "active"},
		{"startswith(id,'job-') and (state eq 'completed' or state eq 'active')", true, "completed,active"},
		{"state eq 'active' or id eq 'job-7'", true, ""},
		{"startswith(id,'job-')", true, ""},
		{"startswith(id, 'x')", false, ""},
		{"id eq 'it''s'", false, ""},
	}
	for _, tt := range tests {
		f, err := batch.ParseFilter(tt.expr, "state", "id")
		if err != nil {
			t.Errorf("%q: %v", tt.expr, err)
			continue
		}
		if got := f.Match(props); got != tt.match {
			t.Errorf("%q matches = %v, want %v", tt.expr, got, tt.match)
		}
		if got := strings.Join(f.States(), ","); got != tt.states {
			t.Errorf("%q states = %q, want %q", tt.expr, got, tt.states)
		}
	}
	for _, bad := range []string{"state", "state eq", "state eq active", "state gt 'a'", "displayName eq 'x'", "state eq 'a' and", "(state eq 'a'", "state eq 'a", "startswith(state 'a')", strings.Repeat("(", 40) + "state eq 'a'" + strings.Repeat(")", 40)} {
		if _, err := batch.ParseFilter(bad, "state", "id"); custody.ErrorKind(err) != custody.KindInvalid || custody.ErrorCode(err) != "InvalidQueryParameterValue" {
			t.Errorf("%q: error %v, want InvalidQueryParameterValue", bad, err)
		}
	}
}
