package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"custody"
)

// Fence is a write fence: a row of the settings table and the value a
// fenced write requires it to hold. Replicas on PostgreSQL fence the
// scheduler's task writes with the cluster's lease epoch, which a replica
// raises when it takes the active lease: a fenced write checks the row in
// its own statement, under a share lock, so it either lands before the new
// epoch is written (and the new active reads it) or not at all, even when
// it was sent by a former active cut off from the database before it
// noticed.
type Fence struct {
	Key   string
	Value string
}

type fenceKey struct{}

// WithFence returns a context whose writes to task records are fenced by f.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

func fenceOf(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

// fenceClause is the condition a fenced statement adds to its WHERE, with
// its arguments numbered from n; "" without a fence. (PostgreSQL only: a
// SQLite database has one server, which never fences.)
func fenceClause(ctx context.Context, n int) (string, []any) {
	f, ok := fenceOf(ctx)
	if !ok {
		return "", nil
	}
	return ` AND EXISTS (SELECT 1 FROM settings WHERE key = $` + strconv.Itoa(n) + ` AND value = $` + strconv.Itoa(n+1) + ` FOR SHARE)`, []any{f.Key, f.Value}
}

// errFenced is the error of a fenced write that found the fence moved.
func errFenced() error {
	return custody.Errorf(custody.KindUnavailable, "ReplicaNotActive",
		"This replica is no longer the cluster's active one: another took the lease, and the write was refused. Retry; the request reaches the active replica.")
}

// checkFence returns errFenced when ctx carries a fence the database no
// longer holds (after a fenced write changed nothing).
func (d *DB) checkFence(ctx context.Context) error {
	f, ok := fenceOf(ctx)
	if !ok {
		return nil
	}
	var v string
	err := d.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = $1`, f.Key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && v != f.Value) {
		return errFenced()
	}
	return dbErr(err, "read the write fence")
}
