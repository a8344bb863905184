package compat_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"custody/identity"
	"custody/server/servertest"
)

// oauthError is the token endpoint's error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
}

func wantOAuthError(tb testing.TB, r response, status int, code string) {
	tb.Helper()
	if r.Status != status {
		tb.Errorf("status = %d, want %d; body: %s", r.Status, status, r.Body)
		return
	}
	var e oauthError
	if err := json.Unmarshal(r.Body, &e); err != nil {
		tb.Errorf("error body is not JSON: %s", r.Body)
		return
	}
	if e.Error != code {
		tb.Errorf("error = %q, want %q; description: %s", e.Error, code, e.Description)
	}
	if !strings.HasPrefix(e.Description, "AADSTS") || len(e.Codes) != 1 {
		tb.Errorf("error body lacks an AADSTS description and code: %s", r.Body)
	}
	if strings.Contains(string(r.Body), "access_token") {
		tb.Errorf("error body carries a token: %s", r.Body)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	ts := servertest.New(t, nil)
	sp := MustServicePrincipal(t, ts, "app")
	tenant := ts.Admin.TenantID
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID}, "client_secret": {sp.Secret}, "scope": {armScope}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	tests := []struct {
		name   string
		tenant string
		form   url.Values
		status int
		code   string
	}{
		{"WrongSecret", tenant, form("client_secret", "not-the-secret"), 401, "invalid_client"},
		{"OtherPrincipalsSecret", tenant, form("client_secret", ts.Admin.ClientSecret), 401, "invalid_client"},
		{"SecretPrefix", tenant, form("client_secret", sp.Secret[:len(sp.Secret)-1]), 401, "invalid_client"},
		{"NoSecret", tenant, form("client_secret", ""), 401, "invalid_client"},
		{"UnknownClient", tenant, form("client_id", identity.NewID()), 400, "unauthorized_client"},
		{"NoClient", tenant, form("client_id", ""), 400, "invalid_request"},
		{"UnknownTenant", identity.NewID(), form(), 400, "invalid_tenant"},
		{"CommonTenant", "common", form(), 400, "invalid_tenant"},
		{"ScopeWithoutDefault", tenant, form("scope", "https://management.azure.com/user_impersonation"), 400, "invalid_scope"},
		{"NoScope", tenant, form("scope", ""), 400, "invalid_scope"},
		{"UnknownResource", tenant, form("scope", "https://storage.azure.com/.default"), 400, "invalid_resource"},
		{"LookalikeResource", tenant, form("scope", "https://management.azure.com.evil.example/.default"), 400, "invalid_resource"},
		{"PasswordGrant", tenant, form("grant_type", "password"), 400, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOAuthError(t, tokenResponse(t, ts, tt.tenant, tt.form), tt.status, tt.code)
		})
	}
	// The right secret still works after all those failures.
	MustToken(t, ts, sp.ClientID, sp.Secret, armScope)
}

// jwtParts decodes a token's header and claims without verifying it.
func jwtParts(tb testing.TB, raw string) (header, claims map[string]any) {
	tb.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			tb.Fatalf("token part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			tb.Fatalf("token part %d: %v", i, err)
		}
	}
	return header, claims
}

// TestClientSecretCredential gets tokens with azidentity for the three
// audiences the SDK clients ask for and checks their claims.
func TestClientSecretCredential(t *testing.T) {
	ts := servertest.New(t, nil)
	sp := MustServicePrincipal(t, ts, "sdk-app")
	cred, err := azidentity.NewClientSecretCredential(ts.Admin.TenantID, sp.ClientID, sp.Secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cloudConfig(ts), Transport: ts.Client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		scope, aud string
		class      identity.AudienceClass
	}{
		{"https://management.azure.com/.default", "https://management.azure.com", identity.AudienceManagement},
		{"https://vault.azure.net/.default", "https://vault.azure.net", identity.AudienceVault},
		{"https://batch.core.windows.net//.default", "https://batch.core.windows.net/", identity.AudienceBatch},
	} {
		t.Run(tt.scope, func(t *testing.T) {
			start := time.Now().Add(-time.Minute)
			tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{tt.scope}})
			if err != nil {
				t.Fatalf("GetToken: %v", err)
			}
			if tok.ExpiresOn.Before(time.Now().Add(30 * time.Minute)) {
				t.Errorf("token expires at %v, want about an hour from now", tok.ExpiresOn)
			}
			header, claims := jwtParts(t, tok.Token)
			if got, want := header["kid"], ts.Identity.Authority.ActiveKID(); got != want {
				t.Errorf("kid = %v, want %v", got, want)
			}
			if got := header["alg"]; got != "RS256" {
				t.Errorf("alg = %v, want RS256", got)
			}
			want := map[string]any{
				"iss": ts.URL("login") + "/" + ts.Admin.TenantID + "/v2.0", "aud": tt.aud,
				"oid": sp.ObjectID, "tid": ts.Admin.TenantID, "appid": sp.ClientID,
			}
			for k, v := range want {
				if claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, claims[k], v)
				}
			}
			var times [3]time.Time
			for i, k := range []string{"iat", "nbf", "exp"} {
				n, ok := claims[k].(float64)
				if !ok {
					t.Fatalf("claim %s = %v, want a number", k, claims[k])
				}
				times[i] = time.Unix(int64(n), 0)
			}
			if times[0].Before(start) || times[1].Before(start) || !times[2].After(times[0]) {
				t.Errorf("iat %v nbf %v exp %v are not now, now, later", times[0], times[1], times[2])
			}
			// The server accepts the token for its own audience class only.
			for _, class := range []identity.AudienceClass{identity.AudienceManagement, identity.AudienceVault, identity.AudienceBatch} {
				_, err := ts.Identity.Authority.Verify(tok.Token, ts.Identity.Expectation(class, ts.HTTP.Issuers()))
				if got, want := err == nil, class == tt.class; got != want {
					t.Errorf("Verify for %s: ok = %v, want %v (err: %v)", class, got, want, err)
				}
			}
		})
	}

	bad, err := azidentity.NewClientSecretCredential(ts.Admin.TenantID, sp.ClientID, "wrong", &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cloudConfig(ts), Transport: ts.Client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{armScope}})
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) {
		t.Fatalf("GetToken with a wrong secret: %v, want AuthenticationFailedError", err)
	}
	if afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong secret: response %v, want 401", afe.RawResponse)
	}
}

// TestTokenEndpointForms checks the v1 endpoint (resource=) and client
// authentication with HTTP Basic.
func TestTokenEndpointForms(t *testing.T) {
	ts := servertest.New(t, nil)
	sp := MustServicePrincipal(t, ts, "app")
	req, _ := http.NewRequestWithContext(context.Background(), "POST", ts.URL("login")+"/"+ts.Admin.TenantID+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID}, "client_secret": {sp.Secret}, "resource": {"https://management.azure.com/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := MustSend(t, ts, req)
	wantStatus(t, r, http.StatusOK)
	var v struct {
		AccessToken string `json:"access_token"`
		ExpiresOn   string `json:"expires_on"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || v.AccessToken == "" || v.ExpiresOn == "" || v.TokenType != "Bearer" {
		t.Errorf("v1 token response: %s", r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", r.Header.Get("Cache-Control"))
	}

	req, _ = http.NewRequestWithContext(context.Background(), "POST", ts.URL("login")+"/"+ts.Admin.TenantID+"/oauth2/v2.0/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {armScope}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sp.ClientID, sp.Secret)
	wantStatus(t, MustSend(t, ts, req), http.StatusOK)
	req, _ = http.NewRequestWithContext(context.Background(), "POST", ts.URL("login")+"/"+ts.Admin.TenantID+"/oauth2/v2.0/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {armScope}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sp.ClientID, "wrong")
	wantOAuthError(t, MustSend(t, ts, req), http.StatusUnauthorized, "invalid_client")
}
