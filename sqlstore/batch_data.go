package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"custody"
	"custody/batch"
)

// BatchDataStore implements batch.DataStore: the jobs, tasks and
// certificates of batch accounts. The spec column holds only sealed bytes.
type BatchDataStore struct{ DB *DB }

var _ batch.DataStore = (*BatchDataStore)(nil)

// optUnix stores the zero time as 0.
func optUnix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func optFromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return fromUnix(n)
}

func jobNotFound(id string) error {
	return custody.Errorf(custody.KindNotFound, "JobNotFound", "The specified job does not exist: there is no job %q in this account. List the jobs to see the ids in use.", id)
}

func taskNotFound(jobID, id string) error {
	return custody.Errorf(custody.KindNotFound, "TaskNotFound", "The specified task does not exist: job %q has no task %q. List the job's tasks to see the ids in use.", jobID, id)
}

func certNotFound(alg, tp string) error {
	return custody.Errorf(custody.KindNotFound, "CertificateNotFound", "The specified certificate does not exist: there is no certificate %s-%s in this account. List the certificates to see the thumbprints in use.", alg, tp)
}

func conditionNotMet(kind, id string) error {
	return custody.Errorf(custody.KindPreconditionFailed, "ConditionNotMet", "The %s %q was changed by another request; read it again and retry.", kind, id)
}

// statesClause appends "AND state IN (...)" for o.States to q, numbering
// placeholders after args.
func statesClause(q string, args []any, states []string) (string, []any) {
	if len(states) == 0 {
		return q, args
	}
	ph := make([]string, len(states))
	for i, s := range states {
		args = append(args, s)
		ph[i] = "$" + strconv.Itoa(len(args))
	}
	return q + " AND state IN (" + strings.Join(ph, ", ") + ")", args
}

func limitClause(q string, args []any, limit int) (string, []any) {
	if limit <= 0 {
		limit = batch.MaxPageSize + 1
	}
	args = append(args, limit)
	return q + " LIMIT $" + strconv.Itoa(len(args)), args
}

// ---- jobs ----

const jobCols = `id, pool_id, state, previous_state, etag, created_at, last_modified, state_since, previous_state_since, start_time, end_time, spec`

func jobArgs(j *batch.JobRecord) []any {
	return []any{j.ID, j.PoolID, j.State, j.PreviousState, j.ETag, optUnix(j.CreationTime), optUnix(j.LastModified),
		optUnix(j.StateTransitionTime), optUnix(j.PreviousStateTransitionTime), optUnix(j.StartTime), optUnix(j.EndTime), j.Sealed}
}

func scanJob(row interface{ Scan(...any) error }) (*batch.JobRecord, error) {
	var j batch.JobRecord
	var created, modified, since, prevSince, start, end int64
	if err := row.Scan(&j.ID, &j.PoolID, &j.State, &j.PreviousState, &j.ETag, &created, &modified, &since, &prevSince, &start, &end, &j.Sealed); err != nil {
		return nil, err
	}
	j.CreationTime, j.LastModified = optFromUnix(created), optFromUnix(modified)
	j.StateTransitionTime, j.PreviousStateTransitionTime = optFromUnix(since), optFromUnix(prevSince)
	j.StartTime, j.EndTime = optFromUnix(start), optFromUnix(end)
	return &j, nil
}

func (s *BatchDataStore) CreateJob(ctx context.Context, account string, j *batch.JobRecord) error {
	_, err := s.DB.db.ExecContext(ctx, `INSERT INTO batch_jobs (account_key, id_key, `+jobCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		append([]any{lower(account), lower(j.ID)}, jobArgs(j)...)...)
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "JobExists", "The specified job already exists: this account already has a job %q (job ids compare case-insensitively). Use another id, or delete the existing job first.", j.ID)
	}
	return dbErr(err, "insert batch job")
}

func (s *BatchDataStore) Job(ctx context.Context, account, id string) (*batch.JobRecord, error) {
	j, err := scanJob(s.DB.db.QueryRowContext(ctx, `SELECT `+jobCols+` FROM batch_jobs WHERE account_key = $1 AND id_key = $2`, lower(account), lower(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, jobNotFound(id)
	}
	return j, dbErr(err, "read batch job")
}

func (s *BatchDataStore) ListJobs(ctx context.Context, account string, o batch.ListOptions) ([]*batch.JobRecord, error) {
	q, args := `SELECT `+jobCols+` FROM batch_jobs WHERE account_key = $1 AND id_key > $2`, []any{lower(account), o.After}
	q, args = statesClause(q, args, o.States)
	q, args = limitClause(q+` ORDER BY id_key`, args, o.Limit)
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list batch jobs")
	}
	defer rows.Close()
	var out []*batch.JobRecord
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, dbErr(err, "scan batch job")
		}
		out = append(out, j)
	}
	return out, dbErr(rows.Err(), "list batch jobs")
}

func (s *BatchDataStore) UpdateJob(ctx context.Context, account string, j *batch.JobRecord, prevETag string) error {
	args := jobArgs(j)
	res, err := s.DB.db.ExecContext(ctx, `UPDATE batch_jobs SET pool_id = $1, state = $2, previous_state = $3, etag = $4,
		last_modified = $5, state_since = $6, previous_state_since = $7, start_time = $8, end_time = $9, spec = $10
		WHERE account_key = $11 AND id_key = $12 AND etag = $13`,
		args[1], args[2], args[3], args[4], args[6], args[7], args[8], args[9], args[10], args[11],
		lower(account), lower(j.ID), prevETag)
	if err != nil {
		return dbErr(err, "update batch job")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Job(ctx, account, j.ID); err != nil {
			return err
		}
		return conditionNotMet("job", j.ID)
	}
	return nil
}

// DeleteJob deletes a job, its remaining tasks and its task counts in one
// transaction. A job with many tasks has them deleted first, a batch at a
// time (DeleteJobTasks), so this transaction stays short.
func (s *BatchDataStore) DeleteJob(ctx context.Context, account, id string) error {
	return s.DB.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM batch_jobs WHERE account_key = $1 AND id_key = $2`, lower(account), lower(id))
		if err != nil {
			return dbErr(err, "delete batch job")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return jobNotFound(id)
		}
		if _, err = tx.ExecContext(ctx, `DELETE FROM batch_tasks WHERE account_key = $1 AND job_key = $2`, lower(account), lower(id)); err != nil {
			return dbErr(err, "delete batch job tasks")
		}
		for _, table := range []string{"batch_task_counts", "batch_task_count_deltas"} {
			if _, err = tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE account_key = $1 AND job_key = $2`, lower(account), lower(id)); err != nil {
				return dbErr(err, "delete batch job task counts")
			}
		}
		return nil
	})
}

// DeleteJobTasks deletes up to limit tasks of a job, those first in id
// order, and returns how many it deleted. It finds the limit-th id, then
// deletes the index range up to it: a plan that stays a range scan
// whatever the planner knows of the table (on PostgreSQL, "id_key IN
// (SELECT ... LIMIT n)" on a freshly filled table was planned as a nested
// loop: seconds a batch).
func (s *BatchDataStore) DeleteJobTasks(ctx context.Context, account, jobID string, limit int) (int, error) {
	var last string
	err := s.DB.db.QueryRowContext(ctx, `SELECT id_key FROM batch_tasks WHERE account_key = $1 AND job_key = $2 ORDER BY id_key LIMIT 1 OFFSET $3`,
		lower(account), lower(jobID), limit-1).Scan(&last)
	var res sql.Result
	switch {
	case errors.Is(err, sql.ErrNoRows): // fewer than limit left: all of them
		res, err = s.DB.db.ExecContext(ctx, `DELETE FROM batch_tasks WHERE account_key = $1 AND job_key = $2`, lower(account), lower(jobID))
	case err == nil:
		res, err = s.DB.db.ExecContext(ctx, `DELETE FROM batch_tasks WHERE account_key = $1 AND job_key = $2 AND id_key <= $3`, lower(account), lower(jobID), last)
	}
	if err != nil {
		return 0, dbErr(err, "delete batch job tasks")
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// DeleteAccountTasks deletes up to limit tasks of an account, of one of
// its jobs, and returns how many it deleted: 0 once none is left.
func (s *BatchDataStore) DeleteAccountTasks(ctx context.Context, account string, limit int) (int, error) {
	var job string
	err := s.DB.db.QueryRowContext(ctx, `SELECT job_key FROM batch_tasks WHERE account_key = $1 LIMIT 1`, lower(account)).Scan(&job)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, dbErr(err, "find batch account tasks")
	}
	return s.DeleteJobTasks(ctx, account, job, limit)
}

// JobsInState lists the jobs of every account in a state, as (account,
// job id) pairs, at most limit of them.
func (s *BatchDataStore) JobsInState(ctx context.Context, state string, limit int) ([][2]string, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT account_key, id FROM batch_jobs WHERE state = $1 ORDER BY account_key, id_key LIMIT $2`, state, limit)
	if err != nil {
		return nil, dbErr(err, "list batch jobs by state")
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var a, id string
		if err := rows.Scan(&a, &id); err != nil {
			return nil, dbErr(err, "scan batch job")
		}
		out = append(out, [2]string{a, id})
	}
	return out, dbErr(rows.Err(), "list batch jobs by state")
}

// ---- tasks ----

const taskCols = `job_id, id, state, previous_state, etag, created_at, last_modified, state_since, previous_state_since, retry_count, requeue_count, start_time, end_time, spec,
	exit_code, result, failure_code, failure_message, pool_id, node_id, last_retry_time, last_requeue_time`

// taskArgs are the values of taskCols, in order.
func taskArgs(t *batch.TaskRecord) []any {
	var exit any
	if t.Outcome.ExitCode != nil {
		exit = int64(*t.Outcome.ExitCode)
	}
	var failure any
	if len(t.SealedFailureMessage) > 0 {
		failure = t.SealedFailureMessage
	}
	o := t.Outcome
	return []any{t.JobID, t.ID, t.State, t.PreviousState, t.ETag, optUnix(t.CreationTime), optUnix(t.LastModified),
		optUnix(t.StateTransitionTime), optUnix(t.PreviousStateTransitionTime), t.RetryCount, t.RequeueCount,
		optUnix(t.StartTime), optUnix(t.EndTime), t.Sealed,
		exit, o.Result, o.FailureCode, failure, o.PoolID, o.NodeID, optUnix(o.LastRetryTime), optUnix(o.LastRequeueTime)}
}

func scanTask(row interface{ Scan(...any) error }) (*batch.TaskRecord, error) {
	var t batch.TaskRecord
	var created, modified, since, prevSince, start, end, retried, requeued int64
	var exit sql.NullInt64
	o := &t.Outcome
	if err := row.Scan(&t.JobID, &t.ID, &t.State, &t.PreviousState, &t.ETag, &created, &modified, &since, &prevSince,
		&t.RetryCount, &t.RequeueCount, &start, &end, &t.Sealed,
		&exit, &o.Result, &o.FailureCode, &t.SealedFailureMessage, &o.PoolID, &o.NodeID, &retried, &requeued); err != nil {
		return nil, err
	}
	t.CreationTime, t.LastModified = optFromUnix(created), optFromUnix(modified)
	t.StateTransitionTime, t.PreviousStateTransitionTime = optFromUnix(since), optFromUnix(prevSince)
	t.StartTime, t.EndTime = optFromUnix(start), optFromUnix(end)
	if exit.Valid {
		code := int(exit.Int64)
		o.ExitCode = &code
	}
	if len(t.SealedFailureMessage) == 0 {
		t.SealedFailureMessage = nil
	}
	o.LastRetryTime, o.LastRequeueTime = optFromUnix(retried), optFromUnix(requeued)
	return &t, nil
}

// CreateTasks inserts tasks and adds them to their job's counts in the
// same transaction: it is the one place tasks are inserted.
func (s *BatchDataStore) CreateTasks(ctx context.Context, account string, ts []*batch.TaskRecord) ([]bool, error) {
	created := make([]bool, len(ts))
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO batch_tasks (account_key, job_key, id_key, `+taskCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
				$18, $19, $20, $21, $22, $23, $24, $25)
			ON CONFLICT (account_key, job_key, id_key) DO NOTHING`)
		if err != nil {
			return dbErr(err, "prepare task insert")
		}
		defer stmt.Close()
		type countKey struct{ job, state, result string }
		counts := map[countKey]int{}
		for i, t := range ts {
			res, err := stmt.ExecContext(ctx, append([]any{lower(account), lower(t.JobID), lower(t.ID)}, taskArgs(t)...)...)
			if err != nil {
				return dbErr(err, "insert batch task")
			}
			n, _ := res.RowsAffected()
			created[i] = n == 1
			if created[i] {
				counts[countKey{lower(t.JobID), t.State, t.Outcome.Result}]++
			}
		}
		// The created tasks join their job's counts (batch_task_counts;
		// triggers count updates and deletes, migrate_task_counts.go).
		keys := make([]countKey, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			a, b := keys[i], keys[j]
			return a.job < b.job || a.job == b.job && (a.state < b.state || a.state == b.state && a.result < b.result)
		})
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO batch_task_counts (account_key, job_key, state, result, n) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (account_key, job_key, state, result) DO UPDATE SET n = batch_task_counts.n + $5`,
				lower(account), k.job, k.state, k.result, counts[k]); err != nil {
				return dbErr(err, "count inserted batch tasks")
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created, nil
}

func (s *BatchDataStore) Task(ctx context.Context, account, jobID, id string) (*batch.TaskRecord, error) {
	t, err := scanTask(s.DB.db.QueryRowContext(ctx, `SELECT `+taskCols+` FROM batch_tasks WHERE account_key = $1 AND job_key = $2 AND id_key = $3`,
		lower(account), lower(jobID), lower(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, taskNotFound(jobID, id)
	}
	return t, dbErr(err, "read batch task")
}

// ListTasks reads a page of a job's tasks in id order, after o.After
// (keyset paging: each page is an index range scan, however deep). With
// several states, each state is read by the state index on its own and the
// pages merged, so that a rare state is never found by scanning the job's
// other tasks.
func (s *BatchDataStore) ListTasks(ctx context.Context, account, jobID string, o batch.ListOptions) ([]*batch.TaskRecord, error) {
	if len(o.States) <= 1 {
		return s.listTasks(ctx, account, jobID, o)
	}
	var out []*batch.TaskRecord
	seen := map[string]bool{}
	for _, st := range o.States {
		if seen[st] {
			continue
		}
		seen[st] = true
		one := o
		one.States = []string{st}
		ts, err := s.listTasks(ctx, account, jobID, one)
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	sort.Slice(out, func(i, j int) bool { return lower(out[i].ID) < lower(out[j].ID) })
	limit := o.Limit
	if limit <= 0 {
		limit = batch.MaxPageSize + 1
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *BatchDataStore) listTasks(ctx context.Context, account, jobID string, o batch.ListOptions) ([]*batch.TaskRecord, error) {
	q, args := `SELECT `+taskCols+` FROM batch_tasks WHERE account_key = $1 AND job_key = $2 AND id_key > $3`, []any{lower(account), lower(jobID), o.After}
	q, args = statesClause(q, args, o.States)
	q, args = limitClause(q+` ORDER BY id_key`, args, o.Limit)
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list batch tasks")
	}
	defer rows.Close()
	var out []*batch.TaskRecord
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, dbErr(err, "scan batch task")
		}
		out = append(out, t)
	}
	return out, dbErr(rows.Err(), "list batch tasks")
}

// UpdateTask writes a task's state, counts, times, spec and last run
// outcome in one statement, if its stored etag is still prevETag.
func (s *BatchDataStore) UpdateTask(ctx context.Context, account string, t *batch.TaskRecord, prevETag string) error {
	a := taskArgs(t)
	fence, fenceArgs := fenceClause(ctx, 24)
	res, err := s.DB.db.ExecContext(ctx, updateTaskSQL+fence,
		append([]any{a[2], a[3], a[4], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
			a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21],
			lower(account), lower(t.JobID), lower(t.ID), prevETag}, fenceArgs...)...)
	if err != nil {
		return dbErr(err, "update batch task")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if err := s.DB.checkFence(ctx); err != nil {
			return err
		}
		if _, err := s.Task(ctx, account, t.JobID, t.ID); err != nil {
			return err
		}
		return conditionNotMet("task", t.ID)
	}
	return nil
}

const updateTaskSQL = `UPDATE batch_tasks SET state = $1, previous_state = $2, etag = $3, last_modified = $4,
		state_since = $5, previous_state_since = $6, retry_count = $7, requeue_count = $8, start_time = $9, end_time = $10, spec = $11,
		exit_code = $12, result = $13, failure_code = $14, failure_message = $15, pool_id = $16, node_id = $17,
		last_retry_time = $18, last_requeue_time = $19
		WHERE account_key = $20 AND job_key = $21 AND id_key = $22 AND etag = $23`

// UpdateTasks writes many tasks' changes in one transaction, each only if
// its stored etag is still the one in prevETags; updated[i] says whether
// ts[i] was written (false: changed or deleted meanwhile).
func (s *BatchDataStore) UpdateTasks(ctx context.Context, account string, ts []*batch.TaskRecord, prevETags []string) ([]bool, error) {
	if len(ts) != len(prevETags) {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidRequest", "UpdateTasks needs one previous etag per task (%d tasks, %d etags).", len(ts), len(prevETags))
	}
	updated := make([]bool, len(ts))
	if len(ts) == 0 {
		return updated, nil
	}
	fence, fenceArgs := fenceClause(ctx, 24)
	query := updateTaskSQL + fence
	prepared := s.DB.db.stmt(ctx, query)
	missed := false
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		stmt, err := txStmt(ctx, tx, prepared, query)
		if err != nil {
			return dbErr(err, "prepare task update")
		}
		defer stmt.Close()
		for i, t := range ts {
			a := taskArgs(t)
			res, err := stmt.ExecContext(ctx, append([]any{a[2], a[3], a[4], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
				a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21],
				lower(account), lower(t.JobID), lower(t.ID), prevETags[i]}, fenceArgs...)...)
			if err != nil {
				return dbErr(err, "update batch task")
			}
			n, _ := res.RowsAffected()
			updated[i] = n == 1
			missed = missed || n != 1
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if missed {
		// A fenced write that moved nothing may have found the fence
		// moved: then none of them counts.
		if err := s.DB.checkFence(ctx); err != nil {
			return nil, err
		}
	}
	return updated, nil
}

func (s *BatchDataStore) DeleteTask(ctx context.Context, account, jobID, id string) error {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM batch_tasks WHERE account_key = $1 AND job_key = $2 AND id_key = $3`, lower(account), lower(jobID), lower(id))
	if err != nil {
		return dbErr(err, "delete batch task")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return taskNotFound(jobID, id)
	}
	return nil
}

// TaskStates and TaskCounts read batch_task_counts, kept in step with
// batch_tasks by CreateTasks and triggers (migrate_task_counts.go), plus
// the deltas PostgreSQL's triggers append until CompactTaskCounts folds
// them in: a few rows, whatever the number of tasks.

const taskCountsQuery = `SELECT state, result, SUM(n) FROM (
	SELECT state, result, n FROM batch_task_counts WHERE account_key = $1 AND job_key = $2
	UNION ALL SELECT state, result, n FROM batch_task_count_deltas WHERE account_key = $1 AND job_key = $2) AS x
	GROUP BY state, result`

// countDeltasToCompact is the number of delta rows from which a job's
// deltas are folded into its count rows.
const countDeltasToCompact = 64

// CompactTaskCounts folds the count deltas of jobs with many into their
// count rows, each job in one statement that waits on no lock while
// holding another. Only PostgreSQL appends deltas.
func (s *BatchDataStore) CompactTaskCounts(ctx context.Context) error {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT account_key, job_key FROM batch_task_count_deltas
		GROUP BY account_key, job_key HAVING COUNT(*) >= $1 LIMIT 1000`, countDeltasToCompact)
	if err != nil {
		return dbErr(err, "find task count deltas")
	}
	var jobs [][2]string
	for rows.Next() {
		var a, j string
		if err := rows.Scan(&a, &j); err != nil {
			rows.Close()
			return dbErr(err, "scan task count deltas")
		}
		jobs = append(jobs, [2]string{a, j})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return dbErr(err, "find task count deltas")
	}
	for _, j := range jobs {
		// PostgreSQL only (a data-modifying WITH): SQLite never has deltas.
		if _, err := s.DB.db.ExecContext(ctx, `WITH d AS (
				DELETE FROM batch_task_count_deltas WHERE account_key = $1 AND job_key = $2 RETURNING state, result, n)
			INSERT INTO batch_task_counts AS c (account_key, job_key, state, result, n)
				SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), state, result, SUM(n) FROM d GROUP BY state, result ORDER BY state, result
			ON CONFLICT (account_key, job_key, state, result) DO UPDATE SET n = c.n + EXCLUDED.n`, j[0], j[1]); err != nil {
			return dbErr(err, "compact task counts")
		}
	}
	return nil
}

func (s *BatchDataStore) TaskStates(ctx context.Context, account, jobID string) (map[string]int, error) {
	rows, err := s.DB.db.QueryContext(ctx, taskCountsQuery, lower(account), lower(jobID))
	if err != nil {
		return nil, dbErr(err, "count batch tasks")
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st, result string
		var n int64
		if err := rows.Scan(&st, &result, &n); err != nil {
			return nil, dbErr(err, "scan task count")
		}
		if n != 0 {
			out[st] += int(n)
		}
	}
	return out, dbErr(rows.Err(), "count batch tasks")
}

func (s *BatchDataStore) TaskCounts(ctx context.Context, account, jobID string) (batch.TaskCounts, error) {
	rows, err := s.DB.db.QueryContext(ctx, taskCountsQuery, lower(account), lower(jobID))
	if err != nil {
		return batch.TaskCounts{}, dbErr(err, "count batch tasks")
	}
	defer rows.Close()
	var c batch.TaskCounts
	for rows.Next() {
		var st, result string
		var n64 int64
		if err := rows.Scan(&st, &result, &n64); err != nil {
			return batch.TaskCounts{}, dbErr(err, "scan task count")
		}
		n := int32(n64)
		switch st {
		case batch.TaskActive, batch.TaskPreparing:
			c.Active += n
		case batch.TaskRunning:
			c.Running += n
		case batch.TaskCompleted:
			c.Completed += n
			if result == batch.TaskFailure {
				c.Failed += n
			} else {
				c.Succeeded += n
			}
		}
	}
	return c, dbErr(rows.Err(), "count batch tasks")
}

// ---- certificates ----

const certCols = `thumbprint_algorithm, thumbprint, state, previous_state, created_at, state_since, previous_state_since, spec`

func certKey(alg, tp string) string { return lower(alg) + "-" + lower(tp) }

func scanCert(row interface{ Scan(...any) error }) (*batch.CertificateRecord, error) {
	var c batch.CertificateRecord
	var created, since, prevSince int64
	if err := row.Scan(&c.ThumbprintAlgorithm, &c.Thumbprint, &c.State, &c.PreviousState, &created, &since, &prevSince, &c.Sealed); err != nil {
		return nil, err
	}
	c.CreationTime, c.StateTransitionTime, c.PreviousStateTransitionTime = optFromUnix(created), optFromUnix(since), optFromUnix(prevSince)
	return &c, nil
}

func (s *BatchDataStore) CreateCertificate(ctx context.Context, account string, c *batch.CertificateRecord) error {
	_, err := s.DB.db.ExecContext(ctx, `INSERT INTO batch_certificates (account_key, id_key, `+certCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		lower(account), certKey(c.ThumbprintAlgorithm, c.Thumbprint), c.ThumbprintAlgorithm, c.Thumbprint, c.State, c.PreviousState,
		optUnix(c.CreationTime), optUnix(c.StateTransitionTime), optUnix(c.PreviousStateTransitionTime), c.Sealed)
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "CertificateExists", "The specified certificate already exists: this account already has certificate %s-%s. Delete it first to upload it again.", c.ThumbprintAlgorithm, c.Thumbprint)
	}
	return dbErr(err, "insert batch certificate")
}

func (s *BatchDataStore) Certificate(ctx context.Context, account, alg, tp string) (*batch.CertificateRecord, error) {
	c, err := scanCert(s.DB.db.QueryRowContext(ctx, `SELECT `+certCols+` FROM batch_certificates WHERE account_key = $1 AND id_key = $2`, lower(account), certKey(alg, tp)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, certNotFound(alg, tp)
	}
	return c, dbErr(err, "read batch certificate")
}

func (s *BatchDataStore) ListCertificates(ctx context.Context, account string, o batch.ListOptions) ([]*batch.CertificateRecord, error) {
	q, args := `SELECT `+certCols+` FROM batch_certificates WHERE account_key = $1 AND id_key > $2`, []any{lower(account), o.After}
	q, args = statesClause(q, args, o.States)
	q, args = limitClause(q+` ORDER BY id_key`, args, o.Limit)
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list batch certificates")
	}
	defer rows.Close()
	var out []*batch.CertificateRecord
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, dbErr(err, "scan batch certificate")
		}
		out = append(out, c)
	}
	return out, dbErr(rows.Err(), "list batch certificates")
}

func (s *BatchDataStore) UpdateCertificate(ctx context.Context, account string, c *batch.CertificateRecord) error {
	res, err := s.DB.db.ExecContext(ctx, `UPDATE batch_certificates SET state = $1, previous_state = $2, state_since = $3, previous_state_since = $4, spec = $5
		WHERE account_key = $6 AND id_key = $7`,
		c.State, c.PreviousState, optUnix(c.StateTransitionTime), optUnix(c.PreviousStateTransitionTime), c.Sealed,
		lower(account), certKey(c.ThumbprintAlgorithm, c.Thumbprint))
	if err != nil {
		return dbErr(err, "update batch certificate")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return certNotFound(c.ThumbprintAlgorithm, c.Thumbprint)
	}
	return nil
}

func (s *BatchDataStore) DeleteCertificate(ctx context.Context, account, alg, tp string) error {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM batch_certificates WHERE account_key = $1 AND id_key = $2`, lower(account), certKey(alg, tp))
	if err != nil {
		return dbErr(err, "delete batch certificate")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return certNotFound(alg, tp)
	}
	return nil
}

// DeleteAccountData deletes all jobs, tasks, job schedules and certificates
// of an account in one transaction.
func (s *BatchDataStore) DeleteAccountData(ctx context.Context, account string) error {
	return s.DB.Tx(ctx, func(tx *sql.Tx) error {
		for _, table := range []string{"batch_tasks", "batch_task_counts", "batch_jobs", "batch_job_schedules", "batch_auto_pools", "batch_certificates"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE account_key = $1`, lower(account)); err != nil {
				return dbErr(err, "delete account data from "+table)
			}
		}
		return nil
	})
}
