package adversarial_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	"custody/httpapi"
)

// vaultRows has one row per key vault data-plane route, by "METHOD path":
// the key permission it needs (for the reader; only the Owner holds an
// access policy, so every other principal is refused) and a body.
var vaultRows = map[string]struct{ perm, body string }{
	"GET /keys":                             {"list", ""},
	"POST /keys/restore":                    {"restore", `{"value":"AAAA"}`},
	"GET /keys/{name}":                      {"get", ""},
	"PUT /keys/{name}":                      {"import", `{"key":{"kty":"oct","k":"AAAA"}}`},
	"PATCH /keys/{name}":                    {"update", `{"attributes":{"enabled":true}}`},
	"DELETE /keys/{name}":                   {"delete", ""},
	"GET /keys/{name}/versions":             {"list", ""},
	"GET /keys/{name}/rotationpolicy":       {"getrotationpolicy", ""},
	"PUT /keys/{name}/rotationpolicy":       {"setrotationpolicy", `{"lifetimeActions":[]}`},
	"POST /keys/{name}/create":              {"create", `{"kty":"RSA","key_size":2048}`},
	"POST /keys/{name}/backup":              {"backup", ""},
	"POST /keys/{name}/rotate":              {"rotate", ""},
	"POST /keys/{name}/encrypt":             {"encrypt", `{"alg":"RSA-OAEP-256","value":"AAAA"}`},
	"POST /keys/{name}/decrypt":             {"decrypt", `{"alg":"RSA-OAEP-256","value":"AAAA"}`},
	"POST /keys/{name}/wrapkey":             {"wrapKey", `{"alg":"RSA-OAEP-256","value":"AAAA"}`},
	"POST /keys/{name}/unwrapkey":           {"unwrapKey", `{"alg":"RSA-OAEP-256","value":"AAAA"}`},
	"POST /keys/{name}/sign":                {"sign", `{"alg":"RS256","value":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}`},
	"POST /keys/{name}/verify":              {"verify", `{"alg":"RS256","digest":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","value":"AAAA"}`},
	"POST /keys/{name}/{version}/encrypt":   {"encrypt", `{"alg":"RSA-OAEP-256","value":"AAAA"}`},
	"POST /keys/{name}/{version}/decrypt":   {"decrypt", `{"alg":"RSA-OAEP-256","value":"AAAA"}`},
	"POST /keys/{name}/{version}/wrapkey":   {"wrapKey", `{"alg":"RSA-OAEP-256","value":"AAAA"}`},
	"POST /keys/{name}/{version}/unwrapkey": {"unwrapKey", `{"alg":"RSA-OAEP-256","value":"AAAA"}`},
	"POST /keys/{name}/{version}/sign":      {"sign", `{"alg":"RS256","value":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}`},
	"POST /keys/{name}/{version}/verify":    {"verify", `{"alg":"RS256","digest":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","value":"AAAA"}`},
	"GET /keys/{name}/{version}":            {"get", ""},
	"PATCH /keys/{name}/{version}":          {"update", `{"attributes":{"enabled":true}}`},
	"GET /deletedkeys":                      {"list", ""},
	"GET /deletedkeys/{name}":               {"get", ""},
	"DELETE /deletedkeys/{name}":            {"purge", ""},
	"POST /deletedkeys/{name}/recover":      {"recover", ""},
	"GET /custody/changes":                  {"get", ""},
}

// batchRows has one row per batch data-plane route, by "METHOD path": the
// action it needs on the account, and a body. The ids in paths name
// nothing, so a permitted caller gets 404 or 400, never a change.
var batchRows = map[string]struct{ action, body string }{
	"GET /jobs":                                             {readAccount, ""},
	"POST /jobs":                                            {writeAccount, `{}`},
	"GET /jobs/{jobId}":                                     {readAccount, ""},
	"PUT /jobs/{jobId}":                                     {writeAccount, `{"poolInfo":{"poolId":"p"}}`},
	"PATCH /jobs/{jobId}":                                   {writeAccount, `{"priority":1}`},
	"DELETE /jobs/{jobId}":                                  {writeAccount, ""},
	"POST /jobs/{jobId}/disable":                            {writeAccount, `{"disableTasks":"requeue"}`},
	"POST /jobs/{jobId}/enable":                             {writeAccount, ""},
	"POST /jobs/{jobId}/terminate":                          {writeAccount, ""},
	"GET /jobs/{jobId}/taskcounts":                          {readAccount, ""},
	"GET /jobs/{jobId}/tasks":                               {readAccount, ""},
	"POST /jobs/{jobId}/tasks":                              {writeAccount, `{"id":"t1","commandLine":"true"}`},
	"POST /jobs/{jobId}/addtaskcollection":                  {writeAccount, `{"value":[{"id":"t1","commandLine":"true"}]}`},
	"GET /jobs/{jobId}/tasks/{taskId}":                      {readAccount, ""},
	"PUT /jobs/{jobId}/tasks/{taskId}":                      {writeAccount, `{"constraints":{}}`},
	"DELETE /jobs/{jobId}/tasks/{taskId}":                   {writeAccount, ""},
	"POST /jobs/{jobId}/tasks/{taskId}/terminate":           {writeAccount, ""},
	"GET /jobschedules":                                     {readAccount, ""},
	"POST /jobschedules":                                    {writeAccount, `{}`},
	"GET /jobschedules/{jobScheduleId}":                     {readAccount, ""},
	"HEAD /jobschedules/{jobScheduleId}":                    {readAccount, ""},
	"PUT /jobschedules/{jobScheduleId}":                     {writeAccount, `{"jobSpecification":{"poolInfo":{"poolId":"p"}}}`},
	"PATCH /jobschedules/{jobScheduleId}":                   {writeAccount, `{"metadata":[]}`},
	"DELETE /jobschedules/{jobScheduleId}":                  {writeAccount, ""},
	"POST /jobschedules/{jobScheduleId}/disable":            {writeAccount, ""},
	"POST /jobschedules/{jobScheduleId}/enable":             {writeAccount, ""},
	"POST /jobschedules/{jobScheduleId}/terminate":          {writeAccount, ""},
	"GET /jobschedules/{jobScheduleId}/jobs":                {readAccount, ""},
	"POST /jobs/{jobId}/tasks/{taskId}/reactivate":          {writeAccount, ""},
	"GET /jobs/{jobId}/jobpreparationandreleasetaskstatus":  {readAccount, ""},
	"GET /certificates":                                     {readAccount, ""},
	"POST /certificates":                                    {writeAccount, `{}`},
	"GET /certificates(...)":                                {readAccount, ""},
	"DELETE /certificates(...)":                             {writeAccount, ""},
	"GET /nodecounts":                                       {readAccount, ""},
	"GET /pools":                                            {readAccount, ""},
	"POST /pools":                                           {writeAccount, `{}`},
	"GET /pools/{poolId}":                                   {readAccount, ""},
	"HEAD /pools/{poolId}":                                  {readAccount, ""},
	"PATCH /pools/{poolId}":                                 {writeAccount, `{}`},
	"DELETE /pools/{poolId}":                                {writeAccount, ""},
	"POST /pools/{poolId}/updateproperties":                 {writeAccount, `{}`},
	"POST /pools/{poolId}/resize":                           {writeAccount, `{"targetDedicatedNodes":1}`},
	"POST /pools/{poolId}/stopresize":                       {writeAccount, ""},
	"POST /pools/{poolId}/removenodes":                      {writeAccount, `{"nodeList":["n1"]}`},
	"POST /pools/{poolId}/nodecredentials":                  {writeAccount, `{}`},
	"GET /pools/{poolId}/nodes":                             {readAccount, ""},
	"GET /pools/{poolId}/nodes/{nodeId}":                    {readAccount, ""},
	"POST /pools/{poolId}/nodes/{nodeId}/reboot":            {writeAccount, ""},
	"GET /pools/{poolId}/nodes/{nodeId}/files/{path...}":    {readAccount, ""},
	"HEAD /pools/{poolId}/nodes/{nodeId}/files/{path...}":   {readAccount, ""},
	"DELETE /pools/{poolId}/nodes/{nodeId}/files/{path...}": {writeAccount, ""},
	"GET /jobs/{jobId}/tasks/{taskId}/files/{path...}":      {readAccount, ""},
	"HEAD /jobs/{jobId}/tasks/{taskId}/files/{path...}":     {readAccount, ""},
	"DELETE /jobs/{jobId}/tasks/{taskId}/files/{path...}":   {writeAccount, ""},
}

const writeAccount = "Microsoft.Batch/batchAccounts/write"

// dataPath fills a data-plane route template.
func (e *env) dataPath(tmpl string) string {
	tmpl = strings.Replace(tmpl, "certificates(...)", "certificates(thumbprintAlgorithm=sha1,thumbprint=0123456789abcdef0123456789abcdef01234567)", 1)
	return fill(tmpl, e.vals)
}

func routeKeys(rs []httpapi.DataRoute) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Method + " " + r.Path
	}
	sort.SliceStable(out, func(i, j int) bool {
		mi, _, _ := strings.Cut(out[i], " ")
		mj, _, _ := strings.Cut(out[j], " ")
		return order(mi, out[i]) < order(mj, out[j])
	})
	return out
}

// TestAuthorizationMatrixVault calls every key vault data-plane route as
// each principal: management roles, even Owner or Contributor on the vault,
// give no key access; only the Owner's access policy does.
func TestAuthorizationMatrixVault(t *testing.T) {
	e := newEnv(t)
	keys := routeKeys(httpapi.VaultRoutes())
	seen := map[string]bool{}
	for _, key := range keys {
		seen[key] = true
		if _, ok := vaultRows[key]; !ok {
			t.Errorf("vault route %s has no row in the authorization matrix (vaultRows)", key)
		}
	}
	for key := range vaultRows {
		if !seen[key] {
			t.Errorf("matrix row %s matches no vault route", key)
		}
	}
	for _, key := range keys {
		row, ok := vaultRows[key]
		if !ok {
			continue
		}
		method, tmpl, _ := strings.Cut(key, " ")
		path := e.dataPath(tmpl) + "?api-version=7.4"
		for _, p := range e.ps {
			r := call(t, e.ts, p.tokens[scopeVault], method, vaultName+".vault", path, row.body)
			checkAnswer(t, key+" ("+row.perm+") as "+p.name, r, p == e.owner, false)
		}
	}
}

// TestAuthorizationMatrixBatch calls every batch data-plane route as each
// principal: reads need the account's read action, everything else its
// write action.
func TestAuthorizationMatrixBatch(t *testing.T) {
	e := newEnv(t)
	keys := routeKeys(httpapi.BatchRoutes())
	seen := map[string]bool{}
	for _, key := range keys {
		seen[key] = true
		if _, ok := batchRows[key]; !ok {
			t.Errorf("batch route %s has no row in the authorization matrix (batchRows)", key)
		}
	}
	for key := range batchRows {
		if !seen[key] {
			t.Errorf("matrix row %s matches no batch route", key)
		}
	}
	for _, key := range keys {
		row, ok := batchRows[key]
		if !ok {
			continue
		}
		method, tmpl, _ := strings.Cut(key, " ")
		path := e.dataPath(tmpl) + "?api-version=2024-07-01.20.0"
		for _, p := range e.ps {
			r := call(t, e.ts, p.tokens[scopeBatch], method, accountName+".batch", path, row.body)
			allowed := p.can(row.action, e.ids["account"], false)
			checkAnswer(t, key+" as "+p.name, r, allowed, false)
			if allowed && method == http.MethodGet && r.Status != http.StatusOK && r.Status != http.StatusNotFound {
				t.Errorf("%s as %s: %d, want 200 or 404: %s", key, p.name, r.Status, clip(r.Body, 300))
			}
		}
	}
}
