package server_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"custody/server"
	"custody/server/servertest"
)

// postgresDatabase creates a database of its own on the test PostgreSQL
// server (CUSTODY_TEST_POSTGRES) for the test and drops it afterwards; it
// skips when PostgreSQL is unreachable, unless CI is set.
func postgresDatabase(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("CUSTODY_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	admin, err := sql.Open("pgx", dsn)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = admin.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL (CUSTODY_TEST_POSTGRES=%q) is unreachable: %v", dsn, err)
		}
		t.Skipf("PostgreSQL unreachable, skipping (set CUSTODY_TEST_POSTGRES): %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "custody_replica_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		admin.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// token gets an access token from ts with the client-credentials grant.
func token(t *testing.T, ts *servertest.TestServer, clientID, secret, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {scope}}
	resp, err := ts.Client.PostForm(ts.URL("login")+"/"+ts.Admin.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &v) != nil || v.AccessToken == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	return v.AccessToken
}

// call sends a request with a bearer token and returns the status and body.
func call(t *testing.T, ts *servertest.TestServer, method, u, tok, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ts.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func claim(t *testing.T, jwt, name string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[name].(string)
	return s
}

// replica starts an in-process server on the shared database and data
// directory with the cluster's public URL.
func replica(t *testing.T, dsn, dataDir, publicURL string) *servertest.TestServer {
	t.Helper()
	return servertest.New(t, func(c *server.Config) {
		c.Database, c.DataDir, c.PublicURL, c.DisableLocalNodes = dsn, dataDir, publicURL, true
	})
}

// TestPublicURLOneIdentity: two replicas on one PostgreSQL database and data
// directory, listening on ports of their own, hand out the public URL's
// names and port, and a token one issued is accepted by the other.
func TestPublicURLOneIdentity(t *testing.T) {
	dsn := postgresDatabase(t)
	dir := t.TempDir()
	const public = "https://custody.example:8443"
	a := replica(t, dsn, dir, public)
	b := replica(t, dsn, dir, public)
	if a.Port() != 8443 || b.Port() != 8443 || a.Endpoint.Domain != "custody.example" || a.Endpoint.Address == b.Endpoint.Address {
		t.Fatalf("endpoints %+v and %+v; want port 8443 and domain custody.example on two listeners", a.Endpoint, b.Endpoint)
	}
	if a.Identity.TenantID != b.Identity.TenantID || a.Admin != b.Admin {
		t.Fatalf("replicas differ in tenant or admin: %+v, %+v", a.Admin, b.Admin)
	}

	tok := token(t, a, a.Admin.ClientID, a.Admin.ClientSecret, "https://management.custody.example:8443/.default")
	if iss, want := claim(t, tok, "iss"), "https://login.custody.example:8443/"+a.Identity.TenantID+"/v2.0"; iss != want {
		t.Errorf("iss = %q, want %q", iss, want)
	}
	rg := "https://management.custody.example:8443/subscriptions/" + a.Admin.SubscriptionID + "/resourcegroups/replicated?api-version=2021-04-01"
	if st, body := call(t, a, http.MethodPut, rg, tok, `{"location":"westus2"}`); st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("create group on the first replica: %d %s", st, body)
	}
	if st, body := call(t, b, http.MethodGet, rg, tok, ""); st != http.StatusOK || !strings.Contains(body, `"replicated"`) {
		t.Fatalf("the first replica's token on the second: %d %s", st, body)
	}
	// And the other way round, with the second's token on the first.
	tok2 := token(t, b, b.Admin.ClientID, b.Admin.ClientSecret, "https://management.custody.example:8443/.default")
	if st, body := call(t, a, http.MethodGet, rg, tok2, ""); st != http.StatusOK {
		t.Fatalf("the second replica's token on the first: %d %s", st, body)
	}

	// The URLs the services build carry the public name and port.
	for _, got := range []string{a.KeyVault.VaultURI("kv1"), b.Batch.AccountEndpoint("acct1")} {
		if !strings.Contains(got, ".custody.example:8443") {
			t.Errorf("service URL %q does not carry the public URL's domain and port", got)
		}
	}
	var ep server.Endpoint
	if b, err := os.ReadFile(dir + "/" + server.EndpointFile); err != nil || json.Unmarshal(b, &ep) != nil || ep.Port != 8443 {
		t.Errorf("server.json = %s (%v); want the public port", b, err)
	}
}

func TestParsePublicURL(t *testing.T) {
	for _, tc := range []struct {
		in     string
		domain string
		port   int
	}{
		{"https://custody.example:8443", "custody.example", 8443},
		{"https://Custody.Example", "custody.example", 443},
		{"https://localhost:8443/", "localhost", 8443},
	} {
		d, p, err := server.ParsePublicURL(tc.in)
		if err != nil || d != tc.domain || p != tc.port {
			t.Errorf("ParsePublicURL(%q) = %q, %d, %v; want %q, %d", tc.in, d, p, err, tc.domain, tc.port)
		}
	}
	for _, bad := range []string{"http://custody.example", "https://127.0.0.1:8443", "https://custody.example:0", "https://custody.example/x", "custody.example", "https://u@custody.example"} {
		if _, _, err := server.ParsePublicURL(bad); err == nil {
			t.Errorf("ParsePublicURL(%q) accepted", bad)
		}
	}
}
