package identity_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"custody"
	"custody/identity"
)

// federationEnv is an issuer (an authority published over TLS, as another
// server's token service publishes its keys) and a tenant whose service
// principal trusts it.
type federationEnv struct {
	issuerURL string
	issuer    *identity.Authority
	workload  *identity.Principal // the principal assertions are signed for
	tenant    *identity.Service
	app       *identity.Principal
	clock     *clock
	// claimIssuer is what the issuer's OpenID configuration says its
	// issuer is.
	claimIssuer string
}

func newFederationEnv(t *testing.T) *federationEnv {
	t.Helper()
	e := &federationEnv{clock: &clock{t: time.Now()}}
	e.issuer = MustAuthority(t, e.clock)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/tenant-1/v2.0/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": e.claimIssuer, "jwks_uri": e.issuerURL[:strings.Index(e.issuerURL, "/tenant-1")] + "/keys"})
		case "/keys":
			json.NewEncoder(w).Encode(e.issuer.JWKS())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	e.issuerURL = srv.URL + "/tenant-1/v2.0"
	e.claimIssuer = e.issuerURL
	e.workload = &identity.Principal{ObjectID: identity.NewID(), AppID: identity.NewID(), TenantID: "tenant-1", Kind: identity.KindSystemAssigned}

	store := MustOpenStore(t)
	a, err := identity.NewAuthority(context.Background(), store, MustSealer(t), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.tenant = &identity.Service{Store: store, Authority: a, TenantID: "tenant-2", Now: e.clock.Now,
		Issuers: &identity.IssuerKeys{Client: srv.Client(), Now: e.clock.Now}}
	e.app, _, err = e.tenant.CreateServicePrincipal(context.Background(), "vault-app", 1)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *federationEnv) assertion(t *testing.T, issuer, subject, audience string) string {
	t.Helper()
	raw, _, err := e.issuer.SignAssertion(e.workload, issuer, subject, audience, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func wantOAuth(t *testing.T, what string, err error, aadsts int) {
	t.Helper()
	var oe *identity.OAuthError
	if !errors.As(err, &oe) || oe.AADSTS != aadsts {
		t.Fatalf("%s: %v, want AADSTS%d", what, err, aadsts)
	}
}

// TestFederatedSignIn: a client assertion signs a service principal in only
// when its issuer, subject and audience match one of its federated
// credentials, its signature verifies with a key the issuer publishes over
// TLS, and it is within its validity time.
func TestFederatedSignIn(t *testing.T) {
	e := newFederationEnv(t)
	ctx := context.Background()
	good := func() string { return e.assertion(t, e.issuerURL, e.workload.ObjectID, identity.AssertionAudience) }

	_, err := e.tenant.AuthenticateAssertion(ctx, e.app.AppID, good())
	wantOAuth(t, "no federated credential yet", err, 70021)

	if _, err := e.tenant.AddFederatedCredential(ctx, e.app.AppID, identity.FederatedCredential{
		Name: "workload", Issuer: e.issuerURL, Subject: e.workload.ObjectID, Audiences: []string{identity.AssertionAudience}}); err != nil {
		t.Fatal(err)
	}
	p, err := e.tenant.AuthenticateAssertion(ctx, e.app.AppID, good())
	if err != nil || p.ObjectID != e.app.ObjectID {
		t.Fatalf("a matching assertion: %v, %+v", err, p)
	}

	_, err = e.tenant.AuthenticateAssertion(ctx, e.app.AppID, e.assertion(t, e.issuerURL, "someone-else", identity.AssertionAudience))
	wantOAuth(t, "another subject", err, 70021)
	_, err = e.tenant.AuthenticateAssertion(ctx, e.app.AppID, e.assertion(t, e.issuerURL, e.workload.ObjectID, "api://other"))
	wantOAuth(t, "another audience", err, 70021)
	_, err = e.tenant.AuthenticateAssertion(ctx, e.app.AppID, e.assertion(t, e.issuerURL+"/", e.workload.ObjectID, identity.AssertionAudience))
	wantOAuth(t, "another issuer", err, 70021)
	_, err = e.tenant.AuthenticateAssertion(ctx, identity.NewID(), good())
	wantOAuth(t, "an unknown application", err, 700016)
	_, err = e.tenant.AuthenticateAssertion(ctx, e.app.AppID, "not-a-jwt")
	wantOAuth(t, "garbage", err, 50027)

	// Signed with a key the issuer does not publish, under its kid.
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	forged, err := identity.SignClaims(forger, e.issuer.ActiveKID(), jose.RS256, map[string]any{
		"iss": e.issuerURL, "sub": e.workload.ObjectID, "aud": identity.AssertionAudience, "exp": now.Add(time.Minute).Unix(), "nbf": now.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.tenant.AuthenticateAssertion(ctx, e.app.AppID, forged)
	wantOAuth(t, "a forged signature", err, 50013)
	unknownKID, _ := identity.SignClaims(forger, "nope", jose.RS256, map[string]any{
		"iss": e.issuerURL, "sub": e.workload.ObjectID, "aud": identity.AssertionAudience, "exp": now.Add(time.Minute).Unix()})
	_, err = e.tenant.AuthenticateAssertion(ctx, e.app.AppID, unknownKID)
	wantOAuth(t, "a kid the issuer does not publish", err, 50166)

	// Expired.
	old := good()
	e.clock.Set(now.Add(11 * time.Minute))
	_, err = e.tenant.AuthenticateAssertion(ctx, e.app.AppID, old)
	wantOAuth(t, "an expired assertion", err, 700024)

	// A rotated issuer key is found (after the cached keys' refetch delay).
	if _, err := e.issuer.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(now.Add(12 * time.Minute))
	if _, err := e.tenant.AuthenticateAssertion(ctx, e.app.AppID, good()); err != nil {
		t.Fatalf("an assertion signed with the issuer's new key: %v", err)
	}

	// Deleting the credential ends the trust.
	if err := e.tenant.DeleteFederatedCredential(ctx, e.app.ObjectID, "workload"); err != nil {
		t.Fatal(err)
	}
	_, err = e.tenant.AuthenticateAssertion(ctx, e.app.AppID, good())
	wantOAuth(t, "after the credential is deleted", err, 70021)
}

// TestFederatedIssuerMismatch: an issuer whose OpenID configuration names
// another issuer is not trusted.
func TestFederatedIssuerMismatch(t *testing.T) {
	e := newFederationEnv(t)
	ctx := context.Background()
	e.claimIssuer = "https://elsewhere.example/tenant-1/v2.0"
	if _, err := e.tenant.AddFederatedCredential(ctx, e.app.AppID, identity.FederatedCredential{
		Name: "workload", Issuer: e.issuerURL, Subject: "s", Audiences: []string{identity.AssertionAudience}}); err != nil {
		t.Fatal(err)
	}
	_, err := e.tenant.AuthenticateAssertion(ctx, e.app.AppID, e.assertion(t, e.issuerURL, "s", identity.AssertionAudience))
	wantOAuth(t, "a configuration naming another issuer", err, 50166)
}

// TestAddFederatedCredentialChecks: malformed credentials are refused with
// the field named, duplicates conflict, and only service principals have
// them.
func TestAddFederatedCredentialChecks(t *testing.T) {
	e := newFederationEnv(t)
	ctx := context.Background()
	ok := identity.FederatedCredential{Name: "ok-1", Issuer: "https://issuer.example/t/v2.0", Subject: "s", Audiences: []string{identity.AssertionAudience}}
	for name, edit := range map[string]func(c *identity.FederatedCredential){
		"short name":      func(c *identity.FederatedCredential) { c.Name = "ab" },
		"name with space": func(c *identity.FederatedCredential) { c.Name = "a b c" },
		"http issuer":     func(c *identity.FederatedCredential) { c.Issuer = "http://issuer.example" },
		"no subject":      func(c *identity.FederatedCredential) { c.Subject = " " },
		"two audiences":   func(c *identity.FederatedCredential) { c.Audiences = []string{"a", "b"} },
		"no audience":     func(c *identity.FederatedCredential) { c.Audiences = nil },
	} {
		c := ok
		edit(&c)
		if _, err := e.tenant.AddFederatedCredential(ctx, e.app.AppID, c); custody.ErrorKind(err) != custody.KindInvalid {
			t.Errorf("%s: %v, want KindInvalid", name, err)
		}
	}
	if _, err := e.tenant.AddFederatedCredential(ctx, e.app.AppID, ok); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tenant.AddFederatedCredential(ctx, e.app.ObjectID, ok); custody.ErrorKind(err) != custody.KindConflict {
		t.Errorf("a second credential of the same name: %v, want KindConflict", err)
	}
	if _, err := e.tenant.AddFederatedCredential(ctx, identity.NewID(), ok); custody.ErrorKind(err) != custody.KindNotFound {
		t.Errorf("an unknown application: %v, want KindNotFound", err)
	}
	cs, err := e.tenant.FederatedCredentials(ctx, e.app.AppID)
	if err != nil || len(cs) != 1 || cs[0].Subject != "s" || cs[0].Audiences[0] != identity.AssertionAudience {
		t.Fatalf("list: %v %+v", err, cs)
	}
}
