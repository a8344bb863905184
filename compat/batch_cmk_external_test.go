package compat_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/batch/armbatch/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"custody/batch"
	"custody/identity"
	"custody/server"
	"custody/server/servertest"
	"custody/tlsca"
)

// extApp is an application (service principal) in the external tenant.
type extApp struct{ objectID, appID, secret string }

// newExtApp creates a service principal in ts's directory through Graph.
func newExtApp(t *testing.T, ts *servertest.TestServer, name string) extApp {
	t.Helper()
	graph := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://graph.microsoft.com/.default")
	r := MustDo(t, ts, graph, "POST", "graph", "/v1.0/servicePrincipals", `{"displayName":"`+name+`"}`)
	wantStatus(t, r, http.StatusCreated)
	var v struct {
		ID    string `json:"id"`
		AppID string `json:"appId"`
		Creds []struct {
			SecretText string `json:"secretText"`
		} `json:"passwordCredentials"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || len(v.Creds) != 1 {
		t.Fatalf("create service principal %s: %v %s", name, err, r.Body)
	}
	return extApp{objectID: v.ID, appID: v.AppID, secret: v.Creds[0].SecretText}
}

// trust adds a federated identity credential to app in ts's directory.
func trust(t *testing.T, ts *servertest.TestServer, app extApp, name, issuer, subject string) {
	t.Helper()
	graph := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://graph.microsoft.com/.default")
	body := mustJSON(map[string]any{"name": name, "issuer": issuer, "subject": subject, "audiences": []string{identity.AssertionAudience}})
	r := MustDo(t, ts, graph, "POST", "graph", "/v1.0/applications/"+app.appID+"/federatedIdentityCredentials", body)
	wantStatus(t, r, http.StatusCreated)
	r = MustDo(t, ts, graph, "GET", "graph", "/v1.0/applications/"+app.appID+"/federatedIdentityCredentials/"+name, "")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), subject) {
		t.Fatalf("federated credential %s reads back as %s", name, r.Body)
	}
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestBatchCustomerManagedKeyExternalVault runs the customer-managed-key
// seed flow on a key in another Custody server's vault (domain
// ext.localhost, its own tenant), reached with each kind of credential:
// a client secret of an application there, and workload identity
// federation, where that application trusts this server's issuer for the
// account's identity. Each account enables the key (versionless), runs
// tasks, follows a new key version, locks when the external vault's access
// policy is removed, and unlocks and runs tasks again when it is restored.
// Key identifiers on hosts not allowed, or allowed without a credential,
// are refused before any connection.
func TestBatchCustomerManagedKeyExternalVault(t *testing.T) {
	t.Setenv(agentEnv, "1")
	// This server's CA and address exist before the external server
	// starts, which must trust the issuer on it.
	mainDir := t.TempDir()
	if _, _, err := tlsca.Ensure(mainDir, "localhost", nil); err != nil {
		t.Fatal(err)
	}
	mainAddr := freeAddr(t)
	_, mainPort, _ := net.SplitHostPort(mainAddr)

	var extLogs syncBuffer
	ext := servertest.New(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&extLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Domain = "ext.localhost"
		c.DisableLocalNodes = true
		c.ExternalCAFile = filepath.Join(mainDir, tlsca.CAFile)
		c.Resolve = map[string]string{"login.localhost:" + mainPort: mainAddr}
	})
	x := &cmkEnv{t: t, ts: ext, ctx: context.Background(), tok: adminToken(t, ext), rg: "rg-keys"}
	MustGroup(t, ext, x.tok, x.rg)
	var err error
	if x.vaults, err = armkeyvault.NewVaultsClient(ext.Admin.SubscriptionID, adminCredential(t, ext), armOptions(ext)); err != nil {
		t.Fatal(err)
	}
	secretApp := newExtApp(t, ext, "custody-batch-secret")
	fedApp := newExtApp(t, ext, "custody-batch-federated")

	extPort := strconv.Itoa(ext.Endpoint.Port)
	extHost := func(name string) string { return name + ".ext.localhost:" + extPort }
	nocred := newConnRecorder(t, "127.0.0.2:0")
	authority := "https://" + extHost("login") + "/"
	var logs syncBuffer
	mainConfig := func(c *server.Config) {
		c.Listen, c.DataDir = mainAddr, mainDir
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
		c.KeyProbeInterval = probeInterval
		c.ExternalVaultHosts = []string{"*.vault.ext.localhost:" + extPort, nocred.ln.Addr().String()}
		c.ExternalVaultCredentials = []batch.ExternalCredential{
			{Hosts: []string{extHost("kvsecret.vault")}, Authority: authority, TenantID: ext.Admin.TenantID, ClientID: secretApp.appID, ClientSecret: secretApp.secret},
			{Hosts: []string{extHost("kvwrong.vault")}, Authority: authority, TenantID: ext.Admin.TenantID, ClientID: secretApp.appID, ClientSecret: "not-the-secret"},
			{Hosts: []string{"*.vault.ext.localhost:" + extPort}, Authority: authority, TenantID: ext.Admin.TenantID, ClientID: fedApp.appID, Federation: &batch.Federation{}},
		}
		c.ExternalCAFile = ext.Endpoint.CAFile
		c.Resolve = map[string]string{}
		for _, h := range []string{"login", "kvsecret.vault", "kvwrong.vault", "kvfed.vault"} {
			c.Resolve[extHost(h)] = ext.Endpoint.Address
		}
	}
	ts := servertest.New(t, mainConfig)
	m := &cmkEnv{t: t, ts: ts, ctx: context.Background(), tok: adminToken(t, ts), accts: batchClient(t, ts), rg: "rg-cmk"}
	MustGroup(t, ts, m.tok, m.rg)

	t.Run("refusals", func(t *testing.T) {
		x.t, m.t = t, t
		mustCreateAccount(t, m.accts, m.rg, "acctrefused", armbatch.AccountCreateParameters{
			Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)}})
		other := "https://kv.vault.other.localhost:" + extPort + "/keys/k1"
		_, err := m.setKey("acctrefused", "Microsoft.KeyVault", other)
		if msg := wantCode(t, "a host not on the allow-list", err, 400, "InvalidKeyIdentifier"); !strings.Contains(msg, "kv.vault.other.localhost:"+extPort) || !strings.Contains(msg, "--external-vault-host") {
			t.Errorf("the refusal does not name the host and the flag: %s", msg)
		}
		_, err = m.setKey("acctrefused", "Microsoft.KeyVault", "https://"+nocred.ln.Addr().String()+"/keys/k1")
		if msg := wantCode(t, "an allowed host without a credential", err, 400, "ExternalVaultCredentialMissing"); !strings.Contains(msg, nocred.ln.Addr().String()) || !strings.Contains(msg, "--external-vault-credentials") {
			t.Errorf("the refusal does not name the host and the flag: %s", msg)
		}
		if n := nocred.count(t); n != 0 {
			t.Errorf("the server connected %d time(s) to a vault host it has no credential for", n)
		}
		// The external tenant refuses a wrong secret; the refusal says why.
		_, err = m.setKey("acctrefused", "Microsoft.KeyVault", "https://"+extHost("kvwrong.vault")+"/keys/k1")
		if msg := wantCode(t, "a wrong client secret", err, 400, "KeyVaultAccessFailed"); !strings.Contains(msg, "AADSTS7000215") || strings.Contains(msg, "not-the-secret") {
			t.Errorf("the refusal does not carry the external tenant's reason, or shows the secret: %s", msg)
		}
		if st := m.status("acctrefused"); !strings.HasPrefix(st.KeyVersionInUse, "platform-") {
			t.Errorf("a refused key changed the account: %+v", st)
		}
	})

	for _, k := range []struct {
		name, vault string
		app         extApp
		federated   bool
	}{
		{"secret", "kvsecret", secretApp, false},
		{"federation", "kvfed", fedApp, true},
	} {
		t.Run(k.name, func(t *testing.T) {
			x.t, m.t = t, t
			ctx := context.Background()
			kc := x.vault(k.vault)
			kid := x.rsaKey(kc, "cmk")
			x.grant(k.vault, k.app.objectID)
			account := "acct" + k.name
			a := mustCreateAccount(t, m.accts, m.rg, account, armbatch.AccountCreateParameters{
				Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)}})
			principal := *a.Identity.PrincipalID
			versionless := strings.TrimSuffix(string(kid), "/"+kid.Version())
			if k.federated {
				// Until the external application trusts this identity, the
				// external tenant gives no token and the key is refused.
				_, err := m.setKey(account, "Microsoft.KeyVault", versionless)
				if msg := wantCode(t, "federation before the trust exists", err, 400, "KeyVaultAccessFailed"); !strings.Contains(msg, "AADSTS70021") {
					t.Errorf("the refusal does not carry the external tenant's reason: %s", msg)
				}
				trust(t, ext, k.app, "custody-"+account, ts.Identity.Issuer, principal)
			}
			m.mustSetKey(account, "Microsoft.KeyVault", versionless)
			if st := m.status(account); st.State != batch.KeyAvailable || st.KeyVersionInUse != string(kid) {
				t.Fatalf("after enabling the external key: %+v, want %s in use", st, kid)
			}

			// Tasks run on the account's data, sealed under the external key.
			c := dataClient(t, ts, account)
			mustPool(t, c, "p1", 1, 1)
			if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
				t.Fatal(err)
			}
			runTask := func(id string) {
				t.Helper()
				if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("echo " + id)}, nil); err != nil {
					t.Fatalf("create task %s: %v", id, err)
				}
				tk := waitTask(t, c, "j1", id, 60*time.Second)
				if tk.ExecutionInfo == nil || tk.ExecutionInfo.ExitCode == nil || *tk.ExecutionInfo.ExitCode != 0 {
					t.Fatalf("task %s: %+v", id, tk.ExecutionInfo)
				}
				if out := readTaskFile(t, c, "j1", id, "stdout.txt"); strings.TrimSpace(out) != id {
					t.Fatalf("task %s wrote %q", id, out)
				}
			}
			runTask("before")

			// Rotation: the versionless identifier follows a new version,
			// found by the monitor's probes.
			kid2 := x.rsaKey(kc, "cmk")
			m.waitStatus(account, "the new version "+string(kid2), func(s encryptionStatus) bool { return s.KeyVersionInUse == string(kid2) })

			// Revocation in the external vault locks the account; its data
			// plane refuses.
			x.policy(k.vault, k.app.objectID, armkeyvault.AccessPolicyUpdateKindRemove)
			st := m.waitLocked(account, "cmk")
			t.Logf("locked: %s", st.Reason)
			if !strings.Contains(st.Reason, "ext.localhost") {
				t.Errorf("the lock reason does not name the external vault: %q", st.Reason)
			}
			_, err := c.GetJob(ctx, "j1", nil)
			wantCode(t, "the data plane of a locked account", err, http.StatusConflict, "AccountKeyInaccessible")

			// Restoring access unlocks it, and tasks run again.
			x.grant(k.vault, k.app.objectID)
			m.waitAvailable(account)
			runTask("after")
		})
	}

	// A server that does not trust the external vault's CA refuses its
	// keys, saying why.
	t.Run("untrusted certificate", func(t *testing.T) {
		x.t, m.t = t, t
		ts3 := servertest.New(t, func(c *server.Config) {
			mainConfig(c)
			c.Listen, c.DataDir, c.ExternalCAFile = "127.0.0.1:0", t.TempDir(), ""
			c.DisableLocalNodes = true
		})
		m3 := &cmkEnv{t: t, ts: ts3, ctx: context.Background(), tok: adminToken(t, ts3), accts: batchClient(t, ts3), rg: "rg-cmk"}
		MustGroup(t, ts3, m3.tok, m3.rg)
		mustCreateAccount(t, m3.accts, m3.rg, "acctuntrusted", armbatch.AccountCreateParameters{
			Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)}})
		_, err := m3.setKey("acctuntrusted", "Microsoft.KeyVault", "https://"+extHost("kvsecret.vault")+"/keys/cmk")
		if msg := wantCode(t, "a vault whose CA is not trusted", err, 400, "KeyVaultAccessFailed"); !strings.Contains(msg, "not trusted") || !strings.Contains(msg, "--external-ca-file") {
			t.Errorf("the refusal does not say the certificate is not trusted: %s", msg)
		}
	})

	// Deleting the account's identity locks it, although the external
	// tenant would still give the server a token.
	t.Run("identity deleted", func(t *testing.T) {
		x.t, m.t = t, t
		MustIdentity(t, ts, m.tok, m.rg, "uami-ext")
		rid := identityPath(ts, m.rg, "uami-ext")
		mustCreateAccount(t, m.accts, m.rg, "acctuami", armbatch.AccountCreateParameters{
			Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeUserAssigned),
				UserAssignedIdentities: map[string]*armbatch.UserAssignedIdentities{rid: {}}}})
		m.mustSetKey("acctuami", "Microsoft.KeyVault", "https://"+extHost("kvsecret.vault")+"/keys/cmk")
		if st := m.status("acctuami"); st.State != batch.KeyAvailable {
			t.Fatalf("after enabling the external key: %+v", st)
		}
		if r := MustARM(t, ts, m.tok, "DELETE", rid+"?api-version="+miAPIVersion, ""); r.Status != http.StatusOK && r.Status != http.StatusNoContent {
			t.Fatalf("delete identity: %d %s", r.Status, r.Body)
		}
		st := m.waitLocked("acctuami", "cmk")
		if !strings.Contains(st.Reason, "no longer exists") {
			t.Errorf("the lock reason does not say the identity is gone: %q", st.Reason)
		}
	})

	// A restart unwraps each account's data key through its external
	// vault again, with each credential.
	t.Run("restart", func(t *testing.T) {
		if err := ts.Stop(); err != nil {
			t.Fatal(err)
		}
		ts2 := servertest.New(t, mainConfig)
		m2 := &cmkEnv{t: t, ts: ts2, ctx: context.Background(), tok: adminToken(t, ts2), accts: batchClient(t, ts2), rg: "rg-cmk"}
		for _, account := range []string{"acctsecret", "acctfederation"} {
			if st := m2.status(account); st.State != batch.KeyAvailable {
				t.Fatalf("%s after the restart: %+v", account, st)
			}
			j, err := dataClient(t, ts2, account).GetJob(context.Background(), "j1", nil)
			if err != nil || *j.ID != "j1" {
				t.Fatalf("%s: read a job after the restart: %v", account, err)
			}
		}
		// Every key call went to the external server.
		if l := string(extLogs.Bytes()); !strings.Contains(l, "/keys/cmk/") {
			t.Errorf("the external vault's access log has no key call")
		}
		// The client secret is in neither the logs nor the data directory.
		if len(logs.Bytes()) == 0 {
			t.Errorf("no log captured")
		}
		if strings.Contains(string(logs.Bytes()), secretApp.secret) {
			t.Errorf("the server logged the external tenant's client secret")
		}
		files, _ := filepath.Glob(filepath.Join(mainDir, "*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), secretApp.secret) {
				t.Errorf("%s holds the external tenant's client secret", filepath.Base(f))
			}
		}
	})
}

// TestTokenClientAssertionRefusals: the token endpoint's refusals of client
// assertions, in Entra's shape.
func TestTokenClientAssertionRefusals(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	app := newExtApp(t, ts, "assertion-app")
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {app.appID}, "scope": {"https://vault.azure.net/.default"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for name, c := range map[string]struct {
		form   url.Values
		status int
		code   string
		aadsts string
	}{
		"secret and assertion": {form("client_secret", app.secret, "client_assertion", "x", "client_assertion_type", identity.AssertionType), 400, "invalid_request", "AADSTS900144"},
		"wrong assertion type": {form("client_assertion", "x", "client_assertion_type", "urn:other"), 400, "invalid_request", "AADSTS50027"},
		"not a JWT":            {form("client_assertion", "x", "client_assertion_type", identity.AssertionType), 401, "invalid_client", "AADSTS50027"},
		"no federated credential": {form("client_assertion", mustAssertion(t, ts), "client_assertion_type", identity.AssertionType),
			401, "invalid_client", "AADSTS70021"},
	} {
		r := tokenResponse(t, ts, ts.Admin.TenantID, c.form)
		var v struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(r.Body, &v)
		if r.Status != c.status || v.Error != c.code || !strings.HasPrefix(v.Description, c.aadsts+":") {
			t.Errorf("%s: %d %s, want %d %s %s", name, r.Status, r.Body, c.status, c.code, c.aadsts)
		}
	}
}

// mustAssertion signs a federation assertion for a new managed identity
// of ts.
func mustAssertion(t *testing.T, ts *servertest.TestServer) string {
	t.Helper()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg-assert")
	principal := MustIdentity(t, ts, tok, "rg-assert", "uami-assert")
	raw, _, err := ts.Identity.FederationAssertion(context.Background(), principal, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
