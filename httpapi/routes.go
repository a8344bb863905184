package httpapi

import (
	"strings"
)

// DataRoute is one operation of a data plane (key vault or batch): an HTTP
// method and a path template relative to the vault or account URL. Literal
// segments match case-insensitively; {name} matches one non-empty segment;
// a last {name...} matches the rest of the path (possibly nothing); a
// segment ending in "(...)" matches any segment that starts with the text
// before it and "(", as Batch's certificates(thumbprintAlgorithm=...,
// thumbprint=...) does.
type DataRoute struct {
	Method string
	Path   string
}

// routePattern is a parsed DataRoute path.
type routePattern []string

func parsePattern(path string) routePattern {
	return strings.Split(strings.Trim(path, "/"), "/")
}

// match matches unescaped path segments against the pattern and returns its
// parameters.
func (p routePattern) match(segs []string) (map[string]string, bool) {
	params := map[string]string{}
	for i, t := range p {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "...}") {
			params[t[1:len(t)-4]] = strings.Join(segs[min(i, len(segs)):], "/")
			return params, len(segs) >= i
		}
		if i >= len(segs) {
			return nil, false
		}
		s := segs[i]
		switch {
		case isParam(t):
			if s == "" {
				return nil, false
			}
			params[t[1:len(t)-1]] = s
		case strings.HasSuffix(t, "(...)"):
			pre := strings.TrimSuffix(t, "...)")
			if len(s) <= len(pre) || !strings.EqualFold(s[:len(pre)], pre) {
				return nil, false
			}
		default:
			if !strings.EqualFold(t, s) {
				return nil, false
			}
		}
	}
	return params, len(segs) == len(p)
}

// Routes returns the resource manager's routes in registration order: the
// table the router serves and the authorization tests enumerate.
func (a *ARM) Routes() []ARMRoute {
	out := make([]ARMRoute, len(a.routes))
	for i, r := range a.routes {
		out[i] = *r
	}
	return out
}

// VaultRoutes returns the key vault data plane's operations: the table
// vaultAPI routes by.
func VaultRoutes() []DataRoute {
	out := make([]DataRoute, len(vaultRoutes))
	for i, r := range vaultRoutes {
		out[i] = r.DataRoute
	}
	return out
}

// BatchRoutes returns the batch data plane's operations (jobs, tasks and
// certificates, then pools, nodes and files): the table batchData routes by.
func BatchRoutes() []DataRoute {
	out := make([]DataRoute, len(batchRoutes))
	for i, r := range batchRoutes {
		out[i] = r.DataRoute
	}
	return out
}
