package identity

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"

	"custody"
)

// Audience classes a token can be issued for. Each Custody API accepts
// tokens of exactly one class.
type AudienceClass string

const (
	AudienceManagement AudienceClass = "management"
	AudienceVault      AudienceClass = "vault"
	AudienceBatch      AudienceClass = "batch"
	AudienceGraph      AudienceClass = "graph"
)

// Resources lists, for each audience class, the resource URIs (scope without
// "/.default") a client may ask a token for: Azure's own, so SDKs work with
// their defaults, and the local host names.
type Resources map[AudienceClass][]string

// DefaultResources returns the accepted resources for a server whose public
// host names end in domain and listen on port.
func DefaultResources(domain string, port int) Resources {
	local := func(name string) []string {
		h := name + "." + domain
		out := []string{"https://" + h + ":" + fmt.Sprint(port)}
		if port == 443 {
			out = append(out, "https://"+h)
		}
		return out
	}
	return Resources{
		AudienceManagement: append([]string{"https://management.azure.com", "https://management.core.windows.net"}, local("management")...),
		AudienceVault:      append([]string{"https://vault.azure.net"}, local("vault")...),
		AudienceBatch:      append([]string{"https://batch.core.windows.net"}, local("batch")...),
		AudienceGraph:      append([]string{"https://graph.microsoft.com"}, local("graph")...),
	}
}

// Classify returns the audience class of a requested resource or scope.
func (r Resources) Classify(resource string) (AudienceClass, bool) {
	resource = strings.TrimSuffix(resource, "/.default")
	for class, list := range r {
		if containsFold(list, resource, true) {
			return class, true
		}
	}
	return "", false
}

// Service manages principals and issues their tokens.
type Service struct {
	Store     Store
	Authority *Authority
	TenantID  string
	// Issuer is the canonical issuer URL for tokens the server mints for its
	// own services (managed identity tokens).
	Issuer    string
	Resources Resources
	// Issuers reads the keys of the issuers federated credentials trust;
	// nil refuses every client assertion.
	Issuers *IssuerKeys
	Now     func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// CreateServicePrincipal creates a service principal with a new client
// secret, valid for years (1 if 0). The secret is returned once and stored only
// as a hash.
func (s *Service) CreateServicePrincipal(ctx context.Context, displayName string, years int) (*Principal, string, error) {
	if strings.TrimSpace(displayName) == "" {
		return nil, "", custody.Errorf(custody.KindInvalid, "InvalidDisplayName", "A service principal needs a display name.")
	}
	p := &Principal{
		ObjectID: NewID(), AppID: NewID(), TenantID: s.TenantID,
		Kind: KindServicePrincipal, DisplayName: displayName, CreatedAt: s.now().UTC(),
	}
	if err := s.Store.CreatePrincipal(ctx, p); err != nil {
		return nil, "", err
	}
	secret, err := s.AddSecret(ctx, p.AppID, years)
	if err != nil {
		return nil, "", err
	}
	return p, secret, nil
}

// AddSecret adds a client secret to the service principal with client id
// appID and returns it.
func (s *Service) AddSecret(ctx context.Context, appID string, years int) (string, error) {
	if years <= 0 {
		years = 1
	}
	secret := newSecret()
	c := &Credential{
		KeyID: NewID(), AppID: appID, Hash: hashSecret(secret), Hint: secret[:3],
		CreatedAt: s.now().UTC(), ExpiresAt: s.now().UTC().AddDate(years, 0, 0),
	}
	if err := s.Store.AddCredential(ctx, c); err != nil {
		return "", err
	}
	return secret, nil
}

// Authenticate checks a client id and secret. Failures are OAuth errors
// (see OAuthError).
func (s *Service) Authenticate(ctx context.Context, clientID, secret string) (*Principal, error) {
	p, _, err := s.AuthenticateCredential(ctx, clientID, secret)
	return p, err
}

// AuthenticateCredential is Authenticate that also returns the key id of
// the client secret that matched, so that a session started with it can
// check later that the principal and the secret are still valid
// (CredentialValid).
func (s *Service) AuthenticateCredential(ctx context.Context, clientID, secret string) (*Principal, string, error) {
	p, err := s.Store.PrincipalByAppID(ctx, clientID)
	if custody.IsNotFound(err) || (err == nil && p.Kind != KindServicePrincipal) {
		return nil, "", &OAuthError{Status: 400, Code: "unauthorized_client", AADSTS: 700016,
			Description: fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. Check the client id, or create the application with 'custody ad sp create-for-rbac'.", clientID, s.TenantID)}
	}
	if err != nil {
		return nil, "", err
	}
	creds, err := s.Store.Credentials(ctx, clientID)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	expired := false
	for _, c := range creds {
		if secretMatches(c.Hash, secret) {
			if now.After(c.ExpiresAt) {
				expired = true
				continue
			}
			return p, c.KeyID, nil
		}
	}
	if expired {
		return nil, "", &OAuthError{Status: 401, Code: "invalid_client", AADSTS: 7000222,
			Description: fmt.Sprintf("The provided client secret keys for app '%s' are expired. Create a new secret.", clientID)}
	}
	return nil, "", &OAuthError{Status: 401, Code: "invalid_client", AADSTS: 7000215,
		Description: fmt.Sprintf("Invalid client secret provided for app '%s'. Ensure the secret being sent is the client secret value, not the secret id.", clientID)}
}

// PrincipalValid reports whether the service principal with object id oid
// and client id appID still exists and, if keyID is not empty, still holds
// the unexpired client secret keyID. A session or cached sign-in checks it
// so that deleting a principal, or the expiry of its secret, ends it.
func (s *Service) PrincipalValid(ctx context.Context, oid, appID, keyID string) (bool, error) {
	p, err := s.Store.Principal(ctx, oid)
	if custody.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if p.AppID != appID || p.Kind != KindServicePrincipal {
		return false, nil
	}
	if keyID == "" {
		return true, nil
	}
	creds, err := s.Store.Credentials(ctx, appID)
	if err != nil {
		return false, err
	}
	now := s.now()
	for _, c := range creds {
		if c.KeyID == keyID {
			return !now.After(c.ExpiresAt), nil
		}
	}
	return false, nil
}

// IssueForScope issues a token for p for the first ".default" scope in
// scopes (OAuth's space-separated list); issuer is the issuer URL of the token
// endpoint the request came to.
func (s *Service) IssueForScope(p *Principal, scopes, issuer string) (Token, error) {
	var resource string
	for _, sc := range strings.Fields(scopes) {
		if strings.HasSuffix(sc, "/.default") {
			resource = strings.TrimSuffix(sc, "/.default")
			break
		}
	}
	if resource == "" {
		return Token{}, &OAuthError{Status: 400, Code: "invalid_scope", AADSTS: 1002012,
			Description: fmt.Sprintf("The provided value for scope %q is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scopes)}
	}
	return s.IssueForResource(p, resource, issuer)
}

// IssueForResource issues a token for p whose audience is resource.
func (s *Service) IssueForResource(p *Principal, resource, issuer string) (Token, error) {
	if _, ok := s.Resources.Classify(resource); !ok {
		return Token{}, &OAuthError{Status: 400, Code: "invalid_resource", AADSTS: 500011,
			Description: fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. Ask for one of the Custody resources: the management, vault or batch endpoint.", resource, s.TenantID)}
	}
	return s.Authority.Sign(p, issuer, resource)
}

// Expectation returns what tokens for an API of class c must satisfy.
func (s *Service) Expectation(c AudienceClass, issuers []string) Expectation {
	return Expectation{Issuers: issuers, Audiences: s.Resources[c]}
}

// ManagedIdentityToken issues a token for a managed identity to the service
// that owns it. ownerResourceID must be the resource the identity is attached
// to (for system-assigned) or the identity's own resource id (user-assigned);
// callers in Custody pass what they hold, and a mismatch is refused.
func (s *Service) ManagedIdentityToken(ctx context.Context, principalID, resource string) (Token, error) {
	p, err := s.Store.Principal(ctx, principalID)
	if custody.IsNotFound(err) {
		return Token{}, custody.Errorf(custody.KindUnauthenticated, "IdentityNotFound",
			"The managed identity with principal id %s no longer exists; assign an identity to the resource again.", principalID)
	}
	if err != nil {
		return Token{}, err
	}
	if p.Kind != KindSystemAssigned && p.Kind != KindUserAssigned {
		return Token{}, custody.Errorf(custody.KindInvalid, "NotAManagedIdentity", "Principal %s is not a managed identity.", principalID)
	}
	return s.IssueForResource(p, resource, s.Issuer)
}

// CreateSystemAssigned creates the system-assigned identity of resourceID.
// It is idempotent: an existing identity is returned unchanged.
func (s *Service) CreateSystemAssigned(ctx context.Context, resourceID string) (*Principal, error) {
	if p, err := s.Store.PrincipalByResource(ctx, KindSystemAssigned, resourceID); err == nil {
		return p, nil
	} else if !custody.IsNotFound(err) {
		return nil, err
	}
	p := &Principal{
		ObjectID: NewID(), AppID: NewID(), TenantID: s.TenantID, Kind: KindSystemAssigned,
		DisplayName: lastSegment(resourceID), ResourceID: resourceID, CreatedAt: s.now().UTC(),
	}
	if err := s.Store.CreatePrincipal(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// DeleteSystemAssigned deletes the system-assigned identity of resourceID, if
// it has one.
func (s *Service) DeleteSystemAssigned(ctx context.Context, resourceID string) error {
	p, err := s.Store.PrincipalByResource(ctx, KindSystemAssigned, resourceID)
	if custody.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.Store.DeletePrincipal(ctx, p.ObjectID)
}

var identityName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$`)

// PutUserAssignedIdentity creates or updates a user-assigned identity. It
// reports whether it was created.
func (s *Service) PutUserAssignedIdentity(ctx context.Context, id *UserAssignedIdentity) (*UserAssignedIdentity, bool, error) {
	if !identityName.MatchString(id.Name) {
		return nil, false, custody.Errorf(custody.KindInvalid, "InvalidResourceName",
			"The identity name %q is invalid: use 3 to 128 letters, digits, hyphens or underscores, starting with a letter or digit.", id.Name)
	}
	if id.Location == "" {
		return nil, false, custody.Errorf(custody.KindInvalid, "LocationRequired", "The location property is required for identity %q.", id.Name)
	}
	loc, ok := custody.NormalizeLocation(id.Location)
	if !ok {
		return nil, false, custody.LocationError(id.Location, "Microsoft.ManagedIdentity/userAssignedIdentities")
	}
	if err := custody.CheckTags(id.Tags, "identity '"+id.Name+"'"); err != nil {
		return nil, false, err
	}
	id.Location = loc
	p := &Principal{
		ObjectID: NewID(), AppID: NewID(), TenantID: s.TenantID, Kind: KindUserAssigned,
		DisplayName: id.Name, ResourceID: id.ID, CreatedAt: s.now().UTC(),
	}
	id.PrincipalID, id.ClientID, id.TenantID, id.CreatedAt = p.ObjectID, p.AppID, s.TenantID, p.CreatedAt
	return s.Store.PutUserAssignedIdentity(ctx, id, p)
}

func lastSegment(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

const secretAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789~._-"

// newSecret returns a 40-character client secret (about 240 bits).
func newSecret() string {
	var b strings.Builder
	max := big.NewInt(int64(len(secretAlphabet)))
	for i := 0; i < 40; i++ {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		b.WriteByte(secretAlphabet[n.Int64()])
	}
	return b.String()
}

func subtleEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// OAuthError is a token endpoint error, in the OAuth 2.0 shape MSAL reads.
type OAuthError struct {
	Status      int
	Code        string // OAuth error, e.g. invalid_client
	AADSTS      int    // Entra's numeric error code
	Description string
}

func (e *OAuthError) Error() string {
	return fmt.Sprintf("%s: AADSTS%d: %s", e.Code, e.AADSTS, e.Description)
}

// ObservePrincipalDeletions makes every deletion of a principal through
// s.Store (a service principal, a user-assigned identity, a resource's
// system-assigned identity) call f with its object id once it is gone. The
// key vault uses it to tell the principal's change feed subscriptions that
// it can reach no key any more. Call it during wiring.
func (s *Service) ObservePrincipalDeletions(f func(objectID string)) {
	s.Store = &observedStore{Store: s.Store, f: f}
}

type observedStore struct {
	Store
	f func(objectID string)
}

func (o *observedStore) DeletePrincipal(ctx context.Context, oid string) error {
	if err := o.Store.DeletePrincipal(ctx, oid); err != nil {
		return err
	}
	o.f(oid)
	return nil
}

func (o *observedStore) DeleteUserAssignedIdentity(ctx context.Context, resourceID string) error {
	u, err := o.Store.UserAssignedIdentity(ctx, resourceID)
	if err := o.Store.DeleteUserAssignedIdentity(ctx, resourceID); err != nil {
		return err
	}
	if err == nil {
		o.f(u.PrincipalID)
	}
	return nil
}
