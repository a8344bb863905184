package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"custody"
	"custody/batch"
)

// BatchJobScheduleStore implements batch.JobScheduleStore: the job
// schedules of batch accounts (and the listing of the jobs each created).
// The spec column holds only sealed bytes.
type BatchJobScheduleStore struct{ DB *DB }

var _ batch.JobScheduleStore = (*BatchJobScheduleStore)(nil)

func scheduleNotFound(id string) error {
	return custody.Errorf(custody.KindNotFound, "JobScheduleNotFound", "The specified job schedule does not exist: there is no job schedule %q in this account. List the job schedules to see the ids in use.", id)
}

const scheduleCols = `id, state, previous_state, etag, created_at, last_modified, state_since, previous_state_since, end_time,
	next_run, last_run, job_count, recent_job_id, spec`

func scheduleArgs(s *batch.JobScheduleRecord) []any {
	return []any{s.ID, s.State, s.PreviousState, s.ETag, optUnix(s.CreationTime), optUnix(s.LastModified),
		optUnix(s.StateTransitionTime), optUnix(s.PreviousStateTransitionTime), optUnix(s.EndTime),
		optUnix(s.NextRunTime), optUnix(s.LastRunTime), s.JobCount, s.RecentJobID, s.Sealed}
}

func scanSchedule(row interface{ Scan(...any) error }, account *string) (*batch.JobScheduleRecord, error) {
	var s batch.JobScheduleRecord
	var created, modified, since, prevSince, end, next, last int64
	dest := []any{&s.ID, &s.State, &s.PreviousState, &s.ETag, &created, &modified, &since, &prevSince, &end,
		&next, &last, &s.JobCount, &s.RecentJobID, &s.Sealed}
	if account != nil {
		dest = append(dest, account)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	s.CreationTime, s.LastModified = optFromUnix(created), optFromUnix(modified)
	s.StateTransitionTime, s.PreviousStateTransitionTime = optFromUnix(since), optFromUnix(prevSince)
	s.EndTime, s.NextRunTime, s.LastRunTime = optFromUnix(end), optFromUnix(next), optFromUnix(last)
	return &s, nil
}

func (s *BatchJobScheduleStore) CreateJobSchedule(ctx context.Context, account string, r *batch.JobScheduleRecord) error {
	_, err := s.DB.db.ExecContext(ctx, `INSERT INTO batch_job_schedules (account_key, id_key, `+scheduleCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		append([]any{lower(account), lower(r.ID)}, scheduleArgs(r)...)...)
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "JobScheduleExists", "The specified job schedule already exists: this account already has a job schedule %q (ids compare case-insensitively). Use another id, or delete the existing schedule first.", r.ID)
	}
	return dbErr(err, "insert batch job schedule")
}

func (s *BatchJobScheduleStore) JobSchedule(ctx context.Context, account, id string) (*batch.JobScheduleRecord, error) {
	r, err := scanSchedule(s.DB.db.QueryRowContext(ctx, `SELECT `+scheduleCols+` FROM batch_job_schedules WHERE account_key = $1 AND id_key = $2`,
		lower(account), lower(id)), nil)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, scheduleNotFound(id)
	}
	if err != nil {
		return nil, dbErr(err, "read batch job schedule")
	}
	r.Account = account
	return r, nil
}

func (s *BatchJobScheduleStore) ListJobSchedules(ctx context.Context, account string, o batch.ListOptions) ([]*batch.JobScheduleRecord, error) {
	q, args := `SELECT `+scheduleCols+` FROM batch_job_schedules WHERE account_key = $1 AND id_key > $2`, []any{lower(account), o.After}
	q, args = statesClause(q, args, o.States)
	q, args = limitClause(q+` ORDER BY id_key`, args, o.Limit)
	return s.scan(ctx, q, args, false, account)
}

func (s *BatchJobScheduleStore) scan(ctx context.Context, q string, args []any, withAccount bool, account string) ([]*batch.JobScheduleRecord, error) {
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list batch job schedules")
	}
	defer rows.Close()
	var out []*batch.JobScheduleRecord
	for rows.Next() {
		acct := account
		var p *string
		if withAccount {
			p = &acct
		}
		r, err := scanSchedule(rows, p)
		if err != nil {
			return nil, dbErr(err, "scan batch job schedule")
		}
		r.Account = acct
		out = append(out, r)
	}
	return out, dbErr(rows.Err(), "list batch job schedules")
}

func (s *BatchJobScheduleStore) UpdateJobSchedule(ctx context.Context, account string, r *batch.JobScheduleRecord, prevETag string) error {
	a := scheduleArgs(r)
	res, err := s.DB.db.ExecContext(ctx, `UPDATE batch_job_schedules SET state = $1, previous_state = $2, etag = $3, last_modified = $4,
		state_since = $5, previous_state_since = $6, end_time = $7, next_run = $8, last_run = $9, job_count = $10, recent_job_id = $11, spec = $12
		WHERE account_key = $13 AND id_key = $14 AND etag = $15`,
		a[1], a[2], a[3], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
		lower(account), lower(r.ID), prevETag)
	if err != nil {
		return dbErr(err, "update batch job schedule")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.JobSchedule(ctx, account, r.ID); err != nil {
			return err
		}
		return conditionNotMet("job schedule", r.ID)
	}
	return nil
}

func (s *BatchJobScheduleStore) DeleteJobSchedule(ctx context.Context, account, id string) error {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM batch_job_schedules WHERE account_key = $1 AND id_key = $2`, lower(account), lower(id))
	if err != nil {
		return dbErr(err, "delete batch job schedule")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return scheduleNotFound(id)
	}
	return nil
}

// DueJobSchedules reads due active schedules and ending ones in two
// queries, each answered from the (state, next_run) index.
func (s *BatchJobScheduleStore) DueJobSchedules(ctx context.Context, now time.Time, limit int) ([]*batch.JobScheduleRecord, error) {
	due, err := s.scan(ctx, `SELECT `+scheduleCols+`, account_key FROM batch_job_schedules
		WHERE state = $1 AND next_run <= $2 ORDER BY next_run LIMIT $3`, []any{batch.ScheduleActive, now.UnixNano(), limit}, true, "")
	if err != nil {
		return nil, err
	}
	ending, err := s.scan(ctx, `SELECT `+scheduleCols+`, account_key FROM batch_job_schedules
		WHERE state IN ($1, $2) LIMIT $3`, []any{batch.ScheduleTerminating, batch.ScheduleDeleting, limit}, true, "")
	if err != nil {
		return nil, err
	}
	return append(ending, due...), nil
}

// ListScheduleJobs lists the jobs whose ids start with {scheduleId}:job-,
// which only a schedule can create (a job id cannot hold a colon).
func (s *BatchJobScheduleStore) ListScheduleJobs(ctx context.Context, account, scheduleID string, o batch.ListOptions) ([]*batch.JobRecord, error) {
	prefix := lower(scheduleID) + ":job-"
	q, args := `SELECT `+jobCols+` FROM batch_jobs WHERE account_key = $1 AND substr(id_key, 1, $2) = $3 AND id_key > $4`,
		[]any{lower(account), len(prefix), prefix, o.After}
	q, args = statesClause(q, args, o.States)
	q, args = limitClause(q+` ORDER BY id_key`, args, o.Limit)
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list a job schedule's jobs")
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
	return out, dbErr(rows.Err(), "list a job schedule's jobs")
}
