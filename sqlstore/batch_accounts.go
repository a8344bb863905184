package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"custody"
	"custody/batch"
)

// BatchAccountStore implements batch.AccountStore and
// batch.PlatformKeyStore.
type BatchAccountStore struct{ DB *DB }

var (
	_ batch.AccountStore     = (*BatchAccountStore)(nil)
	_ batch.PlatformKeyStore = (*BatchAccountStore)(nil)
)

type accountProps struct {
	PoolAllocationMode  string `json:"poolAllocationMode"`
	PublicNetworkAccess string `json:"publicNetworkAccess"`
	ProvisioningState   string `json:"provisioningState"`
	// AuthModes is nil (absent) for all modes.
	AuthModes []string `json:"allowedAuthenticationModes,omitempty"`
}

const accountCols = `name, id, uid, subscription_id, resource_group, location, tags, identity, key_source, key_identifier, properties,
	dek_generation, dek_key_source, dek_key_id, dek_algorithm, dek_identity, dek_wrapped,
	key_state, key_reason, key_since, key_last_probe, created_at, updated_at, shared_keys,
	dek_old_generation, dek_old, reencryption`

func accountArgs(a *batch.Account) ([]any, error) {
	tags, err := json.Marshal(nonNilTags(a.Tags))
	if err != nil {
		return nil, err
	}
	ident, err := json.Marshal(a.Identity)
	if err != nil {
		return nil, err
	}
	props, err := json.Marshal(accountProps{a.PoolAllocationMode, a.PublicNetworkAccess, a.ProvisioningState, a.AuthModes})
	if err != nil {
		return nil, err
	}
	oldGen, old, err := oldDEKColumns(a.Key.Old)
	if err != nil {
		return nil, err
	}
	re, err := reencryptionColumn(a.Reencryption)
	if err != nil {
		return nil, err
	}
	w := a.Key.Wrapped
	return []any{a.Name, a.ID, a.UID, a.SubscriptionID, a.ResourceGroup, a.Location, string(tags), string(ident),
		a.Encryption.KeySource, a.Encryption.KeyIdentifier, string(props),
		int64(a.Key.Generation), w.KeySource, w.KeyID, w.Algorithm, w.Identity, w.Ciphertext,
		a.Key.State, a.Key.Reason, unix(a.Key.Since), unix(a.Key.LastProbe), unix(a.CreatedAt), unix(a.UpdatedAt), nonNilBytes(a.SharedKeys),
		oldGen, old, re}, nil
}

// oldDEKColumns are the dek_old_generation and dek_old values of o.
func oldDEKColumns(o *batch.OldDEK) (int64, string, error) {
	if o == nil {
		return 0, "", nil
	}
	b, err := json.Marshal(o.Wrapped)
	return int64(o.Generation), string(b), err
}

func reencryptionColumn(r *batch.Reencryption) (string, error) {
	if r == nil {
		return "", nil
	}
	b, err := json.Marshal(r)
	return string(b), err
}

func scanAccount(row interface{ Scan(...any) error }) (*batch.Account, error) {
	var a batch.Account
	var tags, ident, props, old, re string
	var gen, since, probe, created, updated, oldGen int64
	w := &a.Key.Wrapped
	if err := row.Scan(&a.Name, &a.ID, &a.UID, &a.SubscriptionID, &a.ResourceGroup, &a.Location, &tags, &ident,
		&a.Encryption.KeySource, &a.Encryption.KeyIdentifier, &props,
		&gen, &w.KeySource, &w.KeyID, &w.Algorithm, &w.Identity, &w.Ciphertext,
		&a.Key.State, &a.Key.Reason, &since, &probe, &created, &updated, &a.SharedKeys,
		&oldGen, &old, &re); err != nil {
		return nil, err
	}
	if oldGen != 0 {
		a.Key.Old = &batch.OldDEK{Generation: uint32(oldGen)}
		if err := json.Unmarshal([]byte(old), &a.Key.Old.Wrapped); err != nil {
			return nil, err
		}
	}
	if re != "" {
		a.Reencryption = &batch.Reencryption{}
		if err := json.Unmarshal([]byte(re), a.Reencryption); err != nil {
			return nil, err
		}
	}
	var p accountProps
	if err := errors.Join(json.Unmarshal([]byte(tags), &a.Tags), json.Unmarshal([]byte(ident), &a.Identity), json.Unmarshal([]byte(props), &p)); err != nil {
		return nil, err
	}
	a.PoolAllocationMode, a.PublicNetworkAccess, a.ProvisioningState, a.AuthModes = p.PoolAllocationMode, p.PublicNetworkAccess, p.ProvisioningState, p.AuthModes
	a.Key.Generation = uint32(gen)
	a.Key.Since, a.Key.LastProbe, a.CreatedAt, a.UpdatedAt = fromUnix(since), fromUnix(probe), fromUnix(created), fromUnix(updated)
	return &a, nil
}

func (s *BatchAccountStore) CreateAccount(ctx context.Context, a *batch.Account) error {
	args, err := accountArgs(a)
	if err != nil {
		return custody.Internal(err, "encode account")
	}
	_, err = s.DB.db.ExecContext(ctx, `INSERT INTO batch_accounts (name_key, rg_key, `+accountCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)`,
		append([]any{lower(a.Name), lower(a.ResourceGroup)}, args...)...)
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "AccountNameUnavailable", "The batch account name %q is already taken.", a.Name)
	}
	return dbErr(err, "insert batch account")
}

func (s *BatchAccountStore) Account(ctx context.Context, name string) (*batch.Account, error) {
	a, err := scanAccount(s.DB.db.QueryRowContext(ctx, `SELECT `+accountCols+` FROM batch_accounts WHERE name_key = $1`, lower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "ResourceNotFound", "The Resource 'Microsoft.Batch/batchAccounts/%s' was not found.", name)
	}
	return a, dbErr(err, "read batch account")
}

func (s *BatchAccountStore) ListAccounts(ctx context.Context, sub, rg string) ([]*batch.Account, error) {
	q, args := `SELECT `+accountCols+` FROM batch_accounts WHERE 1 = 1`, []any{}
	if sub != "" {
		args = append(args, sub)
		q += ` AND subscription_id = $1`
		if rg != "" {
			args = append(args, lower(rg))
			q += ` AND rg_key = $2`
		}
	}
	rows, err := s.DB.db.QueryContext(ctx, q+` ORDER BY name_key`, args...)
	if err != nil {
		return nil, dbErr(err, "list batch accounts")
	}
	defer rows.Close()
	out := []*batch.Account{}
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, dbErr(err, "scan batch account")
		}
		out = append(out, a)
	}
	return out, dbErr(rows.Err(), "list batch accounts")
}

func (s *BatchAccountStore) UpdateAccount(ctx context.Context, a *batch.Account, prevKeyID string) error {
	args, err := accountArgs(a)
	if err != nil {
		return custody.Internal(err, "encode account")
	}
	// args follow accountCols: location..dek_wrapped are 5..16, the key
	// state 17..20, created_at 21, updated_at 22. The shared keys (23)
	// change only through UpdateSharedKeys. The key state columns are written only with a new wrap (a key change
	// proved by a round trip); otherwise a concurrent lock by the key
	// monitor must not be overwritten by a tag or identity update that read
	// the account before the lock.
	// The old DEK generation (24, 25) is written with the current one: a
	// key change rewraps both. The generations themselves are compared,
	// so that no write brings back an old DEK a finished re-encryption
	// deleted.
	cols := []string{"location", "tags", "identity", "key_source", "key_identifier", "properties",
		"dek_generation", "dek_key_source", "dek_key_id", "dek_algorithm", "dek_identity", "dek_wrapped", "updated_at", "dek_old"}
	vals := append(append([]any{}, args[5:17]...), args[22], args[25])
	if prevKeyID != a.Key.Wrapped.KeyID {
		cols = append(cols, "key_state", "key_reason", "key_since", "key_last_probe")
		vals = append(vals, args[17:21]...)
	}
	set := make([]string, len(cols))
	for i, c := range cols {
		set[i] = fmt.Sprintf("%s = $%d", c, i+1)
	}
	n := len(cols)
	res, err := s.DB.db.ExecContext(ctx, `UPDATE batch_accounts SET `+strings.Join(set, ", ")+
		fmt.Sprintf(` WHERE name_key = $%d AND uid = $%d AND dek_key_id = $%d AND dek_generation = $%d AND dek_old_generation = $%d`, n+1, n+2, n+3, n+4, n+5),
		append(vals, lower(a.Name), a.UID, prevKeyID, args[11], args[24])...)
	if err != nil {
		return dbErr(err, "update batch account")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindConflict, "AccountChangedConcurrently", "Batch account %q was changed by another request; read it again and retry.", a.Name)
	}
	return nil
}

func (s *BatchAccountStore) BeginReencryption(ctx context.Context, a *batch.Account, prevGen uint32, prevKeyID string) error {
	args, err := accountArgs(a)
	if err != nil {
		return custody.Internal(err, "encode account")
	}
	res, err := s.DB.db.ExecContext(ctx, `UPDATE batch_accounts SET dek_generation = $1, dek_key_source = $2, dek_key_id = $3, dek_algorithm = $4,
		dek_identity = $5, dek_wrapped = $6, updated_at = $7, dek_old_generation = $8, dek_old = $9, reencryption = $10
		WHERE name_key = $11 AND uid = $12 AND dek_generation = $13 AND dek_key_id = $14 AND dek_old_generation = 0`,
		args[11], args[12], args[13], args[14], args[15], args[16], args[22], args[24], args[25], args[26],
		lower(a.Name), a.UID, int64(prevGen), prevKeyID)
	if err != nil {
		return dbErr(err, "begin re-encryption")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindConflict, "AccountChangedConcurrently", "Batch account %q was changed by another request (a key change or a re-encryption); read it again and retry.", a.Name)
	}
	return nil
}

func (s *BatchAccountStore) UpdateReencryption(ctx context.Context, name, uid string, r *batch.Reencryption) error {
	re, err := reencryptionColumn(r)
	if err != nil {
		return custody.Internal(err, "encode re-encryption")
	}
	res, err := s.DB.db.ExecContext(ctx, `UPDATE batch_accounts SET reencryption = $1 WHERE name_key = $2 AND uid = $3 AND dek_generation = $4`,
		re, lower(name), uid, int64(r.To))
	if err != nil {
		return dbErr(err, "update re-encryption")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindConflict, "AccountChangedConcurrently", "Batch account %q was changed or deleted during its re-encryption.", name)
	}
	return nil
}

func (s *BatchAccountStore) FinishReencryption(ctx context.Context, name, uid string, r *batch.Reencryption) error {
	re, err := reencryptionColumn(r)
	if err != nil {
		return custody.Internal(err, "encode re-encryption")
	}
	res, err := s.DB.db.ExecContext(ctx, `UPDATE batch_accounts SET reencryption = $1, dek_old_generation = 0, dek_old = ''
		WHERE name_key = $2 AND uid = $3 AND dek_generation = $4 AND dek_old_generation = $5`,
		re, lower(name), uid, int64(r.To), int64(r.From))
	if err != nil {
		return dbErr(err, "finish re-encryption")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindConflict, "AccountChangedConcurrently", "Batch account %q was changed or deleted during its re-encryption.", name)
	}
	return nil
}

func (s *BatchAccountStore) UpdateKeyState(ctx context.Context, name string, k batch.AccountKey) error {
	_, err := s.DB.db.ExecContext(ctx, `UPDATE batch_accounts SET key_state = $1, key_reason = $2, key_since = $3, key_last_probe = $4 WHERE name_key = $5`,
		k.State, k.Reason, unix(k.Since), unix(k.LastProbe), lower(name))
	return dbErr(err, "update key state")
}

func (s *BatchAccountStore) UpdateSharedKeys(ctx context.Context, name, uid string, prev, next []byte) error {
	// Rows from before the column existed hold its default, which SQLite
	// keeps as text: "no keys yet" is matched by length.
	q, args := `UPDATE batch_accounts SET shared_keys = $1 WHERE name_key = $2 AND uid = $3 AND length(shared_keys) = 0`, []any{next, lower(name), uid}
	if len(prev) > 0 {
		q, args = `UPDATE batch_accounts SET shared_keys = $1 WHERE name_key = $2 AND uid = $3 AND shared_keys = $4`, append(args, prev)
	}
	res, err := s.DB.db.ExecContext(ctx, q, args...)
	if err != nil {
		return dbErr(err, "update shared keys")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindConflict, "AccountChangedConcurrently", "The keys of batch account %q were changed by another request; read them again and retry.", name)
	}
	return nil
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (s *BatchAccountStore) DeleteAccount(ctx context.Context, name string) error {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM batch_accounts WHERE name_key = $1`, lower(name))
	if err != nil {
		return dbErr(err, "delete batch account")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindNotFound, "ResourceNotFound", "The batch account %q was not found.", name)
	}
	return nil
}

func (s *BatchAccountStore) PlatformKeys(ctx context.Context) ([]*batch.PlatformKey, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT id, sealed, active, created_at FROM batch_platform_keys ORDER BY created_at`)
	if err != nil {
		return nil, dbErr(err, "list platform keys")
	}
	defer rows.Close()
	var out []*batch.PlatformKey
	for rows.Next() {
		var k batch.PlatformKey
		var created int64
		if err := rows.Scan(&k.ID, &k.Sealed, &k.Active, &created); err != nil {
			return nil, dbErr(err, "scan platform key")
		}
		k.CreatedAt = fromUnix(created)
		out = append(out, &k)
	}
	return out, dbErr(rows.Err(), "list platform keys")
}

func (s *BatchAccountStore) AddPlatformKey(ctx context.Context, k *batch.PlatformKey) error {
	return s.DB.Tx(ctx, func(tx *sql.Tx) error {
		if k.Active {
			if _, err := tx.ExecContext(ctx, `UPDATE batch_platform_keys SET active = $1`, false); err != nil {
				return dbErr(err, "deactivate platform keys")
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO batch_platform_keys (id, sealed, active, created_at) VALUES ($1, $2, $3, $4)`, k.ID, k.Sealed, k.Active, unix(k.CreatedAt))
		return dbErr(err, "insert platform key")
	})
}
