package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"custody"
	"custody/identity"
)

// IdentityStore implements identity.Store.
type IdentityStore struct{ DB *DB }

var _ identity.Store = (*IdentityStore)(nil)

const principalCols = `object_id, app_id, tenant_id, kind, display_name, resource_id, created_at`

func scanPrincipal(row interface{ Scan(...any) error }) (*identity.Principal, error) {
	var p identity.Principal
	var kind string
	var created int64
	if err := row.Scan(&p.ObjectID, &p.AppID, &p.TenantID, &kind, &p.DisplayName, &p.ResourceID, &created); err != nil {
		return nil, err
	}
	p.Kind, p.CreatedAt = identity.PrincipalKind(kind), fromUnix(created)
	return &p, nil
}

func insertPrincipal(ctx context.Context, q queryer, p *identity.Principal) error {
	_, err := q.ExecContext(ctx, `INSERT INTO principals (`+principalCols+`, resource_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		p.ObjectID, p.AppID, p.TenantID, string(p.Kind), p.DisplayName, p.ResourceID, unix(p.CreatedAt), lower(p.ResourceID))
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "PrincipalExists", "A principal with object id %s or client id %s already exists.", p.ObjectID, p.AppID)
	}
	return dbErr(err, "insert principal")
}

func (s *IdentityStore) CreatePrincipal(ctx context.Context, p *identity.Principal) error {
	return insertPrincipal(ctx, s.DB.db, p)
}

func (s *IdentityStore) principalWhere(ctx context.Context, where string, args ...any) (*identity.Principal, error) {
	p, err := scanPrincipal(s.DB.db.QueryRowContext(ctx, `SELECT `+principalCols+` FROM principals WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "PrincipalNotFound", "No principal matches %v.", args[len(args)-1])
	}
	return p, dbErr(err, "read principal")
}

func (s *IdentityStore) Principal(ctx context.Context, oid string) (*identity.Principal, error) {
	return s.principalWhere(ctx, `object_id = $1`, oid)
}

func (s *IdentityStore) PrincipalByAppID(ctx context.Context, appID string) (*identity.Principal, error) {
	return s.principalWhere(ctx, `app_id = $1`, appID)
}

func (s *IdentityStore) PrincipalByResource(ctx context.Context, kind identity.PrincipalKind, resourceID string) (*identity.Principal, error) {
	return s.principalWhere(ctx, `kind = $1 AND resource_key = $2`, string(kind), lower(resourceID))
}

func (s *IdentityStore) ListPrincipals(ctx context.Context, kind identity.PrincipalKind) ([]*identity.Principal, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT `+principalCols+` FROM principals WHERE kind = $1 ORDER BY created_at, object_id`, string(kind))
	if err != nil {
		return nil, dbErr(err, "list principals")
	}
	defer rows.Close()
	var out []*identity.Principal
	for rows.Next() {
		p, err := scanPrincipal(rows)
		if err != nil {
			return nil, dbErr(err, "scan principal")
		}
		out = append(out, p)
	}
	return out, dbErr(rows.Err(), "list principals")
}

func (s *IdentityStore) DeletePrincipal(ctx context.Context, oid string) error {
	return s.DB.Tx(ctx, func(tx *sql.Tx) error { return deletePrincipal(ctx, tx, oid) })
}

func deletePrincipal(ctx context.Context, tx *sql.Tx, oid string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM credentials WHERE app_id IN (SELECT app_id FROM principals WHERE object_id = $1)`, oid); err != nil {
		return dbErr(err, "delete credentials")
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM federated_credentials WHERE app_id IN (SELECT app_id FROM principals WHERE object_id = $1)`, oid); err != nil {
		return dbErr(err, "delete federated credentials")
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM principals WHERE object_id = $1`, oid)
	if err != nil {
		return dbErr(err, "delete principal")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindNotFound, "PrincipalNotFound", "No principal has object id %s.", oid)
	}
	return nil
}

func (s *IdentityStore) AddCredential(ctx context.Context, c *identity.Credential) error {
	_, err := s.DB.db.ExecContext(ctx, `INSERT INTO credentials (key_id, app_id, hash, hint, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.KeyID, c.AppID, c.Hash, c.Hint, unix(c.ExpiresAt), unix(c.CreatedAt))
	return dbErr(err, "insert credential")
}

func (s *IdentityStore) Credentials(ctx context.Context, appID string) ([]*identity.Credential, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT key_id, app_id, hash, hint, expires_at, created_at FROM credentials WHERE app_id = $1`, appID)
	if err != nil {
		return nil, dbErr(err, "list credentials")
	}
	defer rows.Close()
	var out []*identity.Credential
	for rows.Next() {
		var c identity.Credential
		var exp, created int64
		if err := rows.Scan(&c.KeyID, &c.AppID, &c.Hash, &c.Hint, &exp, &created); err != nil {
			return nil, dbErr(err, "scan credential")
		}
		c.ExpiresAt, c.CreatedAt = fromUnix(exp), fromUnix(created)
		out = append(out, &c)
	}
	return out, dbErr(rows.Err(), "list credentials")
}

const uaiCols = `u.id, u.subscription_id, u.resource_group, u.name, u.location, u.tags, u.principal_id, p.app_id, p.tenant_id, u.created_at`

func scanUAI(row interface{ Scan(...any) error }) (*identity.UserAssignedIdentity, error) {
	var u identity.UserAssignedIdentity
	var tags string
	var created int64
	if err := row.Scan(&u.ID, &u.SubscriptionID, &u.ResourceGroup, &u.Name, &u.Location, &tags, &u.PrincipalID, &u.ClientID, &u.TenantID, &created); err != nil {
		return nil, err
	}
	u.CreatedAt = fromUnix(created)
	if err := json.Unmarshal([]byte(tags), &u.Tags); err != nil {
		return nil, err
	}
	return &u, nil
}

func (s *IdentityStore) PutUserAssignedIdentity(ctx context.Context, u *identity.UserAssignedIdentity, p *identity.Principal) (*identity.UserAssignedIdentity, bool, error) {
	tags, _ := json.Marshal(nonNilTags(u.Tags))
	created := false
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE user_assigned_identities SET location = $1, tags = $2 WHERE id_key = $3`, u.Location, string(tags), lower(u.ID))
		if err != nil {
			return dbErr(err, "update identity")
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		created = true
		if err := insertPrincipal(ctx, tx, p); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO user_assigned_identities (id_key, id, subscription_id, resource_group, rg_key, name, location, tags, principal_id, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			lower(u.ID), u.ID, u.SubscriptionID, u.ResourceGroup, lower(u.ResourceGroup), u.Name, u.Location, string(tags), p.ObjectID, unix(u.CreatedAt))
		return dbErr(err, "insert identity")
	})
	if err != nil {
		return nil, false, err
	}
	got, err := s.UserAssignedIdentity(ctx, u.ID)
	return got, created, err
}

func (s *IdentityStore) UserAssignedIdentity(ctx context.Context, resourceID string) (*identity.UserAssignedIdentity, error) {
	u, err := scanUAI(s.DB.db.QueryRowContext(ctx, `SELECT `+uaiCols+` FROM user_assigned_identities u JOIN principals p ON p.object_id = u.principal_id WHERE u.id_key = $1`, lower(resourceID)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "ResourceNotFound",
			"The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/%s' under resource group '%s' was not found.", lastSeg(resourceID), groupOf(resourceID))
	}
	return u, dbErr(err, "read identity")
}

func (s *IdentityStore) ListUserAssignedIdentities(ctx context.Context, sub, rg string) ([]*identity.UserAssignedIdentity, error) {
	q := `SELECT ` + uaiCols + ` FROM user_assigned_identities u JOIN principals p ON p.object_id = u.principal_id WHERE u.subscription_id = $1`
	args := []any{sub}
	if rg != "" {
		q += ` AND u.rg_key = $2`
		args = append(args, lower(rg))
	}
	rows, err := s.DB.db.QueryContext(ctx, q+` ORDER BY u.id_key`, args...)
	if err != nil {
		return nil, dbErr(err, "list identities")
	}
	defer rows.Close()
	out := []*identity.UserAssignedIdentity{}
	for rows.Next() {
		u, err := scanUAI(rows)
		if err != nil {
			return nil, dbErr(err, "scan identity")
		}
		out = append(out, u)
	}
	return out, dbErr(rows.Err(), "list identities")
}

func (s *IdentityStore) DeleteUserAssignedIdentity(ctx context.Context, resourceID string) error {
	return s.DB.Tx(ctx, func(tx *sql.Tx) error {
		var oid string
		err := tx.QueryRowContext(ctx, `SELECT principal_id FROM user_assigned_identities WHERE id_key = $1`, lower(resourceID)).Scan(&oid)
		if errors.Is(err, sql.ErrNoRows) {
			return custody.Errorf(custody.KindNotFound, "ResourceNotFound", "The user-assigned identity %s was not found.", resourceID)
		}
		if err != nil {
			return dbErr(err, "read identity")
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM user_assigned_identities WHERE id_key = $1`, lower(resourceID)); err != nil {
			return dbErr(err, "delete identity")
		}
		return deletePrincipal(ctx, tx, oid)
	})
}

func (s *IdentityStore) SigningKeys(ctx context.Context) ([]*identity.SigningKey, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT kid, algorithm, private_sealed, active, created_at FROM signing_keys ORDER BY created_at`)
	if err != nil {
		return nil, dbErr(err, "list signing keys")
	}
	defer rows.Close()
	var out []*identity.SigningKey
	for rows.Next() {
		var k identity.SigningKey
		var created int64
		if err := rows.Scan(&k.KID, &k.Algorithm, &k.PrivateSealed, &k.Active, &created); err != nil {
			return nil, dbErr(err, "scan signing key")
		}
		k.CreatedAt = fromUnix(created)
		out = append(out, &k)
	}
	return out, dbErr(rows.Err(), "list signing keys")
}

func (s *IdentityStore) AddSigningKey(ctx context.Context, k *identity.SigningKey) error {
	return s.DB.Tx(ctx, func(tx *sql.Tx) error {
		if k.Active {
			if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET active = $1`, false); err != nil {
				return dbErr(err, "deactivate signing keys")
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, algorithm, private_sealed, active, created_at) VALUES ($1, $2, $3, $4, $5)`,
			k.KID, k.Algorithm, k.PrivateSealed, k.Active, unix(k.CreatedAt))
		return dbErr(err, "insert signing key")
	})
}

func nonNilTags(t map[string]string) map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return t
}

func lastSeg(id string) string {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[i+1:]
		}
	}
	return id
}

func groupOf(id string) string {
	segs := splitID(id)
	for i := 0; i+1 < len(segs); i++ {
		if lower(segs[i]) == "resourcegroups" {
			return segs[i+1]
		}
	}
	return ""
}

func splitID(id string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(id); i++ {
		if i == len(id) || id[i] == '/' {
			if i > start {
				out = append(out, id[start:i])
			}
			start = i + 1
		}
	}
	return out
}
