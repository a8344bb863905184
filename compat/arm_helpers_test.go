package compat_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"custody/identity"
	"custody/rm"
	"custody/server/servertest"
)

const (
	armScope     = "https://management.azure.com/.default"
	rgAPIVersion = "2021-04-01"
	raAPIVersion = "2022-04-01"
	miAPIVersion = "2024-11-30"
)

// response is what a test reads back from one request.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// azureErrorBody is the error shape of ARM and Key Vault.
type azureErrorBody struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// MustDo sends a request with an optional bearer token and JSON body and
// returns the response. host is a service name (login, management, ...).
func MustDo(tb testing.TB, ts *servertest.TestServer, token, method, host, path, body string) response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, ts.URL(host)+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return MustSend(tb, ts, req)
}

// MustSend sends req with the test server's client.
func MustSend(tb testing.TB, ts *servertest.TestServer, req *http.Request) response {
	tb.Helper()
	resp, err := ts.Client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// MustARM sends an ARM request.
func MustARM(tb testing.TB, ts *servertest.TestServer, token, method, path, body string) response {
	tb.Helper()
	return MustDo(tb, ts, token, method, "management", path, body)
}

// wantARMError checks that r is status with Azure's error body carrying
// code (any code if code is empty).
func wantARMError(tb testing.TB, r response, status int, code string) {
	tb.Helper()
	if r.Status != status {
		tb.Errorf("status = %d, want %d; body: %s", r.Status, status, r.Body)
		return
	}
	var e azureErrorBody
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == nil {
		tb.Errorf("body is not {\"error\":{...}}: %s (%v)", r.Body, err)
		return
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		tb.Errorf("error body lacks code or message: %s", r.Body)
	}
	if code != "" && e.Error.Code != code {
		tb.Errorf("error code = %q, want %q; message: %s", e.Error.Code, code, e.Error.Message)
	}
}

func wantStatus(tb testing.TB, r response, want ...int) {
	tb.Helper()
	for _, w := range want {
		if r.Status == w {
			return
		}
	}
	tb.Errorf("status = %d, want one of %v; body: %s", r.Status, want, r.Body)
}

// tokenResponse posts a client-credentials form to the tenant's token
// endpoint.
func tokenResponse(tb testing.TB, ts *servertest.TestServer, tenant string, form url.Values) response {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), "POST", ts.URL("login")+"/"+tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return MustSend(tb, ts, req)
}

// adminToken returns an ARM token for the server's admin.
func adminToken(tb testing.TB, ts *servertest.TestServer) string {
	tb.Helper()
	return MustToken(tb, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, armScope)
}

// MustToken gets an access token with the client-credentials grant.
func MustToken(tb testing.TB, ts *servertest.TestServer, clientID, secret, scope string) string {
	tb.Helper()
	r := tokenResponse(tb, ts, ts.Admin.TenantID, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {scope},
	})
	if r.Status != http.StatusOK {
		tb.Fatalf("token for %s (%s): %d %s", clientID, scope, r.Status, r.Body)
	}
	var v struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || v.AccessToken == "" {
		tb.Fatalf("token response without access_token: %s", r.Body)
	}
	return v.AccessToken
}

// servicePrincipal is a principal created for a test.
type servicePrincipal struct {
	ObjectID, ClientID, Secret string
}

// MustServicePrincipal creates a service principal with no roles.
func MustServicePrincipal(tb testing.TB, ts *servertest.TestServer, name string) servicePrincipal {
	tb.Helper()
	p, secret, err := ts.Identity.CreateServicePrincipal(context.Background(), name, 1)
	if err != nil {
		tb.Fatalf("create service principal: %v", err)
	}
	return servicePrincipal{ObjectID: p.ObjectID, ClientID: p.AppID, Secret: secret}
}

func subPath(ts *servertest.TestServer) string { return "/subscriptions/" + ts.Admin.SubscriptionID }

func groupPath(ts *servertest.TestServer, rg string) string {
	return subPath(ts) + "/resourceGroups/" + rg
}

func identityPath(ts *servertest.TestServer, rg, name string) string {
	return groupPath(ts, rg) + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + name
}

// MustGroup creates a resource group as the admin.
func MustGroup(tb testing.TB, ts *servertest.TestServer, token, rg string) {
	tb.Helper()
	r := MustARM(tb, ts, token, "PUT", groupPath(ts, rg)+"?api-version="+rgAPIVersion, `{"location":"westus2"}`)
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		tb.Fatalf("create group %s: %d %s", rg, r.Status, r.Body)
	}
}

// MustIdentity creates a user-assigned identity and returns its principal id.
func MustIdentity(tb testing.TB, ts *servertest.TestServer, token, rg, name string) string {
	tb.Helper()
	r := MustARM(tb, ts, token, "PUT", identityPath(ts, rg, name)+"?api-version="+miAPIVersion, `{"location":"westus2"}`)
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		tb.Fatalf("create identity %s/%s: %d %s", rg, name, r.Status, r.Body)
	}
	var v struct {
		Properties struct {
			PrincipalID string `json:"principalId"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || v.Properties.PrincipalID == "" {
		tb.Fatalf("identity body without principalId: %s", r.Body)
	}
	return v.Properties.PrincipalID
}

// MustAssign assigns a built-in role through the ARM API.
func MustAssign(tb testing.TB, ts *servertest.TestServer, token, scope, roleGUID, principalID string) string {
	tb.Helper()
	name := identity.NewID()
	body := `{"properties":{"roleDefinitionId":"` + rm.RoleDefinitionID(ts.Admin.SubscriptionID, roleGUID) + `","principalId":"` + principalID + `"}}`
	r := MustARM(tb, ts, token, "PUT", scope+"/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version="+raAPIVersion, body)
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		tb.Fatalf("assign role %s at %s: %d %s", roleGUID, scope, r.Status, r.Body)
	}
	return name
}
