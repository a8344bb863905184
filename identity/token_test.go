package identity_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"custody"
	"custody/identity"
	"custody/secret"
	"custody/sqlstore"
)

const (
	testIssuer   = "https://login.localhost:8443/tenant-1/v2.0"
	testAudience = "https://management.azure.com/"
)

var testExpectation = identity.Expectation{
	Issuers:   []string{testIssuer},
	Audiences: []string{"https://management.azure.com", "https://management.localhost:8443"},
}

// clock is a settable time source for an Authority.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// MustOpenStore opens a fresh SQLite identity store in a temporary directory.
func MustOpenStore(tb testing.TB) *sqlstore.IdentityStore {
	tb.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(tb.TempDir(), "identity.db"))
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return &sqlstore.IdentityStore{DB: db}
}

// MustSealer returns a sealer under a random root key.
func MustSealer(tb testing.TB) *secret.Sealer {
	tb.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		tb.Fatal(err)
	}
	s, err := secret.NewSealer(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// MustAuthority returns an authority on a fresh store whose clock is c.
func MustAuthority(tb testing.TB, c *clock) *identity.Authority {
	tb.Helper()
	a, err := identity.NewAuthority(context.Background(), MustOpenStore(tb), MustSealer(tb), c.Now)
	if err != nil {
		tb.Fatalf("new authority: %v", err)
	}
	return a
}

func testPrincipal() *identity.Principal {
	return &identity.Principal{ObjectID: identity.NewID(), AppID: identity.NewID(), TenantID: "tenant-1", Kind: identity.KindServicePrincipal, DisplayName: "p"}
}

func MustSign(tb testing.TB, a *identity.Authority, p *identity.Principal, issuer, audience string) string {
	tb.Helper()
	tok, err := a.Sign(p, issuer, audience)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return tok.Raw
}

// publicKey returns the RSA public key published under kid.
func publicKey(tb testing.TB, a *identity.Authority, kid string) *rsa.PublicKey {
	tb.Helper()
	for _, k := range a.JWKS().Keys {
		if k.KeyID == kid {
			pub, ok := k.Key.(*rsa.PublicKey)
			if !ok {
				tb.Fatalf("key %s is %T, want *rsa.PublicKey", kid, k.Key)
			}
			return pub
		}
	}
	tb.Fatalf("kid %s not in JWKS", kid)
	return nil
}

// claimsFor returns valid claims for p at now, as Sign would set them.
func claimsFor(p *identity.Principal, now time.Time) identity.Claims {
	return identity.Claims{
		Issuer: testIssuer, Subject: p.ObjectID, Audience: testAudience, ObjectID: p.ObjectID,
		TenantID: p.TenantID, AppID: p.AppID, IssuedAt: now.Unix(), NotBefore: now.Unix(),
		Expiry: now.Add(time.Hour).Unix(), IDType: "app", Version: "2.0",
	}
}

// tamper replaces the payload of a compact JWS with the JSON of claims,
// keeping the original header and signature.
func tamper(tb testing.TB, raw string, edit func(m map[string]any)) string {
	tb.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts, want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(payload, &m); err != nil {
		tb.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// unsigned returns an alg=none token with the given kid and claims.
func unsigned(tb testing.TB, kid string, claims any) string {
	tb.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	c, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

func TestVerifyAcceptsValidToken(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a := MustAuthority(t, c)
	p := testPrincipal()
	raw := MustSign(t, a, p, testIssuer, testAudience)
	got, err := a.Verify(raw, testExpectation)
	if err != nil {
		t.Fatalf("Verify of a fresh token: %v", err)
	}
	if got.ObjectID != p.ObjectID || got.AppID != p.AppID || got.TenantID != p.TenantID {
		t.Errorf("Verify claims = oid %s appid %s tid %s, want %s %s %s", got.ObjectID, got.AppID, got.TenantID, p.ObjectID, p.AppID, p.TenantID)
	}
	if got.Expiry-got.IssuedAt != int64(identity.TokenLifetime/time.Second) {
		t.Errorf("lifetime = %ds, want %v", got.Expiry-got.IssuedAt, identity.TokenLifetime)
	}
}

// TestVerifyRejects forges each kind of bad token and checks that Verify
// refuses it with an InvalidAuthenticationToken error of KindUnauthenticated.
func TestVerifyRejects(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := &clock{t: t0}
	a := MustAuthority(t, c)
	p := testPrincipal()
	kid := a.ActiveKID()
	pub := publicKey(t, a, kid)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	pkcs1 := x509.MarshalPKCS1PublicKey(pub)

	valid := MustSign(t, a, p, testIssuer, testAudience)
	// A token signed one hour ahead is not yet valid now.
	c.Set(t0.Add(time.Hour))
	future := MustSign(t, a, p, testIssuer, testAudience)
	// A token signed two hours ago has expired.
	c.Set(t0.Add(-2 * time.Hour))
	expired := MustSign(t, a, p, testIssuer, testAudience)
	c.Set(t0)

	forge := func(key any, kid string, alg jose.SignatureAlgorithm, claims any) string {
		t.Helper()
		raw, err := identity.SignClaims(key, kid, alg, claims)
		if err != nil {
			t.Fatalf("SignClaims(%s): %v", alg, err)
		}
		return raw
	}
	good := claimsFor(p, t0)
	noOID := good
	noOID.ObjectID = ""

	tests := []struct {
		name string
		raw  string
	}{
		{"Expired", expired},
		{"NotYetValid", future},
		{"WrongAudience", MustSign(t, a, p, testIssuer, "https://vault.azure.net")},
		{"WrongIssuer", MustSign(t, a, p, "https://login.example.com/tenant-1/v2.0", testAudience)},
		{"UnknownKid", forge(otherKey, "not-a-known-kid", jose.RS256, good)},
		{"KnownKidOtherKey", forge(otherKey, kid, jose.RS256, good)},
		{"NoKid", forge(otherKey, "", jose.RS256, good)},
		{"TamperedPayload", tamper(t, valid, func(m map[string]any) { m["oid"] = identity.NewID() })},
		{"TamperedExpiry", tamper(t, expired, func(m map[string]any) { m["exp"] = t0.Add(time.Hour).Unix() })},
		{"AlgNone", unsigned(t, kid, good)},
		{"AlgNoneWithSignature", unsigned(t, kid, good) + strings.Split(valid, ".")[2]},
		{"HS256PEMPublicKey", forge(pemKey, kid, jose.HS256, good)},
		{"HS256PKIXPublicKey", forge(pkix, kid, jose.HS256, good)},
		{"HS256PKCS1PublicKey", forge(pkcs1, kid, jose.HS256, good)},
		{"PS256", forge(otherKey, kid, jose.PS256, good)},
		{"MissingOID", forge(otherKey, kid, jose.RS256, noOID)},
		{"NotAJWT", "not-a-token"},
		{"Empty", ""},
		{"TwoParts", strings.Join(strings.Split(valid, ".")[:2], ".")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims, err := a.Verify(tt.raw, testExpectation)
			if err == nil {
				t.Fatalf("Verify accepted the token (claims %+v)", claims)
			}
			if got, want := custody.ErrorKind(err), custody.KindUnauthenticated; got != want {
				t.Errorf("error kind = %v, want %v (err: %v)", got, want, err)
			}
			if got, want := custody.ErrorCode(err), "InvalidAuthenticationToken"; got != want {
				t.Errorf("error code = %q, want %q", got, want)
			}
		})
	}
}

// TestVerifyClockSkew checks the edges of the validity window: tokens are
// accepted up to 30 seconds past exp and before nbf, and refused beyond.
func TestVerifyClockSkew(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := &clock{t: t0}
	a := MustAuthority(t, c)
	raw := MustSign(t, a, testPrincipal(), testIssuer, testAudience)
	exp := t0.Add(identity.TokenLifetime)
	tests := []struct {
		now time.Time
		ok  bool
	}{
		{t0.Add(-20 * time.Second), true},
		{t0.Add(-40 * time.Second), false},
		{exp.Add(20 * time.Second), true},
		{exp.Add(40 * time.Second), false},
	}
	for _, tt := range tests {
		c.Set(tt.now)
		_, err := a.Verify(raw, testExpectation)
		if got := err == nil; got != tt.ok {
			t.Errorf("Verify at issue%+v: ok = %v, want %v (err: %v)", tt.now.Sub(t0), got, tt.ok, err)
		}
	}
}

// TestRotateKeepsOldTokensValid rotates the signing key and checks that tokens
// signed before stay valid, new tokens carry the new kid, and the JWKS
// publishes both.
func TestRotateKeepsOldTokensValid(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	store := MustOpenStore(t)
	sealer := MustSealer(t)
	a, err := identity.NewAuthority(ctx, store, sealer, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	p := testPrincipal()
	oldKID := a.ActiveKID()
	oldTok := MustSign(t, a, p, testIssuer, testAudience)

	newKID, err := a.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if newKID == oldKID {
		t.Fatalf("Rotate returned the old kid %s", oldKID)
	}
	if got := a.ActiveKID(); got != newKID {
		t.Errorf("ActiveKID after rotate = %s, want %s", got, newKID)
	}
	newTok := MustSign(t, a, p, testIssuer, testAudience)
	if got := headerKID(t, newTok); got != newKID {
		t.Errorf("new token kid = %s, want %s", got, newKID)
	}
	if got := headerKID(t, oldTok); got != oldKID {
		t.Errorf("old token kid = %s, want %s", got, oldKID)
	}
	for name, raw := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := a.Verify(raw, testExpectation); err != nil {
			t.Errorf("Verify %s token after rotation: %v", name, err)
		}
	}
	kids := map[string]bool{}
	for _, k := range a.JWKS().Keys {
		kids[k.KeyID] = true
		if !k.IsPublic() {
			t.Errorf("JWKS key %s is not public", k.KeyID)
		}
	}
	if !kids[oldKID] || !kids[newKID] || len(kids) != 2 {
		t.Errorf("JWKS kids = %v, want exactly %s and %s", kids, oldKID, newKID)
	}

	// A second authority on the same store (a restart, or another replica)
	// signs with the rotated key and verifies both tokens.
	b, err := identity.NewAuthority(ctx, store, sealer, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.ActiveKID(); got != newKID {
		t.Errorf("reloaded ActiveKID = %s, want %s", got, newKID)
	}
	for name, raw := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := b.Verify(raw, testExpectation); err != nil {
			t.Errorf("reloaded authority: Verify %s token: %v", name, err)
		}
	}
	// The first authority learns of a rotation made by the second when it
	// sees a token with the new kid.
	thirdKID, err := b.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(MustSign(t, b, p, testIssuer, testAudience), testExpectation); err != nil {
		t.Errorf("Verify of a token signed with a key rotated elsewhere (%s): %v", thirdKID, err)
	}
}

// TestAuthorityNeedsItsRootKey checks that the signing keys cannot be loaded
// under another root key.
func TestAuthorityNeedsItsRootKey(t *testing.T) {
	ctx := context.Background()
	store := MustOpenStore(t)
	if _, err := identity.NewAuthority(ctx, store, MustSealer(t), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.NewAuthority(ctx, store, MustSealer(t), nil); err == nil {
		t.Fatal("NewAuthority with another root key succeeded")
	}
}

func headerKID(tb testing.TB, raw string) string {
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

func BenchmarkTokenIssue(b *testing.B) {
	a := MustAuthority(b, &clock{t: time.Now()})
	p := testPrincipal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Sign(p, testIssuer, testAudience); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenVerify(b *testing.B) {
	a := MustAuthority(b, &clock{t: time.Now()})
	raw := MustSign(b, a, testPrincipal(), testIssuer, testAudience)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Verify(raw, testExpectation); err != nil {
			b.Fatal(err)
		}
	}
}
