package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"custody"
)

// Workload identity federation, both ways:
//
//   - in: a service principal with federated credentials signs in with a
//     client assertion another issuer signed (client_credentials with
//     client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer),
//     as Entra ID signs in an application that trusts, say, a Kubernetes
//     cluster's or another Custody's issuer. The issuer's keys are read from
//     its OpenID configuration ({issuer}/.well-known/openid-configuration,
//     then its jwks_uri) over verified TLS;
//   - out: Service.FederationAssertion signs such an assertion for one of
//     this server's managed identities, for a tenant elsewhere that trusts
//     this server's issuer.

// AssertionAudience is the audience Entra ID expects of a federation
// assertion by default.
const AssertionAudience = "api://AzureADTokenExchange"

// AssertionType is the client_assertion_type of a JWT client assertion.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long an assertion this server signs is valid.
const assertionLifetime = 10 * time.Minute

// maxFederatedCredentials is how many federated credentials one
// application may have, as in Entra ID.
const maxFederatedCredentials = 20

var federatedName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$`)

// AddFederatedCredential adds a federated credential to the service
// principal with client id or object id app, after checking it as Entra ID
// does: a name of 3 to 120 letters, digits, '-' or '_', unique on the
// application; an https issuer; a subject; exactly one audience.
func (s *Service) AddFederatedCredential(ctx context.Context, app string, c FederatedCredential) (*FederatedCredential, error) {
	p, err := s.servicePrincipal(ctx, app)
	if err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) (*FederatedCredential, error) {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidFederatedIdentityCredential", format, args...)
	}
	if !federatedName.MatchString(c.Name) {
		return bad("The federated identity credential name %q is invalid: use 3 to 120 letters, digits, hyphens or underscores, starting with a letter or digit.", c.Name)
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || len(c.Issuer) > 600 {
		return bad("The issuer %q of federated identity credential %q is invalid: it must be the https URL the assertions' iss claim carries (without query or fragment), whose OpenID configuration is at {issuer}/.well-known/openid-configuration.", c.Issuer, c.Name)
	}
	if strings.TrimSpace(c.Subject) == "" || len(c.Subject) > 600 {
		return bad("The subject of federated identity credential %q must be the assertions' sub claim, 1 to 600 characters.", c.Name)
	}
	if len(c.Audiences) != 1 || strings.TrimSpace(c.Audiences[0]) == "" || len(c.Audiences[0]) > 600 {
		return bad("Federated identity credential %q must have exactly one audience (usually %s).", c.Name, AssertionAudience)
	}
	if len(c.Description) > 600 {
		return bad("The description of federated identity credential %q is longer than 600 characters.", c.Name)
	}
	have, err := s.Store.FederatedCredentials(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	if len(have) >= maxFederatedCredentials {
		return nil, custody.Errorf(custody.KindConflict, "FederatedIdentityCredentialLimit",
			"The application %s already has %d federated identity credentials, the most it may have. Delete one first.", p.AppID, len(have))
	}
	out := &FederatedCredential{ID: NewID(), AppID: p.AppID, Name: c.Name, Issuer: c.Issuer, Subject: c.Subject,
		Audiences: []string{c.Audiences[0]}, Description: c.Description, CreatedAt: s.now().UTC()}
	if err := s.Store.AddFederatedCredential(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// FederatedCredentials lists the federated credentials of the service
// principal with client id or object id app.
func (s *Service) FederatedCredentials(ctx context.Context, app string) ([]*FederatedCredential, error) {
	p, err := s.servicePrincipal(ctx, app)
	if err != nil {
		return nil, err
	}
	return s.Store.FederatedCredentials(ctx, p.AppID)
}

// DeleteFederatedCredential deletes a federated credential, named by id or
// name, of the service principal with client id or object id app.
func (s *Service) DeleteFederatedCredential(ctx context.Context, app, idOrName string) error {
	p, err := s.servicePrincipal(ctx, app)
	if err != nil {
		return err
	}
	have, err := s.Store.FederatedCredentials(ctx, p.AppID)
	if err != nil {
		return err
	}
	for _, c := range have {
		if c.ID == idOrName || strings.EqualFold(c.Name, idOrName) {
			return s.Store.DeleteFederatedCredential(ctx, p.AppID, c.ID)
		}
	}
	return custody.Errorf(custody.KindNotFound, "FederatedIdentityCredentialNotFound",
		"The application %s has no federated identity credential with id or name %q.", p.AppID, idOrName)
}

// servicePrincipal returns the service principal with client id or object
// id app.
func (s *Service) servicePrincipal(ctx context.Context, app string) (*Principal, error) {
	p, err := s.Store.PrincipalByAppID(ctx, app)
	if custody.IsNotFound(err) {
		p, err = s.Store.Principal(ctx, app)
	}
	if custody.IsNotFound(err) || (err == nil && p.Kind != KindServicePrincipal) {
		return nil, custody.Errorf(custody.KindNotFound, "Request_ResourceNotFound",
			"No application has client id or object id %q in this directory. Federated identity credentials belong to service principals (custody ad sp create-for-rbac).", app)
	}
	return p, err
}

// assertionClaims are the claims of a client assertion that matter here.
type assertionClaims struct {
	jwt.Claims
}

// AuthenticateAssertion signs in the service principal with client id
// clientID with a client assertion: a JWT whose issuer, subject and
// audience match one of its federated credentials, signed with a key its
// issuer publishes, and within its validity time. Failures are OAuth
// errors with Entra ID's codes.
func (s *Service) AuthenticateAssertion(ctx context.Context, clientID, assertion string) (*Principal, error) {
	p, err := s.Store.PrincipalByAppID(ctx, clientID)
	if custody.IsNotFound(err) || (err == nil && p.Kind != KindServicePrincipal) {
		return nil, &OAuthError{Status: 400, Code: "unauthorized_client", AADSTS: 700016,
			Description: fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, s.TenantID)}
	}
	if err != nil {
		return nil, err
	}
	invalid := func(code int, format string, args ...any) (*Principal, error) {
		return nil, &OAuthError{Status: 401, Code: "invalid_client", AADSTS: code, Description: fmt.Sprintf(format, args...)}
	}
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512})
	if err != nil {
		return invalid(50027, "The client assertion is not a valid signed JWT (RS256, PS256 or ES256 families): %v.", err)
	}
	var unverified assertionClaims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return invalid(50027, "The client assertion's claims do not decode: %v.", err)
	}
	creds, err := s.Store.FederatedCredentials(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	var match *FederatedCredential
	for _, c := range creds {
		if c.Issuer == unverified.Issuer && c.Subject == unverified.Subject && slices.ContainsFunc(unverified.Audience, func(a string) bool { return slices.Contains(c.Audiences, a) }) {
			match = c
			break
		}
	}
	if match == nil {
		return invalid(70021, "No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'. Add a federated identity credential with this issuer, subject and audience to application %s.",
			unverified.Issuer, unverified.Subject, strings.Join(unverified.Audience, ","), clientID)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return invalid(50027, "The client assertion has no key id (kid) header.")
	}
	if s.Issuers == nil {
		return invalid(50166, "This server cannot read federated issuers' keys (no client configured).")
	}
	key, err := s.Issuers.Key(ctx, match.Issuer, tok.Headers[0].KeyID)
	if err != nil {
		return invalid(50166, "Request to external OIDC endpoint failed: %v.", err)
	}
	var verified assertionClaims
	if err := tok.Claims(key.Key, &verified); err != nil {
		return invalid(50013, "Assertion failed signature validation: it is not signed by key %q of issuer %s.", tok.Headers[0].KeyID, match.Issuer)
	}
	if verified.Expiry == nil {
		return invalid(50027, "The client assertion has no expiry (exp).")
	}
	if err := verified.ValidateWithLeeway(jwt.Expected{Time: s.now()}, clockSkew); err != nil {
		return invalid(700024, "Client assertion is not within its valid time range (nbf %v, exp %v): %v.", verified.NotBefore.Time().UTC().Format(time.RFC3339), verified.Expiry.Time().UTC().Format(time.RFC3339), err)
	}
	if verified.Expiry.Time().Sub(s.now()) > 24*time.Hour {
		return invalid(700024, "Client assertion is valid for more than a day; sign one that expires sooner.")
	}
	return p, nil
}

// ManagedIdentity returns the managed identity principalID, or a
// KindUnauthenticated error if it no longer exists.
func (s *Service) ManagedIdentity(ctx context.Context, principalID string) (*Principal, error) {
	p, err := s.Store.Principal(ctx, principalID)
	if custody.IsNotFound(err) {
		return nil, custody.Errorf(custody.KindUnauthenticated, "IdentityNotFound",
			"The managed identity with principal id %s no longer exists; assign an identity to the resource again.", principalID)
	}
	if err != nil {
		return nil, err
	}
	if p.Kind != KindSystemAssigned && p.Kind != KindUserAssigned {
		return nil, custody.Errorf(custody.KindInvalid, "NotAManagedIdentity", "Principal %s is not a managed identity.", principalID)
	}
	return p, nil
}

// FederationAssertion signs a client assertion for the managed identity
// principalID: issuer this server's issuer, subject subject (the identity's
// object id if empty), audience audience (AssertionAudience if empty). A
// tenant elsewhere whose application has a federated credential with that
// issuer, subject and audience exchanges it for its own token. An identity
// that no longer exists gets none.
func (s *Service) FederationAssertion(ctx context.Context, principalID, subject, audience string) (string, time.Time, error) {
	p, err := s.ManagedIdentity(ctx, principalID)
	if err != nil {
		return "", time.Time{}, err
	}
	if subject == "" {
		subject = p.ObjectID
	}
	if audience == "" {
		audience = AssertionAudience
	}
	return s.Authority.SignAssertion(p, s.Issuer, subject, audience, assertionLifetime)
}

// SignAssertion signs a client assertion for p with the active key.
func (a *Authority) SignAssertion(p *Principal, issuer, subject, audience string, lifetime time.Duration) (string, time.Time, error) {
	a.mu.RLock()
	k := a.active
	a.mu.RUnlock()
	now := a.now().Truncate(time.Second)
	exp := now.Add(lifetime)
	c := map[string]any{
		"iss": issuer, "sub": subject, "aud": audience, "jti": NewID(),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		"oid": p.ObjectID, "tid": p.TenantID, "appid": p.AppID,
	}
	if p.ResourceID != "" {
		c["xms_mirid"] = p.ResourceID
	}
	raw, err := SignClaims(k.priv, k.kid, jose.RS256, c)
	if err != nil {
		return "", time.Time{}, err
	}
	return raw, exp, nil
}

// IssuerKeys reads and caches the signing keys federated issuers publish:
// {issuer}/.well-known/openid-configuration names the issuer (which must be
// the one asked for) and its jwks_uri. Keys are kept for keysTTL, and read
// again at most every keysRefetch when an assertion names a kid not among
// them (the issuer rotated).
type IssuerKeys struct {
	// Client fetches the documents; its TLS configuration decides which
	// issuers' certificates are trusted.
	Client *http.Client
	Now    func() time.Time

	mu      sync.Mutex
	issuers map[string]*issuerEntry
}

type issuerEntry struct {
	mu      sync.Mutex
	keys    jose.JSONWebKeySet
	fetched time.Time
}

const (
	keysTTL     = 10 * time.Minute
	keysRefetch = 30 * time.Second
	maxDocument = 1 << 20
)

func (k *IssuerKeys) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// Key returns issuer's public key kid.
func (k *IssuerKeys) Key(ctx context.Context, issuer, kid string) (*jose.JSONWebKey, error) {
	k.mu.Lock()
	if k.issuers == nil {
		k.issuers = map[string]*issuerEntry{}
	}
	e := k.issuers[issuer]
	if e == nil {
		e = &issuerEntry{}
		k.issuers[issuer] = e
	}
	k.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	age := k.now().Sub(e.fetched)
	if keys := e.keys.Key(kid); len(keys) > 0 && age < keysTTL {
		return &keys[0], nil
	}
	if !e.fetched.IsZero() && age < keysRefetch {
		if keys := e.keys.Key(kid); len(keys) > 0 {
			return &keys[0], nil
		}
		return nil, fmt.Errorf("issuer %s publishes no key %q", issuer, kid)
	}
	set, err := k.fetch(ctx, issuer)
	if err != nil {
		return nil, err
	}
	e.keys, e.fetched = set, k.now()
	if keys := e.keys.Key(kid); len(keys) > 0 {
		return &keys[0], nil
	}
	return nil, fmt.Errorf("issuer %s publishes no key %q", issuer, kid)
}

func (k *IssuerKeys) fetch(ctx context.Context, issuer string) (jose.JSONWebKeySet, error) {
	var conf struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := k.get(ctx, strings.TrimRight(issuer, "/")+"/.well-known/openid-configuration", &conf); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	if strings.TrimRight(conf.Issuer, "/") != strings.TrimRight(issuer, "/") {
		return jose.JSONWebKeySet{}, fmt.Errorf("the OpenID configuration of %s names another issuer, %q", issuer, conf.Issuer)
	}
	if u, err := url.Parse(conf.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" {
		return jose.JSONWebKeySet{}, fmt.Errorf("the OpenID configuration of %s has no https jwks_uri", issuer)
	}
	var set jose.JSONWebKeySet
	if err := k.get(ctx, conf.JWKSURI, &set); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return set, nil
}

func (k *IssuerKeys) get(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	c := k.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: not JSON: %w", u, err)
	}
	return nil
}
