package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"custody"
	"custody/keyvault"
)

// VaultStore implements keyvault.VaultStore on table kv_vaults. The
// properties a vault's ARM body carries live in one JSON column; what queries
// select on (name, group, deletion and purge dates) has its own columns.
type VaultStore struct{ DB *DB }

var _ keyvault.VaultStore = (*VaultStore)(nil)

// vaultProps is the JSON of kv_vaults.properties. Field names are part of
// the stored format: rename none.
type vaultProps struct {
	TenantID                     string                `json:"tenantId"`
	SKU                          string                `json:"sku"`
	AccessPolicies               []vaultPolicy         `json:"accessPolicies"`
	EnableRbacAuthorization      bool                  `json:"enableRbacAuthorization"`
	EnablePurgeProtection        bool                  `json:"enablePurgeProtection"`
	SoftDeleteRetentionDays      int                   `json:"softDeleteRetentionInDays"`
	EnabledForDeployment         bool                  `json:"enabledForDeployment"`
	EnabledForDiskEncryption     bool                  `json:"enabledForDiskEncryption"`
	EnabledForTemplateDeployment bool                  `json:"enabledForTemplateDeployment"`
	PublicNetworkAccess          string                `json:"publicNetworkAccess,omitempty"`
	NetworkACLs                  *keyvault.NetworkACLs `json:"networkAcls,omitempty"`
}

type vaultPolicy struct {
	TenantID      string   `json:"tenantId"`
	ObjectID      string   `json:"objectId"`
	ApplicationID string   `json:"applicationId,omitempty"`
	Keys          []string `json:"keys"`
	Secrets       []string `json:"secrets"`
	Certificates  []string `json:"certificates"`
	Storage       []string `json:"storage"`
}

const vaultCols = `name, id, subscription_id, resource_group, location, tags, properties, created_at, updated_at, created_by, deleted_at, scheduled_purge_at`

func scanVault(row interface{ Scan(...any) error }) (*keyvault.Vault, error) {
	var v keyvault.Vault
	var tags, props string
	var created, updated int64
	var deleted, purge sql.NullInt64
	if err := row.Scan(&v.Name, &v.ID, &v.SubscriptionID, &v.ResourceGroup, &v.Location, &tags, &props, &created, &updated, &v.CreatedBy, &deleted, &purge); err != nil {
		return nil, err
	}
	v.CreatedAt, v.UpdatedAt = fromUnix(created), fromUnix(updated)
	if deleted.Valid {
		t := fromUnix(deleted.Int64)
		v.DeletedAt = &t
	}
	if purge.Valid {
		t := fromUnix(purge.Int64)
		v.ScheduledPurgeAt = &t
	}
	if err := json.Unmarshal([]byte(tags), &v.Tags); err != nil {
		return nil, err
	}
	var p vaultProps
	if err := json.Unmarshal([]byte(props), &p); err != nil {
		return nil, err
	}
	v.TenantID, v.SKU = p.TenantID, p.SKU
	v.EnableRbacAuthorization, v.EnablePurgeProtection, v.SoftDeleteRetentionDays = p.EnableRbacAuthorization, p.EnablePurgeProtection, p.SoftDeleteRetentionDays
	v.EnabledForDeployment, v.EnabledForDiskEncryption, v.EnabledForTemplateDeployment = p.EnabledForDeployment, p.EnabledForDiskEncryption, p.EnabledForTemplateDeployment
	v.PublicNetworkAccess, v.NetworkACLs = p.PublicNetworkAccess, p.NetworkACLs
	v.AccessPolicies = make([]keyvault.AccessPolicy, len(p.AccessPolicies))
	for i, ap := range p.AccessPolicies {
		v.AccessPolicies[i] = keyvault.AccessPolicy{
			TenantID: ap.TenantID, ObjectID: ap.ObjectID, ApplicationID: ap.ApplicationID,
			Keys: ap.Keys, Secrets: ap.Secrets, Certificates: ap.Certificates, Storage: ap.Storage,
		}
	}
	return &v, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return unix(*t)
}

// PutVault inserts or replaces v, matched by name case-insensitively. An
// update keeps the row (and so the vault's keys): it never deletes and
// re-inserts.
func (s *VaultStore) PutVault(ctx context.Context, v *keyvault.Vault) error {
	p := vaultProps{
		TenantID: v.TenantID, SKU: v.SKU, AccessPolicies: make([]vaultPolicy, len(v.AccessPolicies)),
		EnableRbacAuthorization: v.EnableRbacAuthorization, EnablePurgeProtection: v.EnablePurgeProtection,
		SoftDeleteRetentionDays: v.SoftDeleteRetentionDays, EnabledForDeployment: v.EnabledForDeployment,
		EnabledForDiskEncryption: v.EnabledForDiskEncryption, EnabledForTemplateDeployment: v.EnabledForTemplateDeployment,
		PublicNetworkAccess: v.PublicNetworkAccess, NetworkACLs: v.NetworkACLs,
	}
	for i, ap := range v.AccessPolicies {
		p.AccessPolicies[i] = vaultPolicy{
			TenantID: ap.TenantID, ObjectID: ap.ObjectID, ApplicationID: ap.ApplicationID,
			Keys: orEmpty(ap.Keys), Secrets: orEmpty(ap.Secrets), Certificates: orEmpty(ap.Certificates), Storage: orEmpty(ap.Storage),
		}
	}
	props, err := json.Marshal(p)
	if err != nil {
		return custody.Internal(err, "encode vault properties")
	}
	tags, err := json.Marshal(nonNilTags(v.Tags))
	if err != nil {
		return custody.Internal(err, "encode vault tags")
	}
	_, err = s.DB.db.ExecContext(ctx, `INSERT INTO kv_vaults (name_key, `+vaultCols+`, rg_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, id = excluded.id, subscription_id = excluded.subscription_id,
			resource_group = excluded.resource_group, rg_key = excluded.rg_key, location = excluded.location, tags = excluded.tags,
			properties = excluded.properties, created_at = excluded.created_at, updated_at = excluded.updated_at,
			created_by = excluded.created_by, deleted_at = excluded.deleted_at, scheduled_purge_at = excluded.scheduled_purge_at`,
		lower(v.Name), v.Name, v.ID, v.SubscriptionID, v.ResourceGroup, v.Location, string(tags), string(props),
		unix(v.CreatedAt), unix(v.UpdatedAt), v.CreatedBy, nullTime(v.DeletedAt), nullTime(v.ScheduledPurgeAt), lower(v.ResourceGroup))
	return dbErr(err, "write vault")
}

// Vault returns the live or soft-deleted vault with this name.
func (s *VaultStore) Vault(ctx context.Context, name string) (*keyvault.Vault, error) {
	v, err := scanVault(s.DB.db.QueryRowContext(ctx, `SELECT `+vaultCols+` FROM kv_vaults WHERE name_key = $1`, lower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "VaultNotFound", "Vault '%s' does not exist.", name)
	}
	return v, dbErr(err, "read vault")
}

// ListVaults lists the live (or, with deleted, the soft-deleted) vaults of a
// subscription or of one of its resource groups, by name.
func (s *VaultStore) ListVaults(ctx context.Context, sub, rg string, deleted bool) ([]*keyvault.Vault, error) {
	q := `SELECT ` + vaultCols + ` FROM kv_vaults WHERE subscription_id = $1`
	args := []any{sub}
	if rg != "" {
		q += ` AND rg_key = $2`
		args = append(args, lower(rg))
	}
	if deleted {
		q += ` AND deleted_at IS NOT NULL`
	} else {
		q += ` AND deleted_at IS NULL`
	}
	return s.list(ctx, q+` ORDER BY name_key`, args...)
}

func (s *VaultStore) list(ctx context.Context, q string, args ...any) ([]*keyvault.Vault, error) {
	rows, err := s.DB.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err, "list vaults")
	}
	defer rows.Close()
	out := []*keyvault.Vault{}
	for rows.Next() {
		v, err := scanVault(rows)
		if err != nil {
			return nil, dbErr(err, "scan vault")
		}
		out = append(out, v)
	}
	return out, dbErr(rows.Err(), "list vaults")
}

// PurgeVault removes a vault with all its keys and key versions in one
// transaction. The explicit deletes do what the foreign keys' cascades do,
// so the result does not depend on the engine enforcing them.
func (s *VaultStore) PurgeVault(ctx context.Context, name string) error {
	key := lower(name)
	return s.DB.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM kv_key_versions WHERE vault_key = $1`, key); err != nil {
			return dbErr(err, "purge vault key versions")
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM kv_keys WHERE vault_key = $1`, key); err != nil {
			return dbErr(err, "purge vault keys")
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM kv_vaults WHERE name_key = $1`, key)
		if err != nil {
			return dbErr(err, "purge vault")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return custody.Errorf(custody.KindNotFound, "VaultNotFound", "Vault '%s' does not exist.", name)
		}
		return nil
	})
}

// VaultsDueForPurge lists soft-deleted vaults whose purge date is before t.
func (s *VaultStore) VaultsDueForPurge(ctx context.Context, t time.Time) ([]*keyvault.Vault, error) {
	return s.list(ctx, `SELECT `+vaultCols+` FROM kv_vaults WHERE deleted_at IS NOT NULL AND scheduled_purge_at < $1 ORDER BY scheduled_purge_at`, unix(t))
}
