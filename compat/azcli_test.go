package compat_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"custody/httpapi"
	"custody/server/servertest"
)

// The requests the real az CLI (2.45) sends that Custody must answer as
// Azure does: cloud metadata, the ADFS-style authority MSAL accepts without
// instance discovery, subscription api-versions, locations, Graph lookups by
// service principal name, vault creation with an empty policy list, and
// managed HSM lists.

// metadata2015 is the 2015-01-01 cloud metadata document, as msrestazure
// reads it for `az cloud register --endpoint-resource-manager`.
type metadata2015 struct {
	GraphEndpoint  string `json:"graphEndpoint"`
	Authentication struct {
		LoginEndpoint string   `json:"loginEndpoint"`
		Audiences     []string `json:"audiences"`
	} `json:"authentication"`
}

// cloudMetadata is one cloud of the 2019-05-01 and later documents, the
// fields az's _arm_to_cli_mapper reads.
type cloudMetadata struct {
	Name           string `json:"name"`
	Authentication struct {
		LoginEndpoint    string   `json:"loginEndpoint"`
		Audiences        []string `json:"audiences"`
		Tenant           string   `json:"tenant"`
		IdentityProvider string   `json:"identityProvider"`
	} `json:"authentication"`
	ResourceManager          string            `json:"resourceManager"`
	Batch                    string            `json:"batch"`
	GraphAudience            string            `json:"graphAudience"`
	MicrosoftGraphResourceID string            `json:"microsoftGraphResourceId"`
	Suffixes                 map[string]string `json:"suffixes"`
}

func TestCloudMetadata(t *testing.T) {
	ts := servertest.New(t, nil)
	loopback := "https://127.0.0.1:" + strconv.Itoa(ts.Endpoint.Port)
	for _, base := range []string{ts.URL("management"), loopback} {
		get := func(version string) response {
			t.Helper()
			q := ""
			if version != "" {
				q = "?api-version=" + version
			}
			req, err := http.NewRequestWithContext(context.Background(), "GET", base+"/metadata/endpoints"+q, nil)
			if err != nil {
				t.Fatal(err)
			}
			return MustSend(t, ts, req)
		}

		// Without a token, as msrestazure asks for it.
		r := get("2015-01-01")
		if r.Status != http.StatusOK {
			t.Fatalf("%s 2015-01-01: %d %s", base, r.Status, r.Body)
		}
		// az registered with a resource manager URL that ends in a slash
		// asks for //metadata/endpoints.
		req, err := http.NewRequestWithContext(context.Background(), "GET", base+"//metadata/endpoints?api-version=2015-01-01", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r2 := MustSend(t, ts, req); r2.Status != http.StatusOK || string(r2.Body) != string(r.Body) {
			t.Errorf("%s//metadata/endpoints: %d %s", base, r2.Status, r2.Body)
		}
		var m metadata2015
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatalf("2015-01-01 document: %v: %s", err, r.Body)
		}
		if got, want := m.Authentication.LoginEndpoint, ts.URL("login")+"/adfs"; got != want {
			t.Errorf("loginEndpoint = %q, want %q", got, want)
		}
		if len(m.Authentication.Audiences) == 0 || m.Authentication.Audiences[0] != ts.URL("management")+"/" {
			t.Errorf("audiences = %q, want %s/ first", m.Authentication.Audiences, ts.URL("management"))
		}
		if got, want := m.GraphEndpoint, ts.URL("graph")+"/"; got != want {
			t.Errorf("graphEndpoint = %q, want %q", got, want)
		}

		for _, v := range []string{"2019-05-01", "2022-09-01"} {
			r := get(v)
			if r.Status != http.StatusOK {
				t.Fatalf("%s %s: %d %s", base, v, r.Status, r.Body)
			}
			var clouds []cloudMetadata
			if err := json.Unmarshal(r.Body, &clouds); err != nil || len(clouds) != 1 {
				t.Fatalf("%s document is not a list of one cloud: %v: %s", v, err, r.Body)
			}
			c := clouds[0]
			checks := []struct{ what, got, want string }{
				{"name", c.Name, httpapi.CloudName},
				{"loginEndpoint", c.Authentication.LoginEndpoint, ts.URL("login") + "/adfs"},
				{"tenant", c.Authentication.Tenant, "adfs"},
				{"identityProvider", c.Authentication.IdentityProvider, "ADFS"},
				{"resourceManager", c.ResourceManager, ts.URL("management") + "/"},
				{"batch", c.Batch, ts.URL("batch") + "/"},
				{"graphAudience", c.GraphAudience, ts.URL("graph") + "/"},
				{"microsoftGraphResourceId", c.MicrosoftGraphResourceID, ts.URL("graph") + "/"},
				{"suffixes.keyVaultDns", c.Suffixes["keyVaultDns"], "vault." + ts.Endpoint.Domain + ":" + strconv.Itoa(ts.Endpoint.Port)},
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("%s %s = %q, want %q", v, ch.what, ch.got, ch.want)
				}
			}
			if len(c.Authentication.Audiences) == 0 || c.Authentication.Audiences[0] != ts.URL("management")+"/" {
				t.Errorf("%s audiences = %q", v, c.Authentication.Audiences)
			}
		}

		// The api-version policy: a newer version is served as the newest.
		r = get("2030-01-01")
		if r.Status != http.StatusOK || r.Header.Get(httpapi.ServedAPIVersionHeader) != "2022-09-01" {
			t.Errorf("2030-01-01: %d, served as %q: %s", r.Status, r.Header.Get(httpapi.ServedAPIVersionHeader), r.Body)
		}
		wantARMError(t, get(""), http.StatusBadRequest, "MissingApiVersionParameter")
		wantARMError(t, get("2015"), http.StatusBadRequest, "InvalidApiVersionParameter")
		wantARMError(t, get("2014-01-01"), http.StatusBadRequest, "InvalidApiVersionParameter")
	}

	// Every endpoint the document names takes the tokens it implies: the
	// management audience, the batch resource and the graph audience.
	var clouds []cloudMetadata
	r := MustDo(t, ts, "", "GET", "management", "/metadata/endpoints?api-version=2022-09-01", "")
	if err := json.Unmarshal(r.Body, &clouds); err != nil || len(clouds) != 1 {
		t.Fatalf("metadata: %v %s", err, r.Body)
	}
	c := clouds[0]
	tok := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, c.Authentication.Audiences[0]+".default")
	wantStatus(t, MustDo(t, ts, tok, "GET", "management", "/subscriptions?api-version=2019-11-01", ""), http.StatusOK)
	gtok := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, c.GraphAudience+".default")
	wantStatus(t, MustDo(t, ts, gtok, "GET", "graph", "/v1.0/servicePrincipals", ""), http.StatusOK)
	MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, c.Batch+".default")
}

// tokenClaims decodes an access token's payload (already verified by the
// server that accepted it).
func tokenClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWS: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestADFSAuthority(t *testing.T) {
	ts := servertest.New(t, nil)

	// MSAL's tenant discovery for authority https://login.{domain}/adfs.
	r := MustDo(t, ts, "", "GET", "login", "/adfs/.well-known/openid-configuration", "")
	if r.Status != http.StatusOK {
		t.Fatalf("ADFS openid-configuration: %d %s", r.Status, r.Body)
	}
	var oidc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		JWKSURI               string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(r.Body, &oidc); err != nil {
		t.Fatal(err)
	}
	if oidc.AuthorizationEndpoint == "" || oidc.TokenEndpoint != ts.URL("login")+"/adfs/oauth2/token" || oidc.JWKSURI != ts.URL("login")+"/adfs/discovery/keys" {
		t.Errorf("openid-configuration endpoints: %s", r.Body)
	}

	// A client-credentials token from the advertised endpoint works on the
	// resource manager, and its issuer is the document's.
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {ts.Admin.ClientID},
		"client_secret": {ts.Admin.ClientSecret}, "scope": {ts.URL("management") + "/.default"}}
	req, _ := http.NewRequestWithContext(context.Background(), "POST", oidc.TokenEndpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r = MustSend(t, ts, req)
	if r.Status != http.StatusOK {
		t.Fatalf("ADFS token endpoint: %d %s", r.Status, r.Body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.Body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token response: %s", r.Body)
	}
	if iss := tokenClaims(t, tr.AccessToken)["iss"]; iss != oidc.Issuer {
		t.Errorf("token iss = %v, openid-configuration issuer = %q", iss, oidc.Issuer)
	}
	wantStatus(t, MustDo(t, ts, tr.AccessToken, "GET", "management", "/subscriptions?api-version=2019-11-01", ""), http.StatusOK)

	// The keys the document points at hold the token's key.
	req, _ = http.NewRequestWithContext(context.Background(), "GET", oidc.JWKSURI, nil)
	r = MustSend(t, ts, req)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), tokenKID(t, tr.AccessToken)) {
		t.Errorf("ADFS keys: %d, want the token's kid %s: %s", r.Status, tokenKID(t, tr.AccessToken), r.Body)
	}

	// A wrong secret is refused in OAuth's shape.
	form.Set("client_secret", "wrong")
	req, _ = http.NewRequestWithContext(context.Background(), "POST", oidc.TokenEndpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r := MustSend(t, ts, req); r.Status != http.StatusUnauthorized && r.Status != http.StatusBadRequest {
		t.Errorf("wrong secret at the ADFS token endpoint: %d %s", r.Status, r.Body)
	}

	// The official Go SDK's MSAL takes the ADFS authority too: tenant
	// "adfs", no instance discovery.
	cred, err := azidentity.NewClientSecretCredential("adfs", ts.Admin.ClientID, ts.Admin.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: ts.URL("login") + "/"}, Transport: ts.Client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{ts.URL("management") + "/.default"}})
	if err != nil {
		t.Fatalf("ADFS authority with azidentity: %v", err)
	}
	wantStatus(t, MustDo(t, ts, tok.Token, "GET", "management", "/subscriptions?api-version=2019-11-01", ""), http.StatusOK)
}

func TestLocations(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	path := subPath(ts) + "/locations?api-version=2022-12-01"
	r := MustARM(t, ts, tok, "GET", path, "")
	if r.Status != http.StatusOK {
		t.Fatalf("locations: %d %s", r.Status, r.Body)
	}
	var body struct {
		Value []struct {
			ID, Name, DisplayName, Type string
		} `json:"value"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range body.Value {
		if l.Name == "westus2" {
			found = true
			if l.DisplayName != "West US 2" || l.ID != subPath(ts)+"/locations/westus2" || l.Type != "Region" {
				t.Errorf("westus2 = %+v", l)
			}
		}
	}
	if !found || len(body.Value) < 50 {
		t.Errorf("locations lack westus2 or are few (%d): %s", len(body.Value), r.Body)
	}
	wantARMError(t, MustARM(t, ts, "", "GET", path, ""), http.StatusUnauthorized, "")
	wantARMError(t, MustARM(t, ts, tok, "GET", "/subscriptions/00000000-0000-0000-0000-000000000000/locations?api-version=2022-12-01", ""), http.StatusNotFound, "")
}

func TestGraphServicePrincipalLookups(t *testing.T) {
	ts := servertest.New(t, nil)
	sp := MustServicePrincipal(t, ts, "lookup-me")
	MustServicePrincipal(t, ts, "someone-else")
	gtok := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://graph.microsoft.com/.default")

	type spList struct {
		Value []struct {
			ID    string `json:"id"`
			AppID string `json:"appId"`
		} `json:"value"`
	}
	// az keyvault create and az ad sp show --id find a principal by name.
	for _, f := range []string{"servicePrincipalNames/any(c:c eq '" + sp.ClientID + "')", "servicePrincipalNames/any(x:x eq '" + strings.ToUpper(sp.ClientID) + "')"} {
		r := MustDo(t, ts, gtok, "GET", "graph", "/v1.0/servicePrincipals?$filter="+url.QueryEscape(f), "")
		if r.Status != http.StatusOK {
			t.Fatalf("filter %s: %d %s", f, r.Status, r.Body)
		}
		var l spList
		if err := json.Unmarshal(r.Body, &l); err != nil {
			t.Fatal(err)
		}
		if len(l.Value) != 1 || l.Value[0].ID != sp.ObjectID || l.Value[0].AppID != sp.ClientID {
			t.Errorf("filter %s = %s, want only %s", f, r.Body, sp.ObjectID)
		}
	}
	r := MustDo(t, ts, gtok, "GET", "graph", "/v1.0/servicePrincipals?$filter="+url.QueryEscape("servicePrincipalNames/any(c:c eq 'nobody')"), "")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"value":[]`) {
		t.Errorf("filter for no one: %d %s", r.Status, r.Body)
	}
	wantARMError(t, MustDo(t, ts, gtok, "GET", "graph", "/v1.0/servicePrincipals?$filter="+url.QueryEscape("servicePrincipalNames/any(c:d eq 'x')"), ""), http.StatusBadRequest, "Request_UnsupportedQuery")

	// az ad sp show --id: by object id, then by appId.
	for _, id := range []string{sp.ObjectID, sp.ClientID} {
		r := MustDo(t, ts, gtok, "GET", "graph", "/v1.0/servicePrincipals/"+id, "")
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), sp.ObjectID) {
			t.Errorf("GET servicePrincipals/%s: %d %s", id, r.Status, r.Body)
		}
	}
}

func TestVaultCreateAccessPolicies(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rgpol")
	oid := adminObjectID(t, ts)
	props := `"tenantId":"` + ts.Admin.TenantID + `","sku":{"family":"A","name":"standard"}`
	policies := func(name, extra string) []any {
		t.Helper()
		r := MustARM(t, ts, tok, "PUT", kvmPath(ts, "rgpol", name)+"?api-version=2022-07-01", `{"location":"westus2","properties":{`+props+extra+`}}`)
		if r.Status != http.StatusOK && r.Status != http.StatusCreated {
			t.Fatalf("create %s: %d %s", name, r.Status, r.Body)
		}
		var v struct {
			Properties struct {
				AccessPolicies []any `json:"accessPolicies"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Fatal(err)
		}
		return v.Properties.AccessPolicies
	}
	// az keyvault create --no-self-perms: "accessPolicies": [] and none
	// is added.
	if ps := policies("nopolkv", `,"accessPolicies":[]`); len(ps) != 0 {
		t.Errorf("accessPolicies [] gave %d policies, want none: %v", len(ps), ps)
	}
	vtok := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://vault.azure.net/.default")
	wantStatus(t, MustDo(t, ts, vtok, "GET", "nopolkv.vault", "/keys?api-version=7.4", ""), http.StatusForbidden)

	// az keyvault create without it: az puts the creator's policy in the
	// body, and that is what the vault holds.
	ps := policies("selfpolkv", `,"accessPolicies":[{"tenantId":"`+ts.Admin.TenantID+`","objectId":"`+oid+`","permissions":{"keys":["get","list"]}}]`)
	if len(ps) != 1 || !strings.Contains(mustJSON(ps), `"get"`) || strings.Contains(mustJSON(ps), `"delete"`) {
		t.Errorf("the creator's policy as sent: %v", ps)
	}
}

func TestManagedHSMLists(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rghsm")
	for _, p := range []string{
		subPath(ts) + "/providers/Microsoft.KeyVault/managedHSMs",
		groupPath(ts, "rghsm") + "/providers/Microsoft.KeyVault/managedHSMs",
		subPath(ts) + "/providers/Microsoft.KeyVault/deletedManagedHSMs",
	} {
		for _, v := range []string{"2021-10-01", "2023-07-01"} {
			r := MustARM(t, ts, tok, "GET", p+"?api-version="+v, "")
			if r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != `{"value":[]}` {
				t.Errorf("GET %s: %d %s, want 200 {\"value\":[]}", p, r.Status, r.Body)
			}
		}
	}
	wantARMError(t, MustARM(t, ts, tok, "GET", groupPath(ts, "nosuchrg")+"/providers/Microsoft.KeyVault/managedHSMs?api-version=2023-07-01", ""), http.StatusNotFound, "ResourceGroupNotFound")
}
