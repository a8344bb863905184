package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"custody"
	"custody/keyvault"
)

// KeyStore implements keyvault.KeyStore on tables kv_keys, kv_key_versions
// and kv_audit. Key material arrives sealed; this store never sees it in
// plaintext. Purging a key deletes its rows, so nothing of its material
// remains in the tables.
type KeyStore struct{ DB *DB }

var (
	_ keyvault.KeyStore     = (*KeyStore)(nil)
	_ keyvault.AuditBatcher = (*KeyStore)(nil)
)

const keyCols = `vault_key, name, tags, managed, rotation_policy, created_at, updated_at, deleted_at, scheduled_purge_at`

func scanKey(row interface{ Scan(...any) error }) (*keyvault.Key, error) {
	var k keyvault.Key
	var tags, policy string
	var created, updated int64
	var deleted, purge sql.NullInt64
	if err := row.Scan(&k.VaultName, &k.Name, &tags, &k.Managed, &policy, &created, &updated, &deleted, &purge); err != nil {
		return nil, err
	}
	k.CreatedAt, k.UpdatedAt = fromUnix(created), fromUnix(updated)
	k.DeletedAt, k.ScheduledPurgeAt = nullFromUnix(deleted), nullFromUnix(purge)
	if err := json.Unmarshal([]byte(tags), &k.Tags); err != nil {
		return nil, err
	}
	if policy != "" {
		k.RotationPolicy = &keyvault.RotationPolicy{}
		if err := json.Unmarshal([]byte(policy), k.RotationPolicy); err != nil {
			return nil, err
		}
	}
	return &k, nil
}

func nullFromUnix(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromUnix(n.Int64)
	return &t
}

// nullSeconds and nullFromSeconds store a key version's nbf and exp in Unix
// seconds: Key Vault's own resolution, and wide enough for any date up to
// the end of year 9999 (nanoseconds wrap after 2262).
func nullSeconds(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Unix()
}

func nullFromSeconds(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.Unix(n.Int64, 0).UTC()
	return &t
}

const versionCols = `vault_key, key_name_key, version, kty, crv, key_size, key_ops, enabled, not_before, expires, exportable, tags, public_jwk, private_sealed, created_at, updated_at`

func scanVersion(row interface{ Scan(...any) error }) (*keyvault.KeyVersion, error) {
	var kv keyvault.KeyVersion
	var ops, tags, jwk string
	var size, created, updated int64
	var nbf, exp sql.NullInt64
	if err := row.Scan(&kv.VaultName, &kv.KeyName, &kv.Version, &kv.Kty, &kv.Crv, &size, &ops, &kv.Enabled, &nbf, &exp,
		&kv.Exportable, &tags, &jwk, &kv.PrivateSealed, &created, &updated); err != nil {
		return nil, err
	}
	kv.KeySize = int(size)
	kv.NotBefore, kv.Expires = nullFromSeconds(nbf), nullFromSeconds(exp)
	kv.CreatedAt, kv.UpdatedAt = fromUnix(created), fromUnix(updated)
	kv.PublicJWK = []byte(jwk)
	if err := json.Unmarshal([]byte(ops), &kv.KeyOps); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(tags), &kv.Tags); err != nil {
		return nil, err
	}
	return &kv, nil
}

func policyText(p *keyvault.RotationPolicy) (string, error) {
	if p == nil {
		return "", nil
	}
	b, err := json.Marshal(p)
	return string(b), err
}

func keyNotFound(name string) error {
	return custody.Errorf(custody.KindNotFound, "KeyNotFound", "A key with (name/id) %s was not found in this key vault.", name)
}

// CreateKeyVersion stores kv, creating its key k if needed, in one
// transaction. kv's tags become the key's tags.
func (s *KeyStore) CreateKeyVersion(ctx context.Context, k *keyvault.Key, kv *keyvault.KeyVersion) error {
	return s.DB.Tx(ctx, func(tx *sql.Tx) error { return insertKeyVersion(ctx, tx, k, kv) })
}

// RestoreKey stores a key restored from a backup with all its versions, in
// one transaction: a failure part way leaves no trace.
func (s *KeyStore) RestoreKey(ctx context.Context, k *keyvault.Key, versions []*keyvault.KeyVersion) error {
	tags, err := json.Marshal(nonNilTags(k.Tags))
	if err != nil {
		return custody.Internal(err, "encode key tags")
	}
	policy, err := policyText(k.RotationPolicy)
	if err != nil {
		return custody.Internal(err, "encode rotation policy")
	}
	return s.DB.Tx(ctx, func(tx *sql.Tx) error {
		for _, kv := range versions {
			if err := insertKeyVersion(ctx, tx, k, kv); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE kv_keys SET tags = $1, rotation_policy = $2, updated_at = $3 WHERE vault_key = $4 AND name_key = $5`,
			string(tags), policy, unix(k.UpdatedAt), lower(k.VaultName), lower(k.Name))
		return dbErr(err, "write restored key")
	})
}

func insertKeyVersion(ctx context.Context, tx *sql.Tx, k *keyvault.Key, kv *keyvault.KeyVersion) error {
	tags, err := json.Marshal(nonNilTags(kv.Tags))
	if err != nil {
		return custody.Internal(err, "encode key tags")
	}
	ops, err := json.Marshal(orEmpty(kv.KeyOps))
	if err != nil {
		return custody.Internal(err, "encode key operations")
	}
	policy, err := policyText(k.RotationPolicy)
	if err != nil {
		return custody.Internal(err, "encode rotation policy")
	}
	vault, name := lower(k.VaultName), lower(k.Name)
	_, err = tx.ExecContext(ctx, `INSERT INTO kv_keys (vault_key, name_key, name, tags, managed, rotation_policy, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (vault_key, name_key) DO UPDATE SET tags = excluded.tags, updated_at = excluded.updated_at`,
		vault, name, k.Name, string(tags), k.Managed, policy, unix(k.CreatedAt), unix(kv.CreatedAt))
	if err != nil {
		return dbErr(err, "write key")
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM kv_key_versions WHERE vault_key = $1 AND key_name_key = $2`, vault, name).Scan(&seq); err != nil {
		return dbErr(err, "number key version")
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO kv_key_versions (`+versionCols+`, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		vault, name, lower(kv.Version), kv.Kty, kv.Crv, int64(kv.KeySize), string(ops), kv.Enabled, nullSeconds(kv.NotBefore), nullSeconds(kv.Expires),
		kv.Exportable, string(tags), string(kv.PublicJWK), kv.PrivateSealed, unix(kv.CreatedAt), unix(kv.UpdatedAt), seq)
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "Conflict", "Key %s already has a version %s.", k.Name, kv.Version)
	}
	return dbErr(err, "write key version")
}

// Key returns the live or soft-deleted key name of vault.
func (s *KeyStore) Key(ctx context.Context, vault, name string) (*keyvault.Key, error) {
	k, err := scanKey(s.DB.db.QueryRowContext(ctx, `SELECT `+keyCols+` FROM kv_keys WHERE vault_key = $1 AND name_key = $2`, lower(vault), lower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, keyNotFound(name)
	}
	return k, dbErr(err, "read key")
}

// KeyVersion returns one version of a key.
func (s *KeyStore) KeyVersion(ctx context.Context, vault, name, version string) (*keyvault.KeyVersion, error) {
	kv, err := scanVersion(s.DB.db.QueryRowContext(ctx, `SELECT `+versionCols+` FROM kv_key_versions WHERE vault_key = $1 AND key_name_key = $2 AND version = $3`,
		lower(vault), lower(name), lower(version)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, keyNotFound(name + "/" + version)
	}
	if err != nil {
		return nil, dbErr(err, "read key version")
	}
	kv.KeyName = name
	return kv, nil
}

// LatestKeyVersion returns the most recently created version of a key.
func (s *KeyStore) LatestKeyVersion(ctx context.Context, vault, name string) (*keyvault.KeyVersion, error) {
	kv, err := scanVersion(s.DB.db.QueryRowContext(ctx, `SELECT `+versionCols+` FROM kv_key_versions WHERE vault_key = $1 AND key_name_key = $2 ORDER BY seq DESC LIMIT 1`,
		lower(vault), lower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, keyNotFound(name)
	}
	if err != nil {
		return nil, dbErr(err, "read key version")
	}
	kv.KeyName = name
	return kv, nil
}

func (s *KeyStore) listKeys(ctx context.Context, q string, args ...any) ([]*keyvault.Key, error) {
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list keys")
	}
	defer rows.Close()
	out := []*keyvault.Key{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, dbErr(err, "scan key")
		}
		out = append(out, k)
	}
	return out, dbErr(rows.Err(), "list keys")
}

// ListKeys lists the live (or, with deleted, soft-deleted) keys of a vault by
// name.
func (s *KeyStore) ListKeys(ctx context.Context, vault string, deleted bool) ([]*keyvault.Key, error) {
	cond := `deleted_at IS NULL`
	if deleted {
		cond = `deleted_at IS NOT NULL`
	}
	return s.listKeys(ctx, `SELECT `+keyCols+` FROM kv_keys WHERE vault_key = $1 AND `+cond+` ORDER BY name_key`, lower(vault))
}

// ListKeyVersions lists the versions of a key, oldest first.
func (s *KeyStore) ListKeyVersions(ctx context.Context, vault, name string) ([]*keyvault.KeyVersion, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT `+versionCols+` FROM kv_key_versions WHERE vault_key = $1 AND key_name_key = $2 ORDER BY seq`, lower(vault), lower(name))
	if err != nil {
		return nil, dbErr(err, "list key versions")
	}
	defer rows.Close()
	out := []*keyvault.KeyVersion{}
	for rows.Next() {
		kv, err := scanVersion(rows)
		if err != nil {
			return nil, dbErr(err, "scan key version")
		}
		kv.KeyName = name
		out = append(out, kv)
	}
	return out, dbErr(rows.Err(), "list key versions")
}

// UpdateKeyVersion writes the mutable fields of kv: enabled, nbf, exp,
// key_ops, tags and the update time.
func (s *KeyStore) UpdateKeyVersion(ctx context.Context, kv *keyvault.KeyVersion) error {
	tags, err := json.Marshal(nonNilTags(kv.Tags))
	if err != nil {
		return custody.Internal(err, "encode key tags")
	}
	ops, err := json.Marshal(orEmpty(kv.KeyOps))
	if err != nil {
		return custody.Internal(err, "encode key operations")
	}
	res, err := s.DB.db.ExecContext(ctx, `UPDATE kv_key_versions SET enabled = $1, not_before = $2, expires = $3, key_ops = $4, tags = $5, updated_at = $6
		WHERE vault_key = $7 AND key_name_key = $8 AND version = $9`,
		kv.Enabled, nullSeconds(kv.NotBefore), nullSeconds(kv.Expires), string(ops), string(tags), unix(kv.UpdatedAt),
		lower(kv.VaultName), lower(kv.KeyName), lower(kv.Version))
	if err != nil {
		return dbErr(err, "update key version")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return keyNotFound(kv.KeyName + "/" + kv.Version)
	}
	return nil
}

// UpdateKey writes the mutable fields of k: tags, rotation policy, deletion
// and purge dates and the update time.
func (s *KeyStore) UpdateKey(ctx context.Context, k *keyvault.Key) error {
	tags, err := json.Marshal(nonNilTags(k.Tags))
	if err != nil {
		return custody.Internal(err, "encode key tags")
	}
	policy, err := policyText(k.RotationPolicy)
	if err != nil {
		return custody.Internal(err, "encode rotation policy")
	}
	res, err := s.DB.db.ExecContext(ctx, `UPDATE kv_keys SET tags = $1, rotation_policy = $2, deleted_at = $3, scheduled_purge_at = $4, updated_at = $5
		WHERE vault_key = $6 AND name_key = $7`,
		string(tags), policy, nullTime(k.DeletedAt), nullTime(k.ScheduledPurgeAt), unix(k.UpdatedAt), lower(k.VaultName), lower(k.Name))
	if err != nil {
		return dbErr(err, "update key")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return keyNotFound(k.Name)
	}
	return nil
}

// PurgeKey deletes a key and all its versions in one transaction.
func (s *KeyStore) PurgeKey(ctx context.Context, vault, name string) error {
	return s.DB.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM kv_key_versions WHERE vault_key = $1 AND key_name_key = $2`, lower(vault), lower(name)); err != nil {
			return dbErr(err, "purge key versions")
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM kv_keys WHERE vault_key = $1 AND name_key = $2`, lower(vault), lower(name))
		if err != nil {
			return dbErr(err, "purge key")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return keyNotFound(name)
		}
		return nil
	})
}

// KeysDueForPurge lists soft-deleted keys whose purge date is before t.
func (s *KeyStore) KeysDueForPurge(ctx context.Context, t time.Time) ([]*keyvault.Key, error) {
	return s.listKeys(ctx, `SELECT `+keyCols+` FROM kv_keys WHERE deleted_at IS NOT NULL AND scheduled_purge_at < $1 ORDER BY scheduled_purge_at`, unix(t))
}

// KeysWithRotationPolicy lists live keys that have a rotation policy.
func (s *KeyStore) KeysWithRotationPolicy(ctx context.Context) ([]*keyvault.Key, error) {
	return s.listKeys(ctx, `SELECT `+keyCols+` FROM kv_keys WHERE deleted_at IS NULL AND rotation_policy <> '' ORDER BY vault_key, name_key`)
}

// AppendAudit appends one audit record and sets its id.
func (s *KeyStore) AppendAudit(ctx context.Context, r *keyvault.AuditRecord) error {
	return s.AppendAuditBatch(ctx, []*keyvault.AuditRecord{r})
}

// AppendAuditBatch appends records in one transaction and sets their ids.
// Ids are the table's largest id plus one, in order, so they are unique and
// increase in the order records are stored on both engines: SQLite write
// transactions are serialized, and on PostgreSQL the transaction locks the
// table against other writers first (a unique violation is retried all the
// same).
func (s *KeyStore) AppendAuditBatch(ctx context.Context, rs []*keyvault.AuditRecord) error {
	if len(rs) == 0 {
		return nil
	}
	nextSt, insertSt := s.DB.db.stmt(ctx, auditNextID), s.DB.db.stmt(ctx, auditInsert)
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		err = s.DB.Tx(ctx, func(tx *sql.Tx) error {
			if s.DB.Engine == Postgres {
				// Writers on other connections wait here instead of
				// picking the same ids (readers are not blocked).
				if _, err := tx.ExecContext(ctx, `LOCK TABLE kv_audit IN EXCLUSIVE MODE`); err != nil {
					return err
				}
			}
			// Prepared once and reused by every batch: parsing the SQL
			// cost more than the rows.
			nextID, err := txStmt(ctx, tx, nextSt, auditNextID)
			if err != nil {
				return err
			}
			var next int64
			if err := nextID.QueryRowContext(ctx).Scan(&next); err != nil {
				return dbErr(err, "number audit records")
			}
			insert, err := txStmt(ctx, tx, insertSt, auditInsert)
			if err != nil {
				return err
			}
			for i, r := range rs {
				if _, err := insert.ExecContext(ctx, next+int64(i), unix(r.Time), r.CallerOID, lower(r.VaultName), r.KeyName, r.Version, r.Operation, r.Outcome); err != nil {
					return err
				}
			}
			for i, r := range rs {
				r.ID = next + int64(i)
			}
			return nil
		})
		if !isUniqueViolation(err) {
			break
		}
	}
	return dbErr(err, "append audit records")
}

const (
	auditNextID = `SELECT COALESCE(MAX(id), 0) + 1 FROM kv_audit`
	auditInsert = `INSERT INTO kv_audit (id, at, caller_oid, vault_key, key_name, version, operation, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
)

// PurgeAudit deletes the audit records older than before.
func (s *KeyStore) PurgeAudit(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM kv_audit WHERE at < $1`, unix(before))
	if err != nil {
		return 0, dbErr(err, "purge audit records")
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// ListAudit lists audit records, most recent first.
func (s *KeyStore) ListAudit(ctx context.Context, f keyvault.AuditFilter) ([]*keyvault.AuditRecord, error) {
	q := `SELECT id, at, caller_oid, vault_key, key_name, version, operation, outcome FROM kv_audit WHERE 1 = 1`
	var args []any
	if f.VaultName != "" {
		args = append(args, lower(f.VaultName))
		q += ` AND vault_key = $` + strconv.Itoa(len(args))
	}
	if f.KeyName != "" {
		args = append(args, lower(f.KeyName))
		q += ` AND LOWER(key_name) = $` + strconv.Itoa(len(args))
	}
	limit := f.Limit
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	q += ` ORDER BY id DESC LIMIT ` + strconv.Itoa(limit)
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list audit records")
	}
	defer rows.Close()
	out := []*keyvault.AuditRecord{}
	for rows.Next() {
		var r keyvault.AuditRecord
		var at int64
		if err := rows.Scan(&r.ID, &at, &r.CallerOID, &r.VaultName, &r.KeyName, &r.Version, &r.Operation, &r.Outcome); err != nil {
			return nil, dbErr(err, "scan audit record")
		}
		r.Time = fromUnix(at)
		out = append(out, &r)
	}
	return out, dbErr(rows.Err(), "list audit records")
}
