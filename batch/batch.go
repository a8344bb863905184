// Package batch is Custody's batch service: what Azure Batch is. Accounts
// are resources (Microsoft.Batch/batchAccounts) with a managed identity and
// an encryption setting; every piece of customer data an account stores (job
// and task specifications, certificates, metadata) is sealed with the
// account's data encryption key (DEK) before it reaches the database.
//
// The DEK is stored only wrapped by a key-encryption key (KEK): the server's
// platform key for keySource Microsoft.Batch, or the customer's key in a key
// vault for Microsoft.KeyVault, reached only through the vault's REST API
// with a token for the account's managed identity (see VaultREST), or, for
// a vault outside this server on an allowed host, with a token from that
// vault's tenant (see ExternalVaults). Changing
// the key rewraps the DEK in one transaction; a key-health monitor locks an
// account when its key becomes inaccessible and unlocks it when access
// returns.
package batch

import (
	"context"
	"time"
)

// Key sources, as Azure spells them.
const (
	KeySourceBatch    = "Microsoft.Batch"
	KeySourceKeyVault = "Microsoft.KeyVault"
)

// Identity types of an account.
const (
	IdentityNone           = "None"
	IdentitySystemAssigned = "SystemAssigned"
	IdentityUserAssigned   = "UserAssigned"
)

// Account is a Microsoft.Batch/batchAccounts resource.
type Account struct {
	ID             string
	UID            string // immutable random id; binds ciphertexts to this account
	SubscriptionID string
	ResourceGroup  string
	Name           string
	Location       string
	Tags           map[string]string

	Identity   AccountIdentity
	Encryption Encryption

	PoolAllocationMode  string // BatchService
	PublicNetworkAccess string // Enabled
	ProvisioningState   string // Succeeded, Deleting, ...
	CreatedAt           time.Time
	UpdatedAt           time.Time

	// Key is the account's wrapped DEK and the state of its key.
	Key AccountKey

	// AuthModes are the data-plane authentication modes the account allows
	// (allowedAuthenticationModes: SharedKey, AAD, TaskAuthenticationToken).
	// Nil means all of them, the default of a new account.
	AuthModes []string
	// SharedKeys holds the primary and secondary shared keys, sealed under
	// the root key (see sharedkey.go); empty until first generated.
	SharedKeys []byte

	// Reencryption is the account's last re-encryption (nil if it never
	// had one); see Service.Reencrypt.
	Reencryption *Reencryption
}

// AccountIdentity is the managed identity of an account.
type AccountIdentity struct {
	Type string // None, SystemAssigned, UserAssigned
	// PrincipalID and TenantID are those of the system-assigned identity.
	PrincipalID string
	TenantID    string
	// UserAssigned maps identity resource ids to their ids.
	UserAssigned map[string]UserAssignedIdentity
}

// UserAssignedIdentity is one user-assigned identity attached to an account.
type UserAssignedIdentity struct {
	PrincipalID string `json:"principalId"`
	ClientID    string `json:"clientId"`
}

// Encryption is an account's encryption setting.
type Encryption struct {
	KeySource string // Microsoft.Batch or Microsoft.KeyVault
	// KeyIdentifier is the customer's key, versioned
	// (https://{vault}/keys/{name}/{version}) or versionless
	// (https://{vault}/keys/{name}), when KeySource is Microsoft.KeyVault.
	KeyIdentifier string
}

// Key states.
const (
	KeyAvailable    = "Available"
	KeyInaccessible = "KeyInaccessible"
)

// AccountKey is the wrapped DEK of an account and the health of its KEK.
type AccountKey struct {
	// Generation of the DEK; travels with every ciphertext.
	Generation uint32
	// Wrapped is the DEK wrapped by the KEK.
	Wrapped WrappedDEK
	// State is Available or KeyInaccessible.
	State string
	// Reason says why the key is inaccessible (empty when available).
	Reason string
	// Since is when State last changed.
	Since time.Time
	// LastProbe is the last successful unwrap through the KEK.
	LastProbe time.Time
	// Old is the previous DEK generation while a re-encryption moves the
	// account's records from it to the current one; nil otherwise. It is
	// wrapped by the same KEK as the current DEK and rewrapped with it on a
	// key change.
	Old *OldDEK
}

// OldDEK is an account's previous DEK generation, wrapped.
type OldDEK struct {
	Generation uint32     `json:"generation"`
	Wrapped    WrappedDEK `json:"wrapped"`
}

// WrappedDEK is a DEK wrapped by a KEK.
type WrappedDEK struct {
	KeySource string `json:"keySource"` // Microsoft.Batch or Microsoft.KeyVault
	// KeyID names the KEK that wrapped it: a platform key id, or the
	// versioned key identifier in the vault.
	KeyID     string `json:"keyId"`
	Algorithm string `json:"algorithm"` // A256GCM (platform) or RSA-OAEP-256 (vault)
	// Identity is the principal id used to reach the vault.
	Identity   string `json:"identity"`
	Ciphertext []byte `json:"ciphertext"`
}

// AccountStore is the persistence of accounts.
type AccountStore interface {
	// CreateAccount inserts a (a name conflict is KindConflict).
	CreateAccount(ctx context.Context, a *Account) error
	// Account returns the account named name (KindNotFound).
	Account(ctx context.Context, name string) (*Account, error)
	ListAccounts(ctx context.Context, subscriptionID, rg string) ([]*Account, error)
	// UpdateAccount replaces the stored account if its wrapped DEK still has
	// the key id prevKeyID and the stored DEK generations (current and old)
	// are still a's (compare-and-swap), in one statement, so a key change is
	// all or nothing. A mismatch is KindConflict. The re-encryption state is
	// not written.
	UpdateAccount(ctx context.Context, a *Account, prevKeyID string) error
	// BeginReencryption stores a's new DEK generation, its old one and its
	// re-encryption state if the stored account still has DEK generation
	// prevGen wrapped by prevKeyID and no old generation. A mismatch is
	// KindConflict.
	BeginReencryption(ctx context.Context, a *Account, prevGen uint32, prevKeyID string) error
	// UpdateReencryption stores the re-encryption state r of the account
	// named name whose UID is uid, if its DEK generation is still r.To.
	UpdateReencryption(ctx context.Context, name, uid string, r *Reencryption) error
	// FinishReencryption stores r and deletes the old DEK generation r.From
	// from the account row, if its generations are still r.To and r.From.
	FinishReencryption(ctx context.Context, name, uid string, r *Reencryption) error
	// UpdateKeyState records the key state of an account without touching
	// anything else.
	UpdateKeyState(ctx context.Context, name string, k AccountKey) error
	// UpdateSharedKeys replaces the sealed shared keys of the account
	// named name whose UID is uid, if they are still prev
	// (compare-and-swap). A mismatch is KindConflict.
	UpdateSharedKeys(ctx context.Context, name, uid string, prev, next []byte) error
	// DeleteAccount removes an account and all of its data.
	DeleteAccount(ctx context.Context, name string) error
}

// PlatformKey is one AES-256 key of the server's platform key ring, sealed
// under the root key.
type PlatformKey struct {
	ID        string
	Sealed    []byte
	Active    bool
	CreatedAt time.Time
}

// PlatformKeyStore is the persistence of the platform key ring.
type PlatformKeyStore interface {
	PlatformKeys(ctx context.Context) ([]*PlatformKey, error)
	// AddPlatformKey stores k; if k.Active, others become inactive.
	AddPlatformKey(ctx context.Context, k *PlatformKey) error
}
