package httpapi

import (
	"encoding/base64"
	"strconv"
	"testing"
	"time"

	"custody"
)

func testJWT(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + ".c2lnbmF0dXJl"
}

func TestTokenCacheUntilExpiryAndOnlyTheSameToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var c tokenCache
	raw := testJWT(`{"oid":"a","exp":` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `}`)
	c.put(raw, custody.Caller{ObjectID: "a"}, now)
	if got, ok := c.get(raw, now.Add(59*time.Minute)); !ok || got.ObjectID != "a" {
		t.Fatalf("get before expiry = %v, %v; want the cached caller", got, ok)
	}
	if _, ok := c.get(raw, now.Add(time.Hour)); ok {
		t.Fatal("get at expiry hit the cache")
	}
	// Same signature, another payload: never the cached caller.
	forged := testJWT(`{"oid":"b","exp":` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `}`)
	if _, ok := c.get(forged, now); ok {
		t.Fatal("a token with the cached token's signature and another payload hit the cache")
	}
	// Expired or without exp: not kept.
	for _, p := range []string{`{"oid":"c"}`, `{"oid":"c","exp":` + strconv.FormatInt(now.Unix(), 10) + `}`} {
		tok := testJWT(p)
		c.put(tok, custody.Caller{ObjectID: "c"}, now)
		if _, ok := c.get(tok, now); ok {
			t.Fatalf("token %s was cached", p)
		}
	}
}
