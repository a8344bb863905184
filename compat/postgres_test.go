package compat_test

import (
	"net/http"
	"net/url"
	"testing"

	"custody/rm"
	"custody/server"
	"custody/server/servertest"
	_ "custody/sqlstore" // registers the pgx driver
	"custody/sqlstore/sqlstoretest"
)

// MustPostgresServer starts a server on a fresh schema of the test
// PostgreSQL server (CUSTODY_TEST_POSTGRES, default a local one). It skips
// when PostgreSQL is unreachable, unless CI is set.
func MustPostgresServer(t *testing.T) *servertest.TestServer {
	t.Helper()
	dsn := MustPostgresDatabase(t)
	return servertest.New(t, func(c *server.Config) { c.Database = dsn })
}

// MustPostgresDatabase creates a fresh schema on the test PostgreSQL
// server, dropped when the test ends, and returns the database setting
// that selects it (several servers in turn may use it). It skips when
// PostgreSQL is unreachable, unless CI is set.
func MustPostgresDatabase(t *testing.T) string {
	t.Helper()
	return sqlstoretest.NewSchema(t, "compat_test_")
}

// TestPostgresRefusesNUL sends NUL characters, which PostgreSQL cannot store
// in text, everywhere a client can put them: each is a 4xx, never a 500.
func TestPostgresRefusesNUL(t *testing.T) {
	ts := MustPostgresServer(t)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg1")
	MustIdentity(t, ts, tok, "rg1", "id1")
	sp := MustServicePrincipal(t, ts, "app")
	MustAssign(t, ts, tok, groupPath(ts, "rg1"), rm.RoleReader, sp.ObjectID)
	graph := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://graph.microsoft.com/.default")

	for _, tt := range []struct{ name, method, host, path, body string }{
		{"GroupLocation", "PUT", "management", groupPath(ts, "rg2") + "?api-version=" + rgAPIVersion, `{"location":"west\u0000us"}`},
		{"GroupTag", "PUT", "management", groupPath(ts, "rg2") + "?api-version=" + rgAPIVersion, `{"location":"westus","tags":{"a\u0000":"b"}}`},
		{"IdentityLocation", "PUT", "management", identityPath(ts, "rg1", "id2") + "?api-version=" + miAPIVersion, `{"location":"\u0000"}`},
		{"GroupName", "GET", "management", groupPath(ts, "a%00b") + "?api-version=" + rgAPIVersion, ``},
		{"IdentityName", "GET", "management", identityPath(ts, "rg1", "id%00") + "?api-version=" + miAPIVersion, ``},
		{"RoleAssignmentScope", "PUT", "management", groupPath(ts, "r%00g") + "/providers/Microsoft.Authorization/roleAssignments/3f2504e0-4f89-41d3-9a0c-0305e82c3301?api-version=" + raAPIVersion,
			`{"properties":{"roleDefinitionId":"` + rm.RoleDefinitionID(ts.Admin.SubscriptionID, rm.RoleReader) + `","principalId":"` + sp.ObjectID + `"}}`},
		{"RoleAssignmentPrincipal", "PUT", "management", groupPath(ts, "rg1") + "/providers/Microsoft.Authorization/roleAssignments/3f2504e0-4f89-41d3-9a0c-0305e82c3301?api-version=" + raAPIVersion,
			`{"properties":{"roleDefinitionId":"` + rm.RoleDefinitionID(ts.Admin.SubscriptionID, rm.RoleReader) + `","principalId":"a\u0000"}}`},
		{"ServicePrincipalName", "POST", "graph", "/v1.0/servicePrincipals", `{"displayName":"a\u0000b"}`},
		{"ServicePrincipalID", "GET", "graph", "/v1.0/servicePrincipals/%00", ``},
	} {
		t.Run(tt.name, func(t *testing.T) {
			token := tok
			if tt.host == "graph" {
				token = graph
			}
			r := MustDo(t, ts, token, tt.method, tt.host, tt.path, tt.body)
			if r.Status < 400 || r.Status >= 500 {
				t.Errorf("status = %d, want 4xx; body: %s", r.Status, r.Body)
			}
		})
	}
	for _, tt := range []struct{ name, field, value string }{
		{"ClientID", "client_id", "a\x00b"},
		{"Secret", "client_secret", "\x00"},
		{"Scope", "scope", armScope + "\x00"},
	} {
		t.Run("Token"+tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID}, "client_secret": {sp.Secret}, "scope": {armScope}}
			form.Set(tt.field, tt.value)
			r := tokenResponse(t, ts, ts.Admin.TenantID, form)
			if r.Status < 400 || r.Status >= 500 {
				t.Errorf("status = %d, want 4xx; body: %s", r.Status, r.Body)
			}
		})
	}
	// The server still works.
	wantStatus(t, MustARM(t, ts, MustToken(t, ts, sp.ClientID, sp.Secret, armScope), "GET", groupPath(ts, "rg1")+"?api-version="+rgAPIVersion, ""), http.StatusOK)
}
