// Package keyvault is Custody's key service: what Azure Key Vault is for
// keys. Vaults are resources (Microsoft.KeyVault/vaults) with soft delete,
// purge protection and access policies or role-based access; each vault has a
// data plane on its own host ({vault}.vault.{domain}) speaking the Key Vault
// REST API for keys: versions, permitted operations, enable/disable,
// wrap/unwrap, encrypt/decrypt, sign/verify, delete/recover/purge, backup and
// restore, and rotation.
//
// Private key material is sealed under the server's root key (AES-256-GCM,
// package secret) before it reaches the store; the store never sees it in
// plaintext.
//
// Other Custody services never call this package: they reach keys only
// through the vault's REST API with a token, as an outside customer would.
//
// # Change feed (a Custody extension)
//
// Each vault's data plane also answers
//
//	GET https://{vault}.vault.{domain}/custody/changes?api-version=7.5[&since={cursor}][&timeout={seconds}]
//
// with {"value":[{"cursor","kind","key","version","time"}...],"cursor","missed"}.
// Without since it answers at once with the current cursor; with since it
// answers the changes after it, waiting up to timeout seconds (default 30,
// at most 50) for one. Kinds: KeyVersionCreated, KeyUpdated (attributes such
// as enabled), KeyDeleted, KeyRecovered, KeyPurged, KeyRestored,
// AccessPolicyChanged, RoleAssignmentChanged (at, above or below the vault's
// scope), PrincipalDeleted, VaultDeleted, VaultRecovered, VaultPurged.
//
// The caller needs the right to read keys (access policy get, or a role
// with keys/read on the vault or one of its keys). Each change is filtered
// for the caller when it is answered: a key change only if the caller may
// read that key now; an access change (policy, role assignment, deleted
// principal) only to the principal whose access changed, without naming
// anyone; vault changes to every subscriber. Names of keys the caller may
// not read never appear. The feed lives in memory (the last 16,384 changes
// of the server): missed is true when the cursor is older than that, or from
// before a restart, and the subscriber must then treat everything it
// watches as changed. Role assignment changes and deleted principals reach
// the vault in process (rm.Service.ObserveRoleAssignments,
// identity.Service.ObservePrincipalDeletions).
package keyvault

import (
	"context"
	"time"
)

// Vault is a Microsoft.KeyVault/vaults resource.
type Vault struct {
	ID             string // full ARM resource id
	SubscriptionID string
	ResourceGroup  string
	Name           string
	Location       string
	Tags           map[string]string

	TenantID       string
	SKU            string // "standard" or "premium"
	AccessPolicies []AccessPolicy

	EnableRbacAuthorization      bool
	EnablePurgeProtection        bool
	SoftDeleteRetentionDays      int // 7..90, fixed at creation
	EnabledForDeployment         bool
	EnabledForDiskEncryption     bool
	EnabledForTemplateDeployment bool
	PublicNetworkAccess          string
	// NetworkACLs are the vault's network rules, kept and echoed as given
	// (nil when none were set).
	NetworkACLs *NetworkACLs

	CreatedAt time.Time
	UpdatedAt time.Time
	CreatedBy string // object id of the creator

	// DeletedAt is set while the vault is soft-deleted; ScheduledPurgeAt is
	// DeletedAt plus the retention period.
	DeletedAt        *time.Time
	ScheduledPurgeAt *time.Time
}

// AccessPolicy grants one principal permissions on a vault's objects.
// Permission names are Key Vault's (see KeyPermissions).
type AccessPolicy struct {
	TenantID      string
	ObjectID      string
	ApplicationID string
	Keys          []string
	Secrets       []string
	Certificates  []string
	Storage       []string
}

// KeyPermissions are the key permission names of access policies.
var KeyPermissions = []string{
	"all", "backup", "create", "decrypt", "delete", "encrypt", "get", "getrotationpolicy",
	"import", "list", "purge", "recover", "release", "restore", "rotate", "setrotationpolicy",
	"sign", "unwrapKey", "update", "verify", "wrapKey",
}

// Key is a named key in a vault: the container of its versions.
type Key struct {
	VaultName string
	Name      string
	Tags      map[string]string
	Managed   bool
	CreatedAt time.Time
	UpdatedAt time.Time

	// DeletedAt is set while the key is soft-deleted.
	DeletedAt        *time.Time
	ScheduledPurgeAt *time.Time

	// RotationPolicy is nil until one is set.
	RotationPolicy *RotationPolicy
}

// KeyVersion is one version of a key.
type KeyVersion struct {
	VaultName  string
	KeyName    string
	Version    string // 32 lowercase hex characters
	Kty        string // RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM
	Crv        string // P-256, P-384, P-521 for EC
	KeySize    int    // RSA modulus bits
	KeyOps     []string
	Enabled    bool
	NotBefore  *time.Time
	Expires    *time.Time
	Exportable bool
	Tags       map[string]string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// PublicJWK is the public part as JSON (Key Vault JsonWebKey without kid).
	PublicJWK []byte
	// PrivateSealed is the private key (PKCS#8 DER) sealed under the root key
	// with associated data binding vault, key and version.
	PrivateSealed []byte
}

// RotationPolicy is a key's rotation policy.
type RotationPolicy struct {
	LifetimeActions []LifetimeAction
	ExpiryTime      string // ISO-8601 duration, e.g. P2Y
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// LifetimeAction is one trigger/action pair of a rotation policy.
type LifetimeAction struct {
	TimeAfterCreate  string // ISO-8601 duration
	TimeBeforeExpiry string // ISO-8601 duration
	Action           string // "Rotate" or "Notify"
}

// AuditRecord is one key operation, as the audit log keeps it.
type AuditRecord struct {
	ID        int64
	Time      time.Time
	CallerOID string
	VaultName string
	KeyName   string
	Version   string
	Operation string
	Outcome   string // "success" or the error code
}

// AuditFilter selects audit records.
type AuditFilter struct {
	VaultName string
	KeyName   string
	Limit     int
}

// VaultStore is the persistence of vaults. Vault names are unique across
// the server (they are host names), including soft-deleted vaults.
type VaultStore interface {
	// PutVault inserts or replaces v (matched by name, case-insensitively).
	PutVault(ctx context.Context, v *Vault) error
	// Vault returns the live or soft-deleted vault with this name
	// (KindNotFound).
	Vault(ctx context.Context, name string) (*Vault, error)
	// ListVaults lists vaults of a subscription (and group, if rg != "");
	// deleted selects soft-deleted ones instead of live ones.
	ListVaults(ctx context.Context, subscriptionID, rg string, deleted bool) ([]*Vault, error)
	// PurgeVault removes a vault and all its keys, versions and policies.
	PurgeVault(ctx context.Context, name string) error
	// VaultsDueForPurge lists soft-deleted vaults whose purge date is before t.
	VaultsDueForPurge(ctx context.Context, t time.Time) ([]*Vault, error)
}

// KeyStore is the persistence of keys.
type KeyStore interface {
	// CreateKeyVersion stores a new version, creating the key if needed, in
	// one transaction; tags of kv also become the key's tags.
	CreateKeyVersion(ctx context.Context, k *Key, kv *KeyVersion) error
	// RestoreKey stores a key and all its versions in one transaction.
	RestoreKey(ctx context.Context, k *Key, versions []*KeyVersion) error
	Key(ctx context.Context, vault, name string) (*Key, error)
	KeyVersion(ctx context.Context, vault, name, version string) (*KeyVersion, error)
	// LatestKeyVersion returns the most recently created version.
	LatestKeyVersion(ctx context.Context, vault, name string) (*KeyVersion, error)
	ListKeys(ctx context.Context, vault string, deleted bool) ([]*Key, error)
	ListKeyVersions(ctx context.Context, vault, name string) ([]*KeyVersion, error)
	UpdateKeyVersion(ctx context.Context, kv *KeyVersion) error
	UpdateKey(ctx context.Context, k *Key) error
	// PurgeKey removes a key and all its versions.
	PurgeKey(ctx context.Context, vault, name string) error
	KeysDueForPurge(ctx context.Context, t time.Time) ([]*Key, error)
	// KeysWithRotationPolicy lists live keys that have a rotation policy.
	KeysWithRotationPolicy(ctx context.Context) ([]*Key, error)

	AppendAudit(ctx context.Context, r *AuditRecord) error
	ListAudit(ctx context.Context, f AuditFilter) ([]*AuditRecord, error)
	// PurgeAudit deletes the audit records older than before and returns
	// how many it deleted.
	PurgeAudit(ctx context.Context, before time.Time) (int64, error)
}
