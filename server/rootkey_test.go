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
