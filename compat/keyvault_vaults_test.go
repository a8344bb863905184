package compat_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/msi/armmsi"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/rm"
	"custody/server/servertest"
)

const kvmAPIVersion = "2024-11-01"

// kvmPoll polls vault LROs quickly.
var kvmPoll = &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond}

func kvmClient(t *testing.T, ts *servertest.TestServer, cred azcore.TokenCredential) *armkeyvault.VaultsClient {
	t.Helper()
	if cred == nil {
		cred = adminCredential(t, ts)
	}
	c, err := armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, cred, armOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kvmProps are the properties of a seed-style vault: soft delete on,
// standard SKU, this server's tenant.
func kvmProps(ts *servertest.TestServer) *armkeyvault.VaultProperties {
	return &armkeyvault.VaultProperties{
		TenantID:         to.Ptr(ts.Admin.TenantID),
		SKU:              &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUNameStandard)},
		EnableSoftDelete: to.Ptr(true),
	}
}

// kvmCreate creates or updates a vault and waits for the result.
func kvmCreate(t *testing.T, c *armkeyvault.VaultsClient, rg, name string, p armkeyvault.VaultCreateOrUpdateParameters) (armkeyvault.Vault, error) {
	t.Helper()
	ctx := context.Background()
	if p.Location == nil {
		p.Location = to.Ptr("westus2")
	}
	poller, err := c.BeginCreateOrUpdate(ctx, rg, name, p, nil)
	if err != nil {
		return armkeyvault.Vault{}, err
	}
	res, err := poller.PollUntilDone(ctx, kvmPoll)
	return res.Vault, err
}

func kvmMustCreate(t *testing.T, c *armkeyvault.VaultsClient, rg, name string, p armkeyvault.VaultCreateOrUpdateParameters) armkeyvault.Vault {
	t.Helper()
	v, err := kvmCreate(t, c, rg, name, p)
	if err != nil {
		t.Fatalf("create vault %s: %v", name, err)
	}
	return v
}

// kvmWantError checks that err is an ARM error with this status and code
// (any code if code is empty).
func kvmWantError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Errorf("%s: err = %v, want a %d response", what, err, status)
		return
	}
	if re.StatusCode != status || (code != "" && re.ErrorCode != code) {
		t.Errorf("%s: %d %s, want %d %s: %v", what, re.StatusCode, re.ErrorCode, status, code, err)
	}
}

func kvmPath(ts *servertest.TestServer, rg, name string) string {
	return groupPath(ts, rg) + "/providers/Microsoft.KeyVault/vaults/" + name
}

// kvmPolicy finds the access policy of an object id.
func kvmPolicy(ps []*armkeyvault.AccessPolicyEntry, oid string) *armkeyvault.AccessPolicyEntry {
	for _, p := range ps {
		if p.ObjectID != nil && strings.EqualFold(*p.ObjectID, oid) {
			return p
		}
	}
	return nil
}

func kvmKeyPerms(p *armkeyvault.AccessPolicyEntry) []string {
	out := []string{}
	if p == nil || p.Permissions == nil {
		return out
	}
	for _, k := range p.Permissions.Keys {
		out = append(out, string(*k))
	}
	slices.Sort(out)
	return out
}

func kvmNames[T any](t *testing.T, pager *runtime.Pager[T], values func(T) []*string) []string {
	t.Helper()
	out := []string{}
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, n := range values(page) {
			out = append(out, *n)
		}
	}
	slices.Sort(out)
	return out
}

func kvmListByGroup(t *testing.T, c *armkeyvault.VaultsClient, rg string) []string {
	t.Helper()
	return kvmNames(t, c.NewListByResourceGroupPager(rg, nil), func(r armkeyvault.VaultsClientListByResourceGroupResponse) []*string {
		var out []*string
		for _, v := range r.Value {
			out = append(out, v.Name)
		}
		return out
	})
}

func kvmListBySubscription(t *testing.T, c *armkeyvault.VaultsClient) []string {
	t.Helper()
	return kvmNames(t, c.NewListBySubscriptionPager(nil), func(r armkeyvault.VaultsClientListBySubscriptionResponse) []*string {
		var out []*string
		for _, v := range r.Value {
			out = append(out, v.Name)
		}
		return out
	})
}

func kvmListAll(t *testing.T, c *armkeyvault.VaultsClient) []string {
	t.Helper()
	return kvmNames(t, c.NewListPager(nil), func(r armkeyvault.VaultsClientListResponse) []*string {
		var out []*string
		for _, v := range r.Value {
			if *v.Type != "Microsoft.KeyVault/vaults" {
				t.Errorf("generic list entry %s has type %s", *v.Name, *v.Type)
			}
			out = append(out, v.Name)
		}
		return out
	})
}

func kvmListDeleted(t *testing.T, c *armkeyvault.VaultsClient) []string {
	t.Helper()
	return kvmNames(t, c.NewListDeletedPager(nil), func(r armkeyvault.VaultsClientListDeletedResponse) []*string {
		var out []*string
		for _, v := range r.Value {
			out = append(out, v.Name)
		}
		return out
	})
}

func kvmAvailable(t *testing.T, c *armkeyvault.VaultsClient, name string) armkeyvault.CheckNameAvailabilityResult {
	t.Helper()
	res, err := c.CheckNameAvailability(context.Background(), armkeyvault.VaultCheckNameAvailabilityParameters{Name: to.Ptr(name), Type: to.Ptr("Microsoft.KeyVault/vaults")}, nil)
	if err != nil {
		t.Fatalf("check name %s: %v", name, err)
	}
	return res.CheckNameAvailabilityResult
}

// TestVaultSeedLifecycle follows the seed: a vault with soft delete and
// purge protection, an access policy Get/Wrap/Unwrap for a managed identity,
// then update, list, delete, recover, and purge refused and allowed.
func TestVaultSeedLifecycle(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	createGroup(t, ts, "rg1")
	cred := adminCredential(t, ts)
	mi, err := armmsi.NewUserAssignedIdentitiesClient(ts.Admin.SubscriptionID, cred, armOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	id, err := mi.CreateOrUpdate(ctx, "rg1", "batch-identity", armmsi.Identity{Location: to.Ptr("westus2")}, nil)
	if err != nil {
		t.Fatalf("create identity: %v", err)
	}
	principal := *id.Properties.PrincipalID
	admin := adminObjectID(t, ts)
	c := kvmClient(t, ts, cred)

	if res := kvmAvailable(t, c, "seedvault"); !*res.NameAvailable {
		t.Fatalf("name seedvault not available before creation: %+v", res)
	}

	props := kvmProps(ts)
	props.EnablePurgeProtection = to.Ptr(true)
	v := kvmMustCreate(t, c, "rg1", "seedvault", armkeyvault.VaultCreateOrUpdateParameters{Properties: props, Tags: map[string]*string{"env": to.Ptr("seed")}})
	p := v.Properties
	if *v.Name != "seedvault" || *v.Type != "Microsoft.KeyVault/vaults" || *v.ID != kvmPath(ts, "rg1", "seedvault") {
		t.Errorf("created vault id/name/type = %s %s %s", *v.ID, *v.Name, *v.Type)
	}
	if got, want := *p.VaultURI, ts.URL("seedvault.vault")+"/"; got != want {
		t.Errorf("vaultUri = %s, want %s", got, want)
	}
	if !*p.EnableSoftDelete || p.EnablePurgeProtection == nil || !*p.EnablePurgeProtection || *p.SoftDeleteRetentionInDays != 90 || *p.EnableRbacAuthorization {
		t.Errorf("created properties: softDelete %v purgeProtection %v retention %d rbac %v",
			*p.EnableSoftDelete, p.EnablePurgeProtection, *p.SoftDeleteRetentionInDays, *p.EnableRbacAuthorization)
	}
	if *p.TenantID != ts.Admin.TenantID || *p.SKU.Name != armkeyvault.SKUNameStandard || *p.ProvisioningState != armkeyvault.VaultProvisioningStateSucceeded {
		t.Errorf("created properties: tenant %s sku %s state %s", *p.TenantID, *p.SKU.Name, *p.ProvisioningState)
	}
	// Like az keyvault create, the creator gets an access policy.
	if len(p.AccessPolicies) != 1 || kvmPolicy(p.AccessPolicies, admin) == nil || !slices.Contains(kvmKeyPerms(p.AccessPolicies[0]), "purge") {
		t.Errorf("creator's access policy missing or incomplete: %+v", p.AccessPolicies)
	}
	if res := kvmAvailable(t, c, "SeedVault"); *res.NameAvailable || *res.Reason != armkeyvault.ReasonAlreadyExists {
		t.Errorf("name of a live vault: available %v reason %v", *res.NameAvailable, res.Reason)
	}

	// The seed's access policy: Get, Wrap Key and Unwrap Key for the identity.
	upd, err := c.UpdateAccessPolicy(ctx, "rg1", "seedvault", armkeyvault.AccessPolicyUpdateKindAdd, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(principal),
			Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{
				to.Ptr(armkeyvault.KeyPermissionsGet), to.Ptr(armkeyvault.KeyPermissions("wrapkey")), to.Ptr(armkeyvault.KeyPermissionsUnwrapKey)}},
		}}},
	}, nil)
	if err != nil {
		t.Fatalf("add access policy: %v", err)
	}
	if got, want := kvmKeyPerms(kvmPolicy(upd.Properties.AccessPolicies, principal)), []string{"get", "unwrapKey", "wrapKey"}; !slices.Equal(got, want) {
		t.Errorf("identity's key permissions after add = %v, want %v", got, want)
	}
	got, err := c.Get(ctx, "rg1", "seedvault", nil)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(got.Properties.AccessPolicies) != 2 || kvmPolicy(got.Properties.AccessPolicies, principal) == nil {
		t.Errorf("access policies after add: %d entries", len(got.Properties.AccessPolicies))
	}
	// Adding again merges instead of duplicating.
	if _, err := c.UpdateAccessPolicy(ctx, "rg1", "seedvault", armkeyvault.AccessPolicyUpdateKindAdd, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(principal),
			Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsGet)}},
		}}},
	}, nil); err != nil {
		t.Fatalf("add access policy again: %v", err)
	}

	// PATCH keeps what it does not name.
	patched, err := c.Update(ctx, "rg1", "seedvault", armkeyvault.VaultPatchParameters{
		Tags:       map[string]*string{"env": to.Ptr("prod")},
		Properties: &armkeyvault.VaultPatchProperties{EnabledForDiskEncryption: to.Ptr(true)},
	}, nil)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	pp := patched.Properties
	if *patched.Tags["env"] != "prod" || !*pp.EnabledForDiskEncryption || pp.EnablePurgeProtection == nil || !*pp.EnablePurgeProtection || len(pp.AccessPolicies) != 2 {
		t.Errorf("after update: tags %v diskEncryption %v purgeProtection %v policies %d", patched.Tags, *pp.EnabledForDiskEncryption, pp.EnablePurgeProtection, len(pp.AccessPolicies))
	}

	// A second vault, without purge protection and with a short retention.
	plain := kvmProps(ts)
	plain.SoftDeleteRetentionInDays = to.Ptr[int32](7)
	kvmMustCreate(t, c, "rg1", "plainvault", armkeyvault.VaultCreateOrUpdateParameters{Properties: plain})
	createGroup(t, ts, "rg2")
	kvmMustCreate(t, c, "rg2", "othervault", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})

	if got, want := kvmListByGroup(t, c, "rg1"), []string{"plainvault", "seedvault"}; !slices.Equal(got, want) {
		t.Errorf("list by group = %v, want %v", got, want)
	}
	if got, want := kvmListBySubscription(t, c), []string{"othervault", "plainvault", "seedvault"}; !slices.Equal(got, want) {
		t.Errorf("list by subscription = %v, want %v", got, want)
	}
	if got, want := kvmListAll(t, c), []string{"othervault", "plainvault", "seedvault"}; !slices.Equal(got, want) {
		t.Errorf("list = %v, want %v", got, want)
	}

	// Delete: the vault becomes a deleted vault that keeps its name.
	if _, err := c.Delete(ctx, "rg1", "seedvault", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = c.Get(ctx, "rg1", "seedvault", nil)
	kvmWantError(t, "get after delete", err, http.StatusNotFound, "ResourceNotFound")
	if _, err := c.Delete(ctx, "rg1", "seedvault", nil); err != nil {
		t.Errorf("second delete: %v, want 204 accepted", err)
	}
	del, err := c.GetDeleted(ctx, "seedvault", "westus2", nil)
	if err != nil {
		t.Fatalf("get deleted: %v", err)
	}
	dp := del.Properties
	if *del.Name != "seedvault" || *dp.VaultID != kvmPath(ts, "rg1", "seedvault") || !*dp.PurgeProtectionEnabled || *dp.Location != "westus2" {
		t.Errorf("deleted vault: name %s vaultId %s purgeProtection %v location %s", *del.Name, *dp.VaultID, *dp.PurgeProtectionEnabled, *dp.Location)
	}
	if d := dp.ScheduledPurgeDate.Sub(*dp.DeletionDate); d != 90*24*time.Hour {
		t.Errorf("scheduled purge %v after deletion, want 90 days", d)
	}
	if !strings.HasSuffix(*del.ID, "/providers/Microsoft.KeyVault/locations/westus2/deletedVaults/seedvault") {
		t.Errorf("deleted vault id = %s", *del.ID)
	}
	if got, want := kvmListDeleted(t, c), []string{"seedvault"}; !slices.Equal(got, want) {
		t.Errorf("list deleted = %v, want %v", got, want)
	}
	if got, want := kvmListByGroup(t, c, "rg1"), []string{"plainvault"}; !slices.Equal(got, want) {
		t.Errorf("list by group after delete = %v, want %v", got, want)
	}

	// The name stays reserved while the vault is soft-deleted.
	if res := kvmAvailable(t, c, "seedvault"); *res.NameAvailable || *res.Reason != armkeyvault.ReasonAlreadyExists || !strings.Contains(*res.Message, "soft-deleted") {
		t.Errorf("name of a deleted vault: available %v reason %v message %v", *res.NameAvailable, res.Reason, res.Message)
	}
	_, err = kvmCreate(t, c, "rg1", "seedvault", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	kvmWantError(t, "create over a deleted vault", err, http.StatusConflict, "ConflictError")
	_, err = kvmCreate(t, c, "rg2", "seedvault", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	kvmWantError(t, "create over a deleted vault in another group", err, http.StatusConflict, "ConflictError")

	// Purge protection refuses the purge.
	_, err = c.BeginPurgeDeleted(ctx, "seedvault", "westus2", nil)
	kvmWantError(t, "purge under purge protection", err, http.StatusConflict, "PurgeProtectionEnabled")
	if _, err := c.GetDeleted(ctx, "seedvault", "westus2", nil); err != nil {
		t.Errorf("deleted vault gone after a refused purge: %v", err)
	}

	// Recover with createMode recover: everything comes back.
	rec, err := kvmCreate(t, c, "rg1", "seedvault", armkeyvault.VaultCreateOrUpdateParameters{
		Location:   to.Ptr("westus2"),
		Properties: &armkeyvault.VaultProperties{TenantID: to.Ptr(ts.Admin.TenantID), SKU: kvmProps(ts).SKU, CreateMode: to.Ptr(armkeyvault.CreateModeRecover)},
	})
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	rp := rec.Properties
	if rp.EnablePurgeProtection == nil || !*rp.EnablePurgeProtection || *rec.Tags["env"] != "prod" || !*rp.EnabledForDiskEncryption {
		t.Errorf("recovered vault lost properties: purgeProtection %v tags %v", rp.EnablePurgeProtection, rec.Tags)
	}
	if got, want := kvmKeyPerms(kvmPolicy(rp.AccessPolicies, principal)), []string{"get", "unwrapKey", "wrapKey"}; !slices.Equal(got, want) {
		t.Errorf("identity's key permissions after recover = %v, want %v", got, want)
	}
	if got := kvmListDeleted(t, c); len(got) != 0 {
		t.Errorf("deleted vaults after recover = %v", got)
	}
	if _, err := c.Get(ctx, "rg1", "seedvault", nil); err != nil {
		t.Errorf("get after recover: %v", err)
	}
	// Recovering a live vault, or one that was never deleted, is refused.
	_, err = kvmCreate(t, c, "rg1", "seedvault", armkeyvault.VaultCreateOrUpdateParameters{
		Properties: &armkeyvault.VaultProperties{TenantID: to.Ptr(ts.Admin.TenantID), SKU: kvmProps(ts).SKU, CreateMode: to.Ptr(armkeyvault.CreateModeRecover)},
	})
	kvmWantError(t, "recover a live vault", err, http.StatusConflict, "VaultNotDeleted")
	_, err = kvmCreate(t, c, "rg1", "nosuchvault", armkeyvault.VaultCreateOrUpdateParameters{
		Properties: &armkeyvault.VaultProperties{TenantID: to.Ptr(ts.Admin.TenantID), SKU: kvmProps(ts).SKU, CreateMode: to.Ptr(armkeyvault.CreateModeRecover)},
	})
	kvmWantError(t, "recover a vault that never existed", err, http.StatusNotFound, "DeletedVaultNotFound")

	// Without purge protection, purge works and frees the name.
	if _, err := c.Delete(ctx, "rg1", "plainvault", nil); err != nil {
		t.Fatalf("delete plainvault: %v", err)
	}
	pd, err := c.GetDeleted(ctx, "plainvault", "westus2", nil)
	if err != nil {
		t.Fatalf("get deleted plainvault: %v", err)
	}
	if *pd.Properties.PurgeProtectionEnabled || pd.Properties.ScheduledPurgeDate.Sub(*pd.Properties.DeletionDate) != 7*24*time.Hour {
		t.Errorf("deleted plainvault: purgeProtection %v purge date %v after deletion", *pd.Properties.PurgeProtectionEnabled, pd.Properties.ScheduledPurgeDate.Sub(*pd.Properties.DeletionDate))
	}
	poller, err := c.BeginPurgeDeleted(ctx, "plainvault", "westus2", nil)
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	if _, err := poller.PollUntilDone(ctx, kvmPoll); err != nil {
		t.Fatalf("purge poll: %v", err)
	}
	_, err = c.GetDeleted(ctx, "plainvault", "westus2", nil)
	kvmWantError(t, "get deleted after purge", err, http.StatusNotFound, "")
	_, err = c.BeginPurgeDeleted(ctx, "plainvault", "westus2", nil)
	kvmWantError(t, "purge twice", err, http.StatusNotFound, "")
	if res := kvmAvailable(t, c, "plainvault"); !*res.NameAvailable {
		t.Errorf("name not available after purge: %+v", res)
	}
	kvmMustCreate(t, c, "rg2", "plainvault", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})

	// Remove takes permissions away and drops the entry when none are left;
	// replace sets the whole list.
	rem, err := c.UpdateAccessPolicy(ctx, "rg1", "seedvault", armkeyvault.AccessPolicyUpdateKindRemove, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(principal),
			Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsGet)}},
		}}},
	}, nil)
	if err != nil {
		t.Fatalf("remove get: %v", err)
	}
	if got, want := kvmKeyPerms(kvmPolicy(rem.Properties.AccessPolicies, principal)), []string{"unwrapKey", "wrapKey"}; !slices.Equal(got, want) {
		t.Errorf("after removing get: %v, want %v", got, want)
	}
	rem, err = c.UpdateAccessPolicy(ctx, "rg1", "seedvault", armkeyvault.AccessPolicyUpdateKindRemove, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(principal), Permissions: &armkeyvault.Permissions{},
		}}},
	}, nil)
	if err != nil {
		t.Fatalf("remove entry: %v", err)
	}
	if kvmPolicy(rem.Properties.AccessPolicies, principal) != nil || len(rem.Properties.AccessPolicies) != 1 {
		t.Errorf("identity's policy not removed: %d entries", len(rem.Properties.AccessPolicies))
	}
	rep, err := c.UpdateAccessPolicy(ctx, "rg1", "seedvault", armkeyvault.AccessPolicyUpdateKindReplace, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(principal),
			Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsAll)}},
		}}},
	}, nil)
	if err != nil {
		t.Fatalf("replace: %v", err)
	}
	if len(rep.Properties.AccessPolicies) != 1 || !slices.Equal(kvmKeyPerms(rep.Properties.AccessPolicies[0]), []string{"all"}) {
		t.Errorf("after replace: %+v", rep.Properties.AccessPolicies)
	}
}

// TestVaultRefusals sends bad input through the SDK and as raw requests:
// every refusal is a 4xx in ARM's error shape, and nothing changes.
func TestVaultRefusals(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	createGroup(t, ts, "rg1")
	c := kvmClient(t, ts, nil)
	protected := kvmProps(ts)
	protected.EnablePurgeProtection = to.Ptr(true)
	protected.SoftDeleteRetentionInDays = to.Ptr[int32](30)
	kvmMustCreate(t, c, "rg1", "guarded", armkeyvault.VaultCreateOrUpdateParameters{Properties: protected})

	with := func(f func(p *armkeyvault.VaultProperties)) armkeyvault.VaultCreateOrUpdateParameters {
		p := kvmProps(ts)
		f(p)
		return armkeyvault.VaultCreateOrUpdateParameters{Properties: p}
	}
	perm := func(perms ...string) []*armkeyvault.AccessPolicyEntry {
		var kp []*armkeyvault.KeyPermissions
		for _, p := range perms {
			kp = append(kp, to.Ptr(armkeyvault.KeyPermissions(p)))
		}
		return []*armkeyvault.AccessPolicyEntry{{TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr("6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"), Permissions: &armkeyvault.Permissions{Keys: kp}}}
	}
	for _, tt := range []struct {
		name, vault string
		params      armkeyvault.VaultCreateOrUpdateParameters
		status      int
		code        string
	}{
		{"retention 5", "newvault", with(func(p *armkeyvault.VaultProperties) { p.SoftDeleteRetentionInDays = to.Ptr[int32](5) }), 400, "BadRequest"},
		{"retention 91", "newvault", with(func(p *armkeyvault.VaultProperties) { p.SoftDeleteRetentionInDays = to.Ptr[int32](91) }), 400, "BadRequest"},
		{"soft delete off", "newvault", with(func(p *armkeyvault.VaultProperties) { p.EnableSoftDelete = to.Ptr(false) }), 400, "BadRequest"},
		{"wrong tenant", "newvault", with(func(p *armkeyvault.VaultProperties) { p.TenantID = to.Ptr("72f988bf-86f1-41af-91ab-2d7cd011db47") }), 400, "BadRequest"},
		{"no tenant", "newvault", with(func(p *armkeyvault.VaultProperties) { p.TenantID = nil }), 400, "BadRequest"},
		{"no sku", "newvault", with(func(p *armkeyvault.VaultProperties) { p.SKU = nil }), 400, "BadRequest"},
		{"bad sku", "newvault", with(func(p *armkeyvault.VaultProperties) { p.SKU.Name = to.Ptr(armkeyvault.SKUName("gold")) }), 400, "BadRequest"},
		{"unknown permission", "newvault", with(func(p *armkeyvault.VaultProperties) { p.AccessPolicies = perm("get", "fly") }), 400, "BadRequest"},
		{"policy for another tenant", "newvault", with(func(p *armkeyvault.VaultProperties) {
			p.AccessPolicies = perm("get")
			p.AccessPolicies[0].TenantID = to.Ptr("72f988bf-86f1-41af-91ab-2d7cd011db47")
		}), 400, "BadRequest"},
		{"policy object id not a guid", "newvault", with(func(p *armkeyvault.VaultProperties) {
			p.AccessPolicies = perm("get")
			p.AccessPolicies[0].ObjectID = to.Ptr("batch-identity")
		}), 400, "BadRequest"},
		{"bad createMode", "newvault", with(func(p *armkeyvault.VaultProperties) { p.CreateMode = to.Ptr(armkeyvault.CreateMode("restore")) }), 400, "BadRequest"},
		{"name too short", "ab", with(func(*armkeyvault.VaultProperties) {}), 400, "VaultNameNotValid"},
		{"name too long", strings.Repeat("a", 25), with(func(*armkeyvault.VaultProperties) {}), 400, "VaultNameNotValid"},
		{"name with double hyphen", "bad--name", with(func(*armkeyvault.VaultProperties) {}), 400, "VaultNameNotValid"},
		{"name starting with a digit", "1vault", with(func(*armkeyvault.VaultProperties) {}), 400, "VaultNameNotValid"},
		{"name ending with a hyphen", "vault-", with(func(*armkeyvault.VaultProperties) {}), 400, "VaultNameNotValid"},
		{"name with underscore", "my_vault", with(func(*armkeyvault.VaultProperties) {}), 400, "VaultNameNotValid"},
		{"retention changed", "guarded", with(func(p *armkeyvault.VaultProperties) {
			p.EnablePurgeProtection = to.Ptr(true)
			p.SoftDeleteRetentionInDays = to.Ptr[int32](60)
		}), 400, "BadRequest"},
		{"purge protection off by PUT", "guarded", with(func(p *armkeyvault.VaultProperties) { p.EnablePurgeProtection = to.Ptr(false) }), 400, "BadRequest"},
		{"moved to another location", "guarded", armkeyvault.VaultCreateOrUpdateParameters{Location: to.Ptr("eastus"), Properties: kvmProps(ts)}, 409, "InvalidResourceLocation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kvmCreate(t, c, "rg1", tt.vault, tt.params)
			kvmWantError(t, "create", err, tt.status, tt.code)
		})
	}
	// Group and resource errors.
	_, err := kvmCreate(t, c, "nogroup", "newvault", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	kvmWantError(t, "create in a missing group", err, 404, "ResourceGroupNotFound")
	_, err = c.Get(ctx, "rg1", "nosuchvault", nil)
	kvmWantError(t, "get missing", err, 404, "ResourceNotFound")
	_, err = c.GetDeleted(ctx, "nosuchvault", "westus2", nil)
	kvmWantError(t, "get deleted missing", err, 404, "")
	_, err = c.GetDeleted(ctx, "guarded", "westus2", nil)
	kvmWantError(t, "get deleted of a live vault", err, 404, "")
	_, err = c.Update(ctx, "rg1", "nosuchvault", armkeyvault.VaultPatchParameters{Tags: map[string]*string{}}, nil)
	kvmWantError(t, "update missing", err, 404, "ResourceNotFound")

	// PATCH cannot turn purge protection or soft delete off, or change the
	// retention.
	for _, tt := range []struct {
		name string
		p    armkeyvault.VaultPatchProperties
	}{
		{"purge protection off", armkeyvault.VaultPatchProperties{EnablePurgeProtection: to.Ptr(false)}},
		{"soft delete off", armkeyvault.VaultPatchProperties{EnableSoftDelete: to.Ptr(false)}},
		{"retention changed", armkeyvault.VaultPatchProperties{SoftDeleteRetentionInDays: to.Ptr[int32](7)}},
		{"wrong tenant", armkeyvault.VaultPatchProperties{TenantID: to.Ptr("72f988bf-86f1-41af-91ab-2d7cd011db47")}},
		{"unknown permission", armkeyvault.VaultPatchProperties{AccessPolicies: perm("teleport")}},
	} {
		t.Run("update "+tt.name, func(t *testing.T) {
			_, err := c.Update(ctx, "rg1", "guarded", armkeyvault.VaultPatchParameters{Properties: &tt.p}, nil)
			kvmWantError(t, "update", err, 400, "BadRequest")
		})
	}
	_, err = c.UpdateAccessPolicy(ctx, "rg1", "guarded", armkeyvault.AccessPolicyUpdateKindAdd, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: perm("wrapKey", "levitate")},
	}, nil)
	kvmWantError(t, "add an unknown permission", err, 400, "BadRequest")
	_, err = c.UpdateAccessPolicy(ctx, "rg1", "guarded", armkeyvault.AccessPolicyUpdateKind("merge"), armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: perm("get")},
	}, nil)
	kvmWantError(t, "unknown access policy update kind", err, 400, "")
	res, err := c.CheckNameAvailability(ctx, armkeyvault.VaultCheckNameAvailabilityParameters{Name: to.Ptr("x_y")}, nil)
	if err != nil || *res.NameAvailable || *res.Reason != armkeyvault.ReasonAccountNameInvalid {
		t.Errorf("check invalid name: %+v %v", res, err)
	}

	// Nothing changed.
	g, err := c.Get(ctx, "rg1", "guarded", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !*g.Properties.EnablePurgeProtection || *g.Properties.SoftDeleteRetentionInDays != 30 || len(g.Properties.AccessPolicies) != 1 || *g.Location != "westus2" {
		t.Errorf("refusals changed the vault: %+v", g.Properties)
	}
	if got := kvmListByGroup(t, c, "rg1"); !slices.Equal(got, []string{"guarded"}) {
		t.Errorf("vaults after refusals = %v", got)
	}

	// The same refusals as raw requests carry ARM's error body.
	tok := adminToken(t, ts)
	props := `"tenantId":"` + ts.Admin.TenantID + `","sku":{"family":"A","name":"standard"}`
	for _, tt := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"PUT", kvmPath(ts, "rg1", "newvault"), `{"location":"westus2","properties":{` + props + `,"softDeleteRetentionInDays":5}}`, 400, "BadRequest"},
		{"PUT", kvmPath(ts, "rg1", "newvault"), `{"location":"westus2","properties":{` + props + `,"enableSoftDelete":false}}`, 400, "BadRequest"},
		{"PUT", kvmPath(ts, "rg1", "newvault"), `{"location":"westus2","properties":{` + props + `,"softDeleteRetentionInDays":"seven"}}`, 400, ""},
		{"PUT", kvmPath(ts, "rg1", "newvault"), `{"location":"westus2"}`, 400, "BadRequest"},
		{"PUT", kvmPath(ts, "rg1", "newvault"), `{"properties":{` + props + `}}`, 400, ""},
		{"PUT", kvmPath(ts, "rg1", "newvault"), `{"location":"westus2","properties":{` + props + `,"accessPolicies":[{"objectId":"6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f","permissions":{"keys":["fly"]}}]}}`, 400, "BadRequest"},
		{"PUT", kvmPath(ts, "rg1", "newvault"), `not json`, 400, ""},
		{"PUT", kvmPath(ts, "rg1", "bad--name"), `{"location":"westus2","properties":{` + props + `}}`, 400, "VaultNameNotValid"},
		{"PATCH", kvmPath(ts, "rg1", "guarded"), `{"properties":{"enablePurgeProtection":false}}`, 400, "BadRequest"},
		{"PUT", kvmPath(ts, "rg1", "guarded") + "/accessPolicies/add", `{}`, 400, "BadRequest"},
		{"POST", subPath(ts) + "/providers/Microsoft.KeyVault/checkNameAvailability", `{}`, 400, "BadRequest"},
		{"POST", subPath(ts) + "/providers/Microsoft.KeyVault/checkNameAvailability", `{"name":"abc","type":"Microsoft.Batch/batchAccounts"}`, 400, "BadRequest"},
		{"GET", kvmPath(ts, "rg1", "guarded") + "x", ``, 404, "ResourceNotFound"},
	} {
		wantARMError(t, MustARM(t, ts, tok, tt.method, tt.path+"?api-version="+kvmAPIVersion, tt.body), tt.status, tt.code)
	}
	wantARMError(t, MustARM(t, ts, tok, "GET", groupPath(ts, "rg1")+"/providers/Microsoft.KeyVault/vaults?$top=zero&api-version="+kvmAPIVersion, ""), 400, "")
	// Without an api-version.
	wantARMError(t, MustARM(t, ts, tok, "GET", groupPath(ts, "rg1")+"/providers/Microsoft.KeyVault/vaults", ""), 400, "")
}

// TestVaultWithoutRole checks that a principal with no role is refused every
// vault operation with 403, and sees no vault in subscription lists.
func TestVaultWithoutRole(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	createGroup(t, ts, "rg1")
	admin := kvmClient(t, ts, nil)
	kvmMustCreate(t, admin, "rg1", "mine", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	kvmMustCreate(t, admin, "rg1", "gone", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	if _, err := admin.Delete(ctx, "rg1", "gone", nil); err != nil {
		t.Fatal(err)
	}
	sp := MustServicePrincipal(t, ts, "nobody")
	cred, err := azidentity.NewClientSecretCredential(ts.Admin.TenantID, sp.ClientID, sp.Secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cloudConfig(ts), Transport: ts.Client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := kvmClient(t, ts, cred)

	_, err = kvmCreate(t, c, "rg1", "theirs", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	kvmWantError(t, "create", err, 403, "AuthorizationFailed")
	_, err = c.Get(ctx, "rg1", "mine", nil)
	kvmWantError(t, "get", err, 403, "AuthorizationFailed")
	_, err = c.Update(ctx, "rg1", "mine", armkeyvault.VaultPatchParameters{Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
	kvmWantError(t, "update", err, 403, "AuthorizationFailed")
	_, err = c.Delete(ctx, "rg1", "mine", nil)
	kvmWantError(t, "delete", err, 403, "AuthorizationFailed")
	_, err = c.UpdateAccessPolicy(ctx, "rg1", "mine", armkeyvault.AccessPolicyUpdateKindAdd, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(sp.ObjectID),
			Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsAll)}},
		}}},
	}, nil)
	kvmWantError(t, "grant itself access", err, 403, "AuthorizationFailed")
	_, err = c.GetDeleted(ctx, "gone", "westus2", nil)
	kvmWantError(t, "get deleted", err, 403, "AuthorizationFailed")
	_, err = c.BeginPurgeDeleted(ctx, "gone", "westus2", nil)
	kvmWantError(t, "purge", err, 403, "AuthorizationFailed")
	_, err = c.NewListDeletedPager(nil).NextPage(ctx)
	kvmWantError(t, "list deleted", err, 403, "AuthorizationFailed")
	_, err = c.NewListByResourceGroupPager("rg1", nil).NextPage(ctx)
	kvmWantError(t, "list by group", err, 403, "AuthorizationFailed")
	_, err = c.CheckNameAvailability(ctx, armkeyvault.VaultCheckNameAvailabilityParameters{Name: to.Ptr("mine")}, nil)
	kvmWantError(t, "check name", err, 403, "AuthorizationFailed")
	if got := kvmListBySubscription(t, c); len(got) != 0 {
		t.Errorf("list by subscription without a role = %v", got)
	}
	if got := kvmListAll(t, c); len(got) != 0 {
		t.Errorf("list without a role = %v", got)
	}
	// Nothing changed.
	v, err := admin.Get(ctx, "rg1", "mine", nil)
	if err != nil || len(v.Tags) != 0 || len(v.Properties.AccessPolicies) != 1 {
		t.Errorf("vault changed by a principal without a role: %+v %v", v, err)
	}
	if _, err := admin.GetDeleted(ctx, "gone", "westus2", nil); err != nil {
		t.Errorf("deleted vault purged by a principal without a role: %v", err)
	}

	// A Reader at the vault may read it, and only it.
	MustAssign(t, ts, adminToken(t, ts), kvmPath(ts, "rg1", "mine"), rm.RoleReader, sp.ObjectID)
	if _, err := c.Get(ctx, "rg1", "mine", nil); err != nil {
		t.Errorf("reader get: %v", err)
	}
	if got := kvmListBySubscription(t, c); !slices.Equal(got, []string{"mine"}) {
		t.Errorf("reader's list by subscription = %v", got)
	}
	_, err = c.Update(ctx, "rg1", "mine", armkeyvault.VaultPatchParameters{Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
	kvmWantError(t, "reader update", err, 403, "AuthorizationFailed")
}

// TestVaultResourceGroupDelete checks that deleting a resource group
// soft-deletes its vaults, which can then be recovered into a new group of
// the same name.
func TestVaultResourceGroupDelete(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	createGroup(t, ts, "rg1")
	createGroup(t, ts, "rg2")
	c := kvmClient(t, ts, nil)
	p := kvmProps(ts)
	p.EnablePurgeProtection = to.Ptr(true)
	kvmMustCreate(t, c, "rg1", "vault-a", armkeyvault.VaultCreateOrUpdateParameters{Properties: p})
	kvmMustCreate(t, c, "rg1", "vault-b", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	kvmMustCreate(t, c, "rg2", "vault-c", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})

	tok := adminToken(t, ts)
	r := MustARM(t, ts, tok, "DELETE", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, "")
	wantStatus(t, r, http.StatusAccepted, http.StatusOK)

	if got, want := kvmListDeleted(t, c), []string{"vault-a", "vault-b"}; !slices.Equal(got, want) {
		t.Errorf("deleted vaults after group delete = %v, want %v", got, want)
	}
	if got, want := kvmListBySubscription(t, c), []string{"vault-c"}; !slices.Equal(got, want) {
		t.Errorf("live vaults after group delete = %v, want %v", got, want)
	}
	d, err := c.GetDeleted(ctx, "vault-a", "westus2", nil)
	if err != nil {
		t.Fatalf("get deleted: %v", err)
	}
	if !*d.Properties.PurgeProtectionEnabled {
		t.Errorf("deleted vault-a lost purge protection")
	}
	_, err = kvmCreate(t, c, "rg2", "vault-a", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	kvmWantError(t, "reuse a name deleted with its group", err, http.StatusConflict, "ConflictError")

	createGroup(t, ts, "rg1")
	if _, err := kvmCreate(t, c, "rg1", "vault-a", armkeyvault.VaultCreateOrUpdateParameters{
		Properties: &armkeyvault.VaultProperties{TenantID: to.Ptr(ts.Admin.TenantID), SKU: kvmProps(ts).SKU, CreateMode: to.Ptr(armkeyvault.CreateModeRecover)},
	}); err != nil {
		t.Fatalf("recover into the recreated group: %v", err)
	}
	if got, want := kvmListByGroup(t, c, "rg1"), []string{"vault-a"}; !slices.Equal(got, want) {
		t.Errorf("vaults in rg1 after recover = %v, want %v", got, want)
	}
}

// TestVaultAuditRoute checks the audit log route on a vault's host: it
// needs a vault token and an administrative role on the vault; an access
// policy is not enough.
func TestVaultAuditRoute(t *testing.T) {
	ts := servertest.New(t, nil)
	createGroup(t, ts, "rg1")
	c := kvmClient(t, ts, nil)
	sp := MustServicePrincipal(t, ts, "policy-only")
	p := kvmProps(ts)
	p.AccessPolicies = []*armkeyvault.AccessPolicyEntry{{TenantID: to.Ptr(ts.Admin.TenantID), ObjectID: to.Ptr(sp.ObjectID),
		Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{to.Ptr(armkeyvault.KeyPermissionsAll)}}}}
	kvmMustCreate(t, c, "rg1", "audited", armkeyvault.VaultCreateOrUpdateParameters{Properties: p})
	const scope = "https://vault.azure.net/.default"
	admin := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, scope)
	// Records to read: a key create by the policy holder.
	spTok := MustToken(t, ts, sp.ClientID, sp.Secret, scope)
	wantStatus(t, MustDo(t, ts, spTok, "POST", "audited.vault", "/keys/k1/create?api-version=2025-07-01", `{"kty":"RSA"}`), http.StatusOK)

	r := MustDo(t, ts, admin, "GET", "audited.vault", "/audit?api-version=2025-07-01&key=k1&top=5", "")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"operation":"KeyCreate"`) || !strings.Contains(string(r.Body), sp.ObjectID) {
		t.Errorf("audit body lacks the key create: %s", r.Body)
	}
	r = MustDo(t, ts, "", "GET", "audited.vault", "/audit?api-version=2025-07-01", "")
	wantStatus(t, r, http.StatusUnauthorized)
	if r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without a challenge")
	}
	wantARMError(t, MustDo(t, ts, spTok, "GET", "audited.vault", "/audit?api-version=2025-07-01", ""), http.StatusForbidden, "Forbidden")
	wantARMError(t, MustDo(t, ts, admin, "GET", "audited.vault", "/audit?api-version=2025-07-01&top=0", ""), http.StatusBadRequest, "BadParameter")
	wantARMError(t, MustDo(t, ts, admin, "GET", "audited.vault", "/audit", ""), http.StatusBadRequest, "BadParameter")
	wantARMError(t, MustDo(t, ts, admin, "POST", "audited.vault", "/audit?api-version=2025-07-01", "{}"), http.StatusMethodNotAllowed, "")
	wantARMError(t, MustDo(t, ts, admin, "GET", "nosuchvault.vault", "/audit?api-version=2025-07-01", ""), http.StatusNotFound, "VaultNotFound")
	// A Key Vault Administrator at the vault may read it.
	MustAssign(t, ts, adminToken(t, ts), kvmPath(ts, "rg1", "audited"), rm.RoleKeyVaultAdministrator, sp.ObjectID)
	wantStatus(t, MustDo(t, ts, spTok, "GET", "audited.vault", "/audit?api-version=2025-07-01", ""), http.StatusOK)
}

// TestVaultPermissionModelChange checks who may change how a vault grants
// access. A Contributor may write access policies on an access-policy vault
// (as in Azure), but may not switch a vault between access policies and
// RBAC, nor plant access policies on an RBAC vault that would take effect
// after a switch: both need Microsoft.Authorization/roleAssignments/write at
// the vault (Owner, User Access Administrator).
func TestVaultPermissionModelChange(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	admin := adminToken(t, ts)
	MustGroup(t, ts, admin, "rg1")
	adminOID := adminObjectID(t, ts)
	rbacVault := mustKeyVault(t, ts, "rg1", "kv-rbac", vaultSpec{retentionDays: 90, rbac: true})
	MustAssign(t, ts, admin, *rbacVault.ID, rm.RoleKeyVaultAdministrator, adminOID)
	mustKeyVault(t, ts, "rg1", "kv-policy", vaultSpec{retentionDays: 90, policies: map[string][]string{adminOID: {"all"}}})
	if _, err := keysClient(t, ts, "kv-rbac", adminCredential(t, ts)).CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
		t.Fatalf("create key: %v", err)
	}

	contributor := MustServicePrincipal(t, ts, "contributor")
	MustAssign(t, ts, admin, groupPath(ts, "rg1"), rm.RoleContributor, contributor.ObjectID)
	ctok := MustToken(t, ts, contributor.ClientID, contributor.Secret, armScope)
	v := "?api-version=" + kvmAPIVersion
	self := `{"tenantId":"` + ts.Admin.TenantID + `","objectId":"` + contributor.ObjectID + `","permissions":{"keys":["all"]}}`
	props := func(rbac bool, policies string) string {
		return `{"location":"westus2","properties":{"tenantId":"` + ts.Admin.TenantID + `","sku":{"family":"A","name":"standard"},"enableRbacAuthorization":` +
			map[bool]string{true: "true", false: "false"}[rbac] + `,"accessPolicies":[` + policies + `]}}`
	}
	rbacPath, policyPath := kvmPath(ts, "rg1", "kv-rbac"), kvmPath(ts, "rg1", "kv-policy")

	for _, tt := range []struct{ name, method, path, body string }{
		{"PatchRBACOff", "PATCH", rbacPath + v, `{"properties":{"enableRbacAuthorization":false,"accessPolicies":[` + self + `]}}`},
		{"PatchRBACOffOnly", "PATCH", rbacPath + v, `{"properties":{"enableRbacAuthorization":false}}`},
		{"PutRBACOff", "PUT", rbacPath + v, props(false, self)},
		{"PatchPoliciesOnRBAC", "PATCH", rbacPath + v, `{"properties":{"accessPolicies":[` + self + `]}}`},
		{"PutPoliciesOnRBAC", "PUT", rbacPath + v, props(true, self)},
		{"AddPolicyOnRBAC", "PUT", rbacPath + "/accessPolicies/add" + v, `{"properties":{"accessPolicies":[` + self + `]}}`},
		{"ReplacePoliciesOnRBAC", "PUT", rbacPath + "/accessPolicies/replace" + v, `{"properties":{"accessPolicies":[` + self + `]}}`},
		{"PatchRBACOn", "PATCH", policyPath + v, `{"properties":{"enableRbacAuthorization":true}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := MustARM(t, ts, ctok, tt.method, tt.path, tt.body)
			wantARMError(t, r, http.StatusForbidden, "AuthorizationFailed")
			if !strings.Contains(string(r.Body), "Microsoft.Authorization/roleAssignments/write") {
				t.Errorf("refusal does not name the permission needed: %s", r.Body)
			}
		})
	}
	// Nothing changed, and the contributor still cannot reach the key.
	c := kvmClient(t, ts, nil)
	got, err := c.Get(ctx, "rg1", "kv-rbac", nil)
	if err != nil || !*got.Properties.EnableRbacAuthorization || len(got.Properties.AccessPolicies) != 0 {
		t.Fatalf("RBAC vault after refused changes: %+v, %v", got.Properties, err)
	}
	got, err = c.Get(ctx, "rg1", "kv-policy", nil)
	if err != nil || *got.Properties.EnableRbacAuthorization {
		t.Fatalf("access-policy vault after refused change: %+v, %v", got.Properties, err)
	}
	_, err = keysClient(t, ts, "kv-rbac", spCredential(t, ts, contributor.ClientID, contributor.Secret)).GetKey(ctx, "k", "", nil)
	wantKVError(t, "contributor get key", err, 403, "Forbidden", "ForbiddenByRbac")

	// What Azure lets a Contributor do stays allowed: access policies on an
	// access-policy vault, and changes that leave an RBAC vault's grants alone.
	wantStatus(t, MustARM(t, ts, ctok, "PUT", policyPath+"/accessPolicies/add"+v, `{"properties":{"accessPolicies":[`+self+`]}}`), http.StatusOK)
	wantStatus(t, MustARM(t, ts, ctok, "PATCH", rbacPath+v, `{"tags":{"team":"a"}}`), http.StatusOK)
	wantStatus(t, MustARM(t, ts, ctok, "PUT", rbacPath+v, props(true, "")), http.StatusOK)
	wantStatus(t, MustARM(t, ts, ctok, "PATCH", rbacPath+v, `{"properties":{"enableRbacAuthorization":true,"accessPolicies":[]}}`), http.StatusOK)
	// Removing access policies of an RBAC vault grants nothing, so it is
	// allowed.
	planted := `{"tenantId":"` + ts.Admin.TenantID + `","objectId":"` + adminOID + `","permissions":{"keys":["get","list"]}}`
	wantStatus(t, MustARM(t, ts, admin, "PUT", rbacPath+"/accessPolicies/add"+v, `{"properties":{"accessPolicies":[`+planted+`]}}`), http.StatusOK)
	wantARMError(t, MustARM(t, ts, ctok, "PUT", rbacPath+"/accessPolicies/add"+v, `{"properties":{"accessPolicies":[`+strings.Replace(planted, `"list"`, `"decrypt"`, 1)+`]}}`), http.StatusForbidden, "AuthorizationFailed")
	wantStatus(t, MustARM(t, ts, ctok, "PUT", rbacPath+"/accessPolicies/remove"+v, `{"properties":{"accessPolicies":[`+planted+`]}}`), http.StatusOK)

	// With User Access Administrator at the vault as well, the switch is
	// allowed; the Owner of the subscription may do it too.
	MustAssign(t, ts, admin, *rbacVault.ID, rm.RoleUserAccessAdministrator, contributor.ObjectID)
	wantStatus(t, MustARM(t, ts, ctok, "PATCH", rbacPath+v, `{"properties":{"enableRbacAuthorization":false,"accessPolicies":[`+self+`]}}`), http.StatusOK)
	wantStatus(t, MustARM(t, ts, admin, "PATCH", policyPath+v, `{"properties":{"enableRbacAuthorization":true}}`), http.StatusOK)
}
