package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"custody"
)

func TestHostMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, host, port string
		want                bool
	}{
		{"*.vault.azure.net", "kv1.vault.azure.net", "", true},
		{"*.vault.azure.net", "kv1.vault.azure.net", "443", true},
		{"*.vault.azure.net", "KV1.Vault.Azure.Net", "", true},
		{"*.vault.azure.net", "a.kv1.vault.azure.net", "", false},
		{"*.vault.azure.net", "vault.azure.net", "", false},
		{"*.vault.azure.net", "kv1.vault.azure.net.evil.example", "", false},
		{"*.vault.azure.net", "kv1.vault.azure.net", "8443", false},
		{"*.vault.ext.localhost:8443", "kv1.vault.ext.localhost", "8443", true},
		{"*.vault.ext.localhost:8443", "kv1.vault.ext.localhost", "", false},
		{"kv.example.com", "kv.example.com", "", true},
		{"kv.example.com", "kv2.example.com", "", false},
		{"kv.example.com:443", "kv.example.com", "", true},
		{"127.0.0.2:9000", "127.0.0.2", "9000", true},
	} {
		if got := hostMatches(c.pattern, c.host, c.port); got != c.want {
			t.Errorf("hostMatches(%q, %q, %q) = %v, want %v", c.pattern, c.host, c.port, got, c.want)
		}
	}
}

func TestExternalVaultsValidate(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := func() ExternalVaults {
		return ExternalVaults{Hosts: []string{"*.vault.azure.net", "kv.example.com:8443"}, Credentials: []ExternalCredential{
			{Hosts: []string{"*.vault.azure.net"}, TenantID: "t", ClientID: "c", ClientSecretFile: secretFile},
			{Hosts: []string{"kv.example.com:8443"}, Authority: "https://login.example.com", TenantID: "t", ClientID: "c", Federation: &Federation{}},
		}}
	}
	e := ok()
	if err := e.Validate(os.ReadFile); err != nil {
		t.Fatal(err)
	}
	if c := e.Credentials[0]; c.ClientSecret != "s3cret" || c.Authority != DefaultAuthority {
		t.Errorf("after Validate: %+v", c)
	}
	if e.Credentials[1].Authority != "https://login.example.com/" {
		t.Errorf("authority = %q", e.Credentials[1].Authority)
	}
	for name, c := range map[string]struct {
		edit func(e *ExternalVaults)
		want string
	}{
		"bad pattern":           {func(e *ExternalVaults) { e.Hosts = append(e.Hosts, "kv.*.net") }, "--external-vault-host"},
		"bad port":              {func(e *ExternalVaults) { e.Hosts = append(e.Hosts, "kv.example.com:443abc") }, "port"},
		"wildcard too wide":     {func(e *ExternalVaults) { e.Hosts = append(e.Hosts, "*.net") }, "--external-vault-host"},
		"host not allowed":      {func(e *ExternalVaults) { e.Credentials[0].Hosts = []string{"*.vault.azure.cn"} }, "add --external-vault-host *.vault.azure.cn"},
		"wider than allowed":    {func(e *ExternalVaults) { e.Hosts = []string{"kv1.vault.azure.net", "kv.example.com:8443"} }, "not an allowed external vault host"},
		"no tenant":             {func(e *ExternalVaults) { e.Credentials[0].TenantID = "" }, "tenantId"},
		"two ways":              {func(e *ExternalVaults) { e.Credentials[1].ClientSecret = "x" }, "exactly one"},
		"no way":                {func(e *ExternalVaults) { e.Credentials[1].Federation = nil }, "exactly one"},
		"http authority":        {func(e *ExternalVaults) { e.Credentials[1].Authority = "http://login.example.com" }, "https"},
		"missing secret file":   {func(e *ExternalVaults) { e.Credentials[0].ClientSecretFile = secretFile + ".gone" }, "clientSecretFile"},
		"credential for no one": {func(e *ExternalVaults) { e.Credentials[0].Hosts = nil }, "no vault host"},
	} {
		e := ok()
		c.edit(&e)
		err := e.Validate(os.ReadFile)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
	// A specific credential before a wildcard one wins for its host.
	e = ExternalVaults{Hosts: []string{"*.vault.azure.net"}, Credentials: []ExternalCredential{
		{Hosts: []string{"kv1.vault.azure.net"}, TenantID: "t1", ClientID: "c", ClientSecret: "s"},
		{Hosts: []string{"*.vault.azure.net"}, TenantID: "t2", ClientID: "c", ClientSecret: "s"},
	}}
	if err := e.Validate(func(string) ([]byte, error) { return nil, errors.New("unused") }); err != nil {
		t.Fatal(err)
	}
	if i, j := e.credential("kv1.vault.azure.net", ""), e.credential("kv2.vault.azure.net", "443"); i != 0 || j != 1 {
		t.Errorf("credential indexes = %d, %d; want 0, 1", i, j)
	}
	if e.credential("kv1.vault.azure.cn", "") != -1 {
		t.Errorf("a credential matched a host it does not list")
	}
}

// tokenService is a minimal Entra-style token endpoint over TLS: it
// answers every client-credentials request with a token naming the
// assertion's or secret's sender, and counts requests.
type tokenService struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []url.Values
}

func newTokenService(t *testing.T) *tokenService {
	ts := &tokenService{}
	ts.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "https://" + r.Host + "/tenant-x"
		switch {
		case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
			json.NewEncoder(w).Encode(map[string]any{"issuer": base + "/v2.0", "token_endpoint": base + "/oauth2/v2.0/token",
				"authorization_endpoint": base + "/oauth2/v2.0/authorize", "jwks_uri": base + "/keys"})
		case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
			r.ParseForm()
			ts.mu.Lock()
			ts.requests = append(ts.requests, r.PostForm)
			n := len(ts.requests)
			ts.mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3600, "access_token": fmt.Sprintf("token-%d", n)})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenService) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.requests)
}

// TestExternalTokenCredential: a federated credential asks the tenant for
// a token per identity, with an assertion signed for that identity, and
// answers later calls from its cache; a client secret's token is shared;
// a deleted identity gets no token at all.
func TestExternalTokenCredential(t *testing.T) {
	svc := newTokenService(t)
	var mu sync.Mutex
	var asserted []string
	gone := map[string]bool{}
	e := &ExternalVaults{
		Hosts: []string{"*.vault.example.com"},
		Credentials: []ExternalCredential{
			{Hosts: []string{"kvsecret.vault.example.com"}, Authority: svc.srv.URL, TenantID: "tenant-x", ClientID: "app-1", ClientSecret: "s"},
			{Hosts: []string{"*.vault.example.com"}, Authority: svc.srv.URL, TenantID: "tenant-x", ClientID: "app-2", Federation: &Federation{Subject: "shared"}},
		},
		Transport: svc.srv.Client(),
		Assertion: func(_ context.Context, principalID, subject, audience string) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			asserted = append(asserted, principalID+"/"+subject)
			return "assertion-for-" + principalID, nil
		},
		IdentityExists: func(_ context.Context, principalID string) error {
			mu.Lock()
			defer mu.Unlock()
			if gone[principalID] {
				return custody.Errorf(custody.KindUnauthenticated, "IdentityNotFound", "gone")
			}
			return nil
		},
	}
	if err := e.Validate(os.ReadFile); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func(vault, principal string) (string, error) {
		t.Helper()
		c, err := e.TokenCredential("https://"+vault, principal)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
		return tok.Token, err
	}
	a1, err := get("kvfed.vault.example.com", "identity-a")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := get("kvother.vault.example.com", "identity-a")
	b1, _ := get("kvfed.vault.example.com", "identity-b")
	if a1 != a2 || a1 == b1 {
		t.Errorf("tokens a1 %q a2 %q b1 %q: want one per identity, reused", a1, a2, b1)
	}
	if strings.Join(asserted, ",") != "identity-a/shared,identity-b/shared" {
		t.Errorf("assertions signed for %v", asserted)
	}
	s1, _ := get("kvsecret.vault.example.com", "identity-a")
	s2, _ := get("kvsecret.vault.example.com", "identity-b")
	if s1 != s2 || s1 == a1 {
		t.Errorf("client secret tokens %q, %q: want one, shared", s1, s2)
	}
	if n := svc.count(); n != 3 {
		t.Errorf("%d token requests, want 3 (two identities federated, one secret)", n)
	}
	svc.mu.Lock()
	first := svc.requests[0]
	svc.mu.Unlock()
	if first.Get("client_assertion") != "assertion-for-identity-a" || first.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || first.Get("client_id") != "app-2" {
		t.Errorf("the federated token request was %v", first)
	}

	mu.Lock()
	gone["identity-a"] = true
	mu.Unlock()
	for _, vault := range []string{"kvfed.vault.example.com", "kvsecret.vault.example.com"} {
		_, err := get(vault, "identity-a")
		var ce *custody.Error
		if !errors.As(err, &ce) || ce.Code != "IdentityNotFound" {
			t.Errorf("%s for a deleted identity: %v, want IdentityNotFound", vault, err)
		}
	}
	if _, err := e.TokenCredential("https://kv.vault.other.com", "identity-b"); custody.ErrorKind(err) != custody.KindInvalid {
		t.Errorf("a host without a credential: %v", err)
	}
}

// feedRecorder is a VaultClient with a change feed that records which
// vaults it is asked to follow and holds each request until ctx ends.
type feedRecorder struct {
	VaultClient
	mu     sync.Mutex
	vaults map[string]bool
}

func (f *feedRecorder) Changes(ctx context.Context, vaultURL, _, _ string, _ time.Duration) (ChangesPage, error) {
	f.mu.Lock()
	f.vaults[vaultURL] = true
	f.mu.Unlock()
	<-ctx.Done()
	return ChangesPage{}, ctx.Err()
}

// TestMonitorFollowsOwnVaultsOnly: the monitor subscribes to the change
// feed of this server's vaults only; external vaults have none and are
// watched by probes.
func TestMonitorFollowsOwnVaultsOnly(t *testing.T) {
	feed := &feedRecorder{vaults: map[string]bool{}}
	s := &Service{Domain: "localhost", Port: 8443, Vault: feed,
		External: &ExternalVaults{Hosts: []string{"*.vault.azure.net"}}}
	for name, kid := range map[string]string{
		"own":      "https://kv1.vault.localhost:8443/keys/k/0123456789abcdef0123456789abcdef",
		"external": "https://kv2.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef",
	} {
		a := &Account{Name: name, Encryption: Encryption{KeySource: KeySourceKeyVault, KeyIdentifier: kid}}
		a.Key.Wrapped = WrappedDEK{KeySource: KeySourceKeyVault, KeyID: kid, Identity: "identity-" + name}
		s.watch(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.syncFeeds(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m := s.mon()
	m.mu.Lock()
	var subs []string
	for f := range m.subs {
		subs = append(subs, f.vaultURL)
	}
	groups := len(m.groups)
	m.mu.Unlock()
	if groups != 2 || len(subs) != 1 || subs[0] != "https://kv1.vault.localhost:8443" {
		t.Fatalf("%d probe groups, subscriptions %v; want 2 groups and the own vault's feed only", groups, subs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		feed.mu.Lock()
		own, ext := feed.vaults["https://kv1.vault.localhost:8443"], feed.vaults["https://kv2.vault.azure.net"]
		feed.mu.Unlock()
		if ext {
			t.Fatal("the monitor asked an external vault for its change feed")
		}
		if own {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the monitor did not follow its own vault's feed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
