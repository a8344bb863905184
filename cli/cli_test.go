package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/msi/armmsi"

	"custody/cli"
	"custody/server/servertest"
)

// result is what one CLI invocation printed.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the CLI against the data dir with stdin input.
func run(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), append([]string{"--data-dir", dir}, args...), strings.NewReader(stdin), &out, &errb)
	return result{out.String(), errb.String(), code}
}

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := run(t, dir, "", args...)
	if r.code != 0 {
		t.Fatalf("custody %s: exit %d, stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// mustFail runs the CLI, expects exit 1 and an error line starting with
// want, and returns stderr.
func mustFail(t *testing.T, dir, want string, args ...string) string {
	t.Helper()
	r := run(t, dir, "", args...)
	if r.code != 1 {
		t.Fatalf("custody %s: exit %d, want 1; stdout:\n%s", strings.Join(args, " "), r.code, r.stdout)
	}
	if !strings.HasPrefix(r.stderr, want) {
		t.Fatalf("custody %s: stderr = %q, want prefix %q", strings.Join(args, " "), r.stderr, want)
	}
	return r.stderr
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

func TestGroupCommands(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()

	g := decode[map[string]any](t, mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2", "--tags", "env=dev", "team=batch"))
	if g["name"] != "rg1" || g["location"] != "westus2" {
		t.Fatalf("group create = %v, want name rg1, location westus2", g)
	}
	if want := "/subscriptions/" + ts.Admin.SubscriptionID + "/resourceGroups/rg1"; g["id"] != want {
		t.Fatalf("id = %v, want %s", g["id"], want)
	}
	if tags, _ := g["tags"].(map[string]any); tags["env"] != "dev" || tags["team"] != "batch" {
		t.Fatalf("tags = %v, want env=dev team=batch", g["tags"])
	}

	if got := mustRun(t, dir, "group", "show", "-n", "rg1", "--query", "name", "-o", "tsv"); got != "rg1\n" {
		t.Fatalf("group show --query name -o tsv = %q, want %q", got, "rg1\n")
	}
	mustRun(t, dir, "group", "create", "-n", "rg2", "-l", "eastus")
	table := strings.Split(mustRun(t, dir, "group", "list", "-o", "table"), "\n")
	if len(table) != 5 || table[0] != "Name  Location  Status" || table[1] != "----  --------  ---------" ||
		!strings.HasPrefix(table[2], "rg1   westus2   Succeeded") || !strings.HasPrefix(table[3], "rg2   eastus    Succeeded") {
		t.Fatalf("group list -o table =\n%s", strings.Join(table, "\n"))
	}
	// A multiselect hash keeps the query's column order, not sorted order.
	table = strings.Split(mustRun(t, dir, "group", "list", "--query", "[].{Z:name, A:location}", "-o", "table"), "\n")
	if table[0] != "Z    A" || table[1] != "---  -------" || table[2] != "rg1  westus2" {
		t.Fatalf("group list --query [].{Z:name, A:location} -o table =\n%s", strings.Join(table, "\n"))
	}
	if got := mustRun(t, dir, "group", "list", "--query", "[?name=='rg2'].{Z:name, A:location}", "-o", "tsv"); got != "rg2\teastus\n" {
		t.Fatalf("tsv = %q", got)
	}
	if got := mustRun(t, dir, "group", "list", "--tag", "env=dev", "--query", "[].name", "-o", "tsv"); got != "rg1\n" {
		t.Fatalf("group list --tag env=dev = %q, want rg1", got)
	}

	stderr := mustFail(t, dir, "ERROR: (ResourceGroupNotFound) ", "group", "show", "-n", "missing")
	if !strings.Contains(stderr, "'missing'") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("stderr = %q, want one line naming the group", stderr)
	}

	if got := mustRun(t, dir, "group", "exists", "-n", "rg1"); got != "true\n" {
		t.Fatalf("group exists rg1 = %q, want true", got)
	}
	if got := mustRun(t, dir, "group", "exists", "-n", "missing"); got != "false\n" {
		t.Fatalf("group exists missing = %q, want false", got)
	}

	// Without --yes, the question is asked on stdin; no answer refuses.
	if r := run(t, dir, "", "group", "delete", "-n", "rg1"); r.code != 1 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("group delete without --yes or answer: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := run(t, dir, "n\n", "group", "delete", "-n", "rg1"); r.code != 1 {
		t.Fatalf("group delete answered n: exit %d", r.code)
	}
	if got := mustRun(t, dir, "group", "exists", "-n", "rg1"); got != "true\n" {
		t.Fatalf("refused delete removed the group")
	}
	if r := run(t, dir, "y\n", "group", "delete", "-n", "rg1"); r.code != 0 || r.stdout != "" {
		t.Fatalf("group delete answered y: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	mustRun(t, dir, "group", "delete", "-n", "rg2", "--yes", "--no-wait")
	if got := mustRun(t, dir, "group", "list"); strings.TrimSpace(got) != "[]" {
		t.Fatalf("group list after deletes = %s, want []", got)
	}
}

func TestGlobalFlagErrors(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	mustFail(t, dir, "ERROR: argument --output/-o: invalid choice: 'yaml'", "group", "list", "-o", "yaml")
	mustFail(t, dir, "ERROR: argument --query: invalid JMESPath query", "group", "create", "-n", "rg1", "-l", "westus2", "--query", "[.")
	// The bad query was rejected before the command ran.
	if got := mustRun(t, dir, "group", "exists", "-n", "rg1"); got != "false\n" {
		t.Fatalf("a command with a bad --query still ran")
	}
	mustFail(t, dir, "ERROR: the following arguments are required: --location/-l", "group", "create", "-n", "rg1")
}

func TestIdentityCommands(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	mustRun(t, dir, "group", "create", "-n", "rg2", "-l", "eastus")

	id := decode[map[string]any](t, mustRun(t, dir, "identity", "create", "-n", "id1", "-g", "rg1"))
	if id["name"] != "id1" || id["location"] != "westus2" || id["resourceGroup"] != "rg1" || id["tenantId"] != ts.Admin.TenantID {
		t.Fatalf("identity create = %v", id)
	}
	if p, _ := id["principalId"].(string); len(p) != 36 {
		t.Fatalf("principalId = %v, want a GUID", id["principalId"])
	}
	mustRun(t, dir, "identity", "create", "-n", "id2", "-g", "rg2", "-l", "northeurope", "--tags", "a=1")

	shown := decode[map[string]any](t, mustRun(t, dir, "identity", "show", "-n", "id1", "-g", "rg1"))
	if shown["clientId"] != id["clientId"] || shown["principalId"] != id["principalId"] {
		t.Fatalf("identity show = %v, want the created identity %v", shown, id)
	}
	if got := mustRun(t, dir, "identity", "show", "--ids", id["id"].(string), "--query", "name", "-o", "tsv"); got != "id1\n" {
		t.Fatalf("identity show --ids = %q", got)
	}
	if got := mustRun(t, dir, "identity", "list", "-g", "rg1", "--query", "[].name", "-o", "tsv"); got != "id1\n" {
		t.Fatalf("identity list -g rg1 = %q, want id1", got)
	}
	if got := mustRun(t, dir, "identity", "list", "--query", "sort([].name)", "-o", "tsv"); got != "id1\nid2\n" {
		t.Fatalf("identity list = %q, want id1 and id2", got)
	}
	table := strings.Split(mustRun(t, dir, "identity", "list", "-g", "rg2", "-o", "table"), "\n")
	for _, col := range []string{"ClientId", "Location", "Name", "PrincipalId", "ResourceGroup", "TenantId"} {
		if !strings.Contains(table[0], col) {
			t.Fatalf("identity list -o table header %q lacks %s", table[0], col)
		}
	}
	if strings.Contains(table[0], "Tags") || strings.Contains(table[0], "Id ") && !strings.Contains(table[0], "ClientId") {
		t.Fatalf("table header %q has non-scalar or id columns", table[0])
	}

	mustRun(t, dir, "identity", "delete", "-n", "id1", "-g", "rg1")
	mustFail(t, dir, "ERROR: (", "identity", "show", "-n", "id1", "-g", "rg1")
	if got := mustRun(t, dir, "identity", "list", "--query", "[].name", "-o", "tsv"); got != "id2\n" {
		t.Fatalf("identity list after delete = %q, want id2", got)
	}
}

func TestServicePrincipalLoginAndRoleAssignment(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	sub := "/subscriptions/" + ts.Admin.SubscriptionID
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")

	acct := decode[map[string]any](t, mustRun(t, dir, "account", "show"))
	if acct["id"] != ts.Admin.SubscriptionID || acct["tenantId"] != ts.Admin.TenantID {
		t.Fatalf("account show (admin) = %v", acct)
	}
	if u, _ := acct["user"].(map[string]any); u["name"] != ts.Admin.ClientID || u["type"] != "servicePrincipal" {
		t.Fatalf("account show user = %v, want the admin service principal", acct["user"])
	}

	r := run(t, dir, "", "ad", "sp", "create-for-rbac", "-n", "app1")
	if r.code != 0 {
		t.Fatalf("create-for-rbac: %s", r.stderr)
	}
	sp := decode[map[string]string](t, r.stdout)
	if sp["appId"] == "" || sp["password"] == "" || sp["displayName"] != "app1" || sp["tenant"] != ts.Admin.TenantID || len(sp) != 4 {
		t.Fatalf("create-for-rbac = %v, want appId, displayName, password, tenant", sp)
	}
	if !strings.Contains(r.stderr, "WARNING: The output includes credentials") {
		t.Fatalf("create-for-rbac stderr = %q, want the credentials warning", r.stderr)
	}
	if got := mustRun(t, dir, "ad", "sp", "show", "--id", sp["appId"], "--query", "displayName", "-o", "tsv"); got != "app1\n" {
		t.Fatalf("ad sp show --id appId = %q", got)
	}

	login := decode[[]map[string]any](t, mustRun(t, dir, "login", "--service-principal", "-u", sp["appId"], "-p", sp["password"], "--tenant", sp["tenant"]))
	if len(login) != 1 || login[0]["id"] != ts.Admin.SubscriptionID {
		t.Fatalf("login = %v, want the one subscription", login)
	}
	st, err := os.Stat(filepath.Join(dir, cli.ProfileFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode = %v, want 0600", cli.ProfileFile, st.Mode().Perm())
	}
	if got := mustRun(t, dir, "account", "show", "--query", "user.name", "-o", "tsv"); got != sp["appId"]+"\n" {
		t.Fatalf("account show after login: user = %q, want %s", got, sp["appId"])
	}

	// No role yet: refused.
	mustFail(t, dir, "ERROR: (AuthorizationFailed) ", "group", "show", "-n", "rg1")

	// Back to the admin to grant Reader.
	mustRun(t, dir, "logout")
	mustFail(t, dir, "ERROR: there are no active accounts", "logout")
	ra := decode[map[string]any](t, mustRun(t, dir, "role", "assignment", "create", "--assignee", sp["appId"], "--role", "Reader", "--scope", sub))
	if ra["scope"] != sub || !strings.HasSuffix(ra["roleDefinitionId"].(string), "/acdd72a7-3385-48ef-bd42-f606fba81ae7") || ra["principalType"] != "ServicePrincipal" {
		t.Fatalf("role assignment create = %v", ra)
	}
	objectID := mustRun(t, dir, "ad", "sp", "show", "--id", sp["appId"], "--query", "id", "-o", "tsv")
	if ra["principalId"] != strings.TrimSpace(objectID) {
		t.Fatalf("assignment principalId = %v, want the object id %s", ra["principalId"], objectID)
	}

	list := decode[[]map[string]any](t, mustRun(t, dir, "role", "assignment", "list", "--assignee", "app1"))
	if len(list) != 1 || list[0]["roleDefinitionName"] != "Reader" || list[0]["principalName"] != sp["appId"] {
		t.Fatalf("role assignment list --assignee app1 = %v", list)
	}
	table := mustRun(t, dir, "role", "assignment", "list", "--all", "-o", "table")
	if !strings.HasPrefix(table, "Principal ") || !strings.Contains(table, "Reader") || !strings.Contains(table, "Owner") {
		t.Fatalf("role assignment list --all -o table =\n%s", table)
	}

	mustRun(t, dir, "login", "--service-principal", "-u", sp["appId"], "-p", sp["password"], "--tenant", sp["tenant"], "-o", "none")
	if got := mustRun(t, dir, "group", "show", "-n", "rg1", "--query", "name", "-o", "tsv"); got != "rg1\n" {
		t.Fatalf("group show as Reader = %q", got)
	}
	mustFail(t, dir, "ERROR: (AuthorizationFailed) ", "group", "create", "-n", "rg2", "-l", "westus2")
	mustRun(t, dir, "logout")

	mustRun(t, dir, "role", "assignment", "delete", "--assignee", sp["appId"], "--role", "Reader")
	if got := mustRun(t, dir, "role", "assignment", "list", "--all", "--assignee", sp["appId"]); strings.TrimSpace(got) != "[]" {
		t.Fatalf("assignments after delete = %s", got)
	}
	mustFail(t, dir, "ERROR: no matched assignments", "role", "assignment", "delete", "--assignee", sp["appId"])

	mustFail(t, dir, "ERROR: (invalid_client) AADSTS7000215", "login", "--service-principal", "-u", sp["appId"], "-p", "wrong", "--tenant", sp["tenant"])
	mustRun(t, dir, "ad", "sp", "delete", "--id", sp["appId"])
	mustFail(t, dir, "ERROR: (Request_ResourceNotFound) ", "ad", "sp", "show", "--id", sp["appId"])
	mustFail(t, dir, "ERROR: (unauthorized_client) AADSTS700016", "login", "--service-principal", "-u", sp["appId"], "-p", sp["password"], "--tenant", sp["tenant"])
}

func TestCreateForRBACWithRole(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	scope := "/subscriptions/" + ts.Admin.SubscriptionID + "/resourceGroups/rg1"
	sp := decode[map[string]string](t, mustRun(t, dir, "ad", "sp", "create-for-rbac", "-n", "app2", "--role", "Contributor", "--scopes", scope))
	got := mustRun(t, dir, "role", "assignment", "list", "--scope", scope, "--query", "[].{p:principalName, r:roleDefinitionName}", "-o", "tsv")
	if got != sp["appId"]+"\tContributor\n" {
		t.Fatalf("assignments at %s = %q, want Contributor for %s", scope, got, sp["appId"])
	}
	mustFail(t, dir, "ERROR: role 'NoSuchRole' doesn't exist", "ad", "sp", "create-for-rbac", "-n", "app3", "--role", "NoSuchRole", "--scopes", scope)
	if got := mustRun(t, dir, "ad", "sp", "list", "--display-name", "app3"); strings.TrimSpace(got) != "[]" {
		t.Fatalf("a failed create-for-rbac left a principal: %s", got)
	}
	defs := decode[[]map[string]any](t, mustRun(t, dir, "role", "definition", "list", "--name", "Reader"))
	if len(defs) != 1 || defs[0]["roleName"] != "Reader" || defs[0]["roleType"] != "BuiltInRole" || defs[0]["name"] != "acdd72a7-3385-48ef-bd42-f606fba81ae7" {
		t.Fatalf("role definition list --name Reader = %v", defs)
	}
}

func TestEnvWorksWithAzureSDK(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "rg1", "-l", "westus2")
	mustRun(t, dir, "identity", "create", "-n", "id1", "-g", "rg1")

	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(mustRun(t, dir, "env")))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			t.Fatalf("env line %q is not an export", sc.Text())
		}
		name, quoted, _ := strings.Cut(line, "=")
		if !strings.HasPrefix(quoted, "'") || !strings.HasSuffix(quoted, "'") {
			t.Fatalf("env value %s=%s is not shell-quoted", name, quoted)
		}
		env[name] = strings.ReplaceAll(quoted[1:len(quoted)-1], `'\''`, "'")
	}
	for _, k := range []string{"AZURE_AUTHORITY_HOST", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_MANAGER_ENDPOINT", "SSL_CERT_FILE"} {
		if env[k] == "" {
			t.Fatalf("env lacks %s: %v", k, env)
		}
		t.Setenv(k, env[k])
	}
	if env["AZURE_AUTHORITY_HOST"] != ts.URL("login") {
		t.Fatalf("AZURE_AUTHORITY_HOST = %s, want %s", env["AZURE_AUTHORITY_HOST"], ts.URL("login"))
	}

	// SSL_CERT_FILE verifies the server's certificate.
	pem, err := os.ReadFile(env["SSL_CERT_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("SSL_CERT_FILE %s holds no certificate", env["SSL_CERT_FILE"])
	}
	conn, err := tls.Dial("tcp", ts.Endpoint.Address, &tls.Config{RootCAs: pool, ServerName: "management." + ts.Endpoint.Domain})
	if err != nil {
		t.Fatalf("TLS with SSL_CERT_FILE: %v", err)
	}
	conn.Close()

	cfg := cloud.Configuration{
		ActiveDirectoryAuthorityHost: env["AZURE_AUTHORITY_HOST"] + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: env["AZURE_RESOURCE_MANAGER_ENDPOINT"], Audience: "https://management.azure.com/"},
		},
	}
	cred, err := azidentity.NewEnvironmentCredential(&azidentity.EnvironmentCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cfg, Transport: ts.Client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("NewEnvironmentCredential: %v", err)
	}
	ctx := context.Background()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil || tok.Token == "" {
		t.Fatalf("GetToken with the env credentials: %v", err)
	}
	client, err := armmsi.NewUserAssignedIdentitiesClient(env["AZURE_SUBSCRIPTION_ID"], cred,
		&arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cfg, Transport: ts.Client}, DisableRPRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.Get(ctx, "rg1", "id1", nil)
	if err != nil {
		t.Fatalf("armmsi Get with the env credentials: %v", err)
	}
	if got.Name == nil || *got.Name != "id1" {
		t.Fatalf("armmsi Get = %+v", got)
	}

	// -o json gives the same values as an object.
	asJSON := decode[map[string]string](t, mustRun(t, dir, "env", "-o", "json"))
	if asJSON["AZURE_CLIENT_SECRET"] != env["AZURE_CLIENT_SECRET"] {
		t.Fatalf("env -o json differs from the exports")
	}
}

func TestDebugLogsRequestsNotSecrets(t *testing.T) {
	ts := servertest.New(t, nil)
	r := run(t, ts.DataDir(), "", "--debug", "group", "list")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"DEBUG: POST " + ts.URL("login") + "/", "-> 200", "DEBUG: GET " + ts.URL("management") + "/subscriptions/"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("--debug stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, secret := range []string{ts.Admin.ClientSecret, "Bearer", "eyJ"} {
		if strings.Contains(r.stderr, secret) {
			t.Fatalf("--debug stderr leaks %q:\n%s", secret, r.stderr)
		}
	}
}

func TestServerNotRunning(t *testing.T) {
	mustFail(t, t.TempDir(), "ERROR: no Custody server has run with data directory", "group", "list")

	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	ts.Close()
	stderr := mustFail(t, dir, "ERROR: cannot reach the Custody server", "group", "list")
	if !strings.Contains(stderr, "Is `custody server` running?") || strings.Contains(stderr, "goroutine") {
		t.Fatalf("stderr = %q", stderr)
	}
}

func TestTokenErrors(t *testing.T) {
	ts := servertest.New(t, nil)
	mustFail(t, ts.DataDir(), "ERROR: (invalid_tenant) AADSTS90002", "login", "--service-principal", "-u", ts.Admin.ClientID, "-p", "x", "--tenant", "00000000-0000-0000-0000-000000000000")
	// The failed login left no profile behind.
	if _, err := os.Stat(filepath.Join(ts.DataDir(), cli.ProfileFile)); err == nil {
		t.Fatal("a failed login wrote a profile")
	}
}

// TestEnvAz checks the az set-up lines: the CA, a cloud registration whose
// resource manager serves the metadata document az reads, the endpoints az
// cannot read from it, and the service principal login.
func TestEnvAz(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	out := mustRun(t, dir, "env", "--az")
	var register, login string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(l, "az cloud register "):
			register = l
		case strings.HasPrefix(l, "az login "):
			login = l
		}
	}
	for _, want := range []string{
		"export REQUESTS_CA_BUNDLE='" + ts.Endpoint.CAFile + "'",
		"az cloud set -n Custody",
		"login.localhost management.localhost graph.localhost batch.localhost",
		"mykv.vault.localhost mybatchaccount.batch.localhost",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("env --az lacks %q:\n%s", want, out)
		}
	}
	wantLogin := "az login --service-principal -u '" + ts.Admin.ClientID + "' -p '" + ts.Admin.ClientSecret + "' --tenant '" + ts.Admin.TenantID + "'"
	if login != wantLogin {
		t.Errorf("login line = %q, want %q", login, wantLogin)
	}
	_, cfgText, ok := strings.Cut(register, " --cloud-config '")
	if !ok || !strings.HasPrefix(register, "az cloud register -n Custody ") {
		t.Fatalf("register line = %q", register)
	}
	var cfg struct {
		Endpoints map[string]string `json:"endpoints"`
		Suffixes  map[string]string `json:"suffixes"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSuffix(cfgText, "'")), &cfg); err != nil {
		t.Fatalf("cloud config: %v: %s", err, cfgText)
	}
	port := strings.TrimPrefix(ts.URL("management"), "https://management.localhost")
	checks := map[string]string{
		cfg.Endpoints["resourceManager"]:          ts.URL("management"),
		cfg.Endpoints["microsoftGraphResourceId"]: ts.URL("graph") + "/",
		cfg.Endpoints["batchResourceId"]:          ts.URL("batch") + "/",
		cfg.Suffixes["keyvaultDns"]:               ".vault.localhost" + port,
	}
	for got, want := range checks {
		if got != want {
			t.Errorf("cloud config has %q, want %q: %s", got, want, cfgText)
		}
	}
	// What az cloud register then reads from the resource manager.
	resp, err := ts.Client.Get(cfg.Endpoints["resourceManager"] + "/metadata/endpoints?api-version=2015-01-01")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Authentication struct {
			LoginEndpoint string `json:"loginEndpoint"`
		} `json:"authentication"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil || resp.StatusCode != 200 || md.Authentication.LoginEndpoint != ts.URL("login")+"/adfs" {
		t.Errorf("metadata document: %d %v %+v", resp.StatusCode, err, md)
	}
}

// TestFederatedCredentialCommands: an application's federated identity
// credentials are added, listed, shown and deleted by id or name, and a
// malformed one is refused with the service's reason.
func TestFederatedCredentialCommands(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	sp := decode[map[string]string](t, mustRun(t, dir, "ad", "sp", "create-for-rbac", "-n", "vault-app"))
	params := filepath.Join(t.TempDir(), "credential.json")
	if err := os.WriteFile(params, []byte(`{"name": "custody-prod", "issuer": "https://login.custody.example/tenant/v2.0", "subject": "3f2c", "audiences": ["api://AzureADTokenExchange"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	created := decode[map[string]any](t, mustRun(t, dir, "ad", "app", "federated-credential", "create", "--id", sp["appId"], "--parameters", "@"+params))
	if created["name"] != "custody-prod" || created["subject"] != "3f2c" || created["id"] == "" {
		t.Fatalf("create = %v", created)
	}
	if got := mustRun(t, dir, "ad", "app", "federated-credential", "list", "--id", sp["appId"], "--query", "[].issuer", "-o", "tsv"); got != "https://login.custody.example/tenant/v2.0\n" {
		t.Fatalf("list = %q", got)
	}
	if got := mustRun(t, dir, "ad", "app", "federated-credential", "show", "--id", sp["appId"], "--federated-credential-id", created["id"].(string), "--query", "name", "-o", "tsv"); got != "custody-prod\n" {
		t.Fatalf("show by id = %q", got)
	}
	mustFail(t, dir, "ERROR: (FederatedIdentityCredentialExists) ", "ad", "app", "federated-credential", "create", "--id", sp["appId"], "--parameters", "@"+params)
	mustFail(t, dir, "ERROR: (InvalidFederatedIdentityCredential) ", "ad", "app", "federated-credential", "create", "--id", sp["appId"],
		"--parameters", `{"name": "plain-http", "issuer": "http://issuer.example", "subject": "s", "audiences": ["api://AzureADTokenExchange"]}`)
	mustRun(t, dir, "ad", "app", "federated-credential", "delete", "--id", sp["appId"], "--federated-credential-id", "custody-prod")
	if got := mustRun(t, dir, "ad", "app", "federated-credential", "list", "--id", sp["appId"]); strings.TrimSpace(got) != "[]" {
		t.Fatalf("list after delete = %s", got)
	}
}
