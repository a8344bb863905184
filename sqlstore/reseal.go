package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"

	"custody/batch"
	"custody/identity"
	"custody/keyvault"
)

// rootSealed is one value sealed under the root key, and where it is.
type rootSealed struct {
	what   string // for progress lines: table and row, never the value
	update string // UPDATE ... SET col = $1 WHERE ... AND col = $2, row keys from $3
	keys   []any
	sealed []byte
	aad    []byte
}

// ResealRootSecrets re-seals every value the database holds under the root
// key (token signing keys, vault key material, platform keys, batch
// accounts' shared keys) with reseal, in one transaction: either all of
// them are re-sealed or, on any error or a crash, none is. each, if set, is
// told of every value as it is re-sealed (its table and row, never the
// value). It returns how many values it changed and how many it read.
func (d *DB) ResealRootSecrets(ctx context.Context, reseal func(sealed, aad []byte) ([]byte, error), each func(done, total int, what string)) (changed, total int, err error) {
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		var vals []rootSealed
		collect := func(query string, scan func(*sql.Rows) (rootSealed, error)) error {
			rows, err := tx.QueryContext(ctx, query)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				v, err := scan(rows)
				if err != nil {
					return err
				}
				vals = append(vals, v)
			}
			return rows.Err()
		}
		if err := collect(`SELECT kid, private_sealed FROM signing_keys ORDER BY kid`, func(r *sql.Rows) (rootSealed, error) {
			var kid string
			var v rootSealed
			err := r.Scan(&kid, &v.sealed)
			v.what, v.aad, v.keys = "signing key "+kid, identity.SigningKeyAAD(kid), []any{kid}
			v.update = `UPDATE signing_keys SET private_sealed = $1 WHERE private_sealed = $2 AND kid = $3`
			return v, err
		}); err != nil {
			return err
		}
		if err := collect(`SELECT id, sealed FROM batch_platform_keys ORDER BY id`, func(r *sql.Rows) (rootSealed, error) {
			var id string
			var v rootSealed
			err := r.Scan(&id, &v.sealed)
			v.what, v.aad, v.keys = "platform key "+id, batch.PlatformKeyAAD(id), []any{id}
			v.update = `UPDATE batch_platform_keys SET sealed = $1 WHERE sealed = $2 AND id = $3`
			return v, err
		}); err != nil {
			return err
		}
		if err := collect(`SELECT name_key, uid, shared_keys FROM batch_accounts WHERE shared_keys <> '' ORDER BY name_key`, func(r *sql.Rows) (rootSealed, error) {
			var name, uid string
			var v rootSealed
			err := r.Scan(&name, &uid, &v.sealed)
			v.what, v.aad, v.keys = "shared keys of batch account "+name, batch.SharedKeysAAD(uid), []any{name, uid}
			v.update = `UPDATE batch_accounts SET shared_keys = $1 WHERE shared_keys = $2 AND name_key = $3 AND uid = $4`
			return v, err
		}); err != nil {
			return err
		}
		if err := collect(`SELECT vault_key, key_name_key, version, private_sealed FROM kv_key_versions ORDER BY vault_key, key_name_key, version`, func(r *sql.Rows) (rootSealed, error) {
			var vault, key, version string
			var v rootSealed
			err := r.Scan(&vault, &key, &version, &v.sealed)
			v.what, v.aad, v.keys = fmt.Sprintf("key version %s/%s/%s", vault, key, version), keyvault.KeyMaterialAAD(vault, key, version), []any{vault, key, version}
			v.update = `UPDATE kv_key_versions SET private_sealed = $1 WHERE private_sealed = $2 AND vault_key = $3 AND key_name_key = $4 AND version = $5`
			return v, err
		}); err != nil {
			return err
		}
		total = len(vals)
		for i, v := range vals {
			next, err := reseal(v.sealed, v.aad)
			if err != nil {
				return fmt.Errorf("%s: %w", v.what, err)
			}
			if !bytes.Equal(next, v.sealed) {
				res, err := tx.ExecContext(ctx, v.update, append([]any{next, v.sealed}, v.keys...)...)
				if err != nil {
					return fmt.Errorf("%s: %w", v.what, err)
				}
				if n, _ := res.RowsAffected(); n != 1 {
					return fmt.Errorf("%s changed while it was re-sealed; run the migration again", v.what)
				}
				changed++
			}
			if each != nil {
				each(i+1, total, v.what)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return changed, total, nil
}
