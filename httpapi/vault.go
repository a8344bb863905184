package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"custody"
	"custody/identity"
	"custody/keyvault"
)

// Key Vault data plane: the keys REST API on {vault}.vault.{domain}, as the
// azkeys client calls it. The handler authenticates first (a request without
// a valid token gets 401 and the challenge azkeys needs, before its body is
// looked at), checks api-version, routes, and leaves every other check to
// keyvault.Service, which makes them in Azure's order.
//
// Routes (vaultRoutes is the table; paths relative to the vault URL;
// literal segments match case-insensitively):
//
//	GET    /keys                              list keys
//	POST   /keys/restore                      restore a backup
//	GET    /keys/{name}  /keys/{name}/        get the latest version
//	PUT    /keys/{name}                       import
//	PATCH  /keys/{name}  /keys/{name}/        update the latest version
//	DELETE /keys/{name}                       delete (soft)
//	GET    /keys/{name}/versions              list versions
//	GET    /keys/{name}/{version}             get a version
//	PATCH  /keys/{name}/{version}             update a version
//	POST   /keys/{name}/create|backup|rotate
//	GET    /keys/{name}/rotationpolicy        (and PUT)
//	POST   /keys/{name}[/{version}]/encrypt|decrypt|wrapkey|unwrapkey|sign|verify
//	GET    /deletedkeys                       list deleted keys
//	GET    /deletedkeys/{name}                get a deleted key (DELETE purges: 204)
//	POST   /deletedkeys/{name}/recover        recover
//	GET    /custody/changes?since=&timeout=   the change feed (a Custody extension;
//	                                          see the keyvault package doc)

// LatestKeyVaultAPIVersion is the api-version azkeys v1.5.0 sends.
const LatestKeyVaultAPIVersion = "2025-07-01"

// VaultHandler returns the data-plane handler of kv, for HandleVault.
func (s *Server) VaultHandler(kv *keyvault.Service) http.Handler {
	return &vaultAPI{s: s, kv: kv}
}

type vaultAPI struct {
	s      *Server
	kv     *keyvault.Service
	tokens tokenCache
}

// tokenCache remembers verified access tokens until they expire, so that a
// client calling many times with one token (a crypto operation per request)
// is not verified again each time. Entries are found by the token's
// signature and used only for the very same token (the whole token is
// compared), so an altered token is never taken for a verified one. What
// verification answers for a token cannot change before it expires:
// signing keys stay published until the tokens they signed expire.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedCaller // by signature
}

type cachedCaller struct {
	raw    string
	caller custody.Caller
	until  time.Time
}

const tokenCacheMax = 10000

// signature returns the signature segment of a JWT.
func signature(raw string) string { return raw[strings.LastIndexByte(raw, '.')+1:] }

func (c *tokenCache) get(raw string, now time.Time) (custody.Caller, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[signature(raw)]
	if !ok || e.raw != raw || !now.Before(e.until) {
		return custody.Caller{}, false
	}
	return e.caller, true
}

func (c *tokenCache) put(raw string, caller custody.Caller, now time.Time) {
	exp, ok := tokenExpiry(raw)
	if !ok || !now.Before(exp) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = map[string]cachedCaller{}
	}
	c.m[signature(raw)] = cachedCaller{raw: raw, caller: caller, until: exp}
}

// tokenExpiry reads the exp claim of a JWT that has already been verified.
func tokenExpiry(raw string) (time.Time, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(c.Exp, 0), true
}

// authenticate is Server.authenticate for the vault audience with the
// token cache in front.
func (a *vaultAPI) authenticate(r *http.Request) (*http.Request, error) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) > len(prefix) && equalFoldASCII(h[:len(prefix)], prefix) {
		raw := h[len(prefix):]
		now := time.Now()
		if c, ok := a.tokens.get(raw, now); ok {
			setCallerLog(r, c.ObjectID)
			return r.WithContext(custody.WithCaller(r.Context(), c)), nil
		}
		ar, err := a.s.authenticate(r, identity.AudienceVault)
		if err != nil {
			return nil, err
		}
		if c, ok := custody.CallerFrom(ar.Context()); ok {
			a.tokens.put(raw, c, now)
		}
		return ar, nil
	}
	return a.s.authenticate(r, identity.AudienceVault)
}

func (a *vaultAPI) challenge(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("WWW-Authenticate", `Bearer authorization="`+a.s.PublicURL("login")+"/"+a.s.cfg.Identity.TenantID+`", resource="`+a.s.PublicURL("vault")+`"`)
	msg := "Request is missing a Bearer or PoP token."
	if r.Header.Get("Authorization") != "" {
		msg = "The access token is not valid: " + custody.ErrorMessage(err) + " Get a token for " + a.s.PublicURL("vault") + " from " + a.s.PublicURL("login") + "."
	}
	writeError(w, r, custody.Errorf(custody.KindUnauthenticated, "Unauthorized", "%s", msg))
}

func (a *vaultAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, vault := a.s.classify(hostOnly(r.Host))
	ar, err := a.authenticate(r)
	if err != nil {
		a.challenge(w, r, err)
		return
	}
	r = ar
	apiVersion := r.URL.Query().Get("api-version")
	if apiVersion == "" {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "BadParameter",
			"The request has no api-version query parameter; add ?api-version=%s.", LatestKeyVaultAPIVersion))
		return
	}
	served, ok := resolveVaultVersion(apiVersion)
	if !ok {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "BadParameter",
			"The specified version (%s) is not recognized. Consider using the latest supported version (%s).", apiVersion, LatestKeyVaultAPIVersion))
		return
	}
	a.s.servedAs(w, r, apiVersion, served)
	v, status, err := a.route(r, vault, apiVersion)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, v)
}

// segments splits the escaped path into unescaped segments; a trailing
// slash gives a last empty segment.
func segments(r *http.Request) ([]string, bool) {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	parts := strings.Split(raw, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}

func notFoundPath(r *http.Request) error {
	return custody.Errorf(custody.KindNotFound, "NotFound",
		"The path %s is not a Key Vault keys operation. See the Key Vault REST API for keys (/keys, /keys/{name}/{version}, /deletedkeys).", r.URL.Path)
}

func methodNotAllowed(r *http.Request, allowed string) error {
	return custody.Errorf(custody.KindMethodNotAllowed, "MethodNotAllowed",
		"The method %s is not allowed on %s; use %s.", r.Method, r.URL.Path, allowed)
}

func (a *vaultAPI) page(r *http.Request, vault, apiVersion, path string) (keyvault.Page, error) {
	q := r.URL.Query()
	p := keyvault.Page{}
	if m := q.Get("maxresults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > 25 {
			return p, custody.Errorf(custody.KindInvalid, "BadParameter", "maxresults must be a whole number from 1 to 25, not %q.", m)
		}
		p.Max = n
	}
	if t := q.Get("$skiptoken"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return p, custody.Errorf(custody.KindInvalid, "BadParameter", "The $skiptoken %q is not valid; use the nextLink of the previous page as it is.", t)
		}
		p.Skip = n
	}
	base := "https://" + a.kv.VaultHost(vault) + path + "?api-version=" + url.QueryEscape(apiVersion)
	p.Link = func(skip, max int) string {
		return base + "&$skiptoken=" + strconv.Itoa(skip) + "&maxresults=" + strconv.Itoa(max)
	}
	return p, nil
}

// maxKeyNameLen is Key Vault's longest object name.
const maxKeyNameLen = 127

// vaultCall is one data-plane request after authentication and the
// api-version check.
type vaultCall struct {
	r          *http.Request
	vault      string
	apiVersion string
	p          map[string]string
}

func (q *vaultCall) body(v any) error { return decodeJSON(q.r, v) }

// vaultRoute is one operation of the key vault data plane.
type vaultRoute struct {
	DataRoute
	pattern routePattern
	serve   func(a *vaultAPI, q *vaultCall) (any, error)
	// status is the success status (200 unless set).
	status int
}

// vaultRoutes is the data plane's route table. The first route whose path
// and method match serves the request; literal paths come before the
// templates they would also match.
var vaultRoutes = func() []vaultRoute {
	rs := []vaultRoute{
		{DataRoute: DataRoute{"GET", "/keys"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			p, err := a.page(q.r, q.vault, q.apiVersion, "/keys")
			if err != nil {
				return nil, err
			}
			return a.kv.ListKeys(q.r.Context(), q.vault, p)
		}},
		{DataRoute: DataRoute{"POST", "/keys/restore"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.RestoreKey(q.r.Context(), q.vault, q.body)
		}},
		{DataRoute: DataRoute{"GET", "/keys/{name}"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.GetKey(q.r.Context(), q.vault, q.p["name"], "")
		}},
		{DataRoute: DataRoute{"PUT", "/keys/{name}"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.ImportKey(q.r.Context(), q.vault, q.p["name"], q.body)
		}},
		{DataRoute: DataRoute{"PATCH", "/keys/{name}"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.UpdateKey(q.r.Context(), q.vault, q.p["name"], "", q.body)
		}},
		{DataRoute: DataRoute{"DELETE", "/keys/{name}"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.DeleteKey(q.r.Context(), q.vault, q.p["name"])
		}},
		{DataRoute: DataRoute{"GET", "/keys/{name}/versions"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			name := q.p["name"]
			p, err := a.page(q.r, q.vault, q.apiVersion, "/keys/"+url.PathEscape(name)+"/versions")
			if err != nil {
				return nil, err
			}
			return a.kv.ListKeyVersions(q.r.Context(), q.vault, name, p)
		}},
		{DataRoute: DataRoute{"GET", "/keys/{name}/rotationpolicy"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.GetRotationPolicy(q.r.Context(), q.vault, q.p["name"])
		}},
		{DataRoute: DataRoute{"PUT", "/keys/{name}/rotationpolicy"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.UpdateRotationPolicy(q.r.Context(), q.vault, q.p["name"], q.body)
		}},
		{DataRoute: DataRoute{"POST", "/keys/{name}/create"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.CreateKey(q.r.Context(), q.vault, q.p["name"], q.body)
		}},
		{DataRoute: DataRoute{"POST", "/keys/{name}/backup"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.BackupKey(q.r.Context(), q.vault, q.p["name"])
		}},
		{DataRoute: DataRoute{"POST", "/keys/{name}/rotate"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.RotateKey(q.r.Context(), q.vault, q.p["name"])
		}},
	}
	ops := make([]string, 0, len(keyvault.CryptoOps))
	for seg := range keyvault.CryptoOps {
		ops = append(ops, seg)
	}
	slices.Sort(ops)
	for _, seg := range ops {
		op := keyvault.CryptoOps[seg]
		rs = append(rs,
			vaultRoute{DataRoute: DataRoute{"POST", "/keys/{name}/" + seg}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
				return a.kv.KeyOperation(q.r.Context(), q.vault, q.p["name"], "", op, q.body)
			}},
			vaultRoute{DataRoute: DataRoute{"POST", "/keys/{name}/{version}/" + seg}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
				return a.kv.KeyOperation(q.r.Context(), q.vault, q.p["name"], q.p["version"], op, q.body)
			}})
	}
	rs = append(rs,
		vaultRoute{DataRoute: DataRoute{"GET", "/keys/{name}/{version}"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.GetKey(q.r.Context(), q.vault, q.p["name"], q.p["version"])
		}},
		vaultRoute{DataRoute: DataRoute{"PATCH", "/keys/{name}/{version}"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.UpdateKey(q.r.Context(), q.vault, q.p["name"], q.p["version"], q.body)
		}},
		vaultRoute{DataRoute: DataRoute{"GET", "/deletedkeys"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			p, err := a.page(q.r, q.vault, q.apiVersion, "/deletedkeys")
			if err != nil {
				return nil, err
			}
			return a.kv.ListDeletedKeys(q.r.Context(), q.vault, p)
		}},
		vaultRoute{DataRoute: DataRoute{"GET", "/deletedkeys/{name}"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.GetDeletedKey(q.r.Context(), q.vault, q.p["name"])
		}},
		vaultRoute{DataRoute: DataRoute{"DELETE", "/deletedkeys/{name}"}, status: http.StatusNoContent, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return nil, a.kv.PurgeDeletedKey(q.r.Context(), q.vault, q.p["name"])
		}},
		vaultRoute{DataRoute: DataRoute{"POST", "/deletedkeys/{name}/recover"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			return a.kv.RecoverDeletedKey(q.r.Context(), q.vault, q.p["name"])
		}},
		vaultRoute{DataRoute: DataRoute{"GET", "/custody/changes"}, serve: func(a *vaultAPI, q *vaultCall) (any, error) {
			wait := 30 * time.Second
			if t := q.r.URL.Query().Get("timeout"); t != "" {
				n, err := strconv.Atoi(t)
				if err != nil || n < 0 || time.Duration(n)*time.Second > keyvault.MaxChangesWait {
					return nil, custody.Errorf(custody.KindInvalid, "BadParameter",
						"timeout is how many seconds to wait for a change: a whole number from 0 to %d, not %q.", int(keyvault.MaxChangesWait/time.Second), clipParam(t))
				}
				wait = time.Duration(n) * time.Second
			}
			return a.kv.Changes(q.r.Context(), q.vault, q.r.URL.Query().Get("since"), wait)
		}},
	)
	for i := range rs {
		rs[i].pattern = parsePattern(rs[i].Path)
	}
	return rs
}()

// route dispatches r through vaultRoutes and returns the response body and
// status. One trailing slash is ignored, as Key Vault does.
func (a *vaultAPI) route(r *http.Request, vault, apiVersion string) (any, int, error) {
	segs, ok := segments(r)
	if !ok || len(segs) == 0 {
		return nil, 0, notFoundPath(r)
	}
	// Names longer than Key Vault allows are refused before any lookup, so
	// that they reach neither the store nor the audit log.
	for _, seg := range segs {
		if len(seg) > maxKeyNameLen {
			return nil, 0, custody.Errorf(custody.KindInvalid, "BadParameter",
				"A name in the path is %d characters long; key names are 1 to %d letters, digits and hyphens, and versions 32 characters.", len(seg), maxKeyNameLen)
		}
	}
	if len(segs) > 1 && segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1]
	}
	var allowed []string
	for i := range vaultRoutes {
		rt := &vaultRoutes[i]
		params, ok := rt.pattern.match(segs)
		if !ok {
			continue
		}
		if rt.Method != r.Method {
			if !slices.Contains(allowed, rt.Method) {
				allowed = append(allowed, rt.Method)
			}
			continue
		}
		v, err := rt.serve(a, &vaultCall{r: r, vault: vault, apiVersion: apiVersion, p: params})
		if err != nil {
			return nil, 0, err
		}
		if rt.status != 0 {
			return v, rt.status, nil
		}
		return v, http.StatusOK, nil
	}
	if len(allowed) > 0 {
		return nil, 0, methodNotAllowed(r, strings.Join(allowed, " or "))
	}
	return nil, 0, notFoundPath(r)
}

// clipParam bounds a query parameter quoted in an error.
func clipParam(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
