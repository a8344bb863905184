package compat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/server"
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

// TestBatchQuotas checks the quotas the account's ARM resource reports are
// the ones enforced: poolQuota, activeJobAndJobScheduleQuota and the core
// quotas, and that huge node counts cannot wrap the per-pool node limit.
func TestBatchQuotas(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	mustBatchAccount(t, ts, "rg-quota", "quota1")
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	const v = "?api-version=" + dataAPIVersion

	r := MustARM(t, ts, adminToken(t, ts), "GET", groupPath(ts, "rg-quota")+"/providers/Microsoft.Batch/batchAccounts/quota1?api-version=2024-07-01", "")
	wantStatus(t, r, 200)
	var acct struct {
		Properties struct {
			DedicatedCoreQuota           int `json:"dedicatedCoreQuota"`
			LowPriorityCoreQuota         int `json:"lowPriorityCoreQuota"`
			PoolQuota                    int `json:"poolQuota"`
			ActiveJobAndJobScheduleQuota int `json:"activeJobAndJobScheduleQuota"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(r.Body, &acct); err != nil {
		t.Fatal(err)
	}
	q := acct.Properties
	if q.PoolQuota < 2 || q.ActiveJobAndJobScheduleQuota < 1 || q.DedicatedCoreQuota < 16 {
		t.Fatalf("account reports quotas %+v", q)
	}

	// Node counts that would wrap when added are refused.
	r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v,
		`{"id":"huge","vmSize":"standard_d2s_v3","targetDedicatedNodes":9223372036854775807,"targetLowPriorityNodes":9223372036854775807}`)
	wantBatchError(t, r, 400, "InvalidPropertyValue")

	// Dedicated cores: pools of 16-core nodes fill the quota; the pool that
	// passes it is held at what is left, with AccountCoreQuotaReached.
	per := min(64, q.DedicatedCoreQuota/16)
	pools := 0
	for left := q.DedicatedCoreQuota / 16; left > 0; left -= per {
		n := min(per, left)
		r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v,
			fmt.Sprintf(`{"id":"big%d","vmSize":"standard_d16s_v3","targetDedicatedNodes":%d}`, pools, n))
		wantStatus(t, r, 201)
		pools++
	}
	r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v, `{"id":"over","vmSize":"standard_d16s_v3","targetDedicatedNodes":2}`)
	wantStatus(t, r, 201)
	pools++
	r = batchRaw(t, ts, tok, "GET", "quota1", "/pools/over"+v, "")
	wantStatus(t, r, 200)
	var over struct {
		TargetDedicatedNodes int `json:"targetDedicatedNodes"`
		ResizeErrors         []struct {
			Code string `json:"code"`
		} `json:"resizeErrors"`
	}
	if err := json.Unmarshal(r.Body, &over); err != nil {
		t.Fatal(err)
	}
	if len(over.ResizeErrors) != 1 || over.ResizeErrors[0].Code != "AccountCoreQuotaReached" || over.TargetDedicatedNodes*16 > q.DedicatedCoreQuota%16+16 {
		t.Fatalf("pool over the core quota: %s", r.Body)
	}
	r = batchRaw(t, ts, tok, "POST", "quota1", "/pools/big0/resize"+v, `{"targetDedicatedNodes":64}`)
	wantStatus(t, r, 202)
	r = batchRaw(t, ts, tok, "GET", "quota1", "/pools/big0"+v, "")
	if !strings.Contains(string(r.Body), "AccountCoreQuotaReached") {
		t.Fatalf("resize over the core quota: %s", r.Body)
	}

	// Pools: up to poolQuota, then 409 PoolQuotaReached.
	for ; pools < q.PoolQuota; pools++ {
		r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v, fmt.Sprintf(`{"id":"p%d","vmSize":"standard_a1_v2"}`, pools))
		wantStatus(t, r, 201)
	}
	r = batchRaw(t, ts, tok, "POST", "quota1", "/pools"+v, `{"id":"onemore","vmSize":"standard_a1_v2"}`)
	wantBatchError(t, r, 409, "PoolQuotaReached")

	// Active jobs: up to the quota, then 409; a terminated job frees a place.
	for i := 0; i < q.ActiveJobAndJobScheduleQuota; i++ {
		r = batchRaw(t, ts, tok, "POST", "quota1", "/jobs"+v, fmt.Sprintf(`{"id":"j%d","poolInfo":{"poolId":"p1"}}`, i))
		wantStatus(t, r, 201)
	}
	r = batchRaw(t, ts, tok, "POST", "quota1", "/jobs"+v, `{"id":"jmore","poolInfo":{"poolId":"p1"}}`)
	wantBatchError(t, r, 409, "ActiveJobAndScheduleQuotaReached")
	r = batchRaw(t, ts, tok, "POST", "quota1", "/jobs/j0/terminate"+v, "")
	wantStatus(t, r, 202, 204)
	waitFor(t, 10*time.Second, "job j0 completed", func() (bool, string) {
		r := batchRaw(t, ts, tok, "GET", "quota1", "/jobs/j0"+v, "")
		return strings.Contains(string(r.Body), `"state":"completed"`), string(r.Body)
	})
	r = batchRaw(t, ts, tok, "POST", "quota1", "/jobs"+v, `{"id":"jmore","poolInfo":{"poolId":"p1"}}`)
	wantStatus(t, r, 201)
}
