package portal_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"custody"
	"custody/batch"
	"custody/keyvault"
	"custody/portal"
	"custody/rm"
	"custody/server"
	"custody/server/servertest"
)

// The browser tests drive the portal in Debian's chromium through chromedp.
// One browser serves every test of the binary; each test gets its own
// browser context (its own cookies). Screenshots of each page go to
// testdata/screenshots/ (not committed).

const chromiumPath = "/usr/bin/chromium"

var screenshotDir = filepath.Join("testdata", "screenshots")

var (
	browserOnce   sync.Once
	browserCtx    context.Context
	browserCancel func()
	browserErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if browserCancel != nil {
		browserCancel()
	}
	os.Exit(code)
}

// startBrowser starts chromium once per test binary.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s is missing (apt-get install -y chromium); browser tests run in CI", chromiumPath)
		}
		t.Fatalf("%s is missing; CI must install chromium (.ci/run does)", chromiumPath)
	}
	browserOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portal-chromium-")
		if err != nil {
			browserErr = err
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromiumPath),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.UserDataDir(dir),
			chromedp.WindowSize(1280, 900),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-quic", true),
			// The server's certificate comes from its own local CA, which
			// this fresh profile does not trust.
			chromedp.Flag("ignore-certificate-errors", true),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		if err := chromedp.Do(bctx); err != nil {
			browserErr = err
		}
		browserCtx = bctx
		browserCancel = func() { bcancel(); acancel(); os.RemoveAll(dir) }
	})
	if browserErr != nil {
		t.Fatalf("start chromium: %v", browserErr)
	}
	return browserCtx
}

// tab is one test's browser tab on one server.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	step int
}

func newTab(t *testing.T, ts *servertest.TestServer) *tab {
	b := startBrowser(t)
	ctx, cancel := chromedp.NewContext(b, chromedp.WithNewBrowserContext())
	ctx, cancel2 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancel2(); cancel() })
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &tab{t: t, ctx: ctx, base: ts.URL("portal")}
}

// do runs steps; what says what they do, for the failure message.
func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		b.t.Fatalf("%s: %v\npage main:\n%s", what, err, html)
	}
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func (b *tab) value(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("read value of %s: %v", sel, err)
	}
	return s
}

func (b *tab) checked(id string) bool {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](fmt.Sprintf("document.getElementById(%q).checked", id)))
	if err != nil {
		b.t.Fatalf("read checkbox %s: %v", id, err)
	}
	return v
}

// open navigates to a portal path.
func (b *tab) open(path string, waitFor string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS(waitFor)))
}

// shot saves a screenshot of the whole page as NN-name.png.
func (b *tab) shot(name string) {
	b.t.Helper()
	b.step++
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(screenshotDir, fmt.Sprintf("%s-%02d-%s.png", b.t.Name(), b.step, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// waitText waits until the element's text contains want.
func (b *tab) waitText(sel, want string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
		if err == nil && strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: want text containing %q, have %q (%v)", sel, want, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// submit clicks a submit button and waits until the page was replaced
// (htmx swaps the body of a boosted form's answer; without it the browser
// loads a new page): the old main element carries a mark the new one lacks.
func (b *tab) submit(id string) {
	b.t.Helper()
	b.do("submit "+id,
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(document.getElementById("main").dataset.old = "1") === "1"`)(ctx, t)
			return err
		}),
		click(id), visible("main:not([data-old])"))
}

// settle waits until htmx has no request or swap in progress.
func (b *tab) settle() {
	b.t.Helper()
	time.Sleep(50 * time.Millisecond)
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.querySelector(".htmx-request, .htmx-swapping, .htmx-settling") === null`)); err != nil {
		b.t.Fatalf("wait for htmx: %v", err)
	}
}

func click(id string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS("#" + id)) }

func set(id, v string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS("#"+id), v)
}

func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// TestPortalCustomerManagedKeyPath follows the seed page's portal steps:
// sign in, create an account with a system-assigned identity, read its
// principal id, create a vault with soft delete and purge protection, grant
// the identity Get, Wrap Key and Unwrap Key, generate an RSA 2048 key, copy
// its identifier, enable customer-managed keys, then select a new version,
// then go back to a Microsoft managed key.
func TestPortalCustomerManagedKeyPath(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.KeyProbeInterval = 200 * time.Millisecond })
	b := newTab(t, ts)

	// Sign in with the one-time link custody portal prints.
	b.open("/signin", "#clientId")
	b.shot("signin")
	link, err := portal.MintSignInLink(ts.DataDir(), ts.URL("portal"))
	if err != nil {
		t.Fatal(err)
	}
	b.do("open the sign-in link", chromedp.Navigate(link), visible("#continue"))
	b.shot("signin-link")
	b.do("continue", click("continue"), visible("#create-account"))
	b.shot("home")

	// Create a Batch account: Basics, Advanced (System assigned), Review + create.
	b.do("open create account", click("create-account"), visible("#name"))
	b.do("fill basics", set("resourceGroup", "portal-rg"), set("name", "portalacct"))
	b.shot("create-account-basics")
	b.do("go to Advanced", click("next-advanced"), visible("#id-system"))
	b.do("pick System assigned", click("id-system"), click("enc-ms"))
	b.shot("create-account-advanced")
	b.do("review", click("review"), visible("#create"))
	b.shot("create-account-review")
	b.do("create", click("create"), visible("#principal-id"))
	b.shot("account-overview")
	principal := b.text("#principal-id")
	if got := b.text("#identity-type"); got != "SystemAssigned" {
		t.Fatalf("Identity Type = %q, want SystemAssigned", got)
	}
	a, err := ts.Batch.Account(context.Background(), "portalacct")
	if err != nil || a.Identity.PrincipalID != principal || principal == "" {
		t.Fatalf("overview principal id %q; account %+v, %v", principal, a, err)
	}

	// Create the key vault with soft delete and purge protection.
	b.open("/vaults/create", "#name")
	b.do("fill vault", set("resourceGroup", "portal-rg"), set("name", "portalvault"), set("retentionDays", "90"))
	if !b.checked("purgeProtection") {
		t.Fatalf("purge protection is not checked by default")
	}
	b.shot("create-vault")
	b.do("create vault", click("create"), visible("#purge-protection"))
	b.shot("vault-overview")
	if got := b.text("#purge-protection"); got != "Enabled" {
		t.Fatalf("Purge protection = %q", got)
	}

	// Access policy: Get, Wrap Key, Unwrap Key for the account's identity.
	b.open("/vaults/portalvault/access-policies", "#principal")
	b.do("fill policy", click("perm-get"), click("perm-wrapKey"), click("perm-unwrapKey"), set("principal", principal))
	b.shot("add-access-policy")
	b.do("add policy", click("add-policy"), visible("#notice"))
	b.waitText("#policies", principal)
	b.shot("access-policies")

	// Generate an RSA 2048 key and read its version page.
	b.open("/vaults/portalvault/keys", "#generate")
	b.do("open generate", click("generate"), visible("#size-2048"))
	b.do("fill key", set("name", "cmk"))
	if !b.checked("size-2048") || !b.checked("kty-rsa") {
		t.Fatalf("RSA 2048 is not the default")
	}
	b.shot("create-key")
	b.do("create key", click("create"), visible("#versions"))
	b.shot("key")
	b.do("open current version", chromedp.Click(chromedp.CSS("a.version-link")), visible("#kid"))
	for _, op := range []string{"op-wrapKey", "op-unwrapKey"} {
		if !b.checked(op) {
			t.Fatalf("permitted operation %s is not checked", op)
		}
	}
	b.do("copy key identifier", visible("#copy-kid"), click("copy-kid"))
	b.waitText("#copy-status", "Copied")
	b.shot("key-version")
	kid := b.value("#kid")
	if !strings.HasPrefix(kid, "https://portalvault.vault.") || !strings.Contains(kid, "/keys/cmk/") {
		t.Fatalf("Key Identifier = %q", kid)
	}

	// Encryption page: Customer-managed keys with the pasted identifier.
	b.open("/batch/portalacct/encryption", "#keyIdentifier")
	b.do("choose customer-managed key", click("ks-cmk"), click("m-uri"), set("keyIdentifier", kid))
	b.shot("encryption-enter-identifier")
	b.do("save", click("save"), visible("#notice"))
	b.open("/batch/portalacct", "#key-in-use")
	b.shot("account-overview-cmk")
	if got := b.text("#key-in-use"); got != kid {
		t.Fatalf("overview key in use = %q, want %q", got, kid)
	}

	// A new version of the key, selected with "Select a key vault and key".
	b.open("/vaults/portalvault/keys/cmk", "#new-version")
	b.do("new version", click("new-version"), visible("#notice"))
	newVersion := b.text("#versions tbody tr:first-child a.version-link")
	if newVersion == "" || strings.HasSuffix(kid, newVersion) {
		t.Fatalf("new version %q (old identifier %s)", newVersion, kid)
	}
	b.shot("key-new-version")
	b.open("/batch/portalacct/encryption", "#vault")
	// Each choice makes htmx reload the picker (the "Load keys and
	// versions" button does the same without JavaScript).
	b.do("select the vault", click("m-select"), chromedp.SetValue(chromedp.CSS("#vault"), "portalvault"))
	b.settle()
	b.waitText("#key", "cmk")
	b.do("select the key", chromedp.SetValue(chromedp.CSS("#key"), "cmk"))
	b.settle()
	b.waitText("#version", newVersion)
	b.do("select the version", chromedp.SetValue(chromedp.CSS("#version"), newVersion))
	b.settle()
	b.waitText("#picked", newVersion)
	b.shot("encryption-select-key")
	b.submit("save")
	b.do("saved", visible("#notice"))
	b.open("/batch/portalacct", "#key-in-use")
	b.shot("account-overview-new-version")
	if got := b.text("#key-in-use"); !strings.HasSuffix(got, "/keys/cmk/"+newVersion) {
		t.Fatalf("overview key in use = %q, want version %s", got, newVersion)
	}

	// Back to Microsoft managed key.
	b.open("/batch/portalacct/encryption", "#ks-ms")
	b.do("choose Microsoft managed key", click("ks-ms"), click("save"), visible("#notice"))
	b.shot("encryption-microsoft-key")
	b.open("/batch/portalacct", "#key-in-use-platform")
	b.shot("account-overview-microsoft-key")
	if got := b.text("#key-source"); got != "Microsoft managed key" {
		t.Fatalf("Encryption = %q", got)
	}
	if a, _ := ts.Batch.Account(context.Background(), "portalacct"); a.Encryption.KeySource != batch.KeySourceBatch {
		t.Fatalf("account key source %q after going back", a.Encryption.KeySource)
	}

	// Deleting the key asks first; Cancel keeps it.
	b.open("/vaults/portalvault/keys/cmk", "#delete-key")
	b.do("delete key", click("delete-key"), visible("#confirm-delete"))
	if got := b.text("#confirm"); !strings.Contains(got, "soft-delete") || !strings.Contains(got, "can be recovered") {
		t.Fatalf("key delete confirmation = %q", got)
	}
	b.shot("key-confirm-delete")
	b.do("cancel", click("cancel"), visible("#versions"))
	if k, err := ts.KeyVault.Keys.Key(context.Background(), "portalvault", "cmk"); err != nil || k.DeletedAt != nil {
		t.Fatalf("the key is gone after Cancel: %v", err)
	}

	// Deleting the account asks first, then deletes it.
	b.open("/batch/portalacct", "#delete-account")
	b.do("delete account", click("delete-account"), visible("#confirm-delete"))
	if got := b.text("#confirm"); !strings.Contains(got, "jobs, tasks") || !strings.Contains(got, "pools") {
		t.Fatalf("account delete confirmation = %q", got)
	}
	b.shot("account-confirm-delete")
	b.do("confirm", click("confirm-delete"), visible("#notice"))
	b.shot("home-account-deleted")
	if _, err := ts.Batch.Account(context.Background(), "portalacct"); err == nil {
		t.Fatalf("the account is still there after the confirmed delete")
	}
}

// TestPortalShowsLockedAccount sets up a customer-managed key through the
// services, removes the account's access policy on the Access policies page,
// and sees the account page report the lock and its reason.
func TestPortalShowsLockedAccount(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.KeyProbeInterval = 200 * time.Millisecond })
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
	a, err := ts.Batch.CreateAccount(ctx, &batch.Account{ID: rm.ResourceID(sub, "rg", "Microsoft.Batch", "batchAccounts", "lockacct"),
		SubscriptionID: sub, ResourceGroup: "rg", Name: "lockacct", Location: "westus2", Identity: batch.AccountIdentity{Type: batch.IdentitySystemAssigned}})
	if err != nil {
		t.Fatal(err)
	}
	loc, tenant, family, sku, purge := "westus2", ts.Identity.TenantID, "A", "standard", true
	if _, _, err := ts.KeyVault.PutVault(actx, sub, "rg", "lockvault", keyvault.VaultUpdate{Location: &loc, TenantID: &tenant, SKUFamily: &family, SKU: &sku, EnablePurgeProtection: &purge}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.KeyVault.UpdateAccessPolicies(actx, sub, "rg", "lockvault", keyvault.AccessPolicyAdd, []keyvault.AccessPolicy{{TenantID: tenant, ObjectID: a.Identity.PrincipalID, Keys: []string{"get", "wrapKey", "unwrapKey"}}}); err != nil {
		t.Fatal(err)
	}
	kb, err := ts.KeyVault.CreateKey(actx, "lockvault", "cmk", keyvault.JSONBody([]byte(`{"kty":"RSA","key_size":2048}`)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Batch.SetEncryption(ctx, "lockacct", batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: kb.Key.Kid}); err != nil {
		t.Fatal(err)
	}

	b := newTab(t, ts)
	b.open("/signin", "#clientId")
	b.do("sign in", set("clientId", ts.Admin.ClientID), set("secret", ts.Admin.ClientSecret), click("signin"), visible("#create-account"))
	b.open("/batch/lockacct", "#key-in-use")
	b.shot("account-key-available")

	// Revoke: remove the identity's access policy on the page.
	b.open("/vaults/lockvault/access-policies", "#policies")
	b.shot("access-policies-before-remove")
	b.do("remove policy", chromedp.Click(chromedp.CSS(`button[aria-label="Remove the access policy of `+a.Identity.PrincipalID+`"]`)), visible("#confirm-delete"))
	if got := b.text("#confirm"); !strings.Contains(got, "Batch account lockacct uses a key of this vault") || !strings.Contains(got, "becomes locked") {
		t.Fatalf("confirmation page = %q, want it to say the account becomes locked", got)
	}
	b.shot("access-policy-confirm-remove")
	b.do("confirm", click("confirm-delete"), visible("#notice"))
	b.shot("access-policy-removed")

	// The monitor's next probe locks the account; its page says so.
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.open("/batch/lockacct", "#encryption-status")
		if v, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.getElementById("lock-reason") !== null`)); v {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the account page never showed the locked state")
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.shot("account-locked")
	status, reason := b.text("#encryption-status"), b.text("#lock-reason")
	if !strings.Contains(status, "Customer-managed key inaccessible") || !strings.Contains(status, "What to do") || reason == "" {
		t.Fatalf("locked status %q, reason %q", status, reason)
	}

	// The encryption page refuses to switch back while locked, in plain words.
	b.open("/batch/lockacct/encryption", "#ks-ms")
	b.do("try Microsoft managed key", click("ks-ms"), click("save"), visible("#err-keySource"))
	b.shot("encryption-refused-while-locked")
	if got := b.text("#err-keySource"); !strings.Contains(got, "inaccessible") {
		t.Fatalf("encryption error = %q", got)
	}
}

// TestPortalRecoversDeletedVault deletes a vault, finds it under Manage
// deleted vaults, is refused a purge under purge protection, and recovers
// it from the page.
func TestPortalRecoversDeletedVault(t *testing.T) {
	ts := servertest.New(t, nil)
	deletedVaultFixture(t, ts, "backvault", true, "11111111-1111-1111-1111-111111111111")

	b := newTab(t, ts)
	b.open("/signin", "#clientId")
	b.do("sign in", set("clientId", ts.Admin.ClientID), set("secret", ts.Admin.ClientSecret), click("signin"), visible("#create-account"))
	b.open("/vaults/backvault", "#delete-vault")
	b.do("delete vault", click("delete-vault"), visible("#confirm-delete"))
	if got := b.text("#confirm"); !strings.Contains(got, "Manage deleted vaults") || strings.Contains(got, "custody keyvault") {
		t.Fatalf("vault delete confirmation = %q, want it to point at Manage deleted vaults", got)
	}
	b.shot("vault-confirm-delete")
	b.do("confirm delete", click("confirm-delete"), visible("#notice-link"))
	b.shot("home-vault-deleted")

	b.do("open Manage deleted vaults", click("notice-link"), visible("#deleted-vaults"))
	b.waitText("#deleted-backvault", "backvault")
	b.shot("deleted-vaults")

	b.do("purge", click("purge-backvault"), visible("#confirm-delete"))
	b.shot("deleted-vault-confirm-purge")
	b.do("confirm purge", click("confirm-delete"), visible("#err-vault-backvault"))
	if got := b.text("#err-vault-backvault"); !strings.Contains(got, "purge protection is on") {
		t.Fatalf("purge refusal = %q", got)
	}
	b.shot("deleted-vault-purge-refused")

	b.do("recover", click("recover-backvault"), visible("#notice"))
	b.waitText("#notice", "Key vault backvault was recovered")
	b.shot("vault-recovered")
	if _, err := ts.KeyVault.GetVault(context.Background(), ts.RM.SubscriptionID, "rg", "backvault"); err != nil {
		t.Fatalf("the vault was not recovered: %v", err)
	}
	b.open("/deleted-vaults", "#no-deleted-vaults")
	b.shot("deleted-vaults-empty")
}
