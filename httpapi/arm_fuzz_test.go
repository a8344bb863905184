package httpapi

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzARMPath feeds the resource manager's path parsing (splitEscaped, the
// route templates, fill and scopeOf) arbitrary paths. It must not panic;
// the scope a route is authorized at must be a subscription-rooted id (or
// "/") made of the request's own segments, and a matched route filled with
// its parameters must match the same route again.
func FuzzARMPath(f *testing.F) {
	for _, s := range []string{
		"/subscriptions/s1/resourceGroups/rg1",
		"/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/v1",
		"/subscriptions/s1/resourceGroups/rg1%2Fproviders%2FMicrosoft.KeyVault%2Fvaults%2Fv1/providers/Microsoft.Batch/batchAccounts/a",
		"/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Authorization/roleAssignments/x",
		"/subscriptions/s1/providers/Microsoft.Authorization/roleAssignments",
		"/providers/Microsoft.Authorization/roleAssignments",
		"//subscriptions//s1", "/%2e%2e/subscriptions", "/subscriptions/%00", "/subscriptions/%zz",
		"/subscriptions/s1/resourceGroups/" + strings.Repeat("a", 500<<10),
		"/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Batch/batchAccounts/a/providers/Microsoft.Authorization/roleAssignments/r",
	} {
		f.Add(s)
	}
	s := New(Config{})
	s.RegisterKeyVault(nil)
	s.RegisterBatchAccounts(nil)
	routes := s.ARM().routes
	f.Fuzz(func(t *testing.T, path string) {
		u, err := url.Parse("https://management.localhost" + "/" + strings.TrimPrefix(path, "/"))
		if err != nil {
			return
		}
		segs, err := splitEscaped(u)
		if err != nil {
			return
		}
		for _, rt := range routes {
			params, ok := rt.match(segs)
			if !ok {
				continue
			}
			filled := rt.fill(params)
			scope := scopeOf(filled)
			if sc, ok := params["scope"]; ok {
				scope = sc
			}
			if scope != "/" && !strings.HasPrefix(strings.ToLower(scope), "/subscriptions/") && !strings.HasPrefix(scope, "/") {
				t.Fatalf("route %s on %q: scope %q is not a resource id", rt.Path, path, scope)
			}
			if _, ok := rt.match(strings.Split(strings.Trim(filled, "/"), "/")); !ok && !strings.Contains(filled, "//") {
				// A parameter holding "/" (an encoded slash) changes the
				// path's shape: the route no longer matches its own fill.
				for _, v := range params {
					if strings.Contains(v, "/") {
						return
					}
				}
				t.Fatalf("route %s: its fill %q of %q does not match it again", rt.Path, filled, path)
			}
		}
	})
}
