package sqlstore_test

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

	"custody"
	"custody/sqlstore"
)

// defaultPostgres is the test server used when CUSTODY_TEST_POSTGRES is unset.
const defaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// forEachEngine runs fn against a fresh SQLite file and a fresh schema on
// PostgreSQL. PostgreSQL is skipped when unreachable, unless CI is set.
func forEachEngine(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, MustOpenSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, MustOpenPostgres(t)) })
}

// MustOpenSQLite opens a migrated SQLite database in a temporary directory.
func MustOpenSQLite(tb testing.TB) *sqlstore.DB {
	tb.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(tb.TempDir(), "custody.db"))
	if err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// MustOpenPostgres opens a migrated database in a new schema of the test
// PostgreSQL server and drops the schema when the test ends.
func MustOpenPostgres(tb testing.TB) *sqlstore.DB {
	tb.Helper()
	dsn := os.Getenv("CUSTODY_TEST_POSTGRES")
	if dsn == "" {
		dsn = defaultPostgres
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

func wantKind(tb testing.TB, err error, kind custody.Kind) {
	tb.Helper()
	if err == nil {
		tb.Errorf("err = nil, want kind %v", kind)
		return
	}
	if got := custody.ErrorKind(err); got != kind {
		tb.Errorf("err = %v (kind %v), want kind %v", err, got, kind)
	}
}

func TestOpenIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custody.db")
	for i := 0; i < 2; i++ {
		db, err := sqlstore.Open(context.Background(), path)
		if err != nil {
			t.Fatalf("open #%d: %v", i+1, err)
		}
		if db.Engine != sqlstore.SQLite || db.Path != path {
			t.Errorf("open #%d: engine %s path %s, want sqlite %s", i+1, db.Engine, db.Path, path)
		}
		db.Close()
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		t.Errorf("database file mode = %v, want no group or other access", mode)
	}
}

func TestSettings(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.RMStore{DB: db}
		_, err := s.Setting(ctx, "tenant_id")
		wantKind(t, err, custody.KindNotFound)
		got, err := s.SetSettingIfAbsent(ctx, "tenant_id", "first")
		if err != nil || got != "first" {
			t.Fatalf("SetSettingIfAbsent = %q, %v; want first", got, err)
		}
		got, err = s.SetSettingIfAbsent(ctx, "tenant_id", "second")
		if err != nil || got != "first" {
			t.Errorf("second SetSettingIfAbsent = %q, %v; want the first value kept", got, err)
		}
		if got, err := s.Setting(ctx, "tenant_id"); err != nil || got != "first" {
			t.Errorf("Setting = %q, %v; want first", got, err)
		}
		if _, err := s.Setting(ctx, "TENANT_ID"); !custody.IsNotFound(err) {
			t.Errorf("Setting with other casing: err = %v, want not found (keys are exact)", err)
		}
	})
}
