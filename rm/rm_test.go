package rm_test

import (
	"testing"

	"custody/rm"
)

func TestMatchAction(t *testing.T) {
	cases := []struct {
		pattern, action string
		want            bool
	}{
		{"*", "Microsoft.Batch/batchAccounts/write", true},
		{"*/read", "Microsoft.Batch/batchAccounts/read", true},
		{"*/read", "Microsoft.Batch/batchAccounts/write", false},
		{"Microsoft.Authorization/*/Write", "microsoft.authorization/roleAssignments/write", true},
		{"Microsoft.Authorization/*/Write", "Microsoft.Batch/batchAccounts/write", false},
		{"Microsoft.KeyVault/vaults/keys/*", "Microsoft.KeyVault/vaults/keys/wrap/action", true},
		{"Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/keys/read", true},
		{"Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/readx", false},
		{"Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action", "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", true},
		{"Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action", "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/assign/action", true},
		{"Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action", "Microsoft.ManagedIdentity/userAssignedIdentities/write", false},
		{"Microsoft.ManagedIdentity/userAssignedIdentities/*/read", "Microsoft.ManagedIdentity/userAssignedIdentities/read", true},
		{"Microsoft.ManagedIdentity/userAssignedIdentities/*/read", "Microsoft.ManagedIdentity/userAssignedIdentitiesread", false},
	}
	for _, c := range cases {
		if got := rm.MatchAction(c.pattern, c.action); got != c.want {
			t.Errorf("MatchAction(%q, %q) = %v, want %v", c.pattern, c.action, got, c.want)
		}
	}
}

func TestRoles(t *testing.T) {
	contributor, _ := rm.RoleByName("contributor")
	if !contributor.Allows("Microsoft.Batch/batchAccounts/write", false) {
		t.Error("Contributor cannot write accounts")
	}
	if contributor.Allows("Microsoft.Authorization/roleAssignments/write", false) {
		t.Error("Contributor can assign roles")
	}
	reader, _ := rm.RoleByGUID(rm.RoleReader)
	if reader.Allows("Microsoft.Resources/subscriptions/resourceGroups/delete", false) {
		t.Error("Reader can delete")
	}
	mio, ok := rm.RoleByName("Managed Identity Operator")
	if !ok || mio.GUID != rm.RoleManagedIdentityOperator || !mio.Allows(rm.ActionAssignIdentity, false) ||
		mio.Allows("Microsoft.ManagedIdentity/userAssignedIdentities/write", false) || mio.Allows("Microsoft.Batch/batchAccounts/write", false) {
		t.Error("Managed Identity Operator must allow assigning identities and nothing like writing them or other resources")
	}
	for _, guid := range []string{rm.RoleOwner, rm.RoleContributor} {
		if r, _ := rm.RoleByGUID(guid); !r.Allows(rm.ActionAssignIdentity, false) {
			t.Errorf("%s cannot assign identities", r.Name)
		}
	}
	for _, guid := range []string{rm.RoleReader, rm.RoleUserAccessAdministrator} {
		if r, _ := rm.RoleByGUID(guid); r.Allows(rm.ActionAssignIdentity, false) {
			t.Errorf("%s can assign identities", r.Name)
		}
	}
	seu, _ := rm.RoleByGUID(rm.RoleKeyVaultCryptoServiceEncUse)
	if !seu.Allows("Microsoft.KeyVault/vaults/keys/unwrap/action", true) || seu.Allows("Microsoft.KeyVault/vaults/keys/decrypt/action", true) {
		t.Error("Crypto Service Encryption User must allow wrap/unwrap and nothing like decrypt")
	}
	if seu.Allows("Microsoft.KeyVault/vaults/keys/unwrap/action", false) {
		t.Error("a data action matched as a control-plane action")
	}
}

func TestWithinAndParseID(t *testing.T) {
	g := rm.GroupID("s1", "rg1")
	if !rm.Within(g+"/providers/Microsoft.KeyVault/vaults/kv", g) || !rm.Within(g, "/subscriptions/S1") {
		t.Error("Within misses a child scope")
	}
	if rm.Within(rm.GroupID("s1", "rg10"), g) {
		t.Error("rg10 counted as inside rg1")
	}
	p, ok := rm.ParseID("/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Batch/batchAccounts/a1")
	if !ok || p.SubscriptionID != "s1" || p.ResourceGroup != "rg1" || p.Namespace != "Microsoft.Batch" || p.Type != "batchAccounts" || p.Name != "a1" {
		t.Errorf("ParseID = %+v, %v", p, ok)
	}
	for _, bad := range []string{"", "/subscriptions", "/subscriptions/s1/resourceGroups", "/foo/bar"} {
		if _, ok := rm.ParseID(bad); ok {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}
