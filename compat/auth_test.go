package compat_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"custody/identity"
	"custody/secret"
	"custody/server"
	"custody/server/servertest"
	"custody/sqlstore"
	"custody/tlsca"
)

// MustShiftedAuthority returns an authority over the server's own signing
// keys whose clock runs at now+shift, to mint tokens the server signed "at
// another time".
func MustShiftedAuthority(tb testing.TB, ts *servertest.TestServer, shift time.Duration) *identity.Authority {
	tb.Helper()
	key, err := secret.LoadRootKey(ts.DataDir(), "")
	if err != nil {
		tb.Fatal(err)
	}
	sealer, err := secret.NewSealer(key)
	if err != nil {
		tb.Fatal(err)
	}
	a, err := identity.NewAuthority(context.Background(), &sqlstore.IdentityStore{DB: ts.DB}, sealer, func() time.Time { return time.Now().Add(shift) })
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// MustJWKS fetches the published signing keys.
func MustJWKS(tb testing.TB, ts *servertest.TestServer) jose.JSONWebKeySet {
	tb.Helper()
	r := MustDo(tb, ts, "", "GET", "login", "/"+ts.Admin.TenantID+"/discovery/v2.0/keys", "")
	if r.Status != http.StatusOK {
		tb.Fatalf("JWKS: %d %s", r.Status, r.Body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		tb.Fatalf("JWKS: %v: %s", err, r.Body)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			tb.Fatalf("JWKS publishes a private key (kid %s)", k.KeyID)
		}
	}
	return set
}

func kidsOf(set jose.JSONWebKeySet) map[string]bool {
	out := map[string]bool{}
	for _, k := range set.Keys {
		out[k.KeyID] = true
	}
	return out
}

func tokenKID(tb testing.TB, raw string) string {
	tb.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if err != nil {
		tb.Fatal(err)
	}
	var v struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(h, &v); err != nil {
		tb.Fatal(err)
	}
	return v.Kid
}

// TestARMRejectsBadTokens sends the resource manager every kind of bad token
// and checks each gets 401 in Azure's error shape with a challenge.
func TestARMRejectsBadTokens(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	admin, err := ts.Identity.Store.PrincipalByAppID(ctx, ts.Admin.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	issuer := ts.Identity.Issuer
	const aud = "https://management.azure.com/"
	path := subPath(ts) + "/resourceGroups?api-version=" + rgAPIVersion

	// The control: a valid token for the admin works.
	valid := adminToken(t, ts)
	if r := MustARM(t, ts, valid, "GET", path, ""); r.Status != http.StatusOK {
		t.Fatalf("valid admin token: %d %s", r.Status, r.Body)
	}
	sign := func(a *identity.Authority, p *identity.Principal, iss, aud string) string {
		t.Helper()
		tok, err := a.Sign(p, iss, aud)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Raw
	}
	now := MustShiftedAuthority(t, ts, 0)
	if r := MustARM(t, ts, sign(now, admin, issuer, aud), "GET", path, ""); r.Status != http.StatusOK {
		t.Fatalf("token minted with the server's own key: %d %s", r.Status, r.Body)
	}

	set := MustJWKS(t, ts)
	kid := ts.Identity.Authority.ActiveKID()
	var pub *rsa.PublicKey
	for _, k := range set.Keys {
		if k.KeyID == kid {
			pub, _ = k.Key.(*rsa.PublicKey)
		}
	}
	if pub == nil {
		t.Fatalf("active kid %s not published as an RSA key", kid)
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := identity.Claims{
		Issuer: issuer, Subject: admin.ObjectID, Audience: aud, ObjectID: admin.ObjectID, TenantID: admin.TenantID,
		AppID: admin.AppID, IssuedAt: time.Now().Unix(), NotBefore: time.Now().Unix(), Expiry: time.Now().Add(time.Hour).Unix(),
	}
	forge := func(key any, kid string, alg jose.SignatureAlgorithm) string {
		t.Helper()
		raw, err := identity.SignClaims(key, kid, alg, claims)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	parts := strings.Split(valid, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	other := MustServicePrincipal(t, ts, "other")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(admin.ObjectID), []byte(other.ObjectID), 1)) + "." + parts[2]
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + kid + `"}`))
	otherTenant := *admin
	otherTenant.TenantID = identity.NewID()

	tests := []struct {
		name, token, code string
	}{
		{"Missing", "", "AuthenticationFailed"},
		{"Expired", sign(MustShiftedAuthority(t, ts, -2*time.Hour), admin, issuer, aud), "InvalidAuthenticationToken"},
		{"NotYetValid", sign(MustShiftedAuthority(t, ts, time.Hour), admin, issuer, aud), "InvalidAuthenticationToken"},
		{"VaultAudience", MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://vault.azure.net/.default"), "InvalidAuthenticationToken"},
		{"BatchAudience", MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://batch.core.windows.net//.default"), "InvalidAuthenticationToken"},
		{"WrongIssuer", sign(now, admin, "https://login.microsoftonline.com/"+admin.TenantID+"/v2.0", aud), "InvalidAuthenticationToken"},
		{"WrongTenant", sign(now, &otherTenant, issuer, aud), "InvalidAuthenticationTokenTenant"},
		{"UnknownKid", forge(otherKey, "no-such-kid", jose.RS256), "InvalidAuthenticationToken"},
		{"KnownKidOtherKey", forge(otherKey, kid, jose.RS256), "InvalidAuthenticationToken"},
		{"TamperedPayload", tampered, "InvalidAuthenticationToken"},
		{"AlgNone", noneHeader + "." + parts[1] + ".", "InvalidAuthenticationToken"},
		{"HS256PublicKeyPEM", forge(pemKey, kid, jose.HS256), "InvalidAuthenticationToken"},
		{"HS256PublicKeyDER", forge(pkix, kid, jose.HS256), "InvalidAuthenticationToken"},
		{"Garbage", "a.b.c", "InvalidAuthenticationToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := MustARM(t, ts, tt.token, "GET", path, "")
			wantARMError(t, r, http.StatusUnauthorized, tt.code)
			if ch := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", ch)
			}
		})
	}
	// The same bad token is refused on a write too, and changes nothing.
	r := MustARM(t, ts, tests[1].token, "PUT", groupPath(ts, "rg-expired")+"?api-version="+rgAPIVersion, `{"location":"westus2"}`)
	wantARMError(t, r, http.StatusUnauthorized, "InvalidAuthenticationToken")
	r = MustARM(t, ts, valid, "GET", groupPath(ts, "rg-expired")+"?api-version="+rgAPIVersion, "")
	wantARMError(t, r, http.StatusNotFound, "ResourceGroupNotFound")
}

// TestSigningKeyRotation rotates the server's signing key and checks that the
// JWKS publishes both keys, old tokens keep working and new ones use the new
// key.
func TestSigningKeyRotation(t *testing.T) {
	ts := servertest.New(t, nil)
	path := subPath(ts) + "/resourceGroups?api-version=" + rgAPIVersion
	oldKID := ts.Identity.Authority.ActiveKID()
	oldTok := adminToken(t, ts)
	if got := tokenKID(t, oldTok); got != oldKID {
		t.Fatalf("token kid = %s, want active kid %s", got, oldKID)
	}
	if got := kidsOf(MustJWKS(t, ts)); len(got) != 1 || !got[oldKID] {
		t.Fatalf("JWKS kids before rotation = %v, want only %s", got, oldKID)
	}
	newKID, err := ts.Identity.Authority.Rotate(context.Background())
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	got := kidsOf(MustJWKS(t, ts))
	if len(got) != 2 || !got[oldKID] || !got[newKID] {
		t.Errorf("JWKS kids after rotation = %v, want %s and %s", got, oldKID, newKID)
	}
	newTok := adminToken(t, ts)
	if got := tokenKID(t, newTok); got != newKID {
		t.Errorf("token kid after rotation = %s, want %s", got, newKID)
	}
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if r := MustARM(t, ts, tok, "GET", path, ""); r.Status != http.StatusOK {
			t.Errorf("%s token after rotation: %d %s", name, r.Status, r.Body)
		}
	}
}

// TestRestartReusesState stops a server and starts another on the same data
// directory and address: keys, CA, admin credentials, tenant, subscription
// and resources are the same, and tokens issued before the restart still work.
func TestRestartReusesState(t *testing.T) {
	dir := t.TempDir()
	first := servertest.New(t, func(c *server.Config) { c.DataDir = dir })
	tok := adminToken(t, first)
	MustGroup(t, first, tok, "rg-before")
	kid := first.Identity.Authority.ActiveKID()
	admin, tenant, sub, addr := first.Admin, first.Identity.TenantID, first.RM.SubscriptionID, first.Endpoint.Address
	caBefore, err := os.ReadFile(filepath.Join(dir, tlsca.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	oldPool := first.CAPool
	first.Close()

	second := servertest.New(t, func(c *server.Config) { c.DataDir = dir; c.Listen = addr })
	if second.Admin != admin {
		t.Errorf("admin credentials after restart = %+v, want %+v", second.Admin, admin)
	}
	if second.Identity.TenantID != tenant || second.RM.SubscriptionID != sub {
		t.Errorf("tenant/subscription after restart = %s/%s, want %s/%s", second.Identity.TenantID, second.RM.SubscriptionID, tenant, sub)
	}
	if got := second.Identity.Authority.ActiveKID(); got != kid {
		t.Errorf("active kid after restart = %s, want %s", got, kid)
	}
	if got := kidsOf(MustJWKS(t, second)); len(got) != 1 || !got[kid] {
		t.Errorf("JWKS kids after restart = %v, want only %s", got, kid)
	}
	caAfter, err := os.ReadFile(filepath.Join(dir, tlsca.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Error("CA certificate changed across restart")
	}
	// A client that trusted the old CA trusts the new server.
	old := *second
	old.Client = &http.Client{Transport: servertest.Transport(oldPool, second.Endpoint.Domain, second.Endpoint.Address), Timeout: time.Minute}
	if r := MustARM(t, &old, tok, "GET", groupPath(second, "rg-before")+"?api-version="+rgAPIVersion, ""); r.Status != http.StatusOK {
		t.Errorf("token from before the restart, through the old CA: %d %s", r.Status, r.Body)
	}
	b, err := os.ReadFile(filepath.Join(dir, server.AdminFile))
	if err != nil {
		t.Fatal(err)
	}
	var file server.AdminCredentials
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	if file != admin {
		t.Errorf("%s after restart = %+v, want %+v", server.AdminFile, file, admin)
	}
	// The admin secret from before the restart still gets tokens.
	MustToken(t, second, admin.ClientID, admin.ClientSecret, armScope)
}
