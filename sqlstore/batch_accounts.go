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
	key_state, key_reason, key_since, key_last_probe, created_at, updated_at, shared_keys`

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
	w := a.Key.Wrapped
	return []any{a.Name, a.ID, a.UID, a.SubscriptionID, a.ResourceGroup, a.Location, string(tags), string(ident),
		a.Encryption.KeySource, a.Encryption.KeyIdentifier, string(props),
		int64(a.Key.Generation), w.KeySource, w.KeyID, w.Algorithm, w.Identity, w.Ciphertext,
		a.Key.State, a.Key.Reason, unix(a.Key.Since), unix(a.Key.LastProbe), unix(a.CreatedAt), unix(a.UpdatedAt), nonNilBytes(a.SharedKeys)}, nil
}

func scanAccount(row interface{ Scan(...any) error }) (*batch.Account, error) {
	var a batch.Account
	var tags, ident, props string
	var gen, since, probe, created, updated int64
	w := &a.Key.Wrapped
	if err := row.Scan(&a.Name, &a.ID, &a.UID, &a.SubscriptionID, &a.ResourceGroup, &a.Location, &tags, &ident,
		&a.Encryption.KeySource, &a.Encryption.KeyIdentifier, &props,
		&gen, &w.KeySource, &w.KeyID, &w.Algorithm, &w.Identity, &w.Ciphertext,
		&a.Key.State, &a.Key.Reason, &since, &probe, &created, &updated, &a.SharedKeys); err != nil {
		return nil, err
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
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)`,
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
	cols := []string{"location", "tags", "identity", "key_source", "key_identifier", "properties",
		"dek_generation", "dek_key_source", "dek_key_id", "dek_algorithm", "dek_identity", "dek_wrapped", "updated_at"}
	vals := append(append([]any{}, args[5:17]...), args[22])
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
		fmt.Sprintf(` WHERE name_key = $%d AND uid = $%d AND dek_key_id = $%d`, n+1, n+2, n+3),
		append(vals, lower(a.Name), a.UID, prevKeyID)...)
	if err != nil {
		return dbErr(err, "update batch account")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindConflict, "AccountChangedConcurrently", "Batch account %q was changed by another request; read it again and retry.", a.Name)
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
