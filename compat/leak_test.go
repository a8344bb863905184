package compat_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"custody/server"
	"custody/server/servertest"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// TestNoSecretsAtRest drives the server through token issuance, failed
// logins, resource manager and directory calls, then checks that neither its
// log nor its database files hold any client secret or access token.
func TestNoSecretsAtRest(t *testing.T) {
	logs := &syncBuffer{}
	ts := servertest.New(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	dir := ts.DataDir()
	secrets := map[string]string{"admin secret": ts.Admin.ClientSecret}
	tokens := map[string]string{}

	admin := adminToken(t, ts)
	tokens["admin ARM token"] = admin
	MustGroup(t, ts, admin, "rg1")
	MustIdentity(t, ts, admin, "rg1", "id1")
	sp := MustServicePrincipal(t, ts, "app")
	secrets["service principal secret"] = sp.Secret
	tokens["service principal token"] = MustToken(t, ts, sp.ClientID, sp.Secret, "https://vault.azure.net/.default")
	// A 403 and a 401 carrying the token, and a failed login with a near-miss
	// secret.
	MustARM(t, ts, tokens["service principal token"], "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, "")
	spARM := MustToken(t, ts, sp.ClientID, sp.Secret, armScope)
	tokens["service principal ARM token"] = spARM
	MustARM(t, ts, spARM, "PUT", groupPath(ts, "rg2")+"?api-version="+rgAPIVersion, `{"location":"westus2"}`)
	nearMiss := sp.Secret[:len(sp.Secret)-2] + "zz"
	secrets["wrong secret"] = nearMiss
	tokenResponse(t, ts, ts.Admin.TenantID, url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID}, "client_secret": {nearMiss}, "scope": {armScope}})
	// A token in the query string, where some clients put it by mistake.
	MustARM(t, ts, "", "GET", subPath(ts)+"/resourceGroups?api-version="+rgAPIVersion+"&access_token="+url.QueryEscape(admin), "")

	// Directory calls hand out new secrets in their bodies.
	graph := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://graph.microsoft.com/.default")
	tokens["graph token"] = graph
	r := MustDo(t, ts, graph, "POST", "graph", "/v1.0/servicePrincipals", `{"displayName":"from-graph"}`)
	wantStatus(t, r, http.StatusCreated)
	var created struct {
		ID    string `json:"id"`
		AppID string `json:"appId"`
		Creds []struct {
			SecretText string `json:"secretText"`
		} `json:"passwordCredentials"`
	}
	if err := json.Unmarshal(r.Body, &created); err != nil || len(created.Creds) != 1 || created.Creds[0].SecretText == "" {
		t.Fatalf("graph create: %s", r.Body)
	}
	secrets["graph-created secret"] = created.Creds[0].SecretText
	r = MustDo(t, ts, graph, "POST", "graph", "/v1.0/servicePrincipals/"+created.ID+"/addPassword", `{"passwordCredential":{"displayName":"second"}}`)
	wantStatus(t, r, http.StatusOK)
	var added struct {
		SecretText string `json:"secretText"`
	}
	if err := json.Unmarshal(r.Body, &added); err != nil || added.SecretText == "" {
		t.Fatalf("addPassword: %s", r.Body)
	}
	secrets["added secret"] = added.SecretText
	tokens["graph-created token"] = MustToken(t, ts, created.AppID, added.SecretText, armScope)

	// Every token's signature is unique to it; search for that too, so a
	// token stored in pieces is still found.
	needles := map[string]string{}
	for name, s := range secrets {
		needles[name] = s
	}
	for name, tok := range tokens {
		needles[name] = tok
		parts := strings.Split(tok, ".")
		needles[name+" signature"] = parts[2]
	}

	scan := func(when string) {
		t.Helper()
		haystacks := map[string][]byte{"server log": logs.Bytes()}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		sawDB := false
		for _, e := range entries {
			// admin.json holds the admin secret by design (mode 0600), for
			// the CLI.
			if e.IsDir() || e.Name() == server.AdminFile {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(e.Name(), "custody.db") {
				sawDB = true
			}
			haystacks[e.Name()] = b
		}
		if !sawDB {
			t.Fatalf("%s: no custody.db in the data directory", when)
		}
		for hname, h := range haystacks {
			for nname, n := range needles {
				if bytes.Contains(h, []byte(n)) {
					t.Errorf("%s: %s contains the %s", when, hname, nname)
				}
			}
		}
	}
	if len(logs.Bytes()) == 0 {
		t.Fatal("the server logged nothing; the log capture does not work")
	}
	if !bytes.Contains(logs.Bytes(), []byte(sp.ObjectID)) {
		t.Error("the log does not name the caller of a request; the capture misses request logs")
	}
	scan("while running")
	ts.Close()
	scan("after shutdown")
}

// TestInternalErrorIsLoggedNotShown breaks the database under a running
// server: the caller gets a 500 in Azure's shape without the cause, and the
// cause goes to the server's own log.
func TestInternalErrorIsLoggedNotShown(t *testing.T) {
	logs := &syncBuffer{}
	ts := servertest.New(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	tok := adminToken(t, ts)
	if err := ts.DB.SQL().Close(); err != nil {
		t.Fatal(err)
	}
	r := MustARM(t, ts, tok, "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, "")
	wantARMError(t, r, http.StatusInternalServerError, "InternalServerError")
	const cause = "database is closed"
	if strings.Contains(string(r.Body), cause) {
		t.Errorf("the response shows the cause: %s", r.Body)
	}
	if !bytes.Contains(logs.Bytes(), []byte(cause)) {
		t.Errorf("the server log does not hold the cause %q:\n%s", cause, logs.Bytes())
	}
}
