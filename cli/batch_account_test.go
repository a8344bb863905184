package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/server"
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

// TestBatchAccountSeedWalkthrough runs the CMK page's CLI commands, with
// their underscore spellings, against a vault and keys made with the SDK
// (the key vault commands are not the subject here), then loses the key.
func TestBatchAccountSeedWalkthrough(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.KeyProbeInterval = 200 * time.Millisecond })
	dir := ts.DataDir()
	ctx := context.Background()
	mustRun(t, dir, "group", "create", "-n", "myResourceGroup", "-l", "westus2")
	mustRun(t, dir, "batch", "account", "create", "-n", "mybatchaccount", "-g", "myResourceGroup",
		"--locations", "regionName=West US 2", "--identity", "SystemAssigned")
	principal := strings.TrimSpace(mustRun(t, dir, "batch", "account", "show", "-n", "mybatchaccount", "-g", "myResourceGroup", "--query", "identity.principalId", "-o", "tsv"))
	if principal == "" {
		t.Fatal("no principalId")
	}

	// The vault (soft delete, purge protection), the access policy with
	// Get, Wrap Key and Unwrap Key, and an RSA-2048 key.
	admin, err := ts.Identity.Store.PrincipalByAppID(ctx, ts.Admin.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cloud.Configuration{
		ActiveDirectoryAuthorityHost: ts.URL("login") + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: ts.URL("management"), Audience: "https://management.azure.com/"},
		},
	}
	cred, err := azidentity.NewClientSecretCredential(ts.Admin.TenantID, ts.Admin.ClientID, ts.Admin.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: policy.ClientOptions{Cloud: cfg, Transport: ts.Client}, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	vaults, err := armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, cred, &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cfg, Transport: ts.Client}, DisableRPRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	policyFor := func(oid string, perms ...armkeyvault.KeyPermissions) *armkeyvault.AccessPolicyEntry {
		var kp []*armkeyvault.KeyPermissions
		for _, p := range perms {
			kp = append(kp, to.Ptr(p))
		}
		return &armkeyvault.AccessPolicyEntry{TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(oid), Permissions: &armkeyvault.Permissions{Keys: kp}}
	}
	poller, err := vaults.BeginCreateOrUpdate(ctx, "myResourceGroup", "mykv", armkeyvault.VaultCreateOrUpdateParameters{
		Location: to.Ptr("westus2"),
		Properties: &armkeyvault.VaultProperties{
			TenantID: to.Ptr(ts.Admin.TenantID), SKU: &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUNameStandard)},
			EnableSoftDelete: to.Ptr(true), EnablePurgeProtection: to.Ptr(true),
			AccessPolicies: []*armkeyvault.AccessPolicyEntry{policyFor(admin.ObjectID, armkeyvault.KeyPermissionsAll)},
		},
	}, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("create vault: %v", err)
	}
	accountPolicy := armkeyvault.VaultAccessPolicyParameters{Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{
		policyFor(principal, armkeyvault.KeyPermissionsGet, armkeyvault.KeyPermissionsWrapKey, armkeyvault.KeyPermissionsUnwrapKey)}}}
	if _, err := vaults.UpdateAccessPolicy(ctx, "myResourceGroup", "mykv", armkeyvault.AccessPolicyUpdateKindAdd, accountPolicy, nil); err != nil {
		t.Fatalf("add access policy: %v", err)
	}
	keys, err := azkeys.NewClient(ts.URL("mykv.vault"), cred, &azkeys.ClientOptions{ClientOptions: policy.ClientOptions{Transport: ts.Client}})
	if err != nil {
		t.Fatal(err)
	}
	newKey := func(name string) string {
		k, err := keys.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048)}, nil)
		if err != nil {
			t.Fatalf("create key %s: %v", name, err)
		}
		return string(*k.Key.KID)
	}
	inUse := func() string {
		return strings.TrimSpace(mustRun(t, dir, "batch", "account", "show", "-n", "mybatchaccount", "-g", "myResourceGroup", "--query", "encryptionStatus.keyVersionInUse", "-o", "tsv"))
	}

	// Enable customer-managed keys, as the page writes it.
	k1 := newKey("key1")
	set := decode[map[string]any](t, mustRun(t, dir, "batch", "account", "set", "-n", "mybatchaccount", "-g", "myResourceGroup",
		"--encryption_key_source", "Microsoft.KeyVault", "--encryption_key_identifier", k1))
	enc, _ := set["encryption"].(map[string]any)
	if enc["keySource"] != "Microsoft.KeyVault" || inUse() != k1 {
		t.Fatalf("after set: encryption %v, in use %s", enc, inUse())
	}
	// Update the key version; use a different key (the identifier alone).
	k1v2 := newKey("key1")
	mustRun(t, dir, "batch", "account", "set", "-n", "mybatchaccount", "-g", "myResourceGroup", "--encryption_key_identifier", k1v2)
	if inUse() != k1v2 {
		t.Fatalf("in use %s, want %s", inUse(), k1v2)
	}
	k2 := newKey("key2")
	mustRun(t, dir, "batch", "account", "set", "-n", "mybatchaccount", "-g", "myResourceGroup", "--encryption-key-identifier", k2)
	if inUse() != k2 {
		t.Fatalf("in use %s, want %s", inUse(), k2)
	}

	// Lose the key: the account locks; show still works, set does not.
	if _, err := vaults.UpdateAccessPolicy(ctx, "myResourceGroup", "mykv", armkeyvault.AccessPolicyUpdateKindRemove, accountPolicy, nil); err != nil {
		t.Fatalf("remove access policy: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := strings.TrimSpace(mustRun(t, dir, "batch", "account", "show", "-n", "mybatchaccount", "-g", "myResourceGroup", "--query", "encryptionStatus.state", "-o", "tsv"))
		if st == "KeyInaccessible" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the account did not lock: state %s", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	msg := mustFail(t, dir, "ERROR: (AccountKeyInaccessible)", "batch", "account", "set", "-n", "mybatchaccount", "-g", "myResourceGroup", "--encryption-key-source", "Microsoft.Batch")
	if !strings.Contains(msg, "mybatchaccount") {
		t.Errorf("the error does not name the account: %s", msg)
	}
	mustFail(t, dir, "ERROR: (AccountKeyInaccessible)", "batch", "account", "set", "-n", "mybatchaccount", "-g", "myResourceGroup", "--tags", "a=b")
	mustRun(t, dir, "batch", "account", "delete", "-n", "mybatchaccount", "-g", "myResourceGroup", "-y")
	mustFail(t, dir, "ERROR: (ResourceNotFound)", "batch", "account", "show", "-n", "mybatchaccount", "-g", "myResourceGroup")
}
