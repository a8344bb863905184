package sqlstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"custody"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// forEachEngine runs fn against a fresh SQLite file and a fresh schema on
// PostgreSQL (see sqlstoretest).
func forEachEngine(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Helper()
	sqlstoretest.ForEachEngine(t, fn)
}

// MustOpenSQLite opens a migrated SQLite database in a temporary directory.
func MustOpenSQLite(tb testing.TB) *sqlstore.DB { return sqlstoretest.OpenSQLite(tb) }

// MustOpenPostgres opens a migrated database in a new schema of the test
// PostgreSQL server, dropped when the test ends.
func MustOpenPostgres(tb testing.TB) *sqlstore.DB { return sqlstoretest.OpenPostgres(tb) }

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
