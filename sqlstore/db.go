// Package sqlstore implements the stores of Custody's services on one SQL
// database: embedded SQLite (modernc.org/sqlite, WAL, immediate write
// transactions) by default, or PostgreSQL through pgx. Both engines run the
// same SQL text ($N placeholders, ON CONFLICT upserts) and the same goose
// migrations (migrations/*.sql, and Go migrations where the engines' SQL
// differs: the triggers that keep task counts, migrate_task_counts.go).
//
// Each service owns its tables; the code for each lives in its own file
// (identity.go, rm.go, ...). Resource ids and names that Azure compares
// case-insensitively are stored twice: as given, and lower-cased in a *_key
// column that queries match on.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"custody"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Engine names a database engine.
type Engine string

const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// DB is the database handle every store in this package works on.
type DB struct {
	db     *cachedDB
	Engine Engine
	// Path is the SQLite file, for tools that inspect it.
	Path string
}

// Open opens the database named by dsn and applies pending migrations. A dsn
// starting with postgres:// or postgresql:// selects PostgreSQL; anything else
// is a SQLite file path.
func Open(ctx context.Context, dsn string) (*DB, error) {
	d := &DB{}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		d.Engine = Postgres
		raw, err := sql.Open("pgx", withIdleInTransactionTimeout(dsn))
		if err != nil {
			return nil, err
		}
		d.db = newCachedDB(raw)
		d.db.SetMaxOpenConns(16)
	} else {
		d.Engine = SQLite
		d.Path = dsn
		if err := os.MkdirAll(filepath.Dir(dsn), 0o700); err != nil {
			return nil, err
		}
		q := url.Values{}
		for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(NORMAL)"} {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
		raw, err := sql.Open("sqlite", "file:"+dsn+"?"+q.Encode())
		if err != nil {
			return nil, err
		}
		d.db = newCachedDB(raw)
		d.db.SetMaxOpenConns(8)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.db.PingContext(pingCtx); err != nil {
		d.db.Close()
		return nil, fmt.Errorf("open %s database: %w", d.Engine, err)
	}
	if d.Engine == SQLite {
		// The database file holds sealed secrets only, but keep it private.
		_ = os.Chmod(dsn, 0o600)
	}
	if err := d.migrate(ctx); err != nil {
		d.db.Close()
		return nil, fmt.Errorf("migrate %s database: %w", d.Engine, err)
	}
	return d, nil
}

// idleInTransactionTimeout ends a session that sat inside a transaction
// for this long: a server that froze (or was cut off) mid-transaction
// releases its row locks, so the replica that takes over is not blocked
// behind them. No transaction of Custody waits on anything but the
// database between its statements.
const idleInTransactionTimeout = 10 * time.Second

// withIdleInTransactionTimeout adds PostgreSQL's
// idle_in_transaction_session_timeout to a postgres:// DSN, unless it sets
// one.
func withIdleInTransactionTimeout(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // pgx reports it
	}
	q := u.Query()
	if q.Get("idle_in_transaction_session_timeout") != "" {
		return dsn
	}
	q.Set("idle_in_transaction_session_timeout", strconv.FormatInt(idleInTransactionTimeout.Milliseconds(), 10))
	u.RawQuery = q.Encode()
	return u.String()
}

func (d *DB) migrate(ctx context.Context) error {
	p, err := d.Migrations()
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// Migrations returns the goose provider of the database's migrations: the
// SQL files in migrations/ and the Go migrations whose SQL differs between
// the engines (migrate_*.go).
func (d *DB) Migrations() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	dialect := goose.DialectSQLite3
	if d.Engine == Postgres {
		dialect = goose.DialectPostgres
	}
	return goose.NewProvider(dialect, d.db.DB, sub, goose.WithGoMigrations(taskCountsMigration(d.Engine), countDeltasMigration(d.Engine)))
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// SQL returns the underlying handle, for tests and tools.
func (d *DB) SQL() *sql.DB { return d.db.DB }

// Tx runs fn in a write transaction and commits if fn returns nil. On SQLite
// the transaction takes the write lock at BEGIN (immediate), so concurrent
// read-modify-write transactions queue instead of failing with SQLITE_BUSY.
func (d *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return custody.Internal(err, "begin transaction")
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return custody.Internal(err, "commit transaction")
	}
	return nil
}

// queryer is what read helpers need: a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// isUniqueViolation reports whether err is a unique or primary key violation
// on either engine.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505") ||
		strings.Contains(msg, "duplicate key value")
}

func dbErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var ce *custody.Error
	if errors.As(err, &ce) {
		return err
	}
	return custody.Internal(err, "database: %s", what)
}

func unix(t time.Time) int64 { return t.UnixNano() }

func fromUnix(n int64) time.Time { return time.Unix(0, n).UTC() }

func lower(s string) string { return strings.ToLower(s) }
