package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"custody"
)

// Cloud metadata: GET /metadata/endpoints?api-version=... on the resource
// manager host (and the loopback address), served without authentication as
// ARM serves it. `az cloud register --endpoint-resource-manager URL` reads
// the login endpoint, token audience and graph endpoint from it
// (api-version 2015-01-01, one object); ARM_CLOUD_METADATA_URL and SDKs read
// the list of clouds of 2019-05-01 and later, with the batch resource id and
// the key vault DNS suffix as well.
//
// The login endpoint is https://login.{domain}/adfs: MSAL checks an
// authority whose host it does not know against Microsoft's instance
// discovery, except an ADFS authority, whose OpenID configuration it reads
// from the authority itself (login.go serves it).

// isMetadataPath matches the document's path, also as az asks for it when
// the resource manager URL it was given ends in a slash (//metadata/...).
func isMetadataPath(p string) bool {
	p = "/" + strings.TrimLeft(p, "/")
	return strings.EqualFold(strings.TrimSuffix(p, "/"), "/metadata/endpoints")
}

func (s *Server) cloudMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, r, custody.Errorf(custody.KindMethodNotAllowed, "MethodNotAllowed", "The method %s is not allowed on %s.", r.Method, r.URL.Path))
		return
	}
	asked := r.URL.Query().Get("api-version")
	if asked == "" {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests. Supported versions for this operation: %s.", strings.Join(metadataAPIVersions, ", ")))
		return
	}
	served, ok := resolveARMVersion(metadataAPIVersions, asked)
	if !ok {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "InvalidApiVersionParameter",
			"The api-version '%s' is invalid. The supported versions are '%s'.", asked, strings.Join(metadataAPIVersions, ",")))
		return
	}
	s.servedAs(w, r, asked, served)
	if served == "2015-01-01" {
		writeJSON(w, http.StatusOK, s.metadata2015())
		return
	}
	writeJSON(w, http.StatusOK, []any{s.cloudDescription()})
}

// CloudName is the name the cloud metadata gives this server's cloud.
const CloudName = "Custody"

// LoginEndpoint returns the authority az and MSAL are given:
// https://login.{domain}:{port}/adfs.
func (s *Server) LoginEndpoint() string { return s.PublicURL("login") + "/adfs" }

func (s *Server) metadata2015() map[string]any {
	return map[string]any{
		"galleryEndpoint": "",
		"graphEndpoint":   s.PublicURL("graph") + "/",
		"portalEndpoint":  s.PublicURL("portal") + "/",
		"authentication": map[string]any{
			"loginEndpoint": s.LoginEndpoint(),
			"audiences":     []string{s.PublicURL("management") + "/"},
		},
	}
}

// hostSuffix is "{name}.{domain}" with the port unless it is 443.
func (s *Server) hostSuffix(name string) string {
	h := name + "." + s.cfg.Domain
	if s.cfg.Port != 443 {
		h += ":" + strconv.Itoa(s.cfg.Port)
	}
	return h
}

func (s *Server) cloudDescription() map[string]any {
	graph := s.PublicURL("graph") + "/"
	return map[string]any{
		"name":   CloudName,
		"portal": s.PublicURL("portal"),
		"authentication": map[string]any{
			"loginEndpoint":    s.LoginEndpoint(),
			"audiences":        []string{s.PublicURL("management") + "/"},
			"tenant":           "adfs",
			"identityProvider": "ADFS",
		},
		"resourceManager":          s.PublicURL("management") + "/",
		"graph":                    graph,
		"graphAudience":            graph,
		"microsoftGraphResourceId": graph,
		"batch":                    s.PublicURL("batch") + "/",
		"suffixes": map[string]any{
			"keyVaultDns": s.hostSuffix("vault"),
		},
	}
}
