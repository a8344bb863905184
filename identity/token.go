package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"custody"
)

// TokenLifetime is how long an access token is valid.
const TokenLifetime = time.Hour

// clockSkew is the leeway allowed on nbf and exp.
const clockSkew = 30 * time.Second

// Claims are the claims of a Custody access token, named as Entra ID names
// them.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	ObjectID  string `json:"oid"`
	TenantID  string `json:"tid"`
	AppID     string `json:"appid"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	Expiry    int64  `json:"exp"`
	IDType    string `json:"idtyp,omitempty"`
	Version   string `json:"ver,omitempty"`
	// ResourceID is set on managed identity tokens (Entra's xms_mirid).
	ResourceID string `json:"xms_mirid,omitempty"`
}

// Token is an issued access token.
type Token struct {
	Raw       string
	ExpiresAt time.Time
	Claims    Claims
}

// Sealer seals signing keys before they reach the store.
type Sealer interface {
	Seal(plaintext, aad []byte) []byte
	Open(sealed, aad []byte) ([]byte, error)
}

// Authority signs and verifies access tokens. Its keys are RSA-2048 (RS256),
// persisted sealed in the store; Rotate adds a new active key while older keys
// stay published in the JWKS, so tokens signed before a rotation stay valid
// until they expire.
type Authority struct {
	store  Store
	sealer Sealer
	now    func() time.Time

	mu     sync.RWMutex
	active *signingKey
	keys   map[string]*signingKey // by kid

	// lastReload limits store look-ups for unknown kids, which anyone can
	// send, to one per reloadEvery.
	lastReload atomic.Int64
}

// reloadEvery is the least time between two store look-ups for a kid that
// is not in memory.
const reloadEvery = 5 * time.Second

type signingKey struct {
	kid     string
	priv    *rsa.PrivateKey
	pub     jose.JSONWebKey
	created time.Time
}

// NewAuthority loads the signing keys from store, creating the first one if
// there is none.
func NewAuthority(ctx context.Context, store Store, sealer Sealer, now func() time.Time) (*Authority, error) {
	if now == nil {
		now = time.Now
	}
	a := &Authority{store: store, sealer: sealer, now: now, keys: map[string]*signingKey{}}
	if err := a.reload(ctx); err != nil {
		return nil, err
	}
	if a.active == nil {
		if _, err := a.Rotate(ctx); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func signingKeyAAD(kid string) []byte { return []byte("custody/identity/signing-key/" + kid) }

// SigningKeyAAD is the associated data a signing key's private part is
// sealed with (a root key migration re-seals it).
func SigningKeyAAD(kid string) []byte { return signingKeyAAD(kid) }

// Reload reads the signing keys from the store again: a replica that
// becomes the cluster's active one learns of the keys others rotated.
func (a *Authority) Reload(ctx context.Context) error { return a.reload(ctx) }

func (a *Authority) reload(ctx context.Context) error {
	stored, err := a.store.SigningKeys(ctx)
	if err != nil {
		return err
	}
	keys := map[string]*signingKey{}
	var active *signingKey
	for _, s := range stored {
		der, err := a.sealer.Open(s.PrivateSealed, signingKeyAAD(s.KID))
		if err != nil {
			return fmt.Errorf("open signing key %s: %w", s.KID, err)
		}
		priv, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return fmt.Errorf("parse signing key %s: %w", s.KID, err)
		}
		k := newSigningKey(s.KID, priv)
		k.created = s.CreatedAt
		keys[s.KID] = k
		if s.Active {
			active = k
		}
	}
	a.mu.Lock()
	a.keys, a.active = keys, active
	a.mu.Unlock()
	return nil
}

func newSigningKey(kid string, priv *rsa.PrivateKey) *signingKey {
	return &signingKey{kid: kid, priv: priv, pub: jose.JSONWebKey{
		Key: &priv.PublicKey, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig",
	}}
}

// Rotate creates a new signing key and makes it the active one. It returns
// the new key id.
func (a *Authority) Rotate(ctx context.Context) (string, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(x509.MarshalPKCS1PublicKey(&priv.PublicKey))
	kid := base64.RawURLEncoding.EncodeToString(sum[:15])
	sk := &SigningKey{
		KID:           kid,
		Algorithm:     string(jose.RS256),
		PrivateSealed: a.sealer.Seal(x509.MarshalPKCS1PrivateKey(priv), signingKeyAAD(kid)),
		Active:        true,
		CreatedAt:     a.now().UTC(),
	}
	if err := a.store.AddSigningKey(ctx, sk); err != nil {
		return "", err
	}
	k := newSigningKey(kid, priv)
	k.created = sk.CreatedAt
	a.mu.Lock()
	a.keys[kid], a.active = k, k
	a.mu.Unlock()
	return kid, nil
}

// RotateIfOlder rotates the signing key when the active one is older than
// maxAge, and reports whether it did. The server calls it at start and
// periodically, so keys rotate without an operator.
func (a *Authority) RotateIfOlder(ctx context.Context, maxAge time.Duration) (bool, error) {
	a.mu.RLock()
	created := a.active.created
	a.mu.RUnlock()
	if maxAge <= 0 || a.now().Sub(created) < maxAge {
		return false, nil
	}
	_, err := a.Rotate(ctx)
	return err == nil, err
}

// JWKS returns the public signing keys.
func (a *Authority) JWKS() jose.JSONWebKeySet {
	a.mu.RLock()
	defer a.mu.RUnlock()
	set := jose.JSONWebKeySet{}
	for _, k := range a.keys {
		set.Keys = append(set.Keys, k.pub)
	}
	return set
}

// ActiveKID returns the kid new tokens are signed with.
func (a *Authority) ActiveKID() string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.active.kid
}

// Sign issues a token for p with the given issuer and audience.
func (a *Authority) Sign(p *Principal, issuer, audience string) (Token, error) {
	a.mu.RLock()
	k := a.active
	a.mu.RUnlock()
	now := a.now().Truncate(time.Second)
	c := Claims{
		Issuer: issuer, Subject: p.ObjectID, Audience: audience,
		ObjectID: p.ObjectID, TenantID: p.TenantID, AppID: p.AppID,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(TokenLifetime).Unix(),
		IDType: "app", Version: "2.0",
	}
	if p.Kind == KindSystemAssigned || p.Kind == KindUserAssigned {
		c.ResourceID = p.ResourceID
	}
	raw, err := SignClaims(k.priv, k.kid, jose.RS256, c)
	if err != nil {
		return Token{}, err
	}
	return Token{Raw: raw, ExpiresAt: time.Unix(c.Expiry, 0), Claims: c}, nil
}

// SignClaims signs any claims with key. It is exported for tests that need to
// forge tokens with other keys or algorithms.
func SignClaims(key any, kid string, alg jose.SignatureAlgorithm, claims any) (string, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// Expectation is what a verifier requires of a token besides its signature.
type Expectation struct {
	// Issuers are the accepted iss values.
	Issuers []string
	// Audiences are the accepted aud values, compared without a trailing
	// slash and case-insensitively.
	Audiences []string
}

// Verify checks a bearer token: its algorithm (RS256 only, so none and HMAC
// are refused), kid, signature, issuer, audience, nbf and exp. Every failure is
// a KindUnauthenticated *custody.Error saying what was wrong.
func (a *Authority) Verify(raw string, want Expectation) (*Claims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, unauthenticated("The access token is malformed or is not signed with RS256: %v.", err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return nil, unauthenticated("The access token has no key id (kid) header.")
	}
	kid := tok.Headers[0].KeyID
	a.mu.RLock()
	k := a.keys[kid]
	a.mu.RUnlock()
	if k == nil {
		// Another replica may have rotated; look once more in the store,
		// at most every reloadEvery so forged kids cannot load the database.
		now, last := a.now().UnixNano(), a.lastReload.Load()
		if now-last >= int64(reloadEvery) && a.lastReload.CompareAndSwap(last, now) && a.reload(context.Background()) == nil {
			a.mu.RLock()
			k = a.keys[kid]
			a.mu.RUnlock()
		}
	}
	if k == nil {
		return nil, unauthenticated("The access token is signed with an unknown key (kid %q).", kid)
	}
	var c Claims
	if err := tok.Claims(&k.priv.PublicKey, &c); err != nil {
		return nil, unauthenticated("The access token signature is invalid.")
	}
	now := a.now()
	if c.Expiry == 0 || now.After(time.Unix(c.Expiry, 0).Add(clockSkew)) {
		return nil, unauthenticated("The access token expired at %s. Get a new token.", time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	if c.NotBefore != 0 && now.Add(clockSkew).Before(time.Unix(c.NotBefore, 0)) {
		return nil, unauthenticated("The access token is not valid before %s.", time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	if !containsFold(want.Issuers, c.Issuer, false) {
		return nil, unauthenticated("The access token issuer %q is not accepted by this service.", c.Issuer)
	}
	if !containsFold(want.Audiences, c.Audience, true) {
		return nil, unauthenticated("The access token audience %q is not valid for this service; request a token for one of %s.", c.Audience, strings.Join(want.Audiences, ", "))
	}
	if c.ObjectID == "" || c.TenantID == "" {
		return nil, unauthenticated("The access token has no oid or tid claim.")
	}
	return &c, nil
}

func containsFold(set []string, v string, trimSlash bool) bool {
	norm := func(s string) string {
		if trimSlash {
			s = strings.TrimRight(s, "/")
		}
		return strings.ToLower(s)
	}
	v = norm(v)
	for _, s := range set {
		if norm(s) == v {
			return true
		}
	}
	return false
}

func unauthenticated(format string, args ...any) *custody.Error {
	return custody.Errorf(custody.KindUnauthenticated, "InvalidAuthenticationToken", format, args...)
}

// hashSecret returns salt || SHA-256(salt || secret). Client secrets are 256
// bits of randomness, so a fast salted hash is enough to keep them out of the
// database; a slow KDF would only slow token issuance.
func hashSecret(secret string) []byte {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(err)
	}
	return hashWithSalt(salt, secret)
}

func hashWithSalt(salt []byte, secret string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(secret))
	return append(append([]byte{}, salt...), h.Sum(nil)...)
}

func secretMatches(stored []byte, secret string) bool {
	if len(stored) != 16+sha256.Size {
		return false
	}
	got := hashWithSalt(stored[:16], secret)
	return subtleEqual(got, stored)
}

// NewID returns a random UUID (version 4) as Azure formats object and client
// ids.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
