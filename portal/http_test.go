package portal_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"custody"
	"custody/batch"
	"custody/identity"
	"custody/keyvault"
	"custody/portal"
	"custody/rm"
	"custody/server/servertest"
)

// browser is a plain HTTP client with cookies, for the tests that need no
// JavaScript.
type browser struct {
	t    *testing.T
	c    *http.Client
	base string
}

func newBrowser(t *testing.T, ts *servertest.TestServer) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: ts.Client.Transport, Jar: jar, Timeout: ts.Client.Timeout}
	return &browser{t: t, c: c, base: ts.URL("portal")}
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.base + path)
	if err != nil {
		b.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (b *browser) post(path string, form url.Values) (int, string) {
	b.t.Helper()
	resp, err := b.c.PostForm(b.base+path, form)
	if err != nil {
		b.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

var hiddenRE = regexp.MustCompile(`name="(csrf|token)" value="([^"]*)"`)

// hidden returns the value of the first hidden csrf or token field.
func hidden(t *testing.T, page, name string) string {
	t.Helper()
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		if m[1] == name {
			return html.UnescapeString(m[2])
		}
	}
	t.Fatalf("no %s field in page:\n%s", name, page)
	return ""
}

// signIn signs in with a client id and secret and returns the CSRF token of
// the session.
func (b *browser) signIn(clientID, secret string) string {
	b.t.Helper()
	_, page := b.get("/signin")
	status, page := b.post("/signin", url.Values{"csrf": {hidden(b.t, page, "csrf")}, "clientId": {clientID}, "secret": {secret}, "next": {"/"}})
	if status != http.StatusOK || !strings.Contains(page, "Signed in as") {
		b.t.Fatalf("sign in: status %d, page:\n%s", status, page)
	}
	return hidden(b.t, page, "csrf")
}

func TestSignInFailures(t *testing.T) {
	ts := servertest.New(t, nil)
	b := newBrowser(t, ts)

	// Signed-out pages send the browser to the sign-in page.
	status, page := b.get("/batch/create")
	if status != http.StatusOK || !strings.Contains(page, `action="/signin"`) {
		t.Fatalf("GET /batch/create signed out: status %d, want the sign-in form", status)
	}
	tok := hidden(t, page, "csrf")

	cases := []struct {
		name     string
		form     url.Values
		status   int
		contains string
	}{
		{"wrong secret", url.Values{"csrf": {tok}, "clientId": {ts.Admin.ClientID}, "secret": {"not-the-secret"}}, http.StatusUnauthorized, "Sign-in failed"},
		{"unknown client", url.Values{"csrf": {tok}, "clientId": {"00000000-0000-0000-0000-000000000000"}, "secret": {"x"}}, http.StatusUnauthorized, "was not found in the directory"},
		{"missing secret", url.Values{"csrf": {tok}, "clientId": {ts.Admin.ClientID}}, http.StatusBadRequest, "Enter both the client id"},
		{"no form token", url.Values{"clientId": {ts.Admin.ClientID}, "secret": {ts.Admin.ClientSecret}}, http.StatusForbidden, "sign-in form expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Each answer sets a fresh form token; use the one of the page.
			_, page := b.get("/signin")
			if tc.form.Has("csrf") {
				tc.form.Set("csrf", hidden(t, page, "csrf"))
			}
			status, page := b.post("/signin", tc.form)
			if status != tc.status || !strings.Contains(page, tc.contains) {
				t.Fatalf("POST /signin: status %d, want %d with %q; page:\n%s", status, tc.status, tc.contains, page)
			}
			if strings.Contains(page, "Signed in as") {
				t.Fatalf("POST /signin signed in")
			}
		})
	}
	if status, _ := b.get("/"); status != http.StatusOK {
		t.Fatalf("GET / = %d", status)
	}
	if _, page := b.get("/"); strings.Contains(page, "Signed in as") {
		t.Fatalf("a failed sign-in left a session")
	}
}

func TestOneTimeLink(t *testing.T) {
	ts := servertest.New(t, nil)
	link, err := portal.MintSignInLink(ts.DataDir(), ts.URL("portal"))
	if err != nil {
		t.Fatalf("MintSignInLink: %v", err)
	}
	u, _ := url.Parse(link)
	b := newBrowser(t, ts)
	_, page := b.get(u.RequestURI())
	tok := hidden(t, page, "token")
	status, page := b.post("/signin/link", url.Values{"token": {tok}})
	if status != http.StatusOK || !strings.Contains(page, "Signed in as") {
		t.Fatalf("POST /signin/link: status %d, page:\n%s", status, page)
	}
	// The link works once.
	b2 := newBrowser(t, ts)
	status, page = b2.post("/signin/link", url.Values{"token": {tok}})
	if status != http.StatusUnauthorized || !strings.Contains(page, "already used") {
		t.Fatalf("second POST /signin/link: status %d, want 401 saying the link is used; page:\n%s", status, page)
	}
	status, page = b2.post("/signin/link", url.Values{"token": {"made-up"}})
	if status != http.StatusUnauthorized || strings.Contains(page, "Signed in as") {
		t.Fatalf("POST /signin/link with a made-up token: status %d", status)
	}
}

func TestCSRFRefused(t *testing.T) {
	ts := servertest.New(t, nil)
	b := newBrowser(t, ts)
	csrf := b.signIn(ts.Admin.ClientID, ts.Admin.ClientSecret)
	form := url.Values{"name": {"csrfvault1"}, "resourceGroup": {"rg1"}, "location": {"westus2"}, "retentionDays": {"90"}, "purgeProtection": {"on"}, "accessModel": {"policy"}}
	for _, tok := range []string{"", "wrong" + csrf} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if tok != "" {
			f.Set("csrf", tok)
		}
		status, page := b.post("/vaults/create", f)
		if status != http.StatusForbidden || !strings.Contains(page, "security token") {
			t.Fatalf("POST /vaults/create with csrf %q: status %d, want 403 about the security token; page:\n%s", tok, status, page)
		}
	}
	if _, err := ts.KeyVault.GetVault(context.Background(), ts.RM.SubscriptionID, "rg1", "csrfvault1"); err == nil {
		t.Fatalf("a refused form created the vault")
	}
	// With the token the same form works.
	form.Set("csrf", csrf)
	if status, page := b.post("/vaults/create", form); status != http.StatusOK || !strings.Contains(page, "was created") {
		t.Fatalf("POST /vaults/create with the token: status %d; page:\n%s", status, page)
	}
}

func TestAuthorizationRefusal(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	if _, err := ts.RM.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: ts.RM.SubscriptionID, Name: "rg1", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	a, err := ts.Batch.CreateAccount(ctx, &batch.Account{ID: rm.ResourceID(ts.RM.SubscriptionID, "rg1", "Microsoft.Batch", "batchAccounts", "secretacct"),
		SubscriptionID: ts.RM.SubscriptionID, ResourceGroup: "rg1", Name: "secretacct", Location: "westus2",
		Identity: batch.AccountIdentity{Type: batch.IdentitySystemAssigned}})
	if err != nil {
		t.Fatal(err)
	}
	p, secret, err := ts.Identity.CreateServicePrincipal(ctx, "no-roles", 1)
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, ts)
	csrf := b.signIn(p.AppID, secret)

	if _, page := b.get("/"); strings.Contains(page, "secretacct") {
		t.Fatalf("home page lists an account the principal cannot read")
	}
	for _, path := range []string{"/batch/secretacct", "/batch/secretacct/encryption", "/batch/secretacct/jobs"} {
		status, page := b.get(path)
		if status != http.StatusForbidden || !strings.Contains(page, "does not have authorization to perform action &#39;Microsoft.Batch/batchAccounts/read&#39;") {
			t.Fatalf("GET %s without a role: status %d, want 403 with the refusal; page:\n%s", path, status, page)
		}
		if strings.Contains(page, a.Identity.PrincipalID) {
			t.Fatalf("GET %s without a role shows the account's principal id", path)
		}
	}
	status, page := b.post("/batch/create", url.Values{"csrf": {csrf}, "go": {"create"}, "name": {"mine1"}, "resourceGroup": {"rg1"}, "location": {"westus2"}, "identityType": {"None"}, "encryption": {"Microsoft.Batch"}})
	if status != http.StatusForbidden || !strings.Contains(page, "Microsoft.Batch/batchAccounts/write") {
		t.Fatalf("POST /batch/create without a role: status %d, want 403; page:\n%s", status, page)
	}
	if _, err := ts.Batch.Account(ctx, "mine1"); err == nil {
		t.Fatalf("an account was created without a role")
	}
	status, page = b.post("/batch/secretacct/encryption", url.Values{"csrf": {csrf}, "action": {"save"}, "keySource": {"Microsoft.Batch"}})
	if status != http.StatusForbidden {
		t.Fatalf("POST encryption without a role: status %d; page:\n%s", status, page)
	}
}

// TestEncryptionErrorsNextToField: a key in a vault without purge
// protection is refused by the batch service, and the page shows the
// service's message next to the key identifier; the account is unchanged.
func TestEncryptionErrorsNextToField(t *testing.T) {
	ts := servertest.New(t, nil)
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
	a, err := ts.Batch.CreateAccount(ctx, &batch.Account{ID: rm.ResourceID(sub, "rg", "Microsoft.Batch", "batchAccounts", "nopurge"),
		SubscriptionID: sub, ResourceGroup: "rg", Name: "nopurge", Location: "westus2", Identity: batch.AccountIdentity{Type: batch.IdentitySystemAssigned}})
	if err != nil {
		t.Fatal(err)
	}
	loc, tenant, family, sku := "westus2", ts.Identity.TenantID, "A", "standard"
	if _, _, err := ts.KeyVault.PutVault(actx, sub, "rg", "nopurgevault", keyvault.VaultUpdate{Location: &loc, TenantID: &tenant, SKUFamily: &family, SKU: &sku}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.KeyVault.UpdateAccessPolicies(actx, sub, "rg", "nopurgevault", keyvault.AccessPolicyAdd, []keyvault.AccessPolicy{{TenantID: tenant, ObjectID: a.Identity.PrincipalID, Keys: []string{"get", "wrapKey", "unwrapKey"}}}); err != nil {
		t.Fatal(err)
	}
	kb, err := ts.KeyVault.CreateKey(actx, "nopurgevault", "cmk", keyvault.JSONBody([]byte(`{"kty":"RSA","key_size":2048}`)))
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, ts)
	csrf := b.signIn(ts.Admin.ClientID, ts.Admin.ClientSecret)
	form := url.Values{"csrf": {csrf}, "action": {"save"}, "keySource": {"Microsoft.KeyVault"}, "method": {"uri"}, "keyIdentifier": {kb.Key.Kid}}
	status, page := b.post("/batch/nopurge/encryption", form)
	if status < 400 || status >= 500 || !regexp.MustCompile(`id="err-keyIdentifier">[^<]*[Pp]urge protection`).MatchString(page) {
		t.Fatalf("save with a vault without purge protection: status %d, want 4xx with the reason next to the key identifier; page:\n%s", status, page)
	}
	// Bad input never gives a 500: an identifier that is not a URL.
	form.Set("keyIdentifier", "not a url")
	if status, page := b.post("/batch/nopurge/encryption", form); status != http.StatusBadRequest || !strings.Contains(page, `id="err-keyIdentifier"`) {
		t.Fatalf("save with a malformed identifier: status %d; page:\n%s", status, page)
	}
	// Without JavaScript, "Load keys and versions" fills the picker.
	status, page = b.post("/batch/nopurge/encryption", url.Values{"csrf": {csrf}, "action": {"refresh"}, "keySource": {"Microsoft.KeyVault"}, "method": {"select"}, "vault": {"nopurgevault"}})
	if status != http.StatusOK || !strings.Contains(page, `<option value="cmk"`) {
		t.Fatalf("refresh the picker: status %d; page:\n%s", status, page)
	}
	if got, _ := ts.Batch.Account(ctx, "nopurge"); got.Encryption.KeySource != batch.KeySourceBatch {
		t.Fatalf("a refused save changed the account: %+v", got.Encryption)
	}
}

// TestUserAssignedIdentityPicker: the Advanced tab offers the user-assigned
// identities the principal may read (the admin sees one, a principal
// without a role none), and an account created with the picked identity is
// UserAssigned with that identity attached.
func TestUserAssignedIdentityPicker(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	sub := ts.RM.SubscriptionID
	if _, err := ts.RM.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: sub, Name: "idrg", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	u, _, err := ts.Identity.PutUserAssignedIdentity(ctx, &identity.UserAssignedIdentity{
		ID:             rm.ResourceID(sub, "idrg", "Microsoft.ManagedIdentity", "userAssignedIdentities", "batch-cmk-id"),
		SubscriptionID: sub, ResourceGroup: "idrg", Name: "batch-cmk-id", Location: "westus2"})
	if err != nil {
		t.Fatal(err)
	}
	advanced := func(b *browser, csrf string) (int, string) {
		return b.post("/batch/create", url.Values{"csrf": {csrf}, "go": {"advanced"}, "name": {"uaacct"}, "resourceGroup": {"idrg"},
			"location": {"westus2"}, "identityType": {"UserAssigned"}, "encryption": {"Microsoft.Batch"}})
	}
	option := `<option value="` + html.EscapeString(u.ID) + `"`

	// A principal without a role sees no identity.
	p, secret, err := ts.Identity.CreateServicePrincipal(ctx, "no-roles", 1)
	if err != nil {
		t.Fatal(err)
	}
	nb := newBrowser(t, ts)
	status, page := advanced(nb, nb.signIn(p.AppID, secret))
	if status != http.StatusOK || !strings.Contains(page, `<select id="userAssignedId"`) {
		t.Fatalf("Advanced tab without a role: status %d, want the identity picker; page:\n%s", status, page)
	}
	if strings.Contains(page, option) || strings.Contains(page, u.ClientID) || strings.Contains(page, "batch-cmk-id") {
		t.Fatalf("Advanced tab lists an identity the principal cannot read; page:\n%s", page)
	}

	// The admin sees it with its name, group and client id.
	b := newBrowser(t, ts)
	csrf := b.signIn(ts.Admin.ClientID, ts.Admin.ClientSecret)
	status, page = advanced(b, csrf)
	if status != http.StatusOK || !strings.Contains(page, option) ||
		!strings.Contains(page, "batch-cmk-id (resource group idrg, client id "+u.ClientID+")") ||
		!strings.Contains(page, `<label for="userAssignedId">`) {
		t.Fatalf("Advanced tab for the admin: status %d, want the identity in the picker; page:\n%s", status, page)
	}

	// User assigned with nothing picked or pasted is refused next to the picker.
	form := url.Values{"csrf": {csrf}, "go": {"review"}, "name": {"uaacct"}, "resourceGroup": {"idrg"}, "location": {"westus2"},
		"identityType": {"UserAssigned"}, "userAssignedId": {""}, "encryption": {"Microsoft.Batch"}}
	if status, page := b.post("/batch/create", form); status != http.StatusBadRequest || !strings.Contains(page, `id="err-userAssignedId"`) {
		t.Fatalf("review without an identity: status %d, want 400 next to the picker; page:\n%s", status, page)
	}

	// Review names the picked identity; Create attaches it.
	form.Set("userAssignedId", u.ID)
	if status, page := b.post("/batch/create", form); status != http.StatusOK || !strings.Contains(page, `id="review-identity">batch-cmk-id (resource group idrg`) {
		t.Fatalf("review: status %d; page:\n%s", status, page)
	}
	form.Set("go", "create")
	if status, page := b.post("/batch/create", form); status != http.StatusOK || !strings.Contains(page, "was created") {
		t.Fatalf("create: status %d; page:\n%s", status, page)
	}
	a, err := ts.Batch.Account(ctx, "uaacct")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := a.Identity.UserAssigned[u.ID]
	if a.Identity.Type != batch.IdentityUserAssigned || len(a.Identity.UserAssigned) != 1 || !ok ||
		got.PrincipalID != u.PrincipalID || got.ClientID != u.ClientID {
		t.Fatalf("account identity = %+v, want UserAssigned with %s (principal %s)", a.Identity, u.ID, u.PrincipalID)
	}
}

// TestDeleteAsksFirst: deleting an account, a key, an access policy or a
// vault first shows a confirmation page that names it and says what
// deleting does, and changes nothing; the confirmed POST (with the CSRF
// token) deletes.
func TestDeleteAsksFirst(t *testing.T) {
	ts := servertest.New(t, nil)
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
	a, err := ts.Batch.CreateAccount(ctx, &batch.Account{ID: rm.ResourceID(sub, "rg", "Microsoft.Batch", "batchAccounts", "delacct"),
		SubscriptionID: sub, ResourceGroup: "rg", Name: "delacct", Location: "westus2", Identity: batch.AccountIdentity{Type: batch.IdentitySystemAssigned}})
	if err != nil {
		t.Fatal(err)
	}
	loc, tenant, family, sku, purge, days := "westus2", ts.Identity.TenantID, "A", "standard", true, 30
	if _, _, err := ts.KeyVault.PutVault(actx, sub, "rg", "delvault", keyvault.VaultUpdate{Location: &loc, TenantID: &tenant, SKUFamily: &family, SKU: &sku,
		EnablePurgeProtection: &purge, SoftDeleteRetentionDays: &days}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.KeyVault.UpdateAccessPolicies(actx, sub, "rg", "delvault", keyvault.AccessPolicyAdd, []keyvault.AccessPolicy{{TenantID: tenant, ObjectID: a.Identity.PrincipalID, Keys: []string{"get", "wrapKey", "unwrapKey"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.KeyVault.CreateKey(actx, "delvault", "delkey", keyvault.JSONBody([]byte(`{"kty":"RSA","key_size":2048}`))); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, ts)
	csrf := b.signIn(ts.Admin.ClientID, ts.Admin.ClientSecret)

	policyOf := func(oid string) bool {
		v, err := ts.KeyVault.GetVault(ctx, sub, "rg", "delvault")
		if err != nil {
			t.Fatalf("get vault: %v", err)
		}
		for _, ap := range v.AccessPolicies {
			if ap.ObjectID == oid {
				return true
			}
		}
		return false
	}
	accountExists := func() bool { _, err := ts.Batch.Account(ctx, "delacct"); return err == nil }
	keyExists := func() bool { _, err := ts.KeyVault.GetKey(actx, "delvault", "delkey", ""); return err == nil }
	vaultExists := func() bool { _, err := ts.KeyVault.GetVault(ctx, sub, "rg", "delvault"); return err == nil }

	cases := []struct {
		name   string
		path   string
		form   url.Values
		want   []string
		exists func() bool
		after  string
	}{
		{"key", "/vaults/delvault/keys/delkey/delete", url.Values{},
			[]string{"Delete key delkey of key vault delvault?", "soft-delete", "can be recovered", "retention period of 30 days", "Purge protection is on"}, keyExists, "The key was deleted"},
		{"access policy", "/vaults/delvault/access-policies/remove", url.Values{"objectId": {a.Identity.PrincipalID}, "applicationId": {""}},
			[]string{"Delete the access policy of Batch account delacct (system-assigned identity) (principal id " + a.Identity.PrincipalID + ") on key vault delvault?",
				"loses the key permissions get, wrapKey, unwrapKey", `name="objectId" value="` + a.Identity.PrincipalID + `"`},
			func() bool { return policyOf(a.Identity.PrincipalID) }, "The access policy was removed"},
		{"account", "/batch/delacct/delete", url.Values{},
			[]string{"Delete Batch account delacct?", "jobs, tasks", "pools", "cannot be recovered", a.Identity.PrincipalID}, accountExists, "Batch account delacct was deleted"},
		{"vault", "/vaults/delvault/delete", url.Values{},
			[]string{"Delete key vault delvault?", "soft-delete with all its keys", "retention period of 30 days"}, vaultExists, "Key vault delvault was deleted"},
	}
	for _, tc := range cases {
		// The first POST asks and changes nothing.
		form := url.Values{"csrf": {csrf}}
		for k, v := range tc.form {
			form[k] = v
		}
		status, page := b.post(tc.path, form)
		text := html.UnescapeString(page)
		if status != http.StatusOK || !strings.Contains(page, `id="confirm-delete"`) || !strings.Contains(page, `id="cancel"`) ||
			!strings.Contains(page, `action="`+tc.path+`"`) || !strings.Contains(page, `name="confirm" value="yes"`) ||
			!strings.Contains(page, `name="csrf" value="`+csrf+`"`) {
			t.Fatalf("%s: first POST %s: status %d, want the confirmation form; page:\n%s", tc.name, tc.path, status, page)
		}
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Fatalf("%s: confirmation page lacks %q; page:\n%s", tc.name, w, page)
			}
		}
		if !tc.exists() {
			t.Fatalf("%s: the first POST deleted it", tc.name)
		}
		// The confirmed POST without the CSRF token is refused.
		form.Set("confirm", "yes")
		form.Del("csrf")
		if status, page := b.post(tc.path, form); status != http.StatusForbidden || !strings.Contains(page, "security token") {
			t.Fatalf("%s: confirmed POST without the token: status %d; page:\n%s", tc.name, status, page)
		}
		if !tc.exists() {
			t.Fatalf("%s: a POST without the token deleted it", tc.name)
		}
		// Confirmed, it is deleted.
		form.Set("csrf", csrf)
		if status, page := b.post(tc.path, form); status != http.StatusOK || strings.Contains(page, `id="confirm-delete"`) || !strings.Contains(page, tc.after) {
			t.Fatalf("%s: confirmed POST: status %d; page:\n%s", tc.name, status, page)
		}
		if tc.exists() {
			t.Fatalf("%s: still there after the confirmed POST", tc.name)
		}
	}
	if _, err := ts.KeyVault.DeletedVault(ctx, sub, "westus2", "delvault"); err != nil {
		t.Fatalf("the deleted vault is not soft-deleted: %v", err)
	}
}

// TestCreateAccountNeedsAssignOnIdentity: a principal that may create
// accounts in its group but may not assign a user-assigned identity of
// another group is not offered that identity, and pasting its resource id
// is refused at Create; the account is not created.
func TestCreateAccountNeedsAssignOnIdentity(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	sub := ts.RM.SubscriptionID
	for _, rg := range []string{"idrg", "mine"} {
		if _, err := ts.RM.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: sub, Name: rg, Location: "westus2"}); err != nil {
			t.Fatal(err)
		}
	}
	u, _, err := ts.Identity.PutUserAssignedIdentity(ctx, &identity.UserAssignedIdentity{
		ID:             rm.ResourceID(sub, "idrg", "Microsoft.ManagedIdentity", "userAssignedIdentities", "foreign-id"),
		SubscriptionID: sub, ResourceGroup: "idrg", Name: "foreign-id", Location: "westus2"})
	if err != nil {
		t.Fatal(err)
	}
	p, secret, err := ts.Identity.CreateServicePrincipal(ctx, "contributor-mine", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Contributor on its group, Reader on the subscription: it can read the
	// identity but not assign it.
	if _, err := ts.RM.CreateRoleAssignment(ctx, rm.GroupID(sub, "mine"), "", rm.RoleDefinitionID(sub, rm.RoleContributor), p.ObjectID, "", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.RM.CreateRoleAssignment(ctx, rm.SubscriptionID(sub), "", rm.RoleDefinitionID(sub, rm.RoleReader), p.ObjectID, "", "test"); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, ts)
	csrf := b.signIn(p.AppID, secret)
	form := url.Values{"csrf": {csrf}, "go": {"advanced"}, "name": {"stolenid"}, "resourceGroup": {"mine"}, "location": {"westus2"},
		"identityType": {"UserAssigned"}, "encryption": {"Microsoft.Batch"}}
	if status, page := b.post("/batch/create", form); status != http.StatusOK || strings.Contains(page, "foreign-id") {
		t.Fatalf("Advanced tab: status %d, want no identity the principal cannot assign; page:\n%s", status, page)
	}
	form.Set("go", "create")
	form.Set("userAssignedIdOther", u.ID)
	status, page := b.post("/batch/create", form)
	if status != http.StatusForbidden || !strings.Contains(page, "userAssignedIdentities/assign/action") || strings.Contains(page, u.PrincipalID) {
		t.Fatalf("create with an identity the principal cannot assign: status %d, want 403 naming the permission; page:\n%s", status, page)
	}
	if _, err := ts.Batch.Account(ctx, "stolenid"); err == nil {
		t.Fatalf("the account was created with an identity the principal cannot assign")
	}
}
