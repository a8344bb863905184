package httpapi

import (
	"context"
	"net/http"

	"custody/identity"
	"custody/rm"
)

func registerMSI(a *ARM) {
	const group = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
	const one = group + "/{resourceName}"
	a.Handle(ARMRoute{Method: "PUT", Path: one, APIVersions: msiAPIVersions, Action: "Microsoft.ManagedIdentity/userAssignedIdentities/write", Handler: a.putIdentity})
	a.Handle(ARMRoute{Method: "PATCH", Path: one, APIVersions: msiAPIVersions, Action: "Microsoft.ManagedIdentity/userAssignedIdentities/write", Handler: a.patchIdentity})
	a.Handle(ARMRoute{Method: "GET", Path: one, APIVersions: msiAPIVersions, Action: "Microsoft.ManagedIdentity/userAssignedIdentities/read", Handler: a.getIdentity})
	a.Handle(ARMRoute{Method: "DELETE", Path: one, APIVersions: msiAPIVersions, Action: "Microsoft.ManagedIdentity/userAssignedIdentities/delete", Handler: a.deleteIdentity})
	// Lists check each identity (listIdentities), so that a role on one
	// identity lets the caller list it.
	a.Handle(ARMRoute{Method: "GET", Path: group, APIVersions: msiAPIVersions, Handler: a.listIdentities})
	a.Handle(ARMRoute{Method: "GET", Path: "/subscriptions/{subscriptionId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities", APIVersions: msiAPIVersions, Handler: a.listIdentities})
}

type identityProps struct {
	TenantID       string `json:"tenantId"`
	PrincipalID    string `json:"principalId"`
	ClientID       string `json:"clientId"`
	IsolationScope string `json:"isolationScope,omitempty"`
}

func toIdentityBody(u *identity.UserAssignedIdentity) armResource {
	return armResource{ID: u.ID, Name: u.Name, Type: "Microsoft.ManagedIdentity/userAssignedIdentities", Location: u.Location, Tags: u.Tags,
		Properties: identityProps{TenantID: u.TenantID, PrincipalID: u.PrincipalID, ClientID: u.ClientID, IsolationScope: "None"}}
}

func (a *ARM) identityID(r *ARMRequest) string {
	return rm.ResourceID(r.Param("subscriptionId"), r.Param("resourceGroupName"), "Microsoft.ManagedIdentity", "userAssignedIdentities", r.Param("resourceName"))
}

func (a *ARM) putIdentity(w http.ResponseWriter, r *ARMRequest) error {
	var body struct {
		Location string            `json:"location"`
		Tags     map[string]string `json:"tags"`
	}
	if err := decodeJSON(r.Request, &body); err != nil {
		return err
	}
	g, err := a.s.cfg.RM.ResourceGroup(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"))
	if err != nil {
		return err
	}
	u, created, err := a.s.cfg.Identity.PutUserAssignedIdentity(r.Context(), &identity.UserAssignedIdentity{
		ID:             rm.ResourceID(g.SubscriptionID, g.Name, "Microsoft.ManagedIdentity", "userAssignedIdentities", r.Param("resourceName")),
		SubscriptionID: g.SubscriptionID, ResourceGroup: g.Name, Name: r.Param("resourceName"),
		Location: body.Location, Tags: body.Tags,
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, toIdentityBody(u))
	return nil
}

func (a *ARM) patchIdentity(w http.ResponseWriter, r *ARMRequest) error {
	u, err := a.s.cfg.Identity.Store.UserAssignedIdentity(r.Context(), a.identityID(r))
	if err != nil {
		return err
	}
	var body struct {
		Location *string           `json:"location"`
		Tags     map[string]string `json:"tags"`
	}
	if err := decodeJSON(r.Request, &body); err != nil {
		return err
	}
	if body.Tags != nil {
		u.Tags = body.Tags
	}
	u, _, err = a.s.cfg.Identity.PutUserAssignedIdentity(r.Context(), u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toIdentityBody(u))
	return nil
}

func (a *ARM) getIdentity(w http.ResponseWriter, r *ARMRequest) error {
	u, err := a.s.cfg.Identity.Store.UserAssignedIdentity(r.Context(), a.identityID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toIdentityBody(u))
	return nil
}

func (a *ARM) deleteIdentity(w http.ResponseWriter, r *ARMRequest) error {
	err := a.s.cfg.Identity.Store.DeleteUserAssignedIdentity(r.Context(), a.identityID(r))
	if err != nil {
		if isNotFound(err) {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// listIdentities lists by group or, without a group, by subscription,
// keeping what the caller may read.
func (a *ARM) listIdentities(w http.ResponseWriter, r *ARMRequest) error {
	us, err := a.s.cfg.Identity.Store.ListUserAssignedIdentities(r.Context(), a.s.cfg.RM.SubscriptionID, r.Param("resourceGroupName"))
	if err != nil {
		return err
	}
	out := []armResource{}
	for _, u := range us {
		ok, err := a.s.cfg.RM.HasRoleAt(r.Context(), r.Caller.ObjectID, u.ID, "Microsoft.ManagedIdentity/userAssignedIdentities/read", false)
		if err != nil {
			return err
		}
		if ok {
			out = append(out, toIdentityBody(u))
		}
	}
	writeJSON(w, http.StatusOK, listBody[armResource]{Value: out})
	return nil
}

// mayKnowIdentity reports whether principalID may learn the principal and
// client ids of the user-assigned identity rid, where a resource it can read
// names that identity: only if it may read or assign the identity itself.
func (s *Server) mayKnowIdentity(ctx context.Context, principalID, rid string) (bool, error) {
	for _, action := range []string{"Microsoft.ManagedIdentity/userAssignedIdentities/read", rm.ActionAssignIdentity} {
		ok, err := s.cfg.RM.HasRoleAt(ctx, principalID, rid, action, false)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}
