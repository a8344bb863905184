package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"custody"
	"custody/compute"
)

// ComputePoolStore implements compute.Store.
type ComputePoolStore struct{ DB *DB }

var _ compute.Store = (*ComputePoolStore)(nil)

// poolMeta is the clear part of a pool row.
type poolMeta struct {
	VMSize            string                         `json:"vmSize"`
	TaskSlotsPerNode  int                            `json:"taskSlotsPerNode"`
	TargetDedicated   int                            `json:"targetDedicated"`
	TargetLowPriority int                            `json:"targetLowPriority"`
	ResizeTimeout     time.Duration                  `json:"resizeTimeout"`
	NodeFillType      string                         `json:"nodeFillType"`
	Identities        []compute.PoolIdentity         `json:"identities,omitempty"`
	Certificates      []compute.CertificateReference `json:"certificates,omitempty"`
	State             string                         `json:"state"`
	StateTime         int64                          `json:"stateTime"`
	AllocationState   string                         `json:"allocationState"`
	AllocationTime    int64                          `json:"allocationTime"`
	LastModified      int64                          `json:"lastModified"`
	ResizeErrors      []compute.ResizeError          `json:"resizeErrors,omitempty"`
}

func poolRow(p *compute.Pool) (string, error) {
	b, err := json.Marshal(poolMeta{p.VMSize, p.TaskSlotsPerNode, p.TargetDedicated, p.TargetLowPriority, p.ResizeTimeout, p.NodeFillType,
		p.Identities, p.Certificates, p.State, unix(p.StateTransitionTime), p.AllocationState, unix(p.AllocationTime), unix(p.LastModified), p.ResizeErrors})
	return string(b), err
}

func scanPool(row interface{ Scan(...any) error }) (*compute.Pool, error) {
	var p compute.Pool
	var meta string
	var created int64
	if err := row.Scan(&p.Account, &p.ID, &p.ETag, &meta, &p.Sealed, &created); err != nil {
		return nil, err
	}
	var m poolMeta
	if err := json.Unmarshal([]byte(meta), &m); err != nil {
		return nil, err
	}
	p.VMSize, p.TaskSlotsPerNode, p.TargetDedicated, p.TargetLowPriority = m.VMSize, m.TaskSlotsPerNode, m.TargetDedicated, m.TargetLowPriority
	p.ResizeTimeout, p.NodeFillType, p.Identities, p.Certificates = m.ResizeTimeout, m.NodeFillType, m.Identities, m.Certificates
	p.State, p.StateTransitionTime, p.AllocationState, p.AllocationTime = m.State, fromUnix(m.StateTime), m.AllocationState, fromUnix(m.AllocationTime)
	p.LastModified, p.ResizeErrors, p.CreatedAt = fromUnix(m.LastModified), m.ResizeErrors, fromUnix(created)
	return &p, nil
}

const poolCols = `account, id, etag, meta, spec, created_at`

func (s *ComputePoolStore) CreatePool(ctx context.Context, p *compute.Pool) error {
	meta, err := poolRow(p)
	if err != nil {
		return custody.Internal(err, "encode pool")
	}
	_, err = s.DB.db.ExecContext(ctx, `INSERT INTO compute_pools (account_key, id_key, `+poolCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		lower(p.Account), lower(p.ID), p.Account, p.ID, p.ETag, meta, p.Sealed, unix(p.CreatedAt))
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "PoolExists", "The specified pool %q already exists.", p.ID)
	}
	return dbErr(err, "insert pool")
}

func (s *ComputePoolStore) Pool(ctx context.Context, account, id string) (*compute.Pool, error) {
	p, err := scanPool(s.DB.db.QueryRowContext(ctx, `SELECT `+poolCols+` FROM compute_pools WHERE account_key = $1 AND id_key = $2`, lower(account), lower(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "PoolNotFound", "The specified pool %q does not exist.", id)
	}
	return p, dbErr(err, "read pool")
}

func (s *ComputePoolStore) list(ctx context.Context, q string, args ...any) ([]*compute.Pool, error) {
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list pools")
	}
	defer rows.Close()
	var out []*compute.Pool
	for rows.Next() {
		p, err := scanPool(rows)
		if err != nil {
			return nil, dbErr(err, "scan pool")
		}
		out = append(out, p)
	}
	return out, dbErr(rows.Err(), "list pools")
}

func (s *ComputePoolStore) ListPools(ctx context.Context, account string) ([]*compute.Pool, error) {
	return s.list(ctx, `SELECT `+poolCols+` FROM compute_pools WHERE account_key = $1 ORDER BY id_key`, lower(account))
}

func (s *ComputePoolStore) AllPools(ctx context.Context) ([]*compute.Pool, error) {
	return s.list(ctx, `SELECT `+poolCols+` FROM compute_pools ORDER BY account_key, id_key`)
}

func (s *ComputePoolStore) UpdatePool(ctx context.Context, p *compute.Pool, etag string) error {
	meta, err := poolRow(p)
	if err != nil {
		return custody.Internal(err, "encode pool")
	}
	res, err := s.DB.db.ExecContext(ctx, `UPDATE compute_pools SET etag = $1, meta = $2, spec = $3 WHERE account_key = $4 AND id_key = $5 AND etag = $6`,
		p.ETag, meta, p.Sealed, lower(p.Account), lower(p.ID), etag)
	if err != nil {
		return dbErr(err, "update pool")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Pool(ctx, p.Account, p.ID); err != nil {
			return err
		}
		return custody.Errorf(custody.KindPreconditionFailed, "ConditionNotMet", "The pool %q changed while it was being updated; retry.", p.ID)
	}
	return nil
}

func (s *ComputePoolStore) DeletePool(ctx context.Context, account, id string) error {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM compute_pools WHERE account_key = $1 AND id_key = $2`, lower(account), lower(id))
	if err != nil {
		return dbErr(err, "delete pool")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindNotFound, "PoolNotFound", "The specified pool %q does not exist.", id)
	}
	return nil
}
