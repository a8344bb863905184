package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"custody"
	"custody/identity"
)

// loginHandler serves the token service, compatible with Entra ID's v2.0
// endpoints as azidentity and MSAL call them:
//
//	GET  /{tenant}/v2.0/.well-known/openid-configuration
//	GET  /{tenant}/discovery/v2.0/keys          (and /{tenant}/discovery/keys)
//	POST /{tenant}/oauth2/v2.0/token            client_credentials grant, scope=<resource>/.default,
//	                                            with a client secret or a federated client assertion
//	POST /{tenant}/oauth2/token                 v1 form: resource=<resource>
//
// and, for clients given the ADFS-style authority https://login.{domain}/adfs
// (az and MSAL skip Microsoft's instance discovery for it; the cloud
// metadata names it), the same endpoints for this server's one tenant:
//
//	GET  /adfs/.well-known/openid-configuration
//	GET  /adfs/discovery/keys
//	POST /adfs/oauth2/token                     (and /adfs/oauth2/v2.0/token)
//
// Tokens from either carry the tenant's issuer, the one the services accept.
func (s *Server) loginHandler() http.Handler {
	mux := http.NewServeMux()
	adfs := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			r.SetPathValue("tenant", s.cfg.Identity.TenantID)
			h(w, r)
		}
	}
	mux.HandleFunc("GET /adfs/.well-known/openid-configuration", adfs(s.adfsConfiguration))
	mux.HandleFunc("GET /adfs/discovery/keys", adfs(s.jwks))
	mux.HandleFunc("POST /adfs/oauth2/token", adfs(s.token))
	mux.HandleFunc("POST /adfs/oauth2/token/", adfs(s.token))
	mux.HandleFunc("POST /adfs/oauth2/v2.0/token", adfs(s.token))
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.openIDConfiguration)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", s.jwks)
	mux.HandleFunc("GET /{tenant}/discovery/keys", s.jwks)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.token)
	mux.HandleFunc("POST /{tenant}/oauth2/token", s.token)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeOAuthError(w, &identity.OAuthError{Status: 404, Code: "invalid_request", AADSTS: 90027,
			Description: "The token service has no endpoint " + r.Method + " " + r.URL.Path + ". Use /{tenant}/oauth2/v2.0/token."})
	})
	return mux
}

func (s *Server) tenantOK(w http.ResponseWriter, r *http.Request) bool {
	t := r.PathValue("tenant")
	if !strings.EqualFold(t, s.cfg.Identity.TenantID) {
		writeOAuthError(w, &identity.OAuthError{Status: 400, Code: "invalid_tenant", AADSTS: 90002,
			Description: "Tenant '" + t + "' not found. This server's tenant is " + s.cfg.Identity.TenantID + " (see 'custody env')."})
		return false
	}
	return true
}

func (s *Server) issuerFor(r *http.Request) string {
	return "https://" + strings.ToLower(r.Host) + "/" + s.cfg.Identity.TenantID + "/v2.0"
}

func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	if !s.tenantOK(w, r) {
		return
	}
	base := "https://" + strings.ToLower(r.Host) + "/" + s.cfg.Identity.TenantID
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.issuerFor(r),
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		"grant_types_supported":                 []string{"client_credentials"},
		"scopes_supported":                      []string{"openid", "profile", "offline_access"},
		"tenant_region_scope":                   "NA",
		"cloud_instance_name":                   "custody",
	})
}

// adfsConfiguration is the OpenID configuration of the ADFS-style
// authority: its own token and key endpoints, the tenant's issuer.
func (s *Server) adfsConfiguration(w http.ResponseWriter, r *http.Request) {
	base := "https://" + strings.ToLower(r.Host) + "/adfs"
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.issuerFor(r),
		"authorization_endpoint":                base + "/oauth2/authorize",
		"token_endpoint":                        base + "/oauth2/token",
		"jwks_uri":                              base + "/discovery/keys",
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"grant_types_supported":                 []string{"client_credentials"},
		"scopes_supported":                      []string{"openid"},
		"access_token_issuer":                   s.issuerFor(r),
	})
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	if !s.tenantOK(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Identity.Authority.JWKS())
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if !s.tenantOK(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, &identity.OAuthError{Status: 400, Code: "invalid_request", AADSTS: 900144, Description: "The request body must be application/x-www-form-urlencoded."})
		return
	}
	form := r.PostForm
	for k, vs := range form {
		for _, v := range vs {
			if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
				writeOAuthError(w, &identity.OAuthError{Status: 400, Code: "invalid_request", AADSTS: 900144, Description: "The request body contains a NUL character."})
				return
			}
		}
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		writeOAuthError(w, &identity.OAuthError{Status: 400, Code: "unsupported_grant_type", AADSTS: 70003,
			Description: "The grant type '" + gt + "' is not supported; this token service supports client_credentials."})
		return
	}
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, secret = u, p
	}
	if clientID == "" {
		writeOAuthError(w, &identity.OAuthError{Status: 400, Code: "invalid_request", AADSTS: 900144, Description: "The request body must contain the parameter 'client_id'."})
		return
	}
	assertion := form.Get("client_assertion")
	var p *identity.Principal
	var err error
	switch {
	case assertion != "" && secret != "":
		writeOAuthError(w, &identity.OAuthError{Status: 400, Code: "invalid_request", AADSTS: 900144,
			Description: "The request carries both a client secret and a client assertion; send one."})
		return
	case assertion != "":
		if at := form.Get("client_assertion_type"); at != identity.AssertionType {
			writeOAuthError(w, &identity.OAuthError{Status: 400, Code: "invalid_request", AADSTS: 50027,
				Description: "The client_assertion_type '" + at + "' is not supported; use " + identity.AssertionType + "."})
			return
		}
		p, err = s.cfg.Identity.AuthenticateAssertion(r.Context(), clientID, assertion)
	case secret != "":
		p, err = s.cfg.Identity.Authenticate(r.Context(), clientID, secret)
	default:
		writeOAuthError(w, &identity.OAuthError{Status: 401, Code: "invalid_client", AADSTS: 7000218,
			Description: "The request body must contain the parameter 'client_assertion' or 'client_secret'."})
		return
	}
	if err != nil {
		writeOAuthErr(w, r, err)
		return
	}
	var tok identity.Token
	if res := form.Get("resource"); res != "" && form.Get("scope") == "" {
		tok, err = s.cfg.Identity.IssueForResource(p, res, s.issuerFor(r))
	} else {
		tok, err = s.cfg.Identity.IssueForScope(p, form.Get("scope"), s.issuerFor(r))
	}
	if err != nil {
		writeOAuthErr(w, r, err)
		return
	}
	class, _ := s.cfg.Identity.Resources.Classify(tok.Claims.Audience)
	s.metrics.tokens.WithLabelValues(string(class)).Inc()
	setCallerLog(r, p.ObjectID)
	w.Header().Set("Cache-Control", "no-store")
	expiresIn := int(time.Until(tok.ExpiresAt).Seconds())
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     expiresIn,
		"ext_expires_in": expiresIn,
		"expires_on":     strconv.FormatInt(tok.ExpiresAt.Unix(), 10),
		"resource":       tok.Claims.Audience,
		"access_token":   tok.Raw,
	})
}

func writeOAuthErr(w http.ResponseWriter, r *http.Request, err error) {
	var oe *identity.OAuthError
	if errors.As(err, &oe) {
		setErrorCode(r, oe.Code)
		writeOAuthError(w, oe)
		return
	}
	writeError(w, r, err)
	_ = custody.ErrorKind(err)
}

func writeOAuthError(w http.ResponseWriter, e *identity.OAuthError) {
	now := time.Now().UTC()
	writeJSON(w, e.Status, map[string]any{
		"error":             e.Code,
		"error_description": "AADSTS" + strconv.Itoa(e.AADSTS) + ": " + e.Description,
		"error_codes":       []int{e.AADSTS},
		"timestamp":         now.Format("2006-01-02 15:04:05Z"),
		"trace_id":          identity.NewID(),
		"correlation_id":    identity.NewID(),
	})
}
