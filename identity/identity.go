// Package identity is Custody's stand-in for Microsoft Entra ID and managed
// identities: principals (service principals and managed identities), their
// credentials, and the token authority that signs access tokens for them.
//
// Principals are identified by an object id (the oid claim) and a client id
// (appid). A system-assigned managed identity is created and deleted with the
// resource that owns it; a user-assigned identity is its own resource
// (Microsoft.ManagedIdentity/userAssignedIdentities) and can be attached to
// many. Tokens for managed identities are issued only to the service that owns
// the resource (see Service.ManagedIdentityToken), through the same signing path
// as every other token.
//
// Service principals may also sign in with a token another issuer signed
// (workload identity federation): their federated credentials name the
// issuer, subject and audience they trust (see AuthenticateAssertion), and
// FederationAssertion signs such a token for a managed identity, for a
// tenant elsewhere that trusts this server's issuer.
package identity

import (
	"context"
	"time"
)

// PrincipalKind says what sort of principal a Principal is.
type PrincipalKind string

const (
	KindServicePrincipal PrincipalKind = "ServicePrincipal"
	KindSystemAssigned   PrincipalKind = "SystemAssigned"
	KindUserAssigned     PrincipalKind = "UserAssigned"
)

// Principal is anything a token can be issued for.
type Principal struct {
	ObjectID    string // principal (object) id: the oid claim
	AppID       string // client id: the appid claim
	TenantID    string
	Kind        PrincipalKind
	DisplayName string
	// ResourceID is the resource a managed identity belongs to: the owning
	// resource for a system-assigned identity, the identity resource itself for
	// a user-assigned one. Empty for service principals.
	ResourceID string
	CreatedAt  time.Time
}

// UserAssignedIdentity is a Microsoft.ManagedIdentity/userAssignedIdentities
// resource.
type UserAssignedIdentity struct {
	ID             string // full resource id
	SubscriptionID string
	ResourceGroup  string
	Name           string
	Location       string
	Tags           map[string]string
	PrincipalID    string
	ClientID       string
	TenantID       string
	CreatedAt      time.Time
}

// Credential is a hashed client secret of a service principal.
type Credential struct {
	KeyID     string
	AppID     string
	Hash      []byte // salt (16 bytes) || SHA-256(salt || secret)
	Hint      string // the first three characters, as Entra shows them
	ExpiresAt time.Time
	CreatedAt time.Time
}

// FederatedCredential lets a service principal sign in with a token another
// issuer signed (workload identity federation, as Entra ID's federated
// identity credentials): a client assertion whose issuer, subject and
// audience match one of the principal's federated credentials, and whose
// signature verifies with a key the issuer publishes.
type FederatedCredential struct {
	ID          string
	AppID       string
	Name        string
	Issuer      string // compared exactly, as Entra compares it
	Subject     string // compared exactly
	Audiences   []string
	Description string
	CreatedAt   time.Time
}

// SigningKey is a token signing key as stored: the private key sealed under
// the server's root key.
type SigningKey struct {
	KID           string
	Algorithm     string
	PrivateSealed []byte
	Active        bool
	CreatedAt     time.Time
}

// Store is the persistence the identity service needs. Errors are
// *custody.Error with KindNotFound or KindConflict where the method says so.
type Store interface {
	// CreatePrincipal inserts p; a duplicate object or client id is KindConflict.
	CreatePrincipal(ctx context.Context, p *Principal) error
	// Principal returns the principal with object id oid (KindNotFound).
	Principal(ctx context.Context, oid string) (*Principal, error)
	// PrincipalByAppID returns the principal with client id appID (KindNotFound).
	PrincipalByAppID(ctx context.Context, appID string) (*Principal, error)
	// PrincipalByResource returns the managed identity of kind k owned by
	// resourceID (KindNotFound).
	PrincipalByResource(ctx context.Context, kind PrincipalKind, resourceID string) (*Principal, error)
	ListPrincipals(ctx context.Context, kind PrincipalKind) ([]*Principal, error)
	// DeletePrincipal removes a principal and its credentials (KindNotFound).
	DeletePrincipal(ctx context.Context, oid string) error

	AddCredential(ctx context.Context, c *Credential) error
	Credentials(ctx context.Context, appID string) ([]*Credential, error)

	// AddFederatedCredential stores c; a second credential of the same
	// name on one application is KindConflict.
	AddFederatedCredential(ctx context.Context, c *FederatedCredential) error
	// FederatedCredentials lists appID's federated credentials.
	FederatedCredentials(ctx context.Context, appID string) ([]*FederatedCredential, error)
	// DeleteFederatedCredential removes one (KindNotFound).
	DeleteFederatedCredential(ctx context.Context, appID, id string) error

	// CreateUserAssignedIdentity inserts the principal and the resource in one
	// transaction; if the resource exists, its location and tags are updated
	// and the stored identity (with its original ids) is returned.
	PutUserAssignedIdentity(ctx context.Context, id *UserAssignedIdentity, p *Principal) (*UserAssignedIdentity, bool, error)
	UserAssignedIdentity(ctx context.Context, resourceID string) (*UserAssignedIdentity, error)
	ListUserAssignedIdentities(ctx context.Context, subscriptionID, resourceGroup string) ([]*UserAssignedIdentity, error)
	// DeleteUserAssignedIdentity removes the resource and its principal.
	DeleteUserAssignedIdentity(ctx context.Context, resourceID string) error

	SigningKeys(ctx context.Context) ([]*SigningKey, error)
	// AddSigningKey stores k; if k.Active, every other key becomes inactive in
	// the same transaction.
	AddSigningKey(ctx context.Context, k *SigningKey) error
}
