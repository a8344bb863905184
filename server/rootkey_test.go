package server_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"custody/hsm/hsmtest"
	"custody/secret"
	"custody/server"
	"custody/server/servertest"
	"custody/sqlstore/sqlstoretest"
)

// TestMigrateRootKeyPostgres moves a PostgreSQL cluster's secrets from a
// file root key to a PKCS#11 token: refused while a replica runs, done once
// it stopped, and the server then starts on the token (its signing and
// platform keys open) and no longer on the file.
func TestMigrateRootKeyPostgres(t *testing.T) {
	dsn := sqlstoretest.NewSchema(t, "custody_rootkey_")
	uri := hsmtest.Token(t)
	if _, err := secret.InitTokenRoot(uri); err != nil {
		t.Fatal(err)
	}
	ts := servertest.New(t, func(c *server.Config) { c.Database, c.DisableLocalNodes = dsn, true })
	dir := ts.DataDir()
	kid := ts.Identity.Authority.ActiveKID()
	mc := server.MigrateConfig{DataDir: dir, Database: dsn, From: filepath.Join(dir, secret.RootKeyFile), To: uri}
	ctx := context.Background()
	if _, err := server.MigrateRootKey(ctx, mc); err == nil || !strings.Contains(err.Error(), "stop every replica") {
		t.Fatalf("migration beside a running replica: %v", err)
	}
	ts.Stop()
	res, err := server.MigrateRootKey(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed < 2 || res.Changed != res.Total {
		t.Fatalf("migration re-sealed %d of %d; want the signing key and the platform key at least, all of them", res.Changed, res.Total)
	}
	_, err = server.Open(ctx, server.Config{DataDir: dir, Database: dsn, Listen: "127.0.0.1:0", DisableLocalNodes: true})
	if !errors.Is(err, secret.ErrWrongRootKey) {
		t.Fatalf("a server on the old file root key: %v, want ErrWrongRootKey", err)
	}
	ts2 := servertest.New(t, func(c *server.Config) {
		c.Database, c.DisableLocalNodes, c.DataDir, c.RootKey = dsn, true, dir, uri
	})
	if got := ts2.Identity.Authority.ActiveKID(); got != kid {
		t.Fatalf("signing key %s after the migration, want %s", got, kid)
	}
}

// TestMigrateRootKeyRefusals: a migration from a root key that does not
// exist, to a token key never created, or between one key and itself
// changes nothing and says why.
func TestMigrateRootKeyRefusals(t *testing.T) {
	uri := hsmtest.Token(t)
	dir := t.TempDir()
	ctx := context.Background()
	for _, c := range []struct {
		from, to, want string
	}{
		{"", uri, "no root key to migrate from"},
		{filepath.Join(dir, "missing.key"), uri, "missing.key"},
	} {
		if _, err := server.MigrateRootKey(ctx, server.MigrateConfig{DataDir: dir, From: c.from, To: c.to}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("migrate %q -> token: %v, want an error naming %q", c.from, err, c.want)
		}
	}
	file := filepath.Join(dir, "a.key")
	if _, err := server.MigrateRootKey(ctx, server.MigrateConfig{DataDir: dir, From: file, To: uri}); err == nil {
		t.Fatal("migration from a missing file succeeded")
	}
	// --to a file creates it; the token's key was never made.
	if _, err := secret.LoadRoot(dir, file, true); err != nil {
		t.Fatal(err)
	}
	if _, err := server.MigrateRootKey(ctx, server.MigrateConfig{DataDir: dir, From: file, To: uri}); err == nil || !strings.Contains(err.Error(), "custody root-key init") {
		t.Fatalf("migration to a token without its key: %v", err)
	}
	if _, err := server.MigrateRootKey(ctx, server.MigrateConfig{DataDir: dir, From: file, To: "file:" + file}); err == nil || !strings.Contains(err.Error(), "same root key") {
		t.Fatalf("migration from a key to itself: %v", err)
	}
}

// TestServerOnTokenWithoutRootKey: a server named a token whose root key
// was never made, or with a wrong PIN, does not start, and says what to do.
func TestServerOnTokenWithoutRootKey(t *testing.T) {
	uri := hsmtest.Token(t)
	for in, want := range map[string]string{
		uri: "custody root-key init",
		strings.Replace(uri, "pin-value="+hsmtest.PIN, "pin-value=0000", 1): "the PIN is wrong",
	} {
		_, err := server.Open(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", DisableLocalNodes: true, RootKey: in})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), hsmtest.PIN) {
			t.Errorf("server on %s: %v, want an error saying %q and no PIN", in, err, want)
		}
	}
}
