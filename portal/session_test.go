package portal_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"custody/batch"
	"custody/rm"
	"custody/server/servertest"
)

// TestSignInNextStaysOnSite signs in with hostile next= values: every
// redirect after sign-in stays on the portal, as a path of the portal.
func TestSignInNextStaysOnSite(t *testing.T) {
	ts := servertest.New(t, nil)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: ts.Client.Transport, Jar: jar, Timeout: ts.Client.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	b := &browser{t: t, c: c, base: ts.URL("portal")}
	for _, tc := range []struct{ next, want string }{
		{"/\t/evil.example", "/"},
		{"/\n/evil.example", "/"},
		{"/\r\n/evil.example", "/"},
		{"/ /evil.example", "/"},
		{"//evil.example", "/"},
		{"///evil.example", "/"},
		{"/\\evil.example", "/"},
		{"/\\/evil.example", "/"},
		{"\\\\evil.example", "/"},
		{"https://evil.example/", "/"},
		{"https:evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"evil.example", "/"},
		{"/%2F/evil.example", "/"},
		{"/%5Cevil.example", "/"},
		{"/%09/evil.example", "/"},
		{"/%2f%2fevil.example", "/"},
		{"/\x00/evil.example", "/"},
		{"/\u3000/evil.example", "/"},
		{"/" + strings.Repeat("a", 5000), "/"},
		{"", "/"},
		// Same-site paths are kept.
		{"/", "/"},
		{"/vaults/create", "/vaults/create"},
		{"/batch/acct1/jobs?x=1", "/batch/acct1/jobs?x=1"},
	} {
		_, page := b.get("/signin")
		resp, err := c.PostForm(b.base+"/signin", url.Values{"csrf": {hidden(t, page, "csrf")}, "clientId": {ts.Admin.ClientID},
			"secret": {ts.Admin.ClientSecret}, "next": {tc.next}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || loc != tc.want {
			t.Errorf("sign in with next=%q: status %d, Location %q; want 303 to %q", tc.next, resp.StatusCode, loc, tc.want)
		}
		u, err := url.Parse(loc)
		if err != nil || u.Host != "" || u.Scheme != "" || strings.ContainsAny(loc, "\\\t\r\n ") || strings.HasPrefix(loc, "//") {
			t.Errorf("sign in with next=%q redirects off the portal: %q", tc.next, loc)
		}
	}
	// The sign-in page carries the same cleaned value in its form.
	_, page := b.get("/signin?next=" + url.QueryEscape("/\t/evil.example"))
	if strings.Contains(page, "evil.example") {
		t.Errorf("the sign-in form keeps a hostile next value:\n%s", page)
	}
}

// TestDeletedPrincipalSessionEnds: deleting a service principal ends its
// portal sessions at once, and removing its role takes effect on the next
// action without signing out.
func TestDeletedPrincipalSessionEnds(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	if _, err := ts.RM.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: ts.RM.SubscriptionID, Name: "rg1", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Batch.CreateAccount(ctx, &batch.Account{ID: rm.ResourceID(ts.RM.SubscriptionID, "rg1", "Microsoft.Batch", "batchAccounts", "sessacct"),
		SubscriptionID: ts.RM.SubscriptionID, ResourceGroup: "rg1", Name: "sessacct", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	p, secret, err := ts.Identity.CreateServicePrincipal(ctx, "leaver", 1)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := ts.RM.CreateRoleAssignment(ctx, "/subscriptions/"+ts.RM.SubscriptionID, "", rm.RoleDefinitionID(ts.RM.SubscriptionID, rm.RoleReader), p.ObjectID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, ts)
	b.signIn(p.AppID, secret)
	if status, page := b.get("/batch/sessacct"); status != http.StatusOK || !strings.Contains(page, "sessacct") {
		t.Fatalf("GET /batch/sessacct as Reader: status %d; page:\n%s", status, page)
	}

	// The role goes: the next page is refused, though the session lives.
	if err := ts.RM.Store.DeleteRoleAssignment(ctx, ra.ID); err != nil {
		t.Fatal(err)
	}
	if status, page := b.get("/batch/sessacct"); status != http.StatusForbidden || !strings.Contains(page, "Signed in as") {
		t.Fatalf("GET /batch/sessacct after the role was removed: status %d, want 403 while signed in; page:\n%s", status, page)
	}

	// The principal goes: the session ends.
	if err := ts.Identity.Store.DeletePrincipal(ctx, p.ObjectID); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/batch/sessacct"} {
		status, page := b.get(path)
		if strings.Contains(page, "Signed in as") || !strings.Contains(page, `action="/signin"`) {
			t.Fatalf("GET %s after the principal was deleted: status %d, want the sign-in form; page:\n%s", path, status, page)
		}
	}
	// Re-creating nothing brings it back: the old cookie stays dead.
	if _, page := b.get("/"); strings.Contains(page, "Signed in as") {
		t.Fatalf("the deleted principal's session came back")
	}
}
