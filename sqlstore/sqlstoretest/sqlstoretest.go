// Package sqlstoretest opens migrated test databases on both engines, for
// the tests of packages that run over the SQL store.
package sqlstoretest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
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

// admin connects to the test PostgreSQL server (CUSTODY_TEST_POSTGRES,
// else DefaultPostgres), closed when the test ends; it skips when the server
// is unreachable, unless CI is set.
func admin(tb testing.TB) (*sql.DB, string) {
	tb.Helper()
	dsn := os.Getenv("CUSTODY_TEST_POSTGRES")
	if dsn == "" {
		dsn = DefaultPostgres
	}
	db, err := sql.Open("pgx", dsn)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL (CUSTODY_TEST_POSTGRES=%q) is unreachable: %v", dsn, err)
		}
		tb.Skipf("PostgreSQL unreachable, skipping (set CUSTODY_TEST_POSTGRES): %v", err)
	}
	return db, dsn
}

func randomName(tb testing.TB, prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// NewSchema creates a schema of the test's own on the test PostgreSQL
// server, dropped when the test ends, and returns the database setting that
// selects it. It skips when PostgreSQL is unreachable, unless CI is set.
func NewSchema(tb testing.TB, prefix string) string {
	tb.Helper()
	db, dsn := admin(tb)
	schema := randomName(tb, prefix)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		db.Close()
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
		db.Close()
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// NewDatabase creates a database of the test's own on the test PostgreSQL
// server (for what is scoped to a database, such as advisory locks),
// dropped when the test ends, and returns its setting. It skips when
// PostgreSQL is unreachable, unless CI is set.
func NewDatabase(tb testing.TB, prefix string) string {
	tb.Helper()
	db, dsn := admin(tb)
	name := randomName(tb, prefix)
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		db.Close()
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := db.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
		db.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// OpenPostgres opens a migrated database in a new schema of the test
// PostgreSQL server (CUSTODY_TEST_POSTGRES) and drops the schema when the
// test ends. It skips when PostgreSQL is unreachable, unless CI is set.
func OpenPostgres(tb testing.TB) *sqlstore.DB {
	tb.Helper()
	db, err := sqlstore.Open(context.Background(), NewSchema(tb, "store_test_"))
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
