package compat_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"custody/rm"
	"custody/server/servertest"
)

// names returns the sorted "name" fields of an ARM list body.
func names(tb testing.TB, r response) []string {
	tb.Helper()
	if r.Status != http.StatusOK {
		tb.Fatalf("list: %d %s", r.Status, r.Body)
	}
	var v struct {
		Value []struct {
			Name string `json:"name"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatalf("list body: %v: %s", err, r.Body)
	}
	out := []string{}
	for _, x := range v.Value {
		out = append(out, x.Name)
	}
	sort.Strings(out)
	return out
}

func TestNoRoleIsForbidden(t *testing.T) {
	ts := servertest.New(t, nil)
	admin := adminToken(t, ts)
	MustGroup(t, ts, admin, "rg1")
	MustIdentity(t, ts, admin, "rg1", "id1")
	sp := MustServicePrincipal(t, ts, "nobody")
	tok := MustToken(t, ts, sp.ClientID, sp.Secret, armScope)

	for _, tt := range []struct{ method, path, body string }{
		{"GET", groupPath(ts, "rg1") + "?api-version=" + rgAPIVersion, ""},
		{"PUT", groupPath(ts, "rg2") + "?api-version=" + rgAPIVersion, `{"location":"westus2"}`},
		{"DELETE", groupPath(ts, "rg1") + "?api-version=" + rgAPIVersion, ""},
		{"GET", identityPath(ts, "rg1", "id1") + "?api-version=" + miAPIVersion, ""},
		{"PUT", identityPath(ts, "rg1", "id2") + "?api-version=" + miAPIVersion, `{"location":"westus2"}`},
		{"PUT", groupPath(ts, "rg1") + "/providers/Microsoft.Authorization/roleAssignments/" + "0b9c8a4e-5f0e-4c36-9d25-0d3e3b1c5a11" + "?api-version=" + raAPIVersion,
			`{"properties":{"roleDefinitionId":"` + rm.RoleDefinitionID(ts.Admin.SubscriptionID, rm.RoleOwner) + `","principalId":"` + sp.ObjectID + `"}}`},
	} {
		r := MustARM(t, ts, tok, tt.method, tt.path, tt.body)
		wantARMError(t, r, http.StatusForbidden, "AuthorizationFailed")
		if !strings.Contains(string(r.Body), sp.ObjectID) {
			t.Errorf("%s %s: 403 message does not name the caller %s: %s", tt.method, tt.path, sp.ObjectID, r.Body)
		}
	}
	// Nothing changed: rg2 does not exist, rg1 and id1 do.
	wantARMError(t, MustARM(t, ts, admin, "GET", groupPath(ts, "rg2")+"?api-version="+rgAPIVersion, ""), http.StatusNotFound, "ResourceGroupNotFound")
	wantStatus(t, MustARM(t, ts, admin, "GET", identityPath(ts, "rg1", "id1")+"?api-version="+miAPIVersion, ""), http.StatusOK)
	// Listing is allowed but shows nothing the caller cannot read.
	if got := names(t, MustARM(t, ts, tok, "GET", subPath(ts)+"/resourceGroups?api-version="+rgAPIVersion, "")); len(got) != 0 {
		t.Errorf("groups listed for a principal without roles = %v, want none", got)
	}
}

func TestReaderAtGroup(t *testing.T) {
	ts := servertest.New(t, nil)
	admin := adminToken(t, ts)
	for _, rg := range []string{"rg1", "rg10", "rg2"} {
		MustGroup(t, ts, admin, rg)
		MustIdentity(t, ts, admin, rg, "id-"+rg)
	}
	sp := MustServicePrincipal(t, ts, "reader")
	assignment := MustAssign(t, ts, admin, groupPath(ts, "rg1"), rm.RoleReader, sp.ObjectID)
	tok := MustToken(t, ts, sp.ClientID, sp.Secret, armScope)

	// Reads inside rg1 work, also with other casing in the path.
	wantStatus(t, MustARM(t, ts, tok, "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), http.StatusOK)
	wantStatus(t, MustARM(t, ts, tok, "GET", subPath(ts)+"/resourcegroups/RG1?api-version="+rgAPIVersion, ""), http.StatusOK)
	wantStatus(t, MustARM(t, ts, tok, "GET", identityPath(ts, "rg1", "id-rg1")+"?api-version="+miAPIVersion, ""), http.StatusOK)
	if got, want := names(t, MustARM(t, ts, tok, "GET", groupPath(ts, "rg1")+"/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version="+miAPIVersion, "")), []string{"id-rg1"}; !cmp.Equal(got, want) {
		t.Errorf("identities listed in rg1 = %v, want %v", got, want)
	}
	// The subscription-wide lists show only what is in rg1 (not rg10, whose
	// id starts with rg1's).
	if got, want := names(t, MustARM(t, ts, tok, "GET", subPath(ts)+"/resourceGroups?api-version="+rgAPIVersion, "")), []string{"rg1"}; !cmp.Equal(got, want) {
		t.Errorf("groups listed = %v, want %v", got, want)
	}
	if got, want := names(t, MustARM(t, ts, tok, "GET", subPath(ts)+"/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version="+miAPIVersion, "")), []string{"id-rg1"}; !cmp.Equal(got, want) {
		t.Errorf("identities listed in the subscription = %v, want %v", got, want)
	}

	// Writes in rg1 and anything in other groups are forbidden.
	for _, tt := range []struct{ method, path, body string }{
		{"PUT", groupPath(ts, "rg1") + "?api-version=" + rgAPIVersion, `{"location":"westus2","tags":{"a":"b"}}`},
		{"DELETE", groupPath(ts, "rg1") + "?api-version=" + rgAPIVersion, ""},
		{"PUT", identityPath(ts, "rg1", "new") + "?api-version=" + miAPIVersion, `{"location":"westus2"}`},
		{"PATCH", identityPath(ts, "rg1", "id-rg1") + "?api-version=" + miAPIVersion, `{"tags":{"a":"b"}}`},
		{"DELETE", identityPath(ts, "rg1", "id-rg1") + "?api-version=" + miAPIVersion, ""},
		{"GET", groupPath(ts, "rg2") + "?api-version=" + rgAPIVersion, ""},
		{"GET", groupPath(ts, "rg10") + "?api-version=" + rgAPIVersion, ""},
		{"GET", identityPath(ts, "rg10", "id-rg10") + "?api-version=" + miAPIVersion, ""},
		{"PUT", groupPath(ts, "rg3") + "?api-version=" + rgAPIVersion, `{"location":"westus2"}`},
		{"PUT", groupPath(ts, "rg1") + "/providers/Microsoft.Authorization/roleAssignments/6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f?api-version=" + raAPIVersion,
			`{"properties":{"roleDefinitionId":"` + rm.RoleDefinitionID(ts.Admin.SubscriptionID, rm.RoleOwner) + `","principalId":"` + sp.ObjectID + `"}}`},
	} {
		t.Run(tt.method+" "+tt.path[len(subPath(ts)):], func(t *testing.T) {
			wantARMError(t, MustARM(t, ts, tok, tt.method, tt.path, tt.body), http.StatusForbidden, "AuthorizationFailed")
		})
	}

	// Removing the assignment removes the access.
	r := MustARM(t, ts, admin, "DELETE", groupPath(ts, "rg1")+"/providers/Microsoft.Authorization/roleAssignments/"+assignment+"?api-version="+raAPIVersion, "")
	wantStatus(t, r, http.StatusOK)
	wantARMError(t, MustARM(t, ts, tok, "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), http.StatusForbidden, "AuthorizationFailed")
}

func TestContributorAtSubscription(t *testing.T) {
	ts := servertest.New(t, nil)
	admin := adminToken(t, ts)
	sp := MustServicePrincipal(t, ts, "contributor")
	MustAssign(t, ts, admin, subPath(ts), rm.RoleContributor, sp.ObjectID)
	tok := MustToken(t, ts, sp.ClientID, sp.Secret, armScope)

	MustGroup(t, ts, tok, "rg1")
	MustGroup(t, ts, tok, "rg2")
	MustIdentity(t, ts, tok, "rg2", "id1")
	if got, want := names(t, MustARM(t, ts, tok, "GET", subPath(ts)+"/resourceGroups?api-version="+rgAPIVersion, "")), []string{"rg1", "rg2"}; !cmp.Equal(got, want) {
		t.Errorf("groups = %v, want %v", got, want)
	}
	// Contributor cannot grant roles.
	other := MustServicePrincipal(t, ts, "other")
	r := MustARM(t, ts, tok, "PUT", groupPath(ts, "rg1")+"/providers/Microsoft.Authorization/roleAssignments/1d6a7a8b-2c3d-4e5f-9a0b-1c2d3e4f5a6b?api-version="+raAPIVersion,
		`{"properties":{"roleDefinitionId":"`+rm.RoleDefinitionID(ts.Admin.SubscriptionID, rm.RoleReader)+`","principalId":"`+other.ObjectID+`"}}`)
	wantARMError(t, r, http.StatusForbidden, "AuthorizationFailed")
	// But it can read them.
	wantStatus(t, MustARM(t, ts, tok, "GET", subPath(ts)+"/providers/Microsoft.Authorization/roleAssignments?api-version="+raAPIVersion, ""), http.StatusOK)
}

// TestRoleAtResourceScope assigns roles on a user-assigned identity and
// checks they reach that identity only; the identity's own principal gets a
// role too and uses it with a managed identity token.
func TestRoleAtResourceScope(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	admin := adminToken(t, ts)
	MustGroup(t, ts, admin, "rg1")
	miPrincipal := MustIdentity(t, ts, admin, "rg1", "id1")
	MustIdentity(t, ts, admin, "rg1", "id10")
	MustIdentity(t, ts, admin, "rg1", "id2")
	id1 := identityPath(ts, "rg1", "id1")

	reader := MustServicePrincipal(t, ts, "reader")
	MustAssign(t, ts, admin, id1, rm.RoleReader, reader.ObjectID)
	owner := MustServicePrincipal(t, ts, "owner")
	MustAssign(t, ts, admin, id1, rm.RoleOwner, owner.ObjectID)
	rtok := MustToken(t, ts, reader.ClientID, reader.Secret, armScope)
	otok := MustToken(t, ts, owner.ClientID, owner.Secret, armScope)

	// The assignment is listed at the resource and, from above, at its group.
	if got := names(t, MustARM(t, ts, admin, "GET", id1+"/providers/Microsoft.Authorization/roleAssignments?api-version="+raAPIVersion+"&$filter=atScope()", "")); len(got) != 3 {
		// Owner of the subscription (inherited), reader and owner of id1.
		t.Errorf("assignments at id1 = %d (%v), want 3", len(got), got)
	}

	wantStatus(t, MustARM(t, ts, rtok, "GET", id1+"?api-version="+miAPIVersion, ""), http.StatusOK)
	wantStatus(t, MustARM(t, ts, rtok, "GET", strings.ToLower(id1)+"?api-version="+miAPIVersion, ""), http.StatusOK)
	wantARMError(t, MustARM(t, ts, rtok, "PATCH", id1+"?api-version="+miAPIVersion, `{"tags":{"a":"b"}}`), http.StatusForbidden, "AuthorizationFailed")
	for _, other := range []string{"id2", "id10"} {
		wantARMError(t, MustARM(t, ts, rtok, "GET", identityPath(ts, "rg1", other)+"?api-version="+miAPIVersion, ""), http.StatusForbidden, "AuthorizationFailed")
	}
	wantARMError(t, MustARM(t, ts, rtok, "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), http.StatusForbidden, "AuthorizationFailed")
	if got, want := names(t, MustARM(t, ts, rtok, "GET", groupPath(ts, "rg1")+"/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version="+miAPIVersion, "")), []string{"id1"}; !cmp.Equal(got, want) {
		t.Errorf("identities the reader lists in rg1 = %v, want %v", got, want)
	}

	wantStatus(t, MustARM(t, ts, otok, "PATCH", id1+"?api-version="+miAPIVersion, `{"tags":{"a":"b"}}`), http.StatusOK)
	wantARMError(t, MustARM(t, ts, otok, "PATCH", identityPath(ts, "rg1", "id2")+"?api-version="+miAPIVersion, `{"tags":{"a":"b"}}`), http.StatusForbidden, "AuthorizationFailed")
	wantARMError(t, MustARM(t, ts, otok, "PUT", identityPath(ts, "rg1", "id3")+"?api-version="+miAPIVersion, `{"location":"westus2"}`), http.StatusForbidden, "AuthorizationFailed")

	// A managed identity with Reader on the group reads it with its own token.
	mi, err := ts.Identity.ManagedIdentityToken(ctx, miPrincipal, "https://management.azure.com")
	if err != nil {
		t.Fatal(err)
	}
	wantARMError(t, MustARM(t, ts, mi.Raw, "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), http.StatusForbidden, "AuthorizationFailed")
	MustAssign(t, ts, admin, groupPath(ts, "rg1"), rm.RoleReader, miPrincipal)
	wantStatus(t, MustARM(t, ts, mi.Raw, "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), http.StatusOK)

	// The owner of id1 may delete it.
	wantStatus(t, MustARM(t, ts, otok, "DELETE", id1+"?api-version="+miAPIVersion, ""), http.StatusOK)
	wantARMError(t, MustARM(t, ts, admin, "GET", id1+"?api-version="+miAPIVersion, ""), http.StatusNotFound, "ResourceNotFound")
}

// TestRoleAssignmentPutCannotRewrite checks that a PUT on an existing role
// assignment id with another role or principal is refused, as Azure refuses
// it (RoleAssignmentUpdateNotPermitted), and that repeating the same PUT
// stays harmless.
func TestRoleAssignmentPutCannotRewrite(t *testing.T) {
	ts := servertest.New(t, nil)
	admin := adminToken(t, ts)
	MustGroup(t, ts, admin, "rg1")
	reader := MustServicePrincipal(t, ts, "reader")
	other := MustServicePrincipal(t, ts, "other")
	name := MustAssign(t, ts, admin, groupPath(ts, "rg1"), rm.RoleReader, reader.ObjectID)
	path := groupPath(ts, "rg1") + "/providers/Microsoft.Authorization/roleAssignments/" + name + "?api-version=" + raAPIVersion
	body := func(role, principal string) string {
		return `{"properties":{"roleDefinitionId":"` + rm.RoleDefinitionID(ts.Admin.SubscriptionID, role) + `","principalId":"` + principal + `"}}`
	}
	type assignment struct {
		Properties struct {
			RoleDefinitionID string `json:"roleDefinitionId"`
			PrincipalID      string `json:"principalId"`
			CreatedOn        string `json:"createdOn"`
		} `json:"properties"`
	}
	get := func() assignment {
		t.Helper()
		r := MustARM(t, ts, admin, "GET", path, "")
		wantStatus(t, r, http.StatusOK)
		var a assignment
		if err := json.Unmarshal(r.Body, &a); err != nil {
			t.Fatalf("role assignment body: %v: %s", err, r.Body)
		}
		return a
	}
	before := get()

	for _, tt := range []struct{ name, body string }{
		{"other role", body(rm.RoleOwner, reader.ObjectID)},
		{"other principal", body(rm.RoleReader, other.ObjectID)},
		{"both", body(rm.RoleOwner, other.ObjectID)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := MustARM(t, ts, admin, "PUT", path, tt.body)
			wantARMError(t, r, http.StatusConflict, "RoleAssignmentUpdateNotPermitted")
			if after := get(); after != before {
				t.Errorf("assignment changed by a refused PUT: %+v, was %+v", after, before)
			}
		})
	}
	// The reader did not become Owner.
	tok := MustToken(t, ts, reader.ClientID, reader.Secret, armScope)
	wantARMError(t, MustARM(t, ts, tok, "DELETE", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), http.StatusForbidden, "AuthorizationFailed")

	// The same PUT again is accepted and changes nothing.
	r := MustARM(t, ts, admin, "PUT", path, body(rm.RoleReader, reader.ObjectID))
	wantStatus(t, r, http.StatusOK, http.StatusCreated)
	if after := get(); after != before {
		t.Errorf("identical PUT changed the assignment: %+v, was %+v", after, before)
	}
}
