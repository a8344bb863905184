package compat_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/batch"
	"custody/server/servertest"
)

// BenchmarkAddTaskCollection adds collections of 100 tasks through azbatch
// to an account with the platform key and to one with a customer-managed
// key in a key vault (reached through the vault's REST API with the
// account's user-assigned identity). Once the DEK is unwrapped the two cost
// the same; the tasks/s of the two should be within a few percent. Run:
//
//	go test -run '^$' -bench AddTaskCollection -benchtime 3s ./compat/
func BenchmarkAddTaskCollection(b *testing.B) {
	ts := servertest.New(b, nil)
	ctx := context.Background()
	mustBatchAccount(b, ts, "rg-bench", "platformbench")
	mustCustomerKeyAccount(b, ts, "rg-bench", "cmkbench")
	clients := map[string]*azbatch.Client{}
	for _, acct := range []string{"platformbench", "cmkbench"} {
		c := dataClient(b, ts, acct)
		if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("bench"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil); err != nil {
			b.Fatal(err)
		}
		clients[acct] = c
	}
	round := 0
	add := func(b *testing.B, c *azbatch.Client) {
		round++
		group := make([]azbatch.CreateTaskContent, 100)
		for k := range group {
			group[k] = azbatch.CreateTaskContent{
				ID:                  to.Ptr("r" + strconv.Itoa(round) + "-" + strconv.Itoa(k)),
				CommandLine:         to.Ptr("/bin/sh -c 'echo task " + strconv.Itoa(k) + "'"),
				EnvironmentSettings: []azbatch.EnvironmentSetting{env("INDEX", strconv.Itoa(k))},
			}
		}
		res, err := c.CreateTaskCollection(ctx, "bench", azbatch.TaskGroup{Value: group}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res.Value {
			if *r.Status != azbatch.TaskAddStatusSuccess {
				b.Fatalf("add %s: %s", *r.TaskID, *r.Status)
			}
		}
	}
	for _, acct := range []struct{ name, account string }{{"platform", "platformbench"}, {"customerKey", "cmkbench"}} {
		b.Run(acct.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				add(b, clients[acct.account])
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
	// The two accounts alternately, so that load on the machine and the
	// growth of the database weigh on both alike: the ratio is the fair
	// comparison.
	b.Run("interleaved", func(b *testing.B) {
		var platform, cmk time.Duration
		for i := 0; i < b.N; i++ {
			start := time.Now()
			add(b, clients["platformbench"])
			mid := time.Now()
			add(b, clients["cmkbench"])
			platform, cmk = platform+mid.Sub(start), cmk+time.Since(mid)
		}
		b.ReportMetric(float64(b.N*100)/platform.Seconds(), "platform-tasks/s")
		b.ReportMetric(float64(b.N*100)/cmk.Seconds(), "cmk-tasks/s")
		b.ReportMetric(platform.Seconds()/cmk.Seconds(), "cmk/platform")
	})
}

// mustCustomerKeyAccount creates a batch account whose DEK is wrapped by an
// RSA key in a purge-protected vault, reached with a user-assigned identity
// that has Get, Wrap Key and Unwrap Key on the vault.
func mustCustomerKeyAccount(tb testing.TB, ts *servertest.TestServer, rg, name string) *batch.Account {
	tb.Helper()
	tok := adminToken(tb, ts)
	MustGroup(tb, ts, tok, rg)
	principal := MustIdentity(tb, ts, tok, rg, name+"-id")
	vault := name + "-kv"
	policies := `{"tenantId":"` + ts.Admin.TenantID + `","objectId":"` + adminObjectID(tb, ts) + `","permissions":{"keys":["all"]}},` +
		`{"tenantId":"` + ts.Admin.TenantID + `","objectId":"` + principal + `","permissions":{"keys":["get","wrapKey","unwrapKey"]}}`
	body := `{"location":"westus2","properties":{"tenantId":"` + ts.Admin.TenantID + `","sku":{"family":"A","name":"standard"},` +
		`"softDeleteRetentionInDays":90,"enablePurgeProtection":true,"accessPolicies":[` + policies + `]}}`
	r := MustARM(tb, ts, tok, "PUT", groupPath(ts, rg)+"/providers/Microsoft.KeyVault/vaults/"+vault+"?api-version=2024-11-01", body)
	if r.Status != 200 && r.Status != 201 {
		tb.Fatalf("create vault %s: %d %s", vault, r.Status, r.Body)
	}
	r = kvRaw(tb, ts, vaultToken(tb, ts), "POST", vault, "/keys/cmk/create?api-version=7.6", `{"kty":"RSA","key_size":2048}`)
	wantStatus(tb, r, 200)
	var bundle struct {
		Key struct {
			Kid string `json:"kid"`
		} `json:"key"`
	}
	if err := json.Unmarshal(r.Body, &bundle); err != nil || bundle.Key.Kid == "" {
		tb.Fatalf("create key: %s", r.Body)
	}
	return mustBatchAccountWith(tb, ts, rg, name,
		batch.AccountIdentity{Type: batch.IdentityUserAssigned, UserAssigned: map[string]batch.UserAssignedIdentity{identityPath(ts, rg, name+"-id"): {}}},
		batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: bundle.Key.Kid})
}
