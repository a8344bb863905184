package compat_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/server/servertest"
)

// TestKeyTimesPast2262 checks that nbf and exp after 2262 (where Unix
// nanoseconds wrap) keep their meaning, read back as given, survive a
// restart of the store, and that values outside year 1970..9999 are refused.
func TestKeyTimesPast2262(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	MustGroup(t, ts, adminToken(t, ts), "rg-times")
	mustKeyVaultTB(t, ts, "rg-times", "kvtimes", adminObjectID(t, ts))
	c := keysClient(t, ts, "kvtimes", spCredential(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret))
	y2300 := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	y9999 := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

	// nbf in 2300: the key exists but may not be used yet.
	late, err := c.CreateKey(ctx, "late", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048)),
		KeyAttributes: &azkeys.KeyAttributes{NotBefore: &y2300}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := late.Attributes.NotBefore; got == nil || !got.Equal(y2300) {
		t.Fatalf("nbf = %v, want %v", got, y2300)
	}
	_, err = c.WrapKey(ctx, "late", "", oaepParams(make([]byte, 32)), nil)
	wantKVError(t, "wrap before nbf 2300", err, 403, "Forbidden", "")

	// exp in 9999: usable now, and read back as given.
	long, err := c.CreateKey(ctx, "long", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048)),
		KeyAttributes: &azkeys.KeyAttributes{Expires: &y9999}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WrapKey(ctx, "long", "", oaepParams(make([]byte, 32)), nil); err != nil {
		t.Fatalf("wrap with exp 9999: %v", err)
	}
	got, err := c.GetKey(ctx, "long", long.Key.KID.Version(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := got.Attributes.Expires; e == nil || !e.Equal(y9999) {
		t.Fatalf("exp read back = %v, want %v", e, y9999)
	}

	// Out of range: refused with 400, nothing stored.
	tok := vaultToken(t, ts)
	for _, body := range []string{
		`{"kty":"RSA","attributes":{"exp":253402300800}}`,
		`{"kty":"RSA","attributes":{"nbf":9223372036854775807}}`,
		`{"kty":"RSA","attributes":{"nbf":-1}}`,
	} {
		r := kvRaw(t, ts, tok, "POST", "kvtimes", "/keys/bad/create?api-version=7.5", body)
		wantARMError(t, r, 400, "BadParameter")
		if !strings.Contains(string(r.Body), "out of range") {
			t.Errorf("%s: message does not say out of range: %s", body, r.Body)
		}
	}
	r := kvRaw(t, ts, tok, "PATCH", "kvtimes", "/keys/long/?api-version=7.5", `{"attributes":{"exp":99999999999999}}`)
	wantARMError(t, r, 400, "BadParameter")
}
