package httpapi_test

import (
	"net/http"
	"testing"

	"custody/httpapi"
)

// TestSharedKeyStringToSign pins the string to sign of Azure Batch's
// Shared Key scheme, written out by hand from its documentation: eleven
// standard header values (Content-Length empty when 0), ocp-* headers
// lower-cased and sorted, the account and path as sent, then the query
// parameters lower-cased and sorted with decoded values.
func TestSharedKeyStringToSign(t *testing.T) {
	h := http.Header{}
	h.Set("Content-Type", "application/json; odata=minimalmetadata")
	h.Set("Content-Length", "0")
	h.Set("If-Match", `"0x8D"`)
	h.Set("ocp-date", "Tue, 02 Jan 2024 15:04:05 GMT")
	h.Set("Ocp-Custom", "b")
	h.Set("client-request-id", "not-signed")
	got := httpapi.SharedKeyStringToSign("POST", "acct1", h, "/jobs/job%201/tasks?timeout=30&api-version=2024-07-01.20.0&%24filter=state%20eq%20%27active%27&empty=")
	want := "POST\n\n\n\n\napplication/json; odata=minimalmetadata\n\n\n\"0x8D\"\n\n\n\n" +
		"ocp-custom:b\nocp-date:Tue, 02 Jan 2024 15:04:05 GMT\n" +
		"/acct1/jobs/job%201/tasks" +
		"\n$filter:state eq 'active'\napi-version:2024-07-01.20.0\ntimeout:30"
	if got != want {
		t.Errorf("SharedKeyStringToSign =\n%q\nwant\n%q", got, want)
	}
	// HMAC-SHA256 of "abc" under the key "key", base64 (computed with
	// Python's hmac module).
	if got, want := httpapi.SharedKeySignature([]byte("key"), "abc"), "nBluMtwBdfhvSxy4konWYZ3mvuaZ5MN45oMJ7Zehpqs="; got != want {
		t.Errorf("SharedKeySignature = %s, want %s", got, want)
	}
}
