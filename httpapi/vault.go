package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
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
// Routes (paths relative to the vault URL; literal segments match
// case-insensitively):
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

// LatestKeyVaultAPIVersion is the api-version azkeys v1.5.0 sends.
const LatestKeyVaultAPIVersion = "2025-07-01"

var kvAPIVersion = regexp.MustCompile(`^(7\.[0-6](-preview)?|2025-07-01)$`)

// VaultHandler returns the data-plane handler of kv, for HandleVault.
func (s *Server) VaultHandler(kv *keyvault.Service) http.Handler {
	return &vaultAPI{s: s, kv: kv}
}

type vaultAPI struct {
	s      *Server
	kv     *keyvault.Service
	tokens tokenCache
}

// tokenCache remembers verified access tokens for a short while, so that a
// client calling many times with one token (a crypto operation per request)
// is not verified again each time. An entry lives at most tokenCacheTTL and
// never past the token's own expiry.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedCaller
}

type cachedCaller struct {
	caller custody.Caller
	until  time.Time
}

const (
	tokenCacheTTL = time.Minute
	tokenCacheMax = 10000
)

func (c *tokenCache) get(raw string, now time.Time) (custody.Caller, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[raw]
	if !ok || !now.Before(e.until) {
		return custody.Caller{}, false
	}
	return e.caller, true
}

func (c *tokenCache) put(raw string, caller custody.Caller, now time.Time) {
	until := now.Add(tokenCacheTTL)
	if exp, ok := tokenExpiry(raw); ok && exp.Before(until) {
		until = exp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = map[string]cachedCaller{}
	}
	c.m[raw] = cachedCaller{caller: caller, until: until}
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
	if !kvAPIVersion.MatchString(apiVersion) {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "BadParameter",
			"The specified version (%s) is not recognized. Consider using the latest supported version (%s).", apiVersion, LatestKeyVaultAPIVersion))
		return
	}
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

// route dispatches r and returns the response body and status.
func (a *vaultAPI) route(r *http.Request, vault, apiVersion string) (any, int, error) {
	ctx := r.Context()
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
	body := func(v any) error { return decodeJSON(r, v) }
	eq := strings.EqualFold
	m := r.Method
	ok200 := func(v any, err error) (any, int, error) {
		if err != nil {
			return nil, 0, err
		}
		return v, http.StatusOK, nil
	}
	switch {
	case eq(segs[0], "keys"):
		switch {
		case len(segs) == 1 || len(segs) == 2 && segs[1] == "":
			if m != http.MethodGet {
				return nil, 0, methodNotAllowed(r, "GET")
			}
			p, err := a.page(r, vault, apiVersion, "/keys")
			if err != nil {
				return nil, 0, err
			}
			return ok200(a.kv.ListKeys(ctx, vault, p))
		case len(segs) == 2 && eq(segs[1], "restore") && m == http.MethodPost:
			return ok200(a.kv.RestoreKey(ctx, vault, body))
		case len(segs) == 2 || len(segs) == 3 && segs[2] == "":
			name := segs[1]
			switch {
			case m == http.MethodGet:
				return ok200(a.kv.GetKey(ctx, vault, name, ""))
			case m == http.MethodPatch:
				return ok200(a.kv.UpdateKey(ctx, vault, name, "", body))
			case m == http.MethodPut && len(segs) == 2:
				return ok200(a.kv.ImportKey(ctx, vault, name, body))
			case m == http.MethodDelete && len(segs) == 2:
				return ok200(a.kv.DeleteKey(ctx, vault, name))
			}
			return nil, 0, methodNotAllowed(r, "GET, PUT, PATCH or DELETE")
		case len(segs) == 3:
			name, x := segs[1], segs[2]
			lx := strings.ToLower(x)
			switch {
			case lx == "versions":
				if m != http.MethodGet {
					return nil, 0, methodNotAllowed(r, "GET")
				}
				p, err := a.page(r, vault, apiVersion, "/keys/"+url.PathEscape(name)+"/versions")
				if err != nil {
					return nil, 0, err
				}
				return ok200(a.kv.ListKeyVersions(ctx, vault, name, p))
			case lx == "rotationpolicy":
				switch m {
				case http.MethodGet:
					return ok200(a.kv.GetRotationPolicy(ctx, vault, name))
				case http.MethodPut:
					return ok200(a.kv.UpdateRotationPolicy(ctx, vault, name, body))
				}
				return nil, 0, methodNotAllowed(r, "GET or PUT")
			case m == http.MethodPost:
				switch lx {
				case "create":
					return ok200(a.kv.CreateKey(ctx, vault, name, body))
				case "backup":
					return ok200(a.kv.BackupKey(ctx, vault, name))
				case "rotate":
					return ok200(a.kv.RotateKey(ctx, vault, name))
				}
				if op, ok := keyvault.CryptoOps[lx]; ok {
					return ok200(a.kv.KeyOperation(ctx, vault, name, "", op, body))
				}
				return nil, 0, notFoundPath(r)
			case m == http.MethodGet:
				return ok200(a.kv.GetKey(ctx, vault, name, x))
			case m == http.MethodPatch:
				return ok200(a.kv.UpdateKey(ctx, vault, name, x, body))
			}
			return nil, 0, methodNotAllowed(r, "GET or PATCH")
		case len(segs) == 4:
			op, ok := keyvault.CryptoOps[strings.ToLower(segs[3])]
			if !ok {
				return nil, 0, notFoundPath(r)
			}
			if m != http.MethodPost {
				return nil, 0, methodNotAllowed(r, "POST")
			}
			return ok200(a.kv.KeyOperation(ctx, vault, segs[1], segs[2], op, body))
		}
	case eq(segs[0], "deletedkeys"):
		switch {
		case len(segs) == 1 || len(segs) == 2 && segs[1] == "":
			if m != http.MethodGet {
				return nil, 0, methodNotAllowed(r, "GET")
			}
			p, err := a.page(r, vault, apiVersion, "/deletedkeys")
			if err != nil {
				return nil, 0, err
			}
			return ok200(a.kv.ListDeletedKeys(ctx, vault, p))
		case len(segs) == 2 || len(segs) == 3 && segs[2] == "":
			switch m {
			case http.MethodGet:
				return ok200(a.kv.GetDeletedKey(ctx, vault, segs[1]))
			case http.MethodDelete:
				if err := a.kv.PurgeDeletedKey(ctx, vault, segs[1]); err != nil {
					return nil, 0, err
				}
				return nil, http.StatusNoContent, nil
			}
			return nil, 0, methodNotAllowed(r, "GET or DELETE")
		case len(segs) == 3 && eq(segs[2], "recover"):
			if m != http.MethodPost {
				return nil, 0, methodNotAllowed(r, "POST")
			}
			return ok200(a.kv.RecoverDeletedKey(ctx, vault, segs[1]))
		}
	}
	return nil, 0, notFoundPath(r)
}
