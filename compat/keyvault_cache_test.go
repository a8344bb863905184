package compat_test

import (
	"context"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/rm"
	"custody/server/servertest"
)

// The key service keeps what a crypto operation needs in memory (verified
// tokens, vaults and their access policies, keys and versions, role
// assignments, opened private keys). These tests check that every change
// that must refuse a caller does so on the very next call, after the caches
// are warm.

func TestKeyVaultRevokedAccessPolicyRefusedAtOnce(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	MustGroup(t, ts, adminToken(t, ts), "rg")
	sp := MustServicePrincipal(t, ts, "app")
	mustKeyVault(t, ts, "rg", "kv-revoke", vaultSpec{retentionDays: 7, policies: map[string][]string{
		adminObjectID(t, ts): {"all"}, sp.ObjectID: {"get", "wrapKey", "unwrapKey"},
	}})
	admin := keysClient(t, ts, "kv-revoke", adminCredential(t, ts))
	if _, err := admin.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
		t.Fatal(err)
	}
	app := keysClient(t, ts, "kv-revoke", spCredential(t, ts, sp.ClientID, sp.Secret))
	wrapped := warmUnwrap(t, app, "k", 5)

	vaults, err := armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	policy := func(kind armkeyvault.AccessPolicyUpdateKind) {
		t.Helper()
		if _, err := vaults.UpdateAccessPolicy(ctx, "rg", "kv-revoke", kind, armkeyvault.VaultAccessPolicyParameters{
			Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
				TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(sp.ObjectID),
				Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{
					to.Ptr(armkeyvault.KeyPermissionsGet), to.Ptr(armkeyvault.KeyPermissionsWrapKey), to.Ptr(armkeyvault.KeyPermissionsUnwrapKey)}},
			}}},
		}, nil); err != nil {
			t.Fatalf("access policy %s: %v", kind, err)
		}
	}
	policy(armkeyvault.AccessPolicyUpdateKindRemove)
	_, err = app.UnwrapKey(ctx, "k", "", oaepParams(wrapped), nil)
	wantKVError(t, "unwrap on the first call after the policy was removed", err, 403, "Forbidden", "ForbiddenByPolicy")
	policy(armkeyvault.AccessPolicyUpdateKindAdd)
	if _, err := app.UnwrapKey(ctx, "k", "", oaepParams(wrapped), nil); err != nil {
		t.Fatalf("unwrap on the first call after the policy was restored: %v", err)
	}
}

func TestKeyVaultRevokedRoleAssignmentRefusedAtOnce(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg")
	v := mustKeyVault(t, ts, "rg", "kv-rbac", vaultSpec{retentionDays: 7, rbac: true})
	MustAssign(t, ts, tok, *v.ID, rm.RoleKeyVaultCryptoOfficer, adminObjectID(t, ts))
	admin := keysClient(t, ts, "kv-rbac", adminCredential(t, ts))
	if _, err := admin.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
		t.Fatal(err)
	}
	sp := MustServicePrincipal(t, ts, "app")
	app := keysClient(t, ts, "kv-rbac", spCredential(t, ts, sp.ClientID, sp.Secret))
	for _, scope := range []string{*v.ID, *v.ID + "/keys/k"} {
		name := MustAssign(t, ts, tok, scope, rm.RoleKeyVaultCryptoServiceEncUse, sp.ObjectID)
		wrapped := warmUnwrap(t, app, "k", 5)
		r := MustARM(t, ts, tok, "DELETE", scope+"/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version="+raAPIVersion, "")
		wantStatus(t, r, 200)
		_, err := app.UnwrapKey(ctx, "k", "", oaepParams(wrapped), nil)
		wantKVError(t, "unwrap on the first call after the role assignment at "+scope+" was deleted", err, 403, "Forbidden", "ForbiddenByRbac")
	}
}

func TestKeyVaultDisabledKeyRefusedAtOnce(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	MustGroup(t, ts, adminToken(t, ts), "rg")
	sp := MustServicePrincipal(t, ts, "app")
	mustKeyVault(t, ts, "rg", "kv-disable", vaultSpec{retentionDays: 7, policies: map[string][]string{
		adminObjectID(t, ts): {"all"}, sp.ObjectID: {"get", "wrapKey", "unwrapKey"},
	}})
	admin := keysClient(t, ts, "kv-disable", adminCredential(t, ts))
	k, err := admin.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	app := keysClient(t, ts, "kv-disable", spCredential(t, ts, sp.ClientID, sp.Secret))
	wrapped := warmUnwrap(t, app, "k", 5)
	version := k.Key.KID.Version()
	enable := func(on bool) {
		t.Helper()
		if _, err := admin.UpdateKey(ctx, "k", version, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(on)}}, nil); err != nil {
			t.Fatalf("enabled=%v: %v", on, err)
		}
	}
	enable(false)
	for _, v := range []string{"", version} {
		_, err := app.UnwrapKey(ctx, "k", v, oaepParams(wrapped), nil)
		wantKVError(t, "unwrap on the first call after the key was disabled (version "+v+")", err, 403, "Forbidden", "KeyDisabled")
	}
	enable(true)
	if _, err := app.UnwrapKey(ctx, "k", version, oaepParams(wrapped), nil); err != nil {
		t.Fatalf("unwrap after the key was enabled again: %v", err)
	}
	// Deleted: refused at once too.
	if _, err := admin.DeleteKey(ctx, "k", nil); err != nil {
		t.Fatal(err)
	}
	_, err = app.UnwrapKey(ctx, "k", version, oaepParams(wrapped), nil)
	wantKVError(t, "unwrap after the key was deleted", err, 404, "KeyNotFound", "")
}
