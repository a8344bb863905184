package httpapi

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"custody"
	"custody/identity"
	"custody/rm"
)

// graphHandler serves the directory's service principals on graph.{domain},
// as a small subset of Microsoft Graph v1.0 (what `az ad sp` uses):
//
//	POST   /v1.0/servicePrincipals                      {"displayName": ...}
//	GET    /v1.0/servicePrincipals[?$filter=appId eq '...' | displayName eq '...' | id eq '...'
//	                                      | servicePrincipalNames/any(c:c eq '...')]
//	GET    /v1.0/servicePrincipals/{id}                 by object id or appId
//	DELETE /v1.0/servicePrincipals/{id}
//	POST   /v1.0/servicePrincipals/{id}/addPassword     {"passwordCredential": {"displayName": ...}}
//	POST   /v1.0/applications/{id}/federatedIdentityCredentials       {"name", "issuer", "subject", "audiences"}
//	GET    /v1.0/applications/{id}/federatedIdentityCredentials
//	GET    /v1.0/applications/{id}/federatedIdentityCredentials/{fid} by id or name
//	DELETE /v1.0/applications/{id}/federatedIdentityCredentials/{fid}
//
// An application and its service principal are one principal here, so
// {id} under applications is the service principal's object id or appId.
//
// Managed identities are listed too (servicePrincipalType "ManagedIdentity"),
// as Entra lists them. Creating, deleting and adding secrets needs the right to
// assign roles on the subscription (Owner or User Access Administrator).
func (s *Server) graphHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/servicePrincipals", s.graphCreateSP)
	mux.HandleFunc("GET /v1.0/servicePrincipals", s.graphListSP)
	mux.HandleFunc("GET /v1.0/servicePrincipals/{id}", s.graphGetSP)
	mux.HandleFunc("DELETE /v1.0/servicePrincipals/{id}", s.graphDeleteSP)
	mux.HandleFunc("POST /v1.0/servicePrincipals/{id}/addPassword", s.graphAddPassword)
	mux.HandleFunc("POST /v1.0/applications/{id}/federatedIdentityCredentials", s.graphAddFederated)
	mux.HandleFunc("GET /v1.0/applications/{id}/federatedIdentityCredentials", s.graphListFederated)
	mux.HandleFunc("GET /v1.0/applications/{id}/federatedIdentityCredentials/{fid}", s.graphGetFederated)
	mux.HandleFunc("DELETE /v1.0/applications/{id}/federatedIdentityCredentials/{fid}", s.graphDeleteFederated)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, custody.Errorf(custody.KindNotFound, "Request_ResourceNotFound", "The directory has no endpoint %s %s.", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authed, err := s.authenticate(r, identity.AudienceGraph)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="`+s.PublicURL("login")+"/"+s.cfg.Identity.TenantID+`", error="invalid_token"`)
			writeError(w, r, err)
			return
		}
		mux.ServeHTTP(w, authed)
	})
}

type graphSP struct {
	ID                   string   `json:"id"`
	AppID                string   `json:"appId"`
	DisplayName          string   `json:"displayName"`
	ServicePrincipalType string   `json:"servicePrincipalType"`
	AppOwnerTenantID     string   `json:"appOwnerOrganizationId"`
	ServicePrincipalName []string `json:"servicePrincipalNames"`
	AlternativeNames     []string `json:"alternativeNames,omitempty"`
}

func toGraphSP(p *identity.Principal) graphSP {
	t := "Application"
	var alt []string
	if p.Kind != identity.KindServicePrincipal {
		t = "ManagedIdentity"
		alt = []string{"isExplicit=" + boolText(p.Kind == identity.KindUserAssigned), p.ResourceID}
	}
	return graphSP{ID: p.ObjectID, AppID: p.AppID, DisplayName: p.DisplayName, ServicePrincipalType: t,
		AppOwnerTenantID: p.TenantID, ServicePrincipalName: []string{p.AppID}, AlternativeNames: alt}
}

func boolText(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// graphAdmin checks that the caller may manage principals.
func (s *Server) graphAdmin(r *http.Request) error {
	c, _ := custody.CallerFrom(r.Context())
	return s.cfg.RM.Authorize(r.Context(), c.ObjectID, rm.SubscriptionID(s.cfg.RM.SubscriptionID), "Microsoft.Authorization/roleAssignments/write", false)
}

func (s *Server) graphCreateSP(w http.ResponseWriter, r *http.Request) {
	if err := s.graphAdmin(r); err != nil {
		writeError(w, r, err)
		return
	}
	var body struct {
		DisplayName string `json:"displayName"`
	}
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	p, secret, err := s.cfg.Identity.CreateServicePrincipal(r.Context(), body.DisplayName, 1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := struct {
		graphSP
		PasswordCredentials []map[string]string `json:"passwordCredentials"`
	}{toGraphSP(p), []map[string]string{{"secretText": secret, "hint": secret[:3], "endDateTime": time.Now().UTC().AddDate(1, 0, 0).Format(time.RFC3339)}}}
	writeJSON(w, http.StatusCreated, out)
}

var (
	graphFilter = regexp.MustCompile(`(?i)^\s*(appId|displayName|id)\s+eq\s+'([^']*)'\s*$`)
	// graphSPNFilter is the lambda az uses to find a principal by one of its
	// names: servicePrincipalNames/any(c:c eq '{appId}').
	graphSPNFilter = regexp.MustCompile(`(?i)^\s*(servicePrincipalNames)/any\(\s*(\w+)\s*:\s*(\w+)\s+eq\s+'([^']*)'\s*\)\s*$`)
)

func (s *Server) graphListSP(w http.ResponseWriter, r *http.Request) {
	field, value := "", ""
	if f := r.URL.Query().Get("$filter"); f != "" {
		if m := graphFilter.FindStringSubmatch(f); m != nil {
			field, value = strings.ToLower(m[1]), m[2]
		} else if m := graphSPNFilter.FindStringSubmatch(f); m != nil && m[2] == m[3] {
			field, value = "serviceprincipalnames", m[4]
		} else {
			writeError(w, r, custody.Errorf(custody.KindInvalid, "Request_UnsupportedQuery",
				"The $filter '%s' is not supported; use appId, displayName or id eq '...', or servicePrincipalNames/any(c:c eq '...').", f))
			return
		}
	}
	var out []graphSP
	for _, kind := range []identity.PrincipalKind{identity.KindServicePrincipal, identity.KindSystemAssigned, identity.KindUserAssigned} {
		ps, err := s.cfg.Identity.Store.ListPrincipals(r.Context(), kind)
		if err != nil {
			writeError(w, r, err)
			return
		}
		for _, p := range ps {
			switch field {
			case "appid":
				if !strings.EqualFold(p.AppID, value) {
					continue
				}
			case "displayname":
				if !strings.EqualFold(p.DisplayName, value) {
					continue
				}
			case "id":
				if !strings.EqualFold(p.ObjectID, value) {
					continue
				}
			}
			sp := toGraphSP(p)
			if field == "serviceprincipalnames" && !slices.ContainsFunc(sp.ServicePrincipalName, func(n string) bool { return strings.EqualFold(n, value) }) {
				continue
			}
			out = append(out, sp)
		}
	}
	if out == nil {
		out = []graphSP{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (s *Server) graphPrincipal(w http.ResponseWriter, r *http.Request) (*identity.Principal, bool) {
	id := r.PathValue("id")
	p, err := s.cfg.Identity.Store.Principal(r.Context(), id)
	if custody.IsNotFound(err) {
		p, err = s.cfg.Identity.Store.PrincipalByAppID(r.Context(), id)
	}
	if custody.IsNotFound(err) {
		writeError(w, r, custody.Errorf(custody.KindNotFound, "Request_ResourceNotFound", "Resource '%s' does not exist or one of its queried reference-property objects are not present.", id))
		return nil, false
	}
	if err != nil {
		writeError(w, r, err)
		return nil, false
	}
	return p, true
}

func (s *Server) graphGetSP(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.graphPrincipal(w, r); ok {
		writeJSON(w, http.StatusOK, toGraphSP(p))
	}
}

func (s *Server) graphDeleteSP(w http.ResponseWriter, r *http.Request) {
	if err := s.graphAdmin(r); err != nil {
		writeError(w, r, err)
		return
	}
	p, ok := s.graphPrincipal(w, r)
	if !ok {
		return
	}
	if p.Kind != identity.KindServicePrincipal {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "Request_BadRequest", "%s is a managed identity; it is deleted with its resource, not through the directory.", p.ObjectID))
		return
	}
	if err := s.cfg.Identity.Store.DeletePrincipal(r.Context(), p.ObjectID); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) graphAddPassword(w http.ResponseWriter, r *http.Request) {
	if err := s.graphAdmin(r); err != nil {
		writeError(w, r, err)
		return
	}
	p, ok := s.graphPrincipal(w, r)
	if !ok {
		return
	}
	if p.Kind != identity.KindServicePrincipal {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "Request_BadRequest", "%s is a managed identity and cannot have secrets.", p.ObjectID))
		return
	}
	secret, err := s.cfg.Identity.AddSecret(r.Context(), p.AppID, 1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"secretText": secret, "hint": secret[:3], "endDateTime": time.Now().UTC().AddDate(1, 0, 0).Format(time.RFC3339)})
}

type graphFederated struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Issuer      string   `json:"issuer"`
	Subject     string   `json:"subject"`
	Audiences   []string `json:"audiences"`
	Description string   `json:"description"`
}

func toGraphFederated(c *identity.FederatedCredential) graphFederated {
	return graphFederated{ID: c.ID, Name: c.Name, Issuer: c.Issuer, Subject: c.Subject, Audiences: c.Audiences, Description: c.Description}
}

func (s *Server) graphAddFederated(w http.ResponseWriter, r *http.Request) {
	if err := s.graphAdmin(r); err != nil {
		writeError(w, r, err)
		return
	}
	var body graphFederated
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	c, err := s.cfg.Identity.AddFederatedCredential(r.Context(), r.PathValue("id"), identity.FederatedCredential{
		Name: body.Name, Issuer: body.Issuer, Subject: body.Subject, Audiences: body.Audiences, Description: body.Description})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toGraphFederated(c))
}

func (s *Server) graphListFederated(w http.ResponseWriter, r *http.Request) {
	cs, err := s.cfg.Identity.FederatedCredentials(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := make([]graphFederated, 0, len(cs))
	for _, c := range cs {
		out = append(out, toGraphFederated(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (s *Server) graphGetFederated(w http.ResponseWriter, r *http.Request) {
	cs, err := s.cfg.Identity.FederatedCredentials(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	fid := r.PathValue("fid")
	for _, c := range cs {
		if c.ID == fid || strings.EqualFold(c.Name, fid) {
			writeJSON(w, http.StatusOK, toGraphFederated(c))
			return
		}
	}
	writeError(w, r, custody.Errorf(custody.KindNotFound, "Request_ResourceNotFound", "The application %s has no federated identity credential with id or name %q.", r.PathValue("id"), fid))
}

func (s *Server) graphDeleteFederated(w http.ResponseWriter, r *http.Request) {
	if err := s.graphAdmin(r); err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.cfg.Identity.DeleteFederatedCredential(r.Context(), r.PathValue("id"), r.PathValue("fid")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
