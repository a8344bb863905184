package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStatements bounds the statement cache; queries are constants in
// this package, so it is never reached in practice.
const maxCachedStatements = 512

// cachedDB is a *sql.DB whose queries outside transactions run as prepared
// statements, prepared once per query text. Parsing SQL is a large part of
// a small query's cost on embedded SQLite.
type cachedDB struct {
	*sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func newCachedDB(db *sql.DB) *cachedDB { return &cachedDB{DB: db, stmts: map[string]*sql.Stmt{}} }

// stmt returns the prepared statement for query, or nil when it cannot be
// cached (the caller then runs the query unprepared).
func (c *cachedDB) stmt(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.stmts[query]
	full := len(c.stmts) >= maxCachedStatements
	c.mu.Unlock()
	if ok || full {
		return st
	}
	st, err := c.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil // let the unprepared call report the error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.stmts[query]; ok {
		st.Close()
		return prev
	}
	c.stmts[query] = st
	return st
}

func (c *cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.DB.QueryContext(ctx, query, args...)
}

func (c *cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.DB.QueryRowContext(ctx, query, args...)
}

func (c *cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.DB.ExecContext(ctx, query, args...)
}

// Close closes the cached statements and the database.
func (c *cachedDB) Close() error {
	c.mu.Lock()
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
	c.mu.Unlock()
	return c.DB.Close()
}

// txStmt returns query as a statement of tx: st (from d.db.stmt, prepared
// once on the database and reused by every transaction) when there is one,
// else query prepared on tx. Get st before the transaction begins:
// preparing it takes a connection of its own, which a transaction must not
// wait for while it holds one (and, on PostgreSQL, a table lock that the
// preparation on the other connection would wait for).
func txStmt(ctx context.Context, tx *sql.Tx, st *sql.Stmt, query string) (*sql.Stmt, error) {
	if st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, query)
}
