package cli_test

import (
	"strings"
	"testing"

	"custody/server/servertest"
)

func TestBatchAccountCommands(t *testing.T) {
	ts := servertest.New(t, nil)
	dir := ts.DataDir()
	mustRun(t, dir, "group", "create", "-n", "myResourceGroup", "-l", "westus2")

	// The seed page's own spelling: --locations regionName='West US 2'.
	created := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "create",
		"-n", "mybatchaccount", "-g", "myResourceGroup", "--locations", "regionName=West US 2", "--identity", "SystemAssigned"))
	if created["name"] != "mybatchaccount" || created["location"] != "westus2" || created["provisioningState"] != "Succeeded" {
		t.Fatalf("create = %v", created)
	}
	if created["resourceGroup"] != "myResourceGroup" {
		t.Errorf("resourceGroup = %v", created["resourceGroup"])
	}
	if ep, _ := created["accountEndpoint"].(string); !strings.HasPrefix(ep, "mybatchaccount.batch.") {
		t.Errorf("accountEndpoint = %v", created["accountEndpoint"])
	}

	// show --query identity prints the identity object, as the seed shows.
	id := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "show", "-n", "mybatchaccount", "-g", "myResourceGroup", "--query", "identity"))
	if id["type"] != "SystemAssigned" || id["principalId"] == nil || id["principalId"] == "" || id["tenantId"] != ts.Admin.TenantID {
		t.Fatalf("show --query identity = %v", id)
	}
	enc := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "show", "-n", "mybatchaccount", "-g", "myResourceGroup", "--query", "encryption"))
	if enc["keySource"] != "Microsoft.Batch" {
		t.Errorf("encryption = %v", enc)
	}
	if got := strings.TrimSpace(mustRun(t, dir, "batch", "account", "show", "-n", "mybatchaccount", "-g", "myResourceGroup", "--query", "encryptionStatus.state", "-o", "tsv")); got != "Available" {
		t.Errorf("encryptionStatus.state = %q", got)
	}

	// Quoted region as a shell would leave it unexpanded, and az's spelling.
	mustRun(t, dir, "batch", "account", "create", "-n", "acct2", "-g", "myResourceGroup", "--locations", "regionName='East US'", "--tags", "env=dev", "team=batch")
	a2 := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "show", "-n", "acct2", "-g", "myResourceGroup"))
	if a2["location"] != "eastus" {
		t.Errorf("location = %v, want eastus", a2["location"])
	}
	if tags, _ := a2["tags"].(map[string]any); tags["env"] != "dev" || tags["team"] != "batch" {
		t.Errorf("tags = %v", a2["tags"])
	}
	if id, _ := a2["identity"].(map[string]any); id["type"] != "None" {
		t.Errorf("default identity = %v, want None", a2["identity"])
	}
	// Without a location the group's is used.
	a3 := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "create", "-n", "acct3", "-g", "myResourceGroup", "--mi-system-assigned"))
	if a3["location"] != "westus2" {
		t.Errorf("default location = %v", a3["location"])
	}

	// User-assigned identity.
	uami := decode[map[string]any](t, mustRun(t, dir, "identity", "create", "-n", "uami1", "-g", "myResourceGroup"))
	ua := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "create", "-n", "acct4", "-g", "myResourceGroup", "-l", "westus2",
		"--identity", "UserAssigned", "--mi-user-assigned", uami["id"].(string)))
	uas, _ := ua["identity"].(map[string]any)["userAssignedIdentities"].(map[string]any)
	if u, _ := uas[uami["id"].(string)].(map[string]any); u == nil || u["principalId"] != uami["principalId"] {
		t.Errorf("userAssignedIdentities = %v, want %s with principal %v", uas, uami["id"], uami["principalId"])
	}

	// list, by group and by subscription, and as a table.
	list := decode[[]map[string]any](t, mustRun(t, dir, "batch", "account", "list", "-g", "myResourceGroup"))
	if len(list) != 4 {
		t.Errorf("list -g = %d accounts, want 4", len(list))
	}
	if names := strings.Fields(mustRun(t, dir, "batch", "account", "list", "--query", "[].name", "-o", "tsv")); strings.Join(names, ",") != "acct2,acct3,acct4,mybatchaccount" {
		t.Errorf("list names = %v", names)
	}
	table := mustRun(t, dir, "batch", "account", "list", "-o", "table")
	if !strings.Contains(table, "KeySource") || !strings.Contains(table, "mybatchaccount") || !strings.Contains(table, "Microsoft.Batch") {
		t.Errorf("table:\n%s", table)
	}

	// set: tags, and the key source (platform key again is a rewrap).
	set := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "set", "-n", "acct2", "-g", "myResourceGroup", "--tags", "env=prod"))
	if tags, _ := set["tags"].(map[string]any); len(tags) != 1 || tags["env"] != "prod" {
		t.Errorf("tags after set = %v", set["tags"])
	}
	mustRun(t, dir, "batch", "account", "set", "-n", "acct2", "-g", "myResourceGroup", "--encryption_key_source", "Microsoft.Batch")

	// Errors: az's wording for the flag, the server's message for the rest.
	mustFail(t, dir, "ERROR: argument --identity: invalid choice", "batch", "account", "create", "-n", "x1x", "-g", "myResourceGroup", "--identity", "Both")
	mustFail(t, dir, "ERROR: argument --encryption-key-source: invalid choice", "batch", "account", "set", "-n", "acct2", "-g", "myResourceGroup", "--encryption-key-source", "Other")
	mustFail(t, dir, "ERROR: the following arguments are required: --name/-n", "batch", "account", "show", "-g", "myResourceGroup")
	mustFail(t, dir, "ERROR: nothing to set", "batch", "account", "set", "-n", "acct2", "-g", "myResourceGroup")
	msg := mustFail(t, dir, "ERROR: (SystemAssignedIdentityNotYetAuthorized)", "batch", "account", "create", "-n", "cmk1", "-g", "myResourceGroup", "-l", "westus2",
		"--identity", "SystemAssigned", "--encryption_key_source", "Microsoft.KeyVault", "--encryption_key_identifier", "https://kv1.vault.localhost/keys/k1")
	if !strings.Contains(msg, "cmk1") {
		t.Errorf("refusal does not name the account: %s", msg)
	}
	mustFail(t, dir, "ERROR: (AccountNameInvalid)", "batch", "account", "create", "-n", "Bad-Name", "-g", "myResourceGroup", "-l", "westus2")
	mustFail(t, dir, "ERROR: (ResourceGroupNotFound)", "batch", "account", "create", "-n", "acct9", "-g", "nosuchgroup", "-l", "westus2")
	mustFail(t, dir, "ERROR: (ResourceNotFound)", "batch", "account", "show", "-n", "nosuch", "-g", "myResourceGroup")
	mustFail(t, dir, "ERROR: (InvalidKeyIdentifier)", "batch", "account", "set", "-n", "acct2", "-g", "myResourceGroup", "--encryption_key_identifier", "not-a-url")

	// delete waits for the operation; --no-wait does not; both remove it.
	mustRun(t, dir, "batch", "account", "delete", "-n", "acct2", "-g", "myResourceGroup", "--yes")
	mustFail(t, dir, "ERROR: (ResourceNotFound)", "batch", "account", "show", "-n", "acct2", "-g", "myResourceGroup")
	mustRun(t, dir, "batch", "account", "delete", "-n", "acct3", "-g", "myResourceGroup", "--yes", "--no-wait")
	mustFail(t, dir, "ERROR: (ResourceNotFound)", "batch", "account", "show", "-n", "acct3", "-g", "myResourceGroup")
	if r := run(t, dir, "n\n", "batch", "account", "delete", "-n", "acct4", "-g", "myResourceGroup"); r.code != 1 {
		t.Errorf("declined delete: exit %d", r.code)
	}
	mustRun(t, dir, "batch", "account", "show", "-n", "acct4", "-g", "myResourceGroup")
	// create --no-wait prints nothing and the account exists.
	if out := mustRun(t, dir, "batch", "account", "create", "-n", "acct5", "-g", "myResourceGroup", "-l", "westus2", "--no-wait"); strings.TrimSpace(out) != "" {
		t.Errorf("create --no-wait printed %q", out)
	}
	mustRun(t, dir, "batch", "account", "show", "-n", "acct5", "-g", "myResourceGroup")
}
