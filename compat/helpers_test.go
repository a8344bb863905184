package compat_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"custody/server/servertest"
)

// adminToken gets a management token for the admin with a plain form post.
func rawToken(t *testing.T, ts *servertest.TestServer, clientID, secret, scope string) string {
	t.Helper()
	form := "grant_type=client_credentials&client_id=" + clientID + "&client_secret=" + secret + "&scope=" + scope
	resp, err := ts.Client.Post(ts.URL("login")+"/"+ts.Admin.TenantID+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	i := strings.Index(string(body), `"access_token":"`)
	rest := string(body)[i+len(`"access_token":"`):]
	return rest[:strings.IndexByte(rest, '"')]
}

func createGroup(t *testing.T, ts *servertest.TestServer, name string) {
	t.Helper()
	tok := rawToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret, "https://management.azure.com/.default")
	req, _ := http.NewRequestWithContext(context.Background(), "PUT", ts.URL("management")+"/subscriptions/"+ts.Admin.SubscriptionID+"/resourcegroups/"+name+"?api-version=2021-04-01", strings.NewReader(`{"location":"westus2"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := ts.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("create group: %d %s", resp.StatusCode, b)
	}
}
