package httpapi

import (
	"net/http"
	"net/url"
	"strings"

	"custody"
	"custody/identity"
)

// ARMRequest is a resource manager request after authentication, routing,
// api-version and authorization checks.
type ARMRequest struct {
	*http.Request
	// Params holds the path parameters of the route, by the names in braces.
	Params map[string]string
	// APIVersion is the api-version the client sent (echoed in the URLs
	// the response gives, such as operation results).
	APIVersion string
	// ServedVersion is the api-version the request is served as: the one
	// the client sent, or the newest known when it sent a newer one (see
	// the api-version policy, apiversion.go).
	ServedVersion string
	// Caller is the authenticated principal.
	Caller custody.Caller
	// Scope is the resource id the authorization check ran against.
	Scope string
}

// Param returns the path parameter name.
func (r *ARMRequest) Param(name string) string { return r.Params[name] }

// ARMHandler serves one ARM route. A returned error is written in ARM's
// error shape.
type ARMHandler func(w http.ResponseWriter, r *ARMRequest) error

// ARMRoute describes one resource manager operation.
type ARMRoute struct {
	// Method is the HTTP method.
	Method string
	// Path is the route template with Azure's casing, e.g.
	// /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}.
	// Literal segments match case-insensitively. A leading {scope...} matches
	// any resource id (used for role assignments).
	Path string
	// APIVersions are the api-version values Azure documents for the
	// operation, oldest first ("*": any); newer ones are served as the
	// newest (resolveARMVersion).
	APIVersions []string
	// Action is the RBAC action the caller needs at the route's scope, e.g.
	// Microsoft.Resources/subscriptions/resourceGroups/write. Empty means any
	// authenticated caller may call it.
	Action string
	// Handler serves the request.
	Handler ARMHandler

	segs []string
}

// ARM routes resource manager requests.
type ARM struct {
	s          *Server
	routes     []*ARMRoute
	namespaces map[string]map[string]bool // lower namespace -> lower first type -> true
}

func newARM(s *Server) *ARM {
	return &ARM{s: s, namespaces: map[string]map[string]bool{}}
}

// Handle registers a route. It panics on a malformed template, at start-up.
func (a *ARM) Handle(rt ARMRoute) {
	rt.segs = strings.Split(strings.Trim(rt.Path, "/"), "/")
	if len(rt.APIVersions) == 0 {
		panic("httpapi: ARM route without api-versions: " + rt.Path)
	}
	for i, seg := range rt.segs {
		if strings.EqualFold(seg, "providers") && i+2 < len(rt.segs) && !isParam(rt.segs[i+1]) {
			ns := strings.ToLower(rt.segs[i+1])
			if a.namespaces[ns] == nil {
				a.namespaces[ns] = map[string]bool{}
			}
			if !isParam(rt.segs[i+2]) {
				a.namespaces[ns][strings.ToLower(rt.segs[i+2])] = true
			}
		}
	}
	r := rt
	a.routes = append(a.routes, &r)
}

func isParam(seg string) bool { return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") }

// match matches path segments against a route template.
func (rt *ARMRoute) match(segs []string) (map[string]string, bool) {
	tmpl := rt.segs
	params := map[string]string{}
	if len(tmpl) > 0 && strings.HasSuffix(tmpl[0], "...}") {
		rest := tmpl[1:]
		if len(segs) < len(rest)+2 {
			return nil, false
		}
		scopeSegs := segs[:len(segs)-len(rest)]
		params[strings.TrimSuffix(strings.TrimPrefix(tmpl[0], "{"), "...}")] = "/" + strings.Join(scopeSegs, "/")
		segs, tmpl = segs[len(segs)-len(rest):], rest
	}
	if len(segs) != len(tmpl) {
		return nil, false
	}
	for i, t := range tmpl {
		if isParam(t) {
			if segs[i] == "" {
				return nil, false
			}
			params[t[1:len(t)-1]] = segs[i]
		} else if !strings.EqualFold(t, segs[i]) {
			return nil, false
		}
	}
	return params, true
}

// fill returns the route's path with parameters substituted, in Azure's
// casing for literals.
func (rt *ARMRoute) fill(params map[string]string) string {
	var b strings.Builder
	for _, t := range rt.segs {
		if isParam(t) {
			name := strings.TrimSuffix(t[1:len(t)-1], "...")
			v := params[name]
			if strings.HasPrefix(v, "/") {
				b.WriteString(v)
				continue
			}
			b.WriteString("/" + v)
		} else {
			b.WriteString("/" + t)
		}
	}
	return b.String()
}

// scopeOf reduces a request path to the resource id it acts on: a
// subscription, a resource group, or a provider resource.
func scopeOf(path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) < 2 || !strings.EqualFold(segs[0], "subscriptions") {
		return "/"
	}
	out := "/subscriptions/" + segs[1]
	rest := segs[2:]
	if len(rest) >= 2 && strings.EqualFold(rest[0], "resourceGroups") {
		out += "/resourceGroups/" + rest[1]
		rest = rest[2:]
		// Walk nested provider resources: providers/{ns}/{type}/{name}[/{type}/{name}...]
		if len(rest) >= 4 && strings.EqualFold(rest[0], "providers") {
			out += "/providers/" + rest[1]
			rest = rest[2:]
			for len(rest) >= 2 && !strings.EqualFold(rest[0], "providers") {
				out += "/" + rest[0] + "/" + rest[1]
				rest = rest[2:]
			}
		}
	}
	return out
}

func splitEscaped(u *url.URL) ([]string, error) {
	raw := strings.Trim(u.EscapedPath(), "/")
	segs := strings.Split(raw, "/")
	for i, s := range segs {
		v, err := url.PathUnescape(s)
		if err != nil {
			return nil, err
		}
		segs[i] = v
	}
	return segs, nil
}

// armSegments splits an ARM request path into decoded segments and refuses
// a segment that decodes to a path separator (a slash or backslash) or is a dot
// segment ("." or ".."), escaped or not: ARM names never hold them, and a
// segment like rg1%2F..%2Frg2 would otherwise make the scope the role check
// runs at differ from the resource the handler acts on.
func armSegments(u *url.URL) ([]string, error) {
	segs, err := splitEscaped(u)
	if err != nil {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidRequestUri", "The request path is not a valid URL path: %v.", err)
	}
	for _, s := range segs {
		if s == "." || s == ".." || strings.ContainsAny(s, "/\\") {
			return nil, custody.Errorf(custody.KindInvalid, "InvalidRequestUri",
				"The request path has a segment %q that is a dot segment or holds an encoded path separator (%%2F or %%5C); resource ids name each resource in its own segment.", s)
		}
	}
	return segs, nil
}

func (a *ARM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	authed, err := a.s.authenticate(r, identity.AudienceManagement)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="`+a.s.PublicURL("login")+"/"+a.s.cfg.Identity.TenantID+`", error="invalid_token", error_description="`+strings.ReplaceAll(custody.ErrorMessage(err), `"`, "'")+`"`)
		writeError(w, r, err)
		return
	}
	r = authed
	segs, err := armSegments(r.URL)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var route *ARMRoute
	var params map[string]string
	pathMatched := false
	for _, rt := range a.routes {
		p, ok := rt.match(segs)
		if !ok {
			continue
		}
		pathMatched = true
		if rt.Method == r.Method {
			route, params = rt, p
			break
		}
	}
	if route == nil {
		if pathMatched {
			writeError(w, r, custody.Errorf(custody.KindMethodNotAllowed, "MethodNotAllowed", "The method %s is not allowed on %s.", r.Method, r.URL.Path))
			return
		}
		writeError(w, r, a.notFound(segs, r))
		return
	}
	apiVersion := r.URL.Query().Get("api-version")
	if apiVersion == "" {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests. Supported versions for this operation: %s.", strings.Join(route.APIVersions, ", ")))
		return
	}
	served, ok := resolveARMVersion(route.APIVersions, apiVersion)
	if !ok {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "InvalidApiVersionParameter",
			"The api-version '%s' is invalid. The supported versions are '%s'.", apiVersion, strings.Join(route.APIVersions, ",")))
		return
	}
	a.s.servedAs(w, r, apiVersion, served)
	if sub, ok := params["subscriptionId"]; ok {
		if err := a.s.cfg.RM.CheckSubscription(sub); err != nil {
			writeError(w, r, err)
			return
		}
	}
	filled := route.fill(params)
	scope := scopeOf(filled)
	if sc, ok := params["scope"]; ok {
		scope = sc
	}
	caller, _ := custody.CallerFrom(r.Context())
	if route.Action != "" {
		if err := a.s.cfg.RM.Authorize(r.Context(), caller.ObjectID, scope, route.Action, false); err != nil {
			writeError(w, r, err)
			return
		}
	}
	req := &ARMRequest{Request: r, Params: params, APIVersion: apiVersion, ServedVersion: served, Caller: caller, Scope: scope}
	if err := route.Handler(w, req); err != nil {
		writeError(w, r, err)
	}
}

// notFound explains why no route matched: an unknown namespace or type, or
// an unknown path.
func (a *ARM) notFound(segs []string, r *http.Request) error {
	for i, seg := range segs {
		if !strings.EqualFold(seg, "providers") || i+1 >= len(segs) {
			continue
		}
		ns := segs[i+1]
		types, ok := a.namespaces[strings.ToLower(ns)]
		if !ok {
			return custody.Errorf(custody.KindNotFound, "InvalidResourceNamespace",
				"The resource namespace '%s' is invalid or not served by this server.", ns)
		}
		if i+2 < len(segs) && !types[strings.ToLower(segs[i+2])] {
			return custody.Errorf(custody.KindNotFound, "InvalidResourceType",
				"The resource type '%s' could not be found in the namespace '%s' for api version '%s'.", segs[i+2], ns, r.URL.Query().Get("api-version"))
		}
	}
	return custody.Errorf(custody.KindNotFound, "NotFound", "No resource manager operation matches %s %s.", r.Method, r.URL.Path)
}

// armResource is the envelope every ARM resource body has.
type armResource struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties any               `json:"properties,omitempty"`
}

// listBody is ARM's list envelope.
type listBody[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

func isNotFound(err error) bool { return custody.IsNotFound(err) }
