package portal_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"custody"
	"custody/keyvault"
	"custody/rm"
	"custody/server/servertest"
)

// deletedVaultFixture creates vault name in group rg (purge protection as
// given, 7 days' retention) with an access policy for oid and one key.
func deletedVaultFixture(t *testing.T, ts *servertest.TestServer, name string, purge bool, oid string) context.Context {
	t.Helper()
	ctx := context.Background()
	admin, err := ts.Identity.Store.PrincipalByAppID(ctx, ts.Admin.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	actx := custody.WithCaller(ctx, custody.Caller{ObjectID: admin.ObjectID, AppID: admin.AppID})
	sub := ts.RM.SubscriptionID
	if _, err := ts.RM.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: sub, Name: "rg", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	loc, tenant, family, sku, days := "westus2", ts.Identity.TenantID, "A", "standard", 7
	u := keyvault.VaultUpdate{Location: &loc, TenantID: &tenant, SKUFamily: &family, SKU: &sku, SoftDeleteRetentionDays: &days}
	if purge {
		u.EnablePurgeProtection = &purge
	}
	if _, _, err := ts.KeyVault.PutVault(actx, sub, "rg", name, u); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.KeyVault.UpdateAccessPolicies(actx, sub, "rg", name, keyvault.AccessPolicyAdd, []keyvault.AccessPolicy{{TenantID: tenant, ObjectID: oid, Keys: []string{"get", "wrapKey", "unwrapKey"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.KeyVault.CreateKey(actx, name, "k1", keyvault.JSONBody([]byte(`{"kty":"RSA","key_size":2048}`))); err != nil {
		t.Fatal(err)
	}
	return actx
}

func TestManageDeletedVaults(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	sub := ts.RM.SubscriptionID
	other, otherSecret, err := ts.Identity.CreateServicePrincipal(ctx, "no-roles", 1)
	if err != nil {
		t.Fatal(err)
	}
	actx := deletedVaultFixture(t, ts, "gonevault", true, other.ObjectID)
	isDeleted := func() bool { _, err := ts.KeyVault.DeletedVault(ctx, sub, "westus2", "gonevault"); return err == nil }

	b := newBrowser(t, ts)
	csrf := b.signIn(ts.Admin.ClientID, ts.Admin.ClientSecret)

	// The delete confirmation points at the new page, not at the CLI.
	_, page := b.post("/vaults/gonevault/delete", url.Values{"csrf": {csrf}})
	if text := html.UnescapeString(page); strings.Contains(text, "custody keyvault") || !strings.Contains(text, "Manage deleted vaults") {
		t.Fatalf("vault delete confirmation should point at Manage deleted vaults; page:\n%s", page)
	}
	status, page := b.post("/vaults/gonevault/delete", url.Values{"csrf": {csrf}, "confirm": {"yes"}})
	if status != http.StatusOK || !strings.Contains(page, "Key vault gonevault was deleted") || !strings.Contains(page, `<a href="/deleted-vaults" id="notice-link">Manage deleted vaults</a>`) {
		t.Fatalf("after deleting: status %d, want the notice with a link to Manage deleted vaults; page:\n%s", status, page)
	}
	if !strings.Contains(page, `href="/deleted-vaults" id="manage-deleted-vaults"`) {
		t.Fatalf("home page lacks the Manage deleted vaults link; page:\n%s", page)
	}
	if !isDeleted() {
		t.Fatalf("the vault is not soft-deleted")
	}

	// The admin sees it, with its dates and purge protection.
	status, page = b.get("/deleted-vaults")
	v, err := ts.KeyVault.DeletedVault(ctx, sub, "westus2", "gonevault")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`<th scope="row">gonevault</th>`, v.DeletedAt.UTC().Format("2006-01-02 15:04:05 UTC"), v.ScheduledPurgeAt.UTC().Format("2006-01-02 15:04:05 UTC"),
		"<td>Enabled</td>", `action="/deleted-vaults/gonevault/recover"`, `action="/deleted-vaults/gonevault/purge"`, `<th scope="col">Scheduled purge date</th>`} {
		if status != http.StatusOK || !strings.Contains(page, w) {
			t.Fatalf("GET /deleted-vaults as admin: status %d, want %q; page:\n%s", status, w, page)
		}
	}

	// A principal without a role sees nothing and cannot recover.
	ob := newBrowser(t, ts)
	ocsrf := ob.signIn(other.AppID, otherSecret)
	status, page = ob.get("/deleted-vaults")
	if status != http.StatusForbidden || strings.Contains(page, "gonevault") || !strings.Contains(page, "Microsoft.KeyVault/deletedVaults/read") {
		t.Fatalf("GET /deleted-vaults without a role: status %d, want 403 naming the action and no vault; page:\n%s", status, page)
	}
	status, page = ob.post("/deleted-vaults/gonevault/recover", url.Values{"csrf": {ocsrf}})
	if status != http.StatusForbidden || !strings.Contains(page, "Microsoft.KeyVault/vaults/write") || !isDeleted() {
		t.Fatalf("recover without a role: status %d, deleted %v; page:\n%s", status, isDeleted(), page)
	}
	status, page = ob.post("/deleted-vaults/gonevault/purge", url.Values{"csrf": {ocsrf}, "confirm": {"yes"}})
	if status != http.StatusForbidden || !strings.Contains(page, "deletedVaults/purge/action") || !isDeleted() {
		t.Fatalf("purge without a role: status %d, deleted %v; page:\n%s", status, isDeleted(), page)
	}

	// Without the CSRF token nothing happens.
	for _, path := range []string{"/deleted-vaults/gonevault/recover", "/deleted-vaults/gonevault/purge"} {
		status, page := b.post(path, url.Values{"confirm": {"yes"}})
		if status != http.StatusForbidden || !strings.Contains(page, "security token") || !isDeleted() {
			t.Fatalf("POST %s without the token: status %d, deleted %v; page:\n%s", path, status, isDeleted(), page)
		}
	}

	// Purge asks first, then is refused under purge protection, next to
	// the vault's actions, and changes nothing.
	status, page = b.post("/deleted-vaults/gonevault/purge", url.Values{"csrf": {csrf}})
	if text := html.UnescapeString(page); status != http.StatusOK || !strings.Contains(text, "Permanently purge key vault gonevault?") ||
		!strings.Contains(page, `name="confirm" value="yes"`) || !strings.Contains(page, ">Purge</button>") || !strings.Contains(text, "Purge protection is on") {
		t.Fatalf("first purge POST: status %d, want the confirmation page; page:\n%s", status, page)
	}
	if !isDeleted() {
		t.Fatalf("the first purge POST purged")
	}
	status, page = b.post("/deleted-vaults/gonevault/purge", url.Values{"csrf": {csrf}, "confirm": {"yes"}})
	want := "Key vault gonevault cannot be purged: purge protection is on"
	if status != http.StatusConflict || !strings.Contains(page, `id="err-vault-gonevault">`+want) || !strings.Contains(page, v.ScheduledPurgeAt.UTC().Format("2006-01-02 15:04 UTC")) ||
		!strings.Contains(page, `aria-describedby="err-vault-gonevault"`) {
		t.Fatalf("confirmed purge under purge protection: status %d, want 409 with %q next to the vault; page:\n%s", status, want, page)
	}
	if !isDeleted() {
		t.Fatalf("a refused purge removed the vault")
	}
	if _, err := ts.KeyVault.GetVault(ctx, sub, "rg", "gonevault"); err == nil {
		t.Fatalf("a refused purge recovered the vault")
	}

	// Recover brings it back with its access policies and keys.
	status, page = b.post("/deleted-vaults/gonevault/recover", url.Values{"csrf": {csrf}})
	if status != http.StatusOK || !strings.Contains(page, "Key vault gonevault was recovered") {
		t.Fatalf("recover: status %d; page:\n%s", status, page)
	}
	got, err := ts.KeyVault.GetVault(ctx, sub, "rg", "gonevault")
	if err != nil {
		t.Fatalf("the recovered vault: %v", err)
	}
	found := false
	for _, ap := range got.AccessPolicies {
		if ap.ObjectID == other.ObjectID && strings.Join(ap.Keys, ",") == "get,wrapKey,unwrapKey" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the recovered vault lost the access policy: %+v", got.AccessPolicies)
	}
	if _, err := ts.KeyVault.GetKey(actx, "gonevault", "k1", ""); err != nil {
		t.Fatalf("the recovered vault's key: %v", err)
	}
	if _, page := b.get("/deleted-vaults"); strings.Contains(page, "gonevault") || !strings.Contains(page, "There are no deleted key vaults") {
		t.Fatalf("the recovered vault is still listed; page:\n%s", page)
	}
}

// TestPurgeDeletedVault: without purge protection, a confirmed purge removes
// the deleted vault for good.
func TestPurgeDeletedVault(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	sub := ts.RM.SubscriptionID
	deletedVaultFixture(t, ts, "purgevault", false, "11111111-1111-1111-1111-111111111111")
	if _, err := ts.KeyVault.DeleteVault(ctx, sub, "rg", "purgevault"); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, ts)
	csrf := b.signIn(ts.Admin.ClientID, ts.Admin.ClientSecret)
	if _, page := b.get("/deleted-vaults"); !strings.Contains(page, "<td>Disabled</td>") {
		t.Fatalf("purge protection should show as Disabled; page:\n%s", page)
	}
	status, page := b.post("/deleted-vaults/purgevault/purge", url.Values{"csrf": {csrf}, "confirm": {"yes"}})
	if status != http.StatusOK || !strings.Contains(page, "Key vault purgevault was purged") {
		t.Fatalf("confirmed purge: status %d; page:\n%s", status, page)
	}
	if _, err := ts.KeyVault.DeletedVault(ctx, sub, "westus2", "purgevault"); !custody.IsNotFound(err) {
		t.Fatalf("after the purge the deleted vault is still there: %v", err)
	}
}
