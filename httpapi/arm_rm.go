package httpapi

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"custody"
	"custody/rm"
)

func registerRM(a *ARM) {
	a.Handle(ARMRoute{Method: "GET", Path: "/subscriptions", APIVersions: resourcesAPIVersions, Handler: a.listSubscriptions})
	a.Handle(ARMRoute{Method: "GET", Path: "/subscriptions/{subscriptionId}", APIVersions: resourcesAPIVersions, Handler: a.getSubscription})
	a.Handle(ARMRoute{Method: "GET", Path: "/subscriptions/{subscriptionId}/locations", APIVersions: resourcesAPIVersions, Handler: a.listLocations})

	const rgs = "/subscriptions/{subscriptionId}/resourceGroups"
	// Lists check each item (listGroups), so that a role on one group lets
	// the caller list that group.
	a.Handle(ARMRoute{Method: "GET", Path: rgs, APIVersions: resourcesAPIVersions, Handler: a.listGroups})
	a.Handle(ARMRoute{Method: "PUT", Path: rgs + "/{resourceGroupName}", APIVersions: resourcesAPIVersions, Action: "Microsoft.Resources/subscriptions/resourceGroups/write", Handler: a.putGroup})
	a.Handle(ARMRoute{Method: "GET", Path: rgs + "/{resourceGroupName}", APIVersions: resourcesAPIVersions, Action: "Microsoft.Resources/subscriptions/resourceGroups/read", Handler: a.getGroup})
	a.Handle(ARMRoute{Method: "HEAD", Path: rgs + "/{resourceGroupName}", APIVersions: resourcesAPIVersions, Action: "Microsoft.Resources/subscriptions/resourceGroups/read", Handler: a.headGroup})
	a.Handle(ARMRoute{Method: "DELETE", Path: rgs + "/{resourceGroupName}", APIVersions: resourcesAPIVersions, Action: "Microsoft.Resources/subscriptions/resourceGroups/delete", Handler: a.deleteGroup})

	const ops = "/subscriptions/{subscriptionId}/providers/Microsoft.Resources/operationResults/{operationId}"
	a.Handle(ARMRoute{Method: "GET", Path: ops, APIVersions: allVersions(), Handler: a.operationResult})
	a.Handle(ARMRoute{Method: "GET", Path: "/subscriptions/{subscriptionId}/providers/Microsoft.Resources/operationStatuses/{operationId}", APIVersions: allVersions(), Handler: a.operationStatus})

	const ra = "{scope...}/providers/Microsoft.Authorization/roleAssignments"
	a.Handle(ARMRoute{Method: "GET", Path: ra, APIVersions: authorizationAPIVersions, Action: "Microsoft.Authorization/roleAssignments/read", Handler: a.listRoleAssignments})
	a.Handle(ARMRoute{Method: "PUT", Path: ra + "/{roleAssignmentName}", APIVersions: authorizationAPIVersions, Action: "Microsoft.Authorization/roleAssignments/write", Handler: a.putRoleAssignment})
	a.Handle(ARMRoute{Method: "GET", Path: ra + "/{roleAssignmentName}", APIVersions: authorizationAPIVersions, Action: "Microsoft.Authorization/roleAssignments/read", Handler: a.getRoleAssignment})
	a.Handle(ARMRoute{Method: "DELETE", Path: ra + "/{roleAssignmentName}", APIVersions: authorizationAPIVersions, Action: "Microsoft.Authorization/roleAssignments/delete", Handler: a.deleteRoleAssignment})
	const rd = "{scope...}/providers/Microsoft.Authorization/roleDefinitions"
	a.Handle(ARMRoute{Method: "GET", Path: rd, APIVersions: authorizationAPIVersions, Handler: a.listRoleDefinitions})
	a.Handle(ARMRoute{Method: "GET", Path: rd + "/{roleDefinitionId}", APIVersions: authorizationAPIVersions, Handler: a.getRoleDefinition})
}

// allVersions accepts any api-version, for operation-status URLs that
// callers fetch with whatever version their client uses.
func allVersions() []string { return []string{"*"} }

func (a *ARM) subscriptionBody() map[string]any {
	sub := a.s.cfg.RM.SubscriptionID
	return map[string]any{
		"id": rm.SubscriptionID(sub), "subscriptionId": sub, "tenantId": a.s.cfg.RM.TenantID,
		"displayName": "Custody", "state": "Enabled",
		"subscriptionPolicies": map[string]any{"locationPlacementId": "Public_2014-09-01", "quotaId": "Custody", "spendingLimit": "Off"},
		"authorizationSource":  "RoleBased",
	}
}

func (a *ARM) listSubscriptions(w http.ResponseWriter, r *ARMRequest) error {
	writeJSON(w, http.StatusOK, listBody[any]{Value: []any{a.subscriptionBody()}})
	return nil
}

func (a *ARM) getSubscription(w http.ResponseWriter, r *ARMRequest) error {
	writeJSON(w, http.StatusOK, a.subscriptionBody())
	return nil
}

// listLocations lists the regions, as `az account list-locations` and az's
// display-name-to-region lookups read them.
func (a *ARM) listLocations(w http.ResponseWriter, r *ARMRequest) error {
	sub := rm.SubscriptionID(r.Param("subscriptionId"))
	out := []map[string]any{}
	for _, reg := range custody.Regions() {
		out = append(out, map[string]any{
			"id": sub + "/locations/" + reg.Name, "subscriptionId": r.Param("subscriptionId"), "type": "Region", "name": reg.Name,
			"displayName": reg.DisplayName, "regionalDisplayName": reg.DisplayName,
			"metadata": map[string]any{"regionType": "Physical"},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

type groupBody struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	ManagedBy  string            `json:"managedBy,omitempty"`
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func toGroupBody(g *rm.ResourceGroup) groupBody {
	b := groupBody{ID: g.ID, Name: g.Name, Type: "Microsoft.Resources/resourceGroups", Location: g.Location, Tags: g.Tags}
	b.Properties.ProvisioningState = "Succeeded"
	return b
}

func (a *ARM) listGroups(w http.ResponseWriter, r *ARMRequest) error {
	gs, err := a.s.cfg.RM.Store.ListResourceGroups(r.Context(), a.s.cfg.RM.SubscriptionID)
	if err != nil {
		return err
	}
	out := []groupBody{}
	for _, g := range gs {
		// A caller sees the groups it can read.
		if ok, err := a.s.cfg.RM.HasRoleAt(r.Context(), r.Caller.ObjectID, g.ID, "Microsoft.Resources/subscriptions/resourceGroups/read", false); err != nil {
			return err
		} else if ok {
			out = append(out, toGroupBody(g))
		}
	}
	writeJSON(w, http.StatusOK, listBody[groupBody]{Value: out})
	return nil
}

func (a *ARM) putGroup(w http.ResponseWriter, r *ARMRequest) error {
	var body struct {
		Location  string            `json:"location"`
		Tags      map[string]string `json:"tags"`
		ManagedBy string            `json:"managedBy"`
	}
	if err := decodeJSON(r.Request, &body); err != nil {
		return err
	}
	g := &rm.ResourceGroup{SubscriptionID: r.Param("subscriptionId"), Name: r.Param("resourceGroupName"), Location: body.Location, Tags: body.Tags}
	created, err := a.s.cfg.RM.PutResourceGroup(r.Context(), g)
	if err != nil {
		return err
	}
	got, err := a.s.cfg.RM.ResourceGroup(r.Context(), g.SubscriptionID, g.Name)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, toGroupBody(got))
	return nil
}

func (a *ARM) getGroup(w http.ResponseWriter, r *ARMRequest) error {
	g, err := a.s.cfg.RM.ResourceGroup(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toGroupBody(g))
	return nil
}

func (a *ARM) headGroup(w http.ResponseWriter, r *ARMRequest) error {
	_, err := a.s.cfg.RM.ResourceGroup(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"))
	if custody.IsNotFound(err) {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteGroup deletes a group and everything in it. The work is done before
// answering, but the answer follows ARM's long-running delete: 202 with a
// Location to poll, which then reports the outcome.
func (a *ARM) deleteGroup(w http.ResponseWriter, r *ARMRequest) error {
	sub, name := r.Param("subscriptionId"), r.Param("resourceGroupName")
	// A group that is not there is ResourceGroupNotFound, as ARM answers
	// (unlike resources inside a group, whose delete is idempotent).
	g, err := a.s.cfg.RM.ResourceGroup(r.Context(), sub, name)
	if err != nil {
		return err
	}
	op, err := a.s.cfg.RM.BeginOperation(r.Context(), g.ID, "delete")
	if err != nil {
		return err
	}
	derr := a.s.cfg.RM.DeleteResourceGroup(r.Context(), sub, name)
	if err := a.s.cfg.RM.FinishOperation(context.WithoutCancel(r.Context()), op, derr); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	a.AcceptedOperation(w, op.ID, r.APIVersion, 0)
	return nil
}

// AcceptedOperation answers 202 Accepted with Location and
// Azure-AsyncOperation headers for the operation id, and a Retry-After.
func (a *ARM) AcceptedOperation(w http.ResponseWriter, opID, apiVersion string, retryAfterSeconds int) {
	base := a.s.PublicURL("management") + "/subscriptions/" + a.s.cfg.RM.SubscriptionID + "/providers/Microsoft.Resources/"
	w.Header().Set("Location", base+"operationResults/"+opID+"?api-version="+apiVersion)
	w.Header().Set("Azure-AsyncOperation", base+"operationStatuses/"+opID+"?api-version="+apiVersion)
	w.Header().Set("Retry-After", itoa(retryAfterSeconds))
	w.WriteHeader(http.StatusAccepted)
}

// operationResult is the Location poller's URL: 202 while running, 200 when
// done (ARM's pollers read any 2xx other than 202 as success), or the error.
func (a *ARM) operationResult(w http.ResponseWriter, r *ARMRequest) error {
	op, err := a.s.cfg.RM.Store.Operation(r.Context(), r.Param("operationId"))
	if err != nil {
		return err
	}
	switch op.Status {
	case rm.OpInProgress:
		w.Header().Set("Location", r.URL.String())
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusAccepted)
		return nil
	case rm.OpFailed:
		return custody.Errorf(custody.KindConflict, op.ErrorCode, "%s", op.ErrorMsg)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// operationStatus is the Azure-AsyncOperation poller's URL.
func (a *ARM) operationStatus(w http.ResponseWriter, r *ARMRequest) error {
	op, err := a.s.cfg.RM.Store.Operation(r.Context(), r.Param("operationId"))
	if err != nil {
		return err
	}
	body := map[string]any{"id": r.URL.Path, "name": op.ID, "status": op.Status,
		"startTime": op.CreatedAt.Format("2006-01-02T15:04:05.0000000Z")}
	if op.Status != rm.OpInProgress {
		body["endTime"] = op.UpdatedAt.Format("2006-01-02T15:04:05.0000000Z")
	}
	if op.Status == rm.OpFailed {
		body["error"] = map[string]string{"code": op.ErrorCode, "message": op.ErrorMsg}
	}
	if op.Status == rm.OpInProgress {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

type roleAssignmentBody struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		RoleDefinitionID string `json:"roleDefinitionId"`
		PrincipalID      string `json:"principalId"`
		PrincipalType    string `json:"principalType,omitempty"`
		Scope            string `json:"scope"`
		CreatedOn        string `json:"createdOn,omitempty"`
		UpdatedOn        string `json:"updatedOn,omitempty"`
		CreatedBy        string `json:"createdBy,omitempty"`
		Description      string `json:"description,omitempty"`
	} `json:"properties"`
}

func toRABody(x *rm.RoleAssignment) roleAssignmentBody {
	b := roleAssignmentBody{ID: x.ID, Name: x.Name, Type: "Microsoft.Authorization/roleAssignments"}
	b.Properties.RoleDefinitionID, b.Properties.PrincipalID, b.Properties.PrincipalType = x.RoleDefinitionID, x.PrincipalID, x.PrincipalType
	b.Properties.Scope, b.Properties.CreatedBy = x.Scope, x.CreatedBy
	b.Properties.CreatedOn = x.CreatedAt.Format("2006-01-02T15:04:05.0000000Z")
	b.Properties.UpdatedOn = b.Properties.CreatedOn
	return b
}

var guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (a *ARM) putRoleAssignment(w http.ResponseWriter, r *ARMRequest) error {
	name := r.Param("roleAssignmentName")
	if !guidRe.MatchString(name) {
		return custody.Errorf(custody.KindInvalid, "InvalidRoleAssignmentId", "The role assignment ID '%s' is not valid. The role assignment ID must be a GUID.", name)
	}
	var body struct {
		Properties struct {
			RoleDefinitionID string `json:"roleDefinitionId"`
			PrincipalID      string `json:"principalId"`
			PrincipalType    string `json:"principalType"`
		} `json:"properties"`
	}
	if err := decodeJSON(r.Request, &body); err != nil {
		return err
	}
	if body.Properties.RoleDefinitionID == "" || body.Properties.PrincipalID == "" {
		return custody.Errorf(custody.KindInvalid, "InvalidRequestContent", "properties.roleDefinitionId and properties.principalId are required.")
	}
	if _, err := a.s.cfg.Identity.Store.Principal(r.Context(), body.Properties.PrincipalID); custody.IsNotFound(err) {
		return custody.Errorf(custody.KindInvalid, "PrincipalNotFound",
			"Principal %s does not exist in the directory %s. Check the object (principal) id; for a managed identity use its principalId.", body.Properties.PrincipalID, a.s.cfg.Identity.TenantID)
	} else if err != nil {
		return err
	}
	x, err := a.s.cfg.RM.CreateRoleAssignment(r.Context(), r.Param("scope"), name, body.Properties.RoleDefinitionID, body.Properties.PrincipalID, body.Properties.PrincipalType, r.Caller.ObjectID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, toRABody(x))
	return nil
}

func (a *ARM) raID(r *ARMRequest) string {
	return strings.TrimRight(r.Param("scope"), "/") + "/providers/Microsoft.Authorization/roleAssignments/" + r.Param("roleAssignmentName")
}

func (a *ARM) getRoleAssignment(w http.ResponseWriter, r *ARMRequest) error {
	x, err := a.s.cfg.RM.Store.RoleAssignment(r.Context(), a.raID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toRABody(x))
	return nil
}

func (a *ARM) deleteRoleAssignment(w http.ResponseWriter, r *ARMRequest) error {
	x, err := a.s.cfg.RM.Store.RoleAssignment(r.Context(), a.raID(r))
	if custody.IsNotFound(err) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return err
	}
	if err := a.s.cfg.RM.Store.DeleteRoleAssignment(r.Context(), x.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toRABody(x))
	return nil
}

var principalFilter = regexp.MustCompile(`(?i)^\s*(?:principalId\s+eq\s+'([^']+)'|assignedTo\('([^']+)'\))\s*$`)

// listRoleAssignments lists the assignments at the scope, above it (they
// apply to it) and below it, as ARM does; $filter=atScope() keeps those at or
// above, and principalId eq '{id}' / assignedTo('{id}') select one principal.
func (a *ARM) listRoleAssignments(w http.ResponseWriter, r *ARMRequest) error {
	scope := r.Param("scope")
	filter := r.URL.Query().Get("$filter")
	atScope := false
	principal := ""
	for _, part := range splitAnd(filter) {
		switch {
		case strings.EqualFold(strings.TrimSpace(part), "atScope()"):
			atScope = true
		case principalFilter.MatchString(part):
			m := principalFilter.FindStringSubmatch(part)
			principal = m[1] + m[2]
		case strings.TrimSpace(part) != "":
			return custody.Errorf(custody.KindInvalid, "UnsupportedQuery", "The $filter '%s' is not supported; use atScope(), principalId eq '{id}' or assignedTo('{id}').", part)
		}
	}
	all, err := a.s.cfg.RM.Store.ListRoleAssignments(r.Context(), "/subscriptions/"+a.s.cfg.RM.SubscriptionID)
	if err != nil {
		return err
	}
	out := []roleAssignmentBody{}
	for _, x := range all {
		above := rm.Within(scope, x.Scope)
		below := rm.Within(x.Scope, scope)
		if !above && (atScope || !below) {
			continue
		}
		if principal != "" && !strings.EqualFold(x.PrincipalID, principal) {
			continue
		}
		out = append(out, toRABody(x))
	}
	writeJSON(w, http.StatusOK, listBody[roleAssignmentBody]{Value: out})
	return nil
}

func splitAnd(f string) []string {
	if strings.TrimSpace(f) == "" {
		return nil
	}
	return regexp.MustCompile(`(?i)\s+and\s+`).Split(f, -1)
}

type roleDefinitionBody struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		RoleName    string   `json:"roleName"`
		Type        string   `json:"type"`
		Description string   `json:"description"`
		Scopes      []string `json:"assignableScopes"`
		Permissions []struct {
			Actions        []string `json:"actions"`
			NotActions     []string `json:"notActions"`
			DataActions    []string `json:"dataActions"`
			NotDataActions []string `json:"notDataActions"`
		} `json:"permissions"`
	} `json:"properties"`
}

func (a *ARM) roleDefBody(d *rm.RoleDefinition) roleDefinitionBody {
	b := roleDefinitionBody{ID: rm.RoleDefinitionID(a.s.cfg.RM.SubscriptionID, d.GUID), Name: d.GUID, Type: "Microsoft.Authorization/roleDefinitions"}
	b.Properties.RoleName, b.Properties.Type, b.Properties.Description, b.Properties.Scopes = d.Name, "BuiltInRole", d.Description, []string{"/"}
	b.Properties.Permissions = make([]struct {
		Actions        []string `json:"actions"`
		NotActions     []string `json:"notActions"`
		DataActions    []string `json:"dataActions"`
		NotDataActions []string `json:"notDataActions"`
	}, 1)
	p := &b.Properties.Permissions[0]
	p.Actions, p.NotActions, p.DataActions, p.NotDataActions = nonNil(d.Actions), nonNil(d.NotActions), nonNil(d.DataActions), nonNil(d.NotDataActions)
	return b
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

var roleNameFilter = regexp.MustCompile(`(?i)^\s*roleName\s+eq\s+'([^']+)'\s*$`)

func (a *ARM) listRoleDefinitions(w http.ResponseWriter, r *ARMRequest) error {
	want := ""
	if f := r.URL.Query().Get("$filter"); f != "" {
		m := roleNameFilter.FindStringSubmatch(f)
		if m == nil {
			return custody.Errorf(custody.KindInvalid, "UnsupportedQuery", "The $filter '%s' is not supported; use roleName eq '{name}'.", f)
		}
		want = m[1]
	}
	out := []roleDefinitionBody{}
	for i := range rm.BuiltinRoles {
		if want == "" || strings.EqualFold(rm.BuiltinRoles[i].Name, want) {
			out = append(out, a.roleDefBody(&rm.BuiltinRoles[i]))
		}
	}
	writeJSON(w, http.StatusOK, listBody[roleDefinitionBody]{Value: out})
	return nil
}

func (a *ARM) getRoleDefinition(w http.ResponseWriter, r *ARMRequest) error {
	d, ok := rm.RoleByGUID(r.Param("roleDefinitionId"))
	if !ok {
		return custody.Errorf(custody.KindNotFound, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", r.Param("roleDefinitionId"))
	}
	writeJSON(w, http.StatusOK, a.roleDefBody(d))
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
