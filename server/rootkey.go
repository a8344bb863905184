package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"custody/hsm"
	"custody/keyvault"
	"custody/secret"
	"custody/sqlstore"
)

// MigrateConfig says what a root key migration moves from and to.
type MigrateConfig struct {
	// DataDir and Database are the server's (Config.DataDir and
	// Config.Database).
	DataDir, Database string
	// From and To name root keys the way Config.RootKey does: a PKCS#11
	// URI, a file (created with a new key if it does not exist, for To
	// only), or "" for the default (CUSTODY_ROOT_KEY, else
	// {data-dir}/root.key).
	From, To string
	// Each, if set, hears of every value as it is re-sealed.
	Each func(done, total int, what string)
}

// MigrateResult is what a migration did.
type MigrateResult struct {
	From, To       string // where the root keys are (no secrets)
	Changed, Total int
}

// MigrateRootKey re-seals every server secret from one root key to another,
// in one database transaction: a crash leaves every secret under the old
// key, and running the migration again finishes it (values already under
// the new key are checked and kept). No server may run on the database
// meanwhile: on SQLite the data directory's lock is taken, on PostgreSQL
// the cluster's active lease, and the call fails if a server holds it.
func MigrateRootKey(ctx context.Context, cfg MigrateConfig) (*MigrateResult, error) {
	if cfg.From == "" && os.Getenv(secret.RootKeyEnv) == "" {
		// The default root key must exist: a migration never makes the key
		// it migrates from.
		if _, err := os.Stat(filepath.Join(cfg.DataDir, secret.RootKeyFile)); err != nil {
			return nil, fmt.Errorf("--from: no root key to migrate from: %s is not set and %w", secret.RootKeyEnv, err)
		}
	}
	from, err := secret.LoadRoot(cfg.DataDir, cfg.From, false)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	defer from.Close()
	to, err := secret.LoadRoot(cfg.DataDir, cfg.To, true)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	defer to.Close()
	res := &MigrateResult{From: from.Where, To: to.Where}
	if from.ID() == to.ID() {
		return nil, fmt.Errorf("--from %s and --to %s are the same root key", from.Where, to.Where)
	}
	dsn := cfg.Database
	if dsn == "" {
		dsn = filepath.Join(cfg.DataDir, databaseFile)
		lock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		defer lock.Close()
	}
	db, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if db.Engine == sqlstore.Postgres {
		release, err := holdForMigration(ctx, db.SQL())
		if err != nil {
			return nil, err
		}
		defer release()
	}
	// Vault keys of type RSA-HSM and EC-HSM live in the token of the root
	// key: a migration away from that token would leave them unreachable.
	sameToken := from.Token != nil && to.Token != nil && sameTokenURI(from.Token.URI(), to.Token.URI())
	inspect := func(plain []byte) error {
		if keyvault.IsHSMReference(plain) && !sameToken {
			return errors.New("vault keys of type RSA-HSM or EC-HSM live in the token of --from, and a server on --to could not reach them: " +
				"migrate to a root key in the same token (another object= label), or delete and purge those keys first")
		}
		return nil
	}
	res.Changed, res.Total, err = db.ResealRootSecrets(ctx, secret.Resealer(from.Sealer, to.Sealer, inspect), cfg.Each)
	if err != nil {
		return nil, fmt.Errorf("root key migration (nothing was changed; run it again once the cause is fixed): %w", err)
	}
	return res, nil
}

// sameTokenURI reports whether two PKCS#11 URIs name the same token of the
// same module.
func sameTokenURI(a, b *hsm.URI) bool {
	slot := func(u *hsm.URI) int64 {
		if u.SlotID == nil {
			return -1
		}
		return int64(*u.SlotID)
	}
	return a.ModulePath == b.ModulePath && a.Token == b.Token && a.Serial == b.Serial && slot(a) == slot(b)
}

// holdForMigration takes the bootstrap lock (no replica starts) and the
// active lease, without waiting for the lease: a running replica fails the
// migration.
func holdForMigration(ctx context.Context, db *sql.DB) (func(), error) {
	unlock, err := advisoryLock(ctx, db, "bootstrap")
	if err != nil {
		return nil, err
	}
	key, err := advisoryKey(ctx, db, "active replica")
	if err != nil {
		unlock()
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		unlock()
		return nil, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil || !ok {
		discard(conn)
		unlock()
		if err == nil {
			err = errors.New("a custody server is running on this database (it holds the active lease): stop every replica before migrating the root key")
		}
		return nil, err
	}
	return func() {
		discard(conn)
		unlock()
	}, nil
}
