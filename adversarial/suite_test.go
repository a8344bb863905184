package adversarial_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"custody/identity"
	"custody/rm"
	"custody/server"
	"custody/server/servertest"
)

// logBuffer collects a test server's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newServer starts a server whose log goes to a buffer; when the test ends
// (before the server stops) it fails on any 5xx answer, error record or
// panic in that log.
func newServer(tb testing.TB) *servertest.TestServer {
	tb.Helper()
	buf := &logBuffer{}
	ts := servertest.New(tb, func(c *server.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
		c.DisableLocalNodes = true
	})
	tb.Cleanup(func() { checkLog(tb, buf.String()) })
	return ts
}

// checkLog fails tb for every log record that is an error, a 5xx answer or
// a panic.
func checkLog(tb testing.TB, log string) {
	tb.Helper()
	bad := 0
	for _, line := range strings.Split(log, "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			Level  string  `json:"level"`
			Msg    string  `json:"msg"`
			Status float64 `json:"status"`
		}
		_ = json.Unmarshal([]byte(line), &rec)
		if rec.Level == "ERROR" || rec.Status >= 500 || strings.Contains(strings.ToLower(line), "panic") {
			if bad++; bad <= 20 {
				tb.Errorf("server log: %s", clip(line, 600))
			}
		}
	}
	if bad > 20 {
		tb.Errorf("server log: %d bad records in all", bad)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Token scopes of the three planes.
const (
	scopeARM   = "https://management.azure.com/.default"
	scopeVault = "https://vault.azure.net/.default"
	scopeBatch = "https://batch.core.windows.net/.default"
)

// principal is a service principal of the matrix with its roles.
type principal struct {
	name   string
	oid    string
	appID  string
	secret string
	grants []grant
	tokens map[string]string // scope -> access token
}

type grant struct {
	scope string
	role  *rm.RoleDefinition
}

// can reports whether the principal's roles allow action at scope: the
// matrix's expectation, from Azure's built-in role definitions.
func (p *principal) can(action, scope string, data bool) bool {
	for _, g := range p.grants {
		if under(scope, g.scope) && g.role.Allows(action, data) {
			return true
		}
	}
	return false
}

// under reports whether resource id scope is at or below parent.
func under(scope, parent string) bool {
	s, p := strings.ToLower(strings.TrimRight(scope, "/")), strings.ToLower(strings.TrimRight(parent, "/"))
	return s == p || strings.HasPrefix(s, p+"/")
}

// response is an HTTP answer.
type response struct {
	Status int
	Body   string
}

// call sends one request to https://{host}.{domain}{path}.
func call(tb testing.TB, ts *servertest.TestServer, token, method, host, path, body string) response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, ts.URL(host)+path, rd)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := ts.Client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Body: string(b)}
}

// token gets an access token with the client credentials grant.
func token(tb testing.TB, ts *servertest.TestServer, clientID, secret, scope string) string {
	tb.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {scope}}
	resp, err := ts.Client.PostForm(ts.URL("login")+"/"+ts.Admin.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		AccessToken string `json:"access_token"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &v) != nil || v.AccessToken == "" {
		tb.Fatalf("token for %s: %d %s", scope, resp.StatusCode, b)
	}
	return v.AccessToken
}

// env is a server with the matrix's fixtures: resource groups rgA and rgB;
// in rgA a key vault (access policies; the Owner may use every key
// operation) with one RSA key, a batch account and a user-assigned
// identity; and the principals of the matrix.
type env struct {
	t  testing.TB
	ts *servertest.TestServer
	// vals are the path parameter values of the fixtures.
	vals map[string]string
	// ids are the fixtures' resource ids, by name: sub, rgA, rgB, vault,
	// account, identity.
	ids   map[string]string
	ps    []*principal
	owner *principal
}

const (
	rgA          = "advrga"
	rgB          = "advrgb"
	vaultName    = "advkv"
	keyName      = "advkey"
	accountName  = "advacct"
	identityName = "advid"
	location     = "westus2"
)

func newEnv(t testing.TB) *env {
	ts := newServer(t)
	ctx := context.Background()
	sub := ts.Admin.SubscriptionID
	e := &env{t: t, ts: ts, vals: map[string]string{}, ids: map[string]string{
		"sub":      rm.SubscriptionID(sub),
		"rgA":      rm.GroupID(sub, rgA),
		"rgB":      rm.GroupID(sub, rgB),
		"vault":    rm.ResourceID(sub, rgA, "Microsoft.KeyVault", "vaults", vaultName),
		"account":  rm.ResourceID(sub, rgA, "Microsoft.Batch", "batchAccounts", accountName),
		"identity": rm.ResourceID(sub, rgA, "Microsoft.ManagedIdentity", "userAssignedIdentities", identityName),
	}}
	admin, err := ts.Identity.Store.PrincipalByAppID(ctx, ts.Admin.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := rm.RoleByGUID(rm.RoleOwner)
	e.owner = &principal{name: "Owner", oid: admin.ObjectID, appID: admin.AppID, secret: ts.Admin.ClientSecret,
		grants: []grant{{e.ids["sub"], owner}}}
	adm := token(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, scopeARM)
	mustOK := func(r response, what string) {
		t.Helper()
		if r.Status/100 != 2 {
			t.Fatalf("%s: %d %s", what, r.Status, r.Body)
		}
	}
	for _, rg := range []string{rgA, rgB} {
		mustOK(call(t, ts, adm, "PUT", "management", e.ids[map[string]string{rgA: "rgA", rgB: "rgB"}[rg]]+"?api-version=2021-04-01", `{"location":"westus2"}`), "create group")
	}
	mustOK(call(t, ts, adm, "PUT", "management", e.ids["vault"]+"?api-version=2023-07-01", `{"location":"westus2","properties":{"tenantId":"`+ts.Admin.TenantID+
		`","sku":{"family":"A","name":"standard"},"accessPolicies":[{"tenantId":"`+ts.Admin.TenantID+`","objectId":"`+admin.ObjectID+`","permissions":{"keys":["all"]}}]}}`), "create vault")
	mustOK(call(t, ts, adm, "PUT", "management", e.ids["account"]+"?api-version=2024-07-01", `{"location":"westus2"}`), "create account")
	mustOK(call(t, ts, adm, "PUT", "management", e.ids["identity"]+"?api-version=2023-01-31", `{"location":"westus2"}`), "create identity")
	vt := token(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, scopeVault)
	r := call(t, ts, vt, "POST", vaultName+".vault", "/keys/"+keyName+"/create?api-version=7.4", `{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey","encrypt","decrypt","sign","verify"]}`)
	mustOK(r, "create key")
	var kb struct {
		Key struct {
			Kid string `json:"kid"`
		} `json:"key"`
	}
	_ = json.Unmarshal([]byte(r.Body), &kb)
	version := kb.Key.Kid[strings.LastIndexByte(kb.Key.Kid, '/')+1:]

	e.vals = map[string]string{
		"subscriptionId": sub, "resourceGroupName": rgA, "vaultName": vaultName, "accountName": accountName,
		"resourceName": identityName, "location": location, "locationName": location,
		"operationId": identity.NewID(), "operationKind": "add", "roleAssignmentName": identity.NewID(),
		"roleDefinitionId": rm.RoleReader, "name": keyName, "version": version, "vault": vaultName, "key": keyName,
		"account": accountName, "job": "advjob", "task": "advtask", "jobId": "advjob", "taskId": "advtask", "jobScheduleId": "advschedule",
		"poolId": "advpool", "nodeId": "advnode", "path": "stdout.txt",
	}

	role := func(guid string) *rm.RoleDefinition { r, _ := rm.RoleByGUID(guid); return r }
	specs := []struct {
		name   string
		grants []grant
	}{
		{"NoRole", nil},
		{"ReaderAtSubscription", []grant{{e.ids["sub"], role(rm.RoleReader)}}},
		{"ContributorOnOtherGroup", []grant{{e.ids["rgB"], role(rm.RoleContributor)}}},
		{"ContributorOnAccount", []grant{{e.ids["account"], role(rm.RoleContributor)}}},
		{"ContributorOnVault", []grant{{e.ids["vault"], role(rm.RoleContributor)}}},
	}
	for _, sp := range specs {
		pr, secret, err := ts.Identity.CreateServicePrincipal(ctx, "adv-"+sp.name, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range sp.grants {
			if _, err := ts.RM.CreateRoleAssignment(ctx, g.scope, "", rm.RoleDefinitionID(sub, g.role.GUID), pr.ObjectID, "", ""); err != nil {
				t.Fatal(err)
			}
		}
		e.ps = append(e.ps, &principal{name: sp.name, oid: pr.ObjectID, appID: pr.AppID, secret: secret, grants: sp.grants})
	}
	e.ps = append(e.ps, e.owner)
	for _, p := range e.ps {
		p.tokens = map[string]string{}
		for _, sc := range []string{scopeARM, scopeVault, scopeBatch} {
			p.tokens[sc] = token(t, ts, p.appID, p.secret, sc)
		}
	}
	return e
}

// fill substitutes path parameters ({name} and {name...}) from vals.
func fill(tmpl string, vals map[string]string) string {
	var b strings.Builder
	for _, seg := range strings.Split(strings.Trim(tmpl, "/"), "/") {
		b.WriteByte('/')
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := strings.TrimSuffix(seg[1:len(seg)-1], "...")
			v, ok := vals[name]
			if !ok {
				panic("no value for path parameter " + name)
			}
			if strings.HasPrefix(v, "/") {
				b.WriteString(strings.TrimPrefix(v, "/"))
				continue
			}
			b.WriteString(url.PathEscape(v))
			continue
		}
		b.WriteString(seg)
	}
	return b.String()
}
