package compat_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"custody"
	"custody/identity"
	"custody/rm"
	"custody/server/servertest"
)

func TestARMBadInput(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg1")
	rg := groupPath(ts, "rg1")
	v := "?api-version=" + rgAPIVersion
	mi := identityPath(ts, "rg1", "id1") + "?api-version=" + miAPIVersion
	sp := MustServicePrincipal(t, ts, "someone")

	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"MalformedJSON", "PUT", rg + v, `{"location":`, 400, "InvalidRequestContent"},
		{"NotAnObject", "PUT", rg + v, `[1,2]`, 400, "InvalidRequestContent"},
		{"WrongFieldType", "PUT", rg + v, `{"location":5}`, 400, "InvalidRequestContent"},
		{"TagsNotStrings", "PUT", rg + v, `{"location":"westus2","tags":{"a":1}}`, 400, "InvalidRequestContent"},
		{"TrailingGarbage", "PUT", rg + v, `{"location":"westus2"} x`, 400, "InvalidRequestContent"},
		{"EmptyBody", "PUT", groupPath(ts, "rg2") + v, ``, 400, "InvalidRequestContent"},
		{"NoLocation", "PUT", groupPath(ts, "rg2") + v, `{}`, 400, "LocationRequired"},
		{"BadGroupName", "PUT", groupPath(ts, "bad%20name") + v, `{"location":"westus2"}`, 400, "InvalidResourceGroupName"},
		{"IdentityMalformedJSON", "PUT", mi, `{"location"`, 400, "InvalidRequestContent"},
		{"IdentityBadName", "PUT", identityPath(ts, "rg1", "x") + "?api-version=" + miAPIVersion, `{"location":"westus2"}`, 400, "InvalidResourceName"},
		{"IdentityMissingGroup", "PUT", identityPath(ts, "nope", "id1") + "?api-version=" + miAPIVersion, `{"location":"westus2"}`, 404, "ResourceGroupNotFound"},
		{"RoleAssignmentNotGUID", "PUT", rg + "/providers/Microsoft.Authorization/roleAssignments/abc?api-version=" + raAPIVersion, `{}`, 400, "InvalidRoleAssignmentId"},
		{"RoleAssignmentUnknownPrincipal", "PUT", rg + "/providers/Microsoft.Authorization/roleAssignments/" + identity.NewID() + "?api-version=" + raAPIVersion,
			`{"properties":{"roleDefinitionId":"` + rm.RoleDefinitionID(ts.Admin.SubscriptionID, rm.RoleReader) + `","principalId":"` + identity.NewID() + `"}}`, 400, "PrincipalNotFound"},
		{"RoleAssignmentUnknownRole", "PUT", rg + "/providers/Microsoft.Authorization/roleAssignments/" + identity.NewID() + "?api-version=" + raAPIVersion,
			`{"properties":{"roleDefinitionId":"/x/` + identity.NewID() + `","principalId":"` + sp.ObjectID + `"}}`, 404, "RoleDefinitionDoesNotExist"},
		{"RoleAssignmentMissingFields", "PUT", rg + "/providers/Microsoft.Authorization/roleAssignments/" + identity.NewID() + "?api-version=" + raAPIVersion, `{"properties":{}}`, 400, "InvalidRequestContent"},
		{"MissingAPIVersion", "GET", rg, ``, 400, "MissingApiVersionParameter"},
		{"EmptyAPIVersion", "GET", rg + "?api-version=", ``, 400, "MissingApiVersionParameter"},
		{"UnknownAPIVersion", "GET", rg + "?api-version=1999-01-01", ``, 400, "InvalidApiVersionParameter"},
		{"IdentityAPIVersionOnGroup", "GET", rg + "?api-version=" + miAPIVersion, ``, 400, "InvalidApiVersionParameter"},
		{"UnknownNamespace", "GET", rg + "/providers/Microsoft.Nope/things/a" + v, ``, 404, "InvalidResourceNamespace"},
		{"UnknownType", "GET", rg + "/providers/Microsoft.ManagedIdentity/nopes/a?api-version=" + miAPIVersion, ``, 404, "InvalidResourceType"},
		{"UnknownSubscription", "GET", "/subscriptions/" + identity.NewID() + "/resourceGroups/rg1" + v, ``, 404, "SubscriptionNotFound"},
		{"UnknownPath", "GET", "/nothing/here" + v, ``, 404, ""},
		{"MethodNotAllowed", "POST", rg + v, `{}`, 405, "MethodNotAllowed"},
		{"MissingGroup", "GET", groupPath(ts, "nope") + v, ``, 404, "ResourceGroupNotFound"},
		{"MissingIdentity", "GET", identityPath(ts, "rg1", "nope") + "?api-version=" + miAPIVersion, ``, 404, "ResourceNotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantARMError(t, MustARM(t, ts, tok, tt.method, tt.path, tt.body), tt.status, tt.code)
		})
	}

	t.Run("WrongContentType", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(context.Background(), "PUT", ts.URL("management")+rg+v, strings.NewReader(`{"location":"westus2"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "text/plain")
		wantARMError(t, MustSend(t, ts, req), 400, "")
	})
	t.Run("TooLarge", func(t *testing.T) {
		body := `{"location":"westus2","tags":{"a":"` + strings.Repeat("x", 5<<20) + `"}}`
		wantARMError(t, MustARM(t, ts, tok, "PUT", rg+v, body), 413, "")
	})
	// None of the above changed rg1.
	r := MustARM(t, ts, tok, "GET", rg+v, "")
	wantStatus(t, r, 200)
	if strings.Contains(string(r.Body), `"tags"`) {
		t.Errorf("rg1 gained tags from a refused request: %s", r.Body)
	}
}

func TestUnknownHost(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	for _, host := range []string{"nope.localhost", "a.b.vault.localhost", "login.example.com", "management.localhost.evil"} {
		t.Run(host, func(t *testing.T) {
			req, err := http.NewRequestWithContext(context.Background(), "GET", ts.URL("management")+subPath(ts)+"/resourceGroups?api-version="+rgAPIVersion, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			req.Header.Set("Authorization", "Bearer "+tok)
			wantARMError(t, MustSend(t, ts, req), 404, "UnknownHost")
		})
	}
}

// TestARMPathsMatchCaseInsensitively uses Azure's literal segments in other
// casings, as ARM allows.
func TestARMPathsMatchCaseInsensitively(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	sub := ts.Admin.SubscriptionID
	r := MustARM(t, ts, tok, "PUT", "/subscriptions/"+sub+"/resourcegroups/rg1?api-version="+rgAPIVersion, `{"location":"westus2"}`)
	wantStatus(t, r, http.StatusCreated)
	for _, p := range []string{
		"/subscriptions/" + sub + "/resourcegroups/rg1",
		"/SUBSCRIPTIONS/" + strings.ToUpper(sub) + "/RESOURCEGROUPS/RG1",
		"/Subscriptions/" + sub + "/ResourceGroups/Rg1",
	} {
		wantStatus(t, MustARM(t, ts, tok, "GET", p+"?api-version="+rgAPIVersion, ""), http.StatusOK)
	}
	r = MustARM(t, ts, tok, "PUT", "/subscriptions/"+sub+"/resourcegroups/RG1/providers/microsoft.managedidentity/USERASSIGNEDIDENTITIES/id1?api-version="+miAPIVersion, `{"location":"westus2"}`)
	wantStatus(t, r, http.StatusCreated)
	r = MustARM(t, ts, tok, "GET", identityPath(ts, "rg1", "ID1")+"?api-version="+miAPIVersion, "")
	wantStatus(t, r, http.StatusOK)
	// The id in the body uses Azure's casing for literals and the group's
	// stored name.
	if want := "/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"; !strings.Contains(string(r.Body), want) {
		t.Errorf("identity id does not contain %s: %s", want, r.Body)
	}
	// Re-creating with another casing updates, not duplicates.
	r = MustARM(t, ts, tok, "PUT", groupPath(ts, "RG1")+"?api-version="+rgAPIVersion, `{"location":"WestUS2"}`)
	wantStatus(t, r, http.StatusOK)
	if got := names(t, MustARM(t, ts, tok, "GET", subPath(ts)+"/resourceGroups?api-version="+rgAPIVersion, "")); len(got) != 1 {
		t.Errorf("groups after re-create in other casing = %v, want one", got)
	}
}

func TestResourceGroupDelete(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg1")
	MustGroup(t, ts, tok, "rg10")
	p1 := MustIdentity(t, ts, tok, "rg1", "id1")
	p2 := MustIdentity(t, ts, tok, "rg1", "id2")
	keep := MustIdentity(t, ts, tok, "rg10", "id1")
	sp := MustServicePrincipal(t, ts, "reader")
	MustAssign(t, ts, tok, groupPath(ts, "rg1"), rm.RoleReader, sp.ObjectID)
	MustAssign(t, ts, tok, groupPath(ts, "rg10"), rm.RoleReader, sp.ObjectID)

	r := MustARM(t, ts, tok, "DELETE", subPath(ts)+"/resourcegroups/RG1?api-version="+rgAPIVersion, "")
	wantStatus(t, r, http.StatusAccepted)
	loc := r.Header.Get("Location")
	if loc == "" || r.Header.Get("Azure-AsyncOperation") == "" {
		t.Fatalf("202 without Location/Azure-AsyncOperation: %v", r.Header)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if u.Query().Get("api-version") == "" {
		t.Errorf("Location %s has no api-version", loc)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", loc, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if r := MustSend(t, ts, req); r.Status != http.StatusOK {
		t.Errorf("Location poll: %d %s, want 200", r.Status, r.Body)
	}
	req, _ = http.NewRequestWithContext(ctx, "GET", r.Header.Get("Azure-AsyncOperation"), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if r := MustSend(t, ts, req); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"status":"Succeeded"`) {
		t.Errorf("Azure-AsyncOperation poll: %d %s, want 200 Succeeded", r.Status, r.Body)
	}

	wantARMError(t, MustARM(t, ts, tok, "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), 404, "ResourceGroupNotFound")
	wantARMError(t, MustARM(t, ts, tok, "GET", identityPath(ts, "rg1", "id1")+"?api-version="+miAPIVersion, ""), 404, "")
	for _, p := range []string{p1, p2} {
		if _, err := ts.Identity.Store.Principal(ctx, p); !custody.IsNotFound(err) {
			t.Errorf("principal %s of a deleted identity: err = %v, want not found", p, err)
		}
	}
	if _, err := ts.Identity.Store.Principal(ctx, keep); err != nil {
		t.Errorf("principal of rg10/id1 (not deleted): %v", err)
	}
	wantStatus(t, MustARM(t, ts, tok, "GET", identityPath(ts, "rg10", "id1")+"?api-version="+miAPIVersion, ""), http.StatusOK)
	as, err := ts.RM.Store.RoleAssignmentsForPrincipal(ctx, sp.ObjectID)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || !strings.HasSuffix(strings.ToLower(as[0].Scope), "/rg10") {
		t.Errorf("assignments left for the reader = %d, want only the one on rg10", len(as))
	}
	// Deleting again: the group is not found, as ARM answers.
	wantARMError(t, MustARM(t, ts, tok, "DELETE", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), http.StatusNotFound, "ResourceGroupNotFound")
	// The name is free again, in any location.
	r = MustARM(t, ts, tok, "PUT", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, `{"location":"eastus"}`)
	wantStatus(t, r, http.StatusCreated)
}

func TestResourceGroupLocationConflict(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg1")
	r := MustARM(t, ts, tok, "PUT", groupPath(ts, "RG1")+"?api-version="+rgAPIVersion, `{"location":"eastus"}`)
	wantARMError(t, r, http.StatusConflict, "InvalidResourceGroupLocation")
	r = MustARM(t, ts, tok, "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, "")
	if !strings.Contains(string(r.Body), `"location":"westus2"`) {
		t.Errorf("group after refused re-create: %s, want location westus2", r.Body)
	}
	// The same location in another spelling is an update.
	r = MustARM(t, ts, tok, "PUT", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, `{"location":"West US 2","tags":{"k":"v"}}`)
	wantStatus(t, r, http.StatusOK)
}

// armFuzzTarget is one ARM operation the fuzzers send bodies to.
type armFuzzTarget struct{ method, path string }

func armFuzzTargets(ts *servertest.TestServer) []armFuzzTarget {
	ra := groupPath(ts, "rg1") + "/providers/Microsoft.Authorization/roleAssignments/3f2504e0-4f89-41d3-9a0c-0305e82c3301?api-version=" + raAPIVersion
	return []armFuzzTarget{
		{"PUT", groupPath(ts, "rg-fuzz") + "?api-version=" + rgAPIVersion},
		{"PUT", groupPath(ts, "rg1") + "?api-version=" + rgAPIVersion},
		{"PUT", identityPath(ts, "rg1", "id-fuzz") + "?api-version=" + miAPIVersion},
		{"PATCH", identityPath(ts, "rg1", "id1") + "?api-version=" + miAPIVersion},
		{"PUT", ra},
		{"POST", "/v1.0/servicePrincipals"},
	}
}

// FuzzARMBody sends arbitrary bodies to the resource manager's write
// operations; whatever the body, the answer is never a server error, and an
// error answer is in Azure's shape.
func FuzzARMBody(f *testing.F) {
	seeds := []string{
		`{"location":"westus2"}`, `{"location":"westus2","tags":{"a":"b"}}`, `{"location":"westus2","tags":null}`,
		`{"location":null}`, `{"location":""}`, `{"location":"\u0000"}`, `{"location":"westus2","tags":{"\u0000":"\u0000"}}`,
		`{"location":"` + strings.Repeat("a", 1000) + `"}`, `{"location":["westus2"]}`, `{"tags":{"a":{"b":1}}}`,
		`{"properties":{"roleDefinitionId":"/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7","principalId":"x"}}`,
		`{"properties":{"roleDefinitionId":"","principalId":""}}`, `{"properties":null}`, `{"properties":{"principalId":5}}`,
		`{"displayName":"sp"}`, `{"displayName":""}`, `{"displayName":"` + strings.Repeat("\u00e9", 300) + `"}`,
		``, `null`, `[]`, `{`, `}`, `"x"`, `1e999`, `{"location":"westus2"}{}`, "\xff\xfe", `{"location":"\ud800"}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	ts := servertest.New(f, nil)
	tok := adminToken(f, ts)
	graphTok := MustToken(f, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://graph.microsoft.com/.default")
	MustGroup(f, ts, tok, "rg1")
	MustIdentity(f, ts, tok, "rg1", "id1")
	targets := armFuzzTargets(ts)
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		target := targets[int(which)%len(targets)]
		host, token := "management", tok
		if strings.HasPrefix(target.path, "/v1.0/") {
			host, token = "graph", graphTok
		}
		req, err := http.NewRequestWithContext(context.Background(), target.method, ts.URL(host)+target.path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		r := MustSend(t, ts, req)
		if r.Status >= 500 {
			t.Fatalf("%s %s with body %q: %d %s", target.method, target.path, body, r.Status, r.Body)
		}
		if r.Status >= 400 {
			wantARMError(t, r, r.Status, "")
		}
		if !utf8.Valid(r.Body) {
			t.Errorf("response is not UTF-8: %q", r.Body)
		}
	})
}

// FuzzARMPath sends GET and PUT requests to arbitrary resource manager paths.
func FuzzARMPath(f *testing.F) {
	for _, s := range []string{
		"subscriptions", "subscriptions/{sub}", "subscriptions/{sub}/resourceGroups", "subscriptions/{sub}/resourcegroups/rg1",
		"subscriptions/{sub}/resourceGroups/rg1/providers", "subscriptions/{sub}/resourceGroups/rg1/providers/Microsoft.ManagedIdentity",
		"subscriptions/{sub}/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1/x/y",
		"subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments", "providers/Microsoft.Authorization/roleAssignments",
		"subscriptions/{sub}/resourceGroups/rg1/providers/Microsoft.Authorization/roleAssignments/x/providers/Microsoft.Authorization/roleAssignments",
		"subscriptions/{sub}/providers/Microsoft.Resources/operationResults/nope", "subscriptions/{sub}/providers/Microsoft.Resources/operationStatuses/%00",
		"subscriptions/%2F/resourceGroups/%2F%2F", "//", "subscriptions//resourceGroups//", "subscriptions/{sub}/resourceGroups/a%00b",
		"subscriptions/{sub}/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%E2%80%AE",
		"subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
	} {
		f.Add(false, s)
		f.Add(true, s)
	}
	ts := servertest.New(f, nil)
	tok := adminToken(f, ts)
	MustGroup(f, ts, tok, "rg1")
	MustIdentity(f, ts, tok, "rg1", "id1")
	f.Fuzz(func(t *testing.T, put bool, path string) {
		path = strings.ReplaceAll(path, "{sub}", ts.Admin.SubscriptionID)
		method, body := "GET", ""
		if put {
			method, body = "PUT", `{"location":"westus2"}`
		}
		u := ts.URL("management") + "/" + path
		if !strings.Contains(path, "?") {
			u += "?api-version=" + rgAPIVersion
		}
		req, err := http.NewRequestWithContext(context.Background(), method, u, strings.NewReader(body))
		if err != nil || req.URL.Host != strings.TrimPrefix(ts.URL("management"), "https://") {
			t.Skip("not a request to the server")
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		r := MustSend(t, ts, req)
		if r.Status >= 500 {
			t.Fatalf("%s %s: %d %s", method, u, r.Status, r.Body)
		}
		if r.Status >= 400 {
			wantARMError(t, r, r.Status, "")
		}
	})
}

// TestARMEncodedSeparators sends path segments that decode to separators or
// dot segments. Each is refused as a malformed path before any role check,
// so that the scope a role is checked at is always the resource the handler
// acts on: a Contributor on rg1 cannot reach rg2 through rg1%2F..%2Frg2.
func TestARMEncodedSeparators(t *testing.T) {
	ts := servertest.New(t, nil)
	admin := adminToken(t, ts)
	MustGroup(t, ts, admin, "rg1")
	MustGroup(t, ts, admin, "rg2")
	MustIdentity(t, ts, admin, "rg2", "id2")
	sp := MustServicePrincipal(t, ts, "contributor-rg1")
	MustAssign(t, ts, admin, groupPath(ts, "rg1"), rm.RoleContributor, sp.ObjectID)
	tok := MustToken(t, ts, sp.ClientID, sp.Secret, armScope)
	nobody := MustServicePrincipal(t, ts, "nobody")
	ntok := MustToken(t, ts, nobody.ClientID, nobody.Secret, armScope)
	v := "?api-version=" + rgAPIVersion
	mv := "?api-version=" + miAPIVersion
	sub := subPath(ts)

	for _, tt := range []struct{ name, method, path, body string }{
		{"SlashInGroup", "DELETE", sub + "/resourceGroups/rg1%2F..%2Frg2" + v, ""},
		{"LowerCaseEscape", "GET", sub + "/resourceGroups/rg1%2f..%2frg2" + v, ""},
		{"BackslashInGroup", "DELETE", sub + "/resourceGroups/rg1%5C..%5Crg2" + v, ""},
		{"SlashInName", "DELETE", sub + "/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x%2F..%2F..%2F..%2Frg2%2Fproviders%2FMicrosoft.ManagedIdentity%2FuserAssignedIdentities%2Fid2" + mv, ""},
		{"EncodedDotDot", "GET", sub + "/resourceGroups/rg1/%2E%2E/rg2" + v, ""},
		{"EncodedDot", "GET", sub + "/resourceGroups/%2E" + v, ""},
		{"DotDot", "GET", sub + "/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/.." + mv, ""},
		{"SlashInScope", "PUT", sub + "/resourceGroups/rg1%2F..%2Frg2/providers/Microsoft.Authorization/roleAssignments/" + identity.NewID() + "?api-version=" + raAPIVersion,
			`{"properties":{"roleDefinitionId":"` + rm.RoleDefinitionID(ts.Admin.SubscriptionID, rm.RoleReader) + `","principalId":"` + sp.ObjectID + `"}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, who := range []string{tok, ntok, admin} {
				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
				}
				// url.Parse keeps the escapes as written (URL.RawPath).
				req, err := http.NewRequestWithContext(context.Background(), tt.method, ts.URL("management")+tt.path, body)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+who)
				wantARMError(t, MustSend(t, ts, req), http.StatusBadRequest, "InvalidRequestUri")
			}
		})
	}
	// rg2 and its identity are untouched.
	wantStatus(t, MustARM(t, ts, admin, "GET", groupPath(ts, "rg2")+v, ""), http.StatusOK)
	wantStatus(t, MustARM(t, ts, admin, "GET", identityPath(ts, "rg2", "id2")+mv, ""), http.StatusOK)
	// Escapes that are not separators still work: a name with a space is
	// checked by the handler, as before.
	wantARMError(t, MustARM(t, ts, tok, "PUT", groupPath(ts, "rg1")+"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a%20b"+mv, `{"location":"westus2"}`), http.StatusBadRequest, "InvalidResourceName")
}
