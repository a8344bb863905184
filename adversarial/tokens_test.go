package adversarial_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"custody/identity"
	"custody/secret"
	"custody/server/servertest"
	"custody/sqlstore"
)

// serverAuthority returns an authority over the server's own signing keys
// whose clock runs at now+shift: it mints tokens with the server's real key
// that are expired or not yet valid.
func serverAuthority(tb testing.TB, ts *servertest.TestServer, shift time.Duration) *identity.Authority {
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

// resign replaces a JWT's header (and signs header.payload with sign).
func resign(raw string, header map[string]any, sign func([]byte) []byte) string {
	parts := strings.Split(raw, ".")
	h, _ := json.Marshal(header)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + parts[1]
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

// TestForgedTokens sends every plane forged, mismatched, expired and
// foreign tokens; each must get 401, and nothing must be served.
func TestForgedTokens(t *testing.T) {
	ts := newServer(t)
	ctx := context.Background()
	admin, err := ts.Identity.Store.PrincipalByAppID(ctx, ts.Admin.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	arm := token(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, scopeARM)
	armAdmin := "/subscriptions/" + ts.Admin.SubscriptionID + "/resourceGroups/fgrp?api-version=2021-04-01"
	if r := call(t, ts, arm, "PUT", "management", armAdmin, `{"location":"westus2"}`); r.Status/100 != 2 {
		t.Fatalf("create group: %d %s", r.Status, r.Body)
	}
	if r := call(t, ts, arm, "PUT", "management", "/subscriptions/"+ts.Admin.SubscriptionID+"/resourceGroups/fgrp/providers/Microsoft.Batch/batchAccounts/forgeacct?api-version=2024-07-01", `{"location":"westus2"}`); r.Status/100 != 2 {
		t.Fatalf("create account: %d %s", r.Status, r.Body)
	}
	if r := call(t, ts, arm, "PUT", "management", "/subscriptions/"+ts.Admin.SubscriptionID+"/resourceGroups/fgrp/providers/Microsoft.KeyVault/vaults/forgekv?api-version=2023-07-01",
		`{"location":"westus2","properties":{"tenantId":"`+ts.Admin.TenantID+`","sku":{"family":"A","name":"standard"},"accessPolicies":[{"tenantId":"`+ts.Admin.TenantID+`","objectId":"`+admin.ObjectID+`","permissions":{"keys":["all"]}}]}}`); r.Status/100 != 2 {
		t.Fatalf("create vault: %d %s", r.Status, r.Body)
	}

	planes := []struct {
		name, host, path, scope, aud string
	}{
		{"management", "management", "/subscriptions/" + ts.Admin.SubscriptionID + "/resourceGroups?api-version=2021-04-01", scopeARM, "https://management.azure.com/"},
		{"vault", "forgekv.vault", "/keys?api-version=7.4", scopeVault, "https://vault.azure.net"},
		{"batch", "forgeacct.batch", "/jobs?api-version=2024-07-01.20.0", scopeBatch, "https://batch.core.windows.net/"},
	}
	now := serverAuthority(t, ts, 0)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	kid := now.ActiveKID()
	var jwks jose.JSONWebKeySet = now.JWKS()
	var pub *rsa.PublicKey
	for _, k := range jwks.Keys {
		if k.KeyID == kid {
			pub, _ = k.Key.(*rsa.PublicKey)
		}
	}
	if pub == nil {
		t.Fatal("active key not in the JWKS")
	}
	sign := func(a *identity.Authority, p *identity.Principal, iss, aud string) string {
		tok, err := a.Sign(p, iss, aud)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Raw
	}
	foreignTenant := *admin
	foreignTenant.TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

	for i, pl := range planes {
		valid := token(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, pl.scope)
		if r := call(t, ts, valid, "GET", pl.host, pl.path, ""); r.Status != http.StatusOK {
			t.Fatalf("%s: the valid token is refused: %d %s", pl.name, r.Status, r.Body)
		}
		// The control for the minted tokens below: the same minting with the
		// right clock, issuer, tenant and audience is accepted.
		if r := call(t, ts, sign(now, admin, ts.Identity.Issuer, pl.aud), "GET", pl.host, pl.path, ""); r.Status != http.StatusOK {
			t.Fatalf("%s: a token minted with the server's key is refused: %d %s", pl.name, r.Status, r.Body)
		}
		next := planes[(i+1)%len(planes)]
		claims := func() map[string]any {
			b, _ := base64.RawURLEncoding.DecodeString(strings.Split(valid, ".")[1])
			var c map[string]any
			_ = json.Unmarshal(b, &c)
			return c
		}
		withClaims := func(c map[string]any) string {
			s, err := identity.SignClaims(other, kid, jose.RS256, c)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		elevated := claims()
		elevated["oid"] = "00000000-0000-0000-0000-000000000001"
		forged := map[string]string{
			"tampered signature": valid[:len(valid)-6] + "AAAAAA",
			"tampered claims": func() string {
				parts := strings.Split(valid, ".")
				c := claims()
				c["oid"] = "00000000-0000-0000-0000-000000000001"
				b, _ := json.Marshal(c)
				return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
			}(),
			"another key, the server's kid": withClaims(elevated),
			"unknown kid": func() string {
				s, _ := identity.SignClaims(other, "unknown-kid", jose.RS256, claims())
				return s
			}(),
			"no kid": func() string {
				s, _ := identity.SignClaims(other, "", jose.RS256, claims())
				return s
			}(),
			"alg none":         resign(valid, map[string]any{"alg": "none", "kid": kid, "typ": "JWT"}, func([]byte) []byte { return nil }),
			"alg none, no sig": strings.TrimSuffix(resign(valid, map[string]any{"alg": "none", "typ": "JWT"}, func([]byte) []byte { return nil }), "."),
			"HS256, public key": resign(valid, map[string]any{"alg": "HS256", "kid": kid, "typ": "JWT"}, func(in []byte) []byte {
				m := hmac.New(sha256.New, pub.N.Bytes())
				m.Write(in)
				return m.Sum(nil)
			}),
			"RS512 header":             resign(valid, map[string]any{"alg": "RS512", "kid": kid, "typ": "JWT"}, func([]byte) []byte { return []byte("x") }),
			"another plane's audience": token(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, next.scope),
			"graph audience":           token(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://graph.microsoft.com/.default"),
			"expired":                  sign(serverAuthority(t, ts, -3*time.Hour), admin, ts.Identity.Issuer, pl.aud),
			"not yet valid":            sign(serverAuthority(t, ts, 3*time.Hour), admin, ts.Identity.Issuer, pl.aud),
			"not valid until 2300":     sign(serverAuthority(t, ts, 276*365*24*time.Hour), admin, ts.Identity.Issuer, pl.aud),
			"foreign issuer":           sign(now, admin, "https://login.microsoftonline.com/"+ts.Admin.TenantID+"/v2.0", pl.aud),
			"foreign tenant":           sign(now, &foreignTenant, ts.Identity.Issuer, pl.aud),
			"unknown audience":         sign(now, admin, ts.Identity.Issuer, "https://evil.example"),
			"empty":                    "",
			"garbage":                  "not.a.jwt",
			"huge":                     strings.Repeat("A", 16<<10),
			"two parts":                strings.Join(strings.Split(valid, ".")[:2], "."),
			"four parts":               valid + ".x",
		}
		for name, tok := range forged {
			hdr := "Bearer " + tok
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL(pl.host)+pl.path, nil)
			req.Header.Set("Authorization", hdr)
			resp, err := ts.Client.Do(req)
			if err != nil {
				t.Fatalf("%s, %s: %v", pl.name, name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s plane, %s token: %d, want 401", pl.name, name, resp.StatusCode)
			}
		}
	}
}
