package adversarial_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	"custody/rm"
)

// armRow is the matrix's expectation for one resource manager route.
type armRow struct {
	// action is the RBAC action the route must require at scope; empty for
	// routes any signed-in caller may call.
	action string
	// scope names the fixture (env.ids) the action is checked at.
	scope string
	// body, with {oid} replaced by the caller's object id.
	body string
	// needs are further actions the caller must hold (at the fixture
	// named by the key) for the call to succeed, such as assigning the
	// identity a body names.
	needs map[string]string
	// hides lists, for a list route, the fixtures (env.ids keys) a caller
	// without their read action must not see, by read action.
	hides map[string]string
	// refusable marks writes a permitted caller may still be refused for
	// a rule beyond RBAC (403 allowed as well as the 2xx/4xx of a call).
	refusable bool
}

const (
	readRG        = "Microsoft.Resources/subscriptions/resourceGroups/read"
	readVault     = "Microsoft.KeyVault/vaults/read"
	readAccount   = "Microsoft.Batch/batchAccounts/read"
	readIdentity  = "Microsoft.ManagedIdentity/userAssignedIdentities/read"
	assignID      = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
	writePolicies = "Microsoft.KeyVault/vaults/accessPolicies/write"
)

// armRows has one row per route of httpapi.ARM.Routes, by "METHOD path".
var armRows = map[string]armRow{
	"GET /subscriptions":                                 {},
	"GET /subscriptions/{subscriptionId}":                {},
	"GET /subscriptions/{subscriptionId}/locations":      {},
	"GET /subscriptions/{subscriptionId}/resourceGroups": {hides: map[string]string{"rgA": readRG, "rgB": readRG}},
	"PUT /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}": {action: "Microsoft.Resources/subscriptions/resourceGroups/write", scope: "rgA",
		body: `{"location":"westus2"}`},
	"GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}":                            {action: readRG, scope: "rgA"},
	"HEAD /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}":                           {action: readRG, scope: "rgA"},
	"DELETE /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}":                         {action: "Microsoft.Resources/subscriptions/resourceGroups/delete", scope: "rgA"},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.Resources/operationResults/{operationId}":  {},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.Resources/operationStatuses/{operationId}": {},

	"GET {scope...}/providers/Microsoft.Authorization/roleAssignments": {action: "Microsoft.Authorization/roleAssignments/read", scope: "rgA"},
	// Every caller tries to make itself Owner of the group.
	"PUT {scope...}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}": {action: "Microsoft.Authorization/roleAssignments/write", scope: "rgA",
		body: `{"properties":{"roleDefinitionId":"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/` + rm.RoleOwner + `","principalId":"{oid}"}}`},
	"GET {scope...}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}":    {action: "Microsoft.Authorization/roleAssignments/read", scope: "rgA"},
	"DELETE {scope...}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}": {action: "Microsoft.Authorization/roleAssignments/delete", scope: "rgA"},
	"GET {scope...}/providers/Microsoft.Authorization/roleDefinitions":                         {},
	"GET {scope...}/providers/Microsoft.Authorization/roleDefinitions/{roleDefinitionId}":      {},

	"PUT /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}": {
		action: "Microsoft.ManagedIdentity/userAssignedIdentities/write", scope: "identity", body: `{"location":"westus2"}`},
	"PATCH /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}": {
		action: "Microsoft.ManagedIdentity/userAssignedIdentities/write", scope: "identity", body: `{"tags":{"t":"v"}}`},
	"GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}": {
		action: readIdentity, scope: "identity"},
	"DELETE /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}": {
		action: "Microsoft.ManagedIdentity/userAssignedIdentities/delete", scope: "identity"},
	"GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities": {
		hides: map[string]string{"identity": readIdentity}},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities": {hides: map[string]string{"identity": readIdentity}},

	// Attaching the user-assigned identity needs its assign action (item 1
	// of the security review).
	"PUT /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts/{accountName}": {
		action: "Microsoft.Batch/batchAccounts/write", scope: "account", needs: map[string]string{"identity": assignID}, refusable: true,
		body: `{"location":"westus2","identity":{"type":"UserAssigned","userAssignedIdentities":{"{identity}":{}}}}`},
	"PATCH /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts/{accountName}": {
		action: "Microsoft.Batch/batchAccounts/write", scope: "account", needs: map[string]string{"identity": assignID}, refusable: true,
		body: `{"identity":{"type":"UserAssigned","userAssignedIdentities":{"{identity}":{}}}}`},
	"GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts/{accountName}": {
		action: readAccount, scope: "account"},
	"DELETE /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts/{accountName}": {
		action: "Microsoft.Batch/batchAccounts/delete", scope: "account"},
	// The shared keys are data-plane credentials: Reader may not read them.
	"POST /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts/{accountName}/listKeys": {
		action: "Microsoft.Batch/batchAccounts/listkeys/action", scope: "account"},
	"POST /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts/{accountName}/regenerateKeys": {
		action: "Microsoft.Batch/batchAccounts/regeneratekeys/action", scope: "account", body: `{"keyName":"Secondary"}`},
	// Re-encrypting the account's data under a new data key is an action
	// of its own (Contributor and Owner have it, Reader does not).
	"POST /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts/{accountName}/reencrypt": {
		action: "Microsoft.Batch/batchAccounts/reencrypt/action", scope: "account"},
	"GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts": {
		hides: map[string]string{"account": readAccount}},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.Batch/batchAccounts":                                           {hides: map[string]string{"account": readAccount}},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.Batch/locations/{locationName}/operationResults/{operationId}": {},

	// Every caller tries to give itself every key permission.
	"PUT /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}": {
		action: "Microsoft.KeyVault/vaults/write", scope: "vault", refusable: true,
		body: `{"location":"westus2","properties":{"tenantId":"{tenant}","sku":{"family":"A","name":"standard"},"accessPolicies":[{"tenantId":"{tenant}","objectId":"{oid}","permissions":{"keys":["all"]}}]}}`},
	"PATCH /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}": {
		action: "Microsoft.KeyVault/vaults/write", scope: "vault", refusable: true,
		body: `{"properties":{"accessPolicies":[{"tenantId":"{tenant}","objectId":"{oid}","permissions":{"keys":["all"]}}]}}`},
	"GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}": {
		action: readVault, scope: "vault"},
	"DELETE /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}": {
		action: "Microsoft.KeyVault/vaults/delete", scope: "vault"},
	"PUT /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults/{vaultName}/accessPolicies/{operationKind}": {
		action: "Microsoft.KeyVault/vaults/accessPolicies/write", scope: "vault", refusable: true,
		body: `{"properties":{"accessPolicies":[{"tenantId":"{tenant}","objectId":"{oid}","permissions":{"keys":["all"]}}]}}`},
	"GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/vaults": {action: readVault, scope: "rgA"},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/vaults":                                    {hides: map[string]string{"vault": readVault}},
	"GET /subscriptions/{subscriptionId}/resources":                                                              {hides: map[string]string{"vault": readVault}},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{vaultName}": {
		action: "Microsoft.KeyVault/deletedVaults/read", scope: "sub"},
	"POST /subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{vaultName}/purge": {
		action: "Microsoft.KeyVault/locations/deletedVaults/purge/action", scope: "sub"},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/deletedVaults": {action: "Microsoft.KeyVault/deletedVaults/read", scope: "sub"},
	"POST /subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/checkNameAvailability": {action: "Microsoft.KeyVault/checkNameAvailability/read", scope: "sub",
		body: `{"name":"advkv2","type":"Microsoft.KeyVault/vaults"}`},
	// Managed HSMs are not served: empty lists.
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/managedHSMs": {},
	"GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.KeyVault/managedHSMs": {
		action: "Microsoft.KeyVault/managedHSMs/read", scope: "rgA"},
	"GET /subscriptions/{subscriptionId}/providers/Microsoft.KeyVault/deletedManagedHSMs": {},
}

// bodyFor fills a row body's placeholders for caller p.
func (e *env) bodyFor(body string, p *principal) string {
	return strings.NewReplacer("{oid}", p.oid, "{tenant}", e.ts.Admin.TenantID, "{sub}", e.ts.Admin.SubscriptionID,
		"{identity}", e.ids["identity"]).Replace(body)
}

// order puts deletes last, deepest paths first, so that the rows before
// them find the fixtures in place.
func order(method, path string) int {
	if method != http.MethodDelete {
		return 0
	}
	return 1000 - strings.Count(path, "/")
}

// TestAuthorizationMatrixARM calls every resource manager route as each
// principal of the matrix and checks the answer against the route's row:
// a caller without the action gets 403 or 404 and nothing else, a caller
// with it is served (never 401/403 unless the row allows a further rule,
// never a 5xx), and lists hide what the caller may not read.
func TestAuthorizationMatrixARM(t *testing.T) {
	e := newEnv(t)
	routes := e.ts.HTTP.ARM().Routes()
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		seen[key] = true
		row, ok := armRows[key]
		if !ok {
			t.Errorf("route %s has no row in the authorization matrix (armRows): add one with the action it must require", key)
			continue
		}
		if rt.Action != row.action {
			t.Errorf("route %s requires action %q, the matrix says %q", key, rt.Action, row.action)
		}
	}
	for key := range armRows {
		if !seen[key] {
			t.Errorf("matrix row %s matches no registered route", key)
		}
	}
	sort.SliceStable(routes, func(i, j int) bool {
		return order(routes[i].Method, routes[i].Path) < order(routes[j].Method, routes[j].Path)
	})
	checked := false
	for _, rt := range routes {
		row, ok := armRows[rt.Method+" "+rt.Path]
		if !ok {
			continue
		}
		if rt.Method == http.MethodDelete && !checked {
			e.checkNoKeyAccess()
			checked = true
		}
		vals := map[string]string{}
		for k, v := range e.vals {
			vals[k] = v
		}
		vals["scope"] = e.ids["rgA"]
		version := rt.APIVersions[len(rt.APIVersions)-1]
		if version == "*" {
			version = "2024-01-01"
		}
		path := fill(rt.Path, vals) + "?api-version=" + version
		for _, p := range e.ps {
			r := call(t, e.ts, p.tokens[scopeARM], rt.Method, "management", path, e.bodyFor(row.body, p))
			where := rt.Method + " " + rt.Path + " as " + p.name
			allowed := row.action == "" || p.can(row.action, e.ids[row.scope], false)
			checkAnswer(t, where, r, allowed, row.refusable)
			if !allowed {
				continue
			}
			for fixture, action := range row.needs {
				if !p.can(action, e.ids[fixture], false) && r.Status/100 == 2 {
					t.Errorf("%s: %d, want a refusal: the caller lacks %s on %s; body %s", where, r.Status, action, fixture, clip(r.Body, 300))
				}
			}
			for fixture, action := range row.hides {
				name := e.ids[fixture][strings.LastIndexByte(e.ids[fixture], '/')+1:]
				if r.Status == http.StatusOK && !p.can(action, e.ids[fixture], false) && strings.Contains(r.Body, `"`+name+`"`) {
					t.Errorf("%s lists %s, which the caller may not read", where, name)
				}
			}
		}
	}
}

// checkNoKeyAccess checks that no principal can reach the vault's keys
// unless it is the Owner (in the vault's access policy) or may write the
// access policies of this access-policy vault (which, as in Azure, lets a
// Contributor on the vault grant itself access): no write of the matrix
// gave any other caller key access.
func (e *env) checkNoKeyAccess() {
	e.t.Helper()
	for _, p := range e.ps {
		if p == e.owner || p.can(writePolicies, e.ids["vault"], false) {
			continue
		}
		if r := call(e.t, e.ts, p.tokens[scopeVault], "GET", vaultName+".vault", "/keys?api-version=7.4", ""); r.Status/100 == 2 {
			e.t.Errorf("after the matrix's writes, %s can list the vault's keys: %d", p.name, r.Status)
		}
	}
}

// checkAnswer checks one answer of the matrix.
func checkAnswer(t *testing.T, where string, r response, allowed, refusable bool) {
	t.Helper()
	switch {
	case r.Status >= 500:
		t.Errorf("%s: %d, a server error: %s", where, r.Status, clip(r.Body, 300))
	case r.Status == http.StatusUnauthorized:
		t.Errorf("%s: 401 with a valid token: %s", where, clip(r.Body, 300))
	case !allowed && r.Status != http.StatusForbidden && r.Status != http.StatusNotFound:
		t.Errorf("%s: %d, want 403 or 404 for a caller without the role: %s", where, r.Status, clip(r.Body, 300))
	case allowed && r.Status == http.StatusForbidden && !refusable:
		t.Errorf("%s: 403 for a caller with the role: %s", where, clip(r.Body, 300))
	}
}
