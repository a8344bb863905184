// Package sqlstoretest opens migrated test databases on both engines, for
// the tests of packages that run over the SQL store.
package sqlstoretest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"custody/sqlstore"
)

// DefaultPostgres is the test server used when CUSTODY_TEST_POSTGRES is
// unset.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// ForEachEngine runs fn against a fresh SQLite file and a fresh schema on
// PostgreSQL. PostgreSQL is skipped when unreachable, unless CI is set.
func ForEachEngine(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, OpenSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, OpenPostgres(t)) })
}

// OpenSQLite opens a migrated SQLite database in a temporary directory.
func OpenSQLite(tb testing.TB) *sqlstore.DB {
	tb.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(tb.TempDir(), "custody.db"))
	if err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// OpenPostgres opens a migrated database in a new schema of the test
// PostgreSQL server (CUSTODY_TEST_POSTGRES) and drops the schema when the
// test ends. It skips when PostgreSQL is unreachable, unless CI is set.
func OpenPostgres(tb testing.TB) *sqlstore.DB {
	tb.Helper()
	dsn := os.Getenv("CUSTODY_TEST_POSTGRES")
	if dsn == "" {
		dsn = DefaultPostgres
	}
	ctx := context.Background()
	admin, err := sql.Open("pgx", dsn)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = admin.PingContext(pctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL (CUSTODY_TEST_POSTGRES=%q) is unreachable: %v", dsn, err)
		}
		tb.Skipf("PostgreSQL unreachable, skipping (set CUSTODY_TEST_POSTGRES): %v", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	schema := "store_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sqlstore.Open(ctx, dsn+sep+"search_path="+schema)
	if err != nil {
		tb.Fatalf("open postgres: %v", err)
	}
	// Registered after the schema cleanup, so it runs first.
	tb.Cleanup(func() { db.Close() })
	if db.Engine != sqlstore.Postgres {
		tb.Fatalf("engine = %s, want postgres", db.Engine)
	}
	return db
}
