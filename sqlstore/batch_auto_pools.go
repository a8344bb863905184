package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"custody"
	"custody/batch"
)

// BatchAutoPoolStore implements batch.AutoPoolStore: which job or job
// schedule each auto pool belongs to.
type BatchAutoPoolStore struct{ DB *DB }

var _ batch.AutoPoolStore = (*BatchAutoPoolStore)(nil)

const autoPoolCols = `account, pool_id, owner_kind, owner_id, keep_alive, bound, created_at`

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func scanAutoPool(row interface{ Scan(...any) error }) (*batch.AutoPoolRecord, error) {
	var r batch.AutoPoolRecord
	var keep, bound int
	var created int64
	if err := row.Scan(&r.Account, &r.PoolID, &r.OwnerKind, &r.OwnerID, &keep, &bound, &created); err != nil {
		return nil, err
	}
	r.KeepAlive, r.Bound, r.CreatedAt = keep != 0, bound != 0, optFromUnix(created)
	return &r, nil
}

func (s *BatchAutoPoolStore) AddAutoPool(ctx context.Context, r *batch.AutoPoolRecord) error {
	_, err := s.DB.db.ExecContext(ctx, `INSERT INTO batch_auto_pools (account_key, pool_key, owner_key, `+autoPoolCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		lower(r.Account), lower(r.PoolID), lower(r.OwnerID), r.Account, r.PoolID, r.OwnerKind, r.OwnerID,
		boolInt(r.KeepAlive), boolInt(r.Bound), optUnix(r.CreatedAt))
	return dbErr(err, "insert batch auto pool")
}

func (s *BatchAutoPoolStore) BindAutoPool(ctx context.Context, account, poolID string) error {
	_, err := s.DB.db.ExecContext(ctx, `UPDATE batch_auto_pools SET bound = 1 WHERE account_key = $1 AND pool_key = $2`, lower(account), lower(poolID))
	return dbErr(err, "bind batch auto pool")
}

func (s *BatchAutoPoolStore) ScheduleAutoPool(ctx context.Context, account, scheduleID string) (*batch.AutoPoolRecord, error) {
	r, err := scanAutoPool(s.DB.db.QueryRowContext(ctx, `SELECT `+autoPoolCols+` FROM batch_auto_pools
		WHERE account_key = $1 AND owner_kind = $2 AND owner_key = $3 ORDER BY created_at LIMIT 1`,
		lower(account), batch.AutoPoolOwnerSchedule, lower(scheduleID)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "PoolNotFound", "Job schedule %q has no auto pool.", scheduleID)
	}
	return r, dbErr(err, "read batch auto pool")
}

func (s *BatchAutoPoolStore) ListAutoPools(ctx context.Context, limit int) ([]*batch.AutoPoolRecord, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT `+autoPoolCols+` FROM batch_auto_pools ORDER BY account_key, pool_key LIMIT $1`, limit)
	if err != nil {
		return nil, dbErr(err, "list batch auto pools")
	}
	defer rows.Close()
	var out []*batch.AutoPoolRecord
	for rows.Next() {
		r, err := scanAutoPool(rows)
		if err != nil {
			return nil, dbErr(err, "scan batch auto pool")
		}
		out = append(out, r)
	}
	return out, dbErr(rows.Err(), "list batch auto pools")
}

func (s *BatchAutoPoolStore) DeleteAutoPoolRecord(ctx context.Context, account, poolID string) error {
	_, err := s.DB.db.ExecContext(ctx, `DELETE FROM batch_auto_pools WHERE account_key = $1 AND pool_key = $2`, lower(account), lower(poolID))
	return dbErr(err, "delete batch auto pool")
}
