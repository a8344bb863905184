package adversarial_test

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"

	"custody/portal"
)

// portalRow is the matrix's expectation for one portal page or action.
type portalRow struct {
	// public pages need no session.
	public bool
	// action at scope (an env.ids key) is the role the page or action
	// needs; empty means any signed-in principal.
	action, scope string
	// data marks key pages and actions, which also need the key vault's own
	// permission: only the Owner holds an access policy (and a Contributor
	// on the vault may grant itself one, as in Azure), so the others get a
	// refusal or a page without the key.
	data bool
	// refusable: a permitted caller may still be refused by a further rule.
	refusable bool
	form      url.Values
}

const deleteAccount = "Microsoft.Batch/batchAccounts/delete"

// portalRows has one row per portal route (portal.Portal.Routes).
var portalRows = map[string]portalRow{
	"GET /signin":       {public: true},
	"POST /signin":      {public: true},
	"GET /signin/link":  {public: true},
	"POST /signin/link": {public: true},
	"POST /signout":     {public: true},

	"GET /{$}":                        {},
	"GET /batch/create":               {},
	"POST /batch/create":              {action: writeAccount, scope: "rgA", form: url.Values{"go": {"create"}, "name": {"advacct2"}, "resourceGroup": {rgA}, "location": {location}, "identityType": {"None"}, "encryption": {"Microsoft.Batch"}}},
	"GET /batch/{account}":            {action: readAccount, scope: "account"},
	"POST /batch/{account}/delete":    {action: deleteAccount, scope: "account", form: url.Values{"confirm": {accountName}}},
	"GET /batch/{account}/encryption": {action: readAccount, scope: "account"},
	// Re-encrypting the data needs the action of its own; a second
	// request while one runs is refused (409) to a permitted caller too.
	"POST /batch/{account}/reencrypt":              {action: "Microsoft.Batch/batchAccounts/reencrypt/action", scope: "account", refusable: true},
	"GET /batch/{account}/reencryption":            {action: readAccount, scope: "account"},
	"POST /batch/{account}/encryption":             {action: writeAccount, scope: "account", form: url.Values{"action": {"save"}, "keySource": {"Microsoft.Batch"}}},
	"GET /batch/{account}/encryption/picker":       {action: readAccount, scope: "account"},
	"GET /batch/{account}/pools":                   {action: readAccount, scope: "account"},
	"GET /batch/{account}/jobs":                    {action: readAccount, scope: "account"},
	"GET /batch/{account}/jobs/{job}":              {action: readAccount, scope: "account"},
	"GET /batch/{account}/jobs/{job}/tasks/{task}": {action: readAccount, scope: "account"},

	"GET /deleted-vaults":                  {action: "Microsoft.KeyVault/deletedVaults/read", scope: "sub"},
	"POST /deleted-vaults/{vault}/recover": {action: "Microsoft.KeyVault/vaults/write", scope: "vault"},
	"POST /deleted-vaults/{vault}/purge":   {action: "Microsoft.KeyVault/locations/deletedVaults/purge/action", scope: "sub"},
	"GET /vaults/create":                   {},
	"POST /vaults/create":                  {action: "Microsoft.KeyVault/vaults/write", scope: "rgA", form: url.Values{"name": {"advkv2"}, "resourceGroup": {rgA}, "location": {location}, "retentionDays": {"7"}, "accessModel": {"policy"}}},
	"GET /vaults/{vault}":                  {action: readVault, scope: "vault"},
	"POST /vaults/{vault}/delete":          {action: "Microsoft.KeyVault/vaults/delete", scope: "vault", form: url.Values{"confirm": {vaultName}}},
	"GET /vaults/{vault}/access-policies":  {action: readVault, scope: "vault"},
	"POST /vaults/{vault}/access-policies": {action: "Microsoft.KeyVault/vaults/accessPolicies/write", scope: "vault", refusable: true,
		form: url.Values{"principal": {"{oid}"}, "keys": {"get", "list", "wrapKey", "unwrapKey"}}},
	"POST /vaults/{vault}/access-policies/remove": {action: "Microsoft.KeyVault/vaults/accessPolicies/write", scope: "vault", refusable: true,
		form: url.Values{"objectId": {"{oid}"}}},
	"GET /vaults/{vault}/keys":                        {action: readVault, scope: "vault", data: true},
	"GET /vaults/{vault}/generate-key":                {action: readVault, scope: "vault"},
	"POST /vaults/{vault}/generate-key":               {action: readVault, scope: "vault", data: true, form: url.Values{"name": {"advkey2"}, "kty": {"RSA"}, "size": {"2048"}}},
	"POST /vaults/{vault}/deleted-keys/{key}/recover": {action: readVault, scope: "vault", data: true},
	"GET /vaults/{vault}/keys/{key}":                  {action: readVault, scope: "vault", data: true},
	"POST /vaults/{vault}/keys/{key}/new-version":     {action: readVault, scope: "vault", data: true},
	"POST /vaults/{vault}/keys/{key}/delete":          {action: readVault, scope: "vault", data: true, form: url.Values{"confirm": {keyName}}},
	"GET /vaults/{vault}/keys/{key}/{version}":        {action: readVault, scope: "vault", data: true},
	"POST /vaults/{vault}/keys/{key}/{version}":       {action: readVault, scope: "vault", data: true, form: url.Values{"enabled": {"on"}}},
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// portalSession signs p in on a fresh cookie jar and returns the client
// and the session's CSRF token.
func (e *env) portalSession(p *principal) (*http.Client, string) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: e.ts.Client.Transport, Jar: jar, Timeout: e.ts.Client.Timeout}
	get := func(path string) string {
		resp, err := c.Get(e.ts.URL("portal") + path)
		if err != nil {
			e.t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := csrfRE.FindStringSubmatch(get("/signin"))
	if m == nil {
		e.t.Fatal("no sign-in form")
	}
	resp, err := c.PostForm(e.ts.URL("portal")+"/signin", url.Values{"csrf": {html.UnescapeString(m[1])}, "clientId": {p.appID}, "secret": {p.secret}, "next": {"/"}})
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m = csrfRE.FindStringSubmatch(string(b))
	if resp.StatusCode != http.StatusOK || m == nil {
		e.t.Fatalf("portal sign-in as %s: %d", p.name, resp.StatusCode)
	}
	return c, html.UnescapeString(m[1])
}

// TestAuthorizationMatrixPortal signs in as each principal and opens every
// page and sends every action of the portal, checked against its row as
// the API matrix checks routes.
func TestAuthorizationMatrixPortal(t *testing.T) {
	e := newEnv(t)
	pt, err := portal.New(portal.Config{})
	if err != nil {
		t.Fatal(err)
	}
	patterns := pt.Routes()
	seen := map[string]bool{}
	for _, pat := range patterns {
		seen[pat] = true
		if _, ok := portalRows[pat]; !ok {
			t.Errorf("portal route %s has no row in the authorization matrix (portalRows)", pat)
		}
	}
	for key := range portalRows {
		if !seen[key] {
			t.Errorf("matrix row %s matches no portal route", key)
		}
	}
	sort.SliceStable(patterns, func(i, j int) bool {
		return portalOrder(patterns[i]) < portalOrder(patterns[j])
	})
	type signedIn struct {
		c    *http.Client
		csrf string
	}
	sessions := map[*principal]signedIn{}
	for _, p := range e.ps {
		c, csrf := e.portalSession(p)
		sessions[p] = signedIn{c, csrf}
	}
	version := e.vals["version"]
	for _, pat := range patterns {
		row, ok := portalRows[pat]
		if !ok || row.public {
			continue
		}
		method, tmpl, _ := strings.Cut(pat, " ")
		path := fill(strings.TrimSuffix(tmpl, "{$}"), e.vals)
		if tmpl == "/{$}" {
			path = "/"
		}
		for _, p := range e.ps {
			s := sessions[p]
			var resp *http.Response
			var err error
			if method == http.MethodGet {
				resp, err = s.c.Get(e.ts.URL("portal") + path)
			} else {
				f := url.Values{"csrf": {s.csrf}}
				for k, vs := range row.form {
					for _, v := range vs {
						f.Add(k, strings.ReplaceAll(v, "{oid}", p.oid))
					}
				}
				resp, err = s.c.PostForm(e.ts.URL("portal")+path, f)
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := response{Status: resp.StatusCode, Body: string(b)}
			where := "portal " + pat + " as " + p.name
			allowed := row.action == "" || p.can(row.action, e.ids[row.scope], false)
			if row.data && p != e.owner {
				// The key vault refuses: a refusal, or a page without the key.
				if r.Status >= 500 {
					t.Errorf("%s: %d, a server error", where, r.Status)
				}
				if !p.can(writePolicies, e.ids["vault"], false) && r.Status/100 == 2 && strings.Contains(r.Body, version) {
					t.Errorf("%s: %d, shows the key to a caller without key permissions", where, r.Status)
				}
				if !allowed && r.Status != http.StatusForbidden && r.Status != http.StatusNotFound {
					t.Errorf("%s: %d, want 403 or 404 for a caller without the role", where, r.Status)
				}
				continue
			}
			if r.Status == http.StatusOK && strings.HasPrefix(strings.ToLower(r.Body), "<!doctype") && !strings.Contains(r.Body, "Signed in as") {
				t.Errorf("%s: the session was lost", where)
			}
			checkAnswer(t, where, r, allowed, row.refusable)
		}
	}
}

// portalOrder puts the portal's deletes and purges last.
func portalOrder(pattern string) int {
	switch {
	case strings.HasSuffix(pattern, "/purge"):
		return 3
	case strings.HasSuffix(pattern, "/delete") && strings.Contains(pattern, "{key}"):
		return 1
	case strings.HasSuffix(pattern, "/delete"):
		return 2
	}
	return 0
}
