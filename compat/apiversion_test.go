package compat_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"custody/httpapi"
	"custody/server/servertest"
)

// TestAPIVersionPolicy checks the api-version policy (httpapi/apiversion.go)
// on each API: documented versions are served as they are, newer
// well-formed ones as the newest known (with the served version in a
// response header), malformed, unpublished and too old ones are refused
// with the API's own error.
func TestAPIVersionPolicy(t *testing.T) {
	ts := servertest.New(t, nil)
	tok := adminToken(t, ts)
	sub := subPath(ts)

	// Every subscription version az and the SDKs use, documented ones.
	for _, v := range []string{"2016-06-01", "2019-06-01", "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01"} {
		for _, p := range []string{"/subscriptions", sub} {
			r := MustARM(t, ts, tok, "GET", p+"?api-version="+v, "")
			if r.Status != http.StatusOK {
				t.Errorf("GET %s api-version %s: %d %s", p, v, r.Status, r.Body)
			}
			if h := r.Header.Get(httpapi.ServedAPIVersionHeader); h != "" {
				t.Errorf("GET %s api-version %s (known) says served as %q", p, v, h)
			}
		}
	}
	MustGroup(t, ts, tok, "rgpolicy")

	// A newer well-formed version is served as the newest known, per API.
	newer := []struct{ path, served string }{
		{"/subscriptions", "2025-04-01"},
		{groupPath(ts, "rgpolicy"), "2025-04-01"},
		{sub + "/locations", "2025-04-01"},
		{sub + "/providers/Microsoft.Authorization/roleDefinitions", "2022-04-01"},
		{sub + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities", "2024-11-30"},
		{sub + "/providers/Microsoft.KeyVault/vaults", "2025-05-01"},
		{sub + "/providers/Microsoft.Batch/batchAccounts", "2025-06-01"},
	}
	for _, n := range newer {
		for _, v := range []string{"2026-02-01", "2031-12-31-preview"} {
			r := MustARM(t, ts, tok, "GET", n.path+"?api-version="+v, "")
			if r.Status != http.StatusOK || r.Header.Get(httpapi.ServedAPIVersionHeader) != n.served {
				t.Errorf("GET %s api-version %s: %d, served as %q, want 200 served as %s: %s", n.path, v, r.Status, r.Header.Get(httpapi.ServedAPIVersionHeader), n.served, r.Body)
			}
		}
	}

	// Malformed, unpublished and too old versions are refused.
	for _, v := range []string{"2019-11", "2019-13-01", "2019-02-30", "latest", "2026-02-01-rc", "2019-11-01 ", "2019-11-02", "2010-01-01"} {
		wantARMError(t, MustARM(t, ts, tok, "GET", "/subscriptions?api-version="+url.QueryEscape(v), ""), http.StatusBadRequest, "InvalidApiVersionParameter")
	}

	// The key vault data plane: 7.x, dates, newer ones served as the newest.
	vtok := MustToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://vault.azure.net/.default")
	kv := kvmClient(t, ts, nil)
	kvmMustCreate(t, kv, "rgpolicy", "policykv", armkeyvault.VaultCreateOrUpdateParameters{Properties: kvmProps(ts)})
	for _, c := range []struct{ v, served string }{{"7.0", ""}, {"7.4", ""}, {"7.6-preview.2", ""}, {"2016-10-01", ""}, {"2025-07-01", ""},
		{"7.7", "2025-07-01"}, {"2026-02-01", "2025-07-01"}, {"2026-02-01-preview", "2025-07-01"}} {
		r := MustDo(t, ts, vtok, "GET", "policykv.vault", "/keys?api-version="+c.v, "")
		if r.Status != http.StatusOK || r.Header.Get(httpapi.ServedAPIVersionHeader) != c.served {
			t.Errorf("vault api-version %s: %d served as %q, want 200 served as %q: %s", c.v, r.Status, r.Header.Get(httpapi.ServedAPIVersionHeader), c.served, r.Body)
		}
	}
	for _, v := range []string{"6.0", "7.x", "2015-01-01", "2025-07", "7.5-beta"} {
		wantARMError(t, MustDo(t, ts, vtok, "GET", "policykv.vault", "/keys?api-version="+url.QueryEscape(v), ""), http.StatusBadRequest, "BadParameter")
	}

	// An SDK newer than this server: armkeyvault sending 2026-02-01, as
	// @azure/arm-keyvault 5.0.0 does.
	opts := armOptions(ts)
	opts.APIVersion = "2026-02-01"
	newKV, err := armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, adminCredential(t, ts), opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := newKV.Get(context.Background(), "rgpolicy", "policykv", nil)
	if err != nil || got.Name == nil || *got.Name != "policykv" {
		t.Fatalf("armkeyvault with api-version 2026-02-01: %v", err)
	}
}
