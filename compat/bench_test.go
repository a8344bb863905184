package compat_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"custody/server/servertest"
)

// BenchmarkTokenEndpoint measures client-credentials token issuance end to
// end: TLS, form parsing, secret check against the database, signing.
func BenchmarkTokenEndpoint(b *testing.B) {
	ts := servertest.New(b, nil)
	endpoint := ts.URL("login") + "/" + ts.Admin.TenantID + "/oauth2/v2.0/token"
	form := url.Values{
		"grant_type": {"client_credentials"}, "client_id": {ts.Admin.ClientID},
		"client_secret": {ts.Admin.ClientSecret}, "scope": {armScope},
	}.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequestWithContext(context.Background(), "POST", endpoint, strings.NewReader(form))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := ts.Client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"access_token"`) {
				b.Errorf("token: %d %s", resp.StatusCode, body)
				return
			}
		}
	})
}
