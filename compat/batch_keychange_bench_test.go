package compat_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/batch"
	"custody/server/servertest"
)

// fillTasks adds n tasks to job "data" of an account, 100 per call.
func fillTasks(tb testing.TB, ts *servertest.TestServer, account string, n int) {
	tb.Helper()
	ctx := context.Background()
	c := dataClient(tb, ts, account)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("data"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil); err != nil {
		tb.Fatal(err)
	}
	for done := 0; done < n; done += 100 {
		group := make([]azbatch.CreateTaskContent, min(100, n-done))
		for k := range group {
			group[k] = azbatch.CreateTaskContent{ID: to.Ptr("t" + strconv.Itoa(done+k)), CommandLine: to.Ptr("echo " + strconv.Itoa(done+k))}
		}
		if _, err := c.CreateTaskCollection(ctx, "data", azbatch.TaskGroup{Value: group}, nil); err != nil {
			tb.Fatal(err)
		}
	}
}

// newKeyVersion creates another version of the account's key and returns its
// identifier.
func newKeyVersion(tb testing.TB, ts *servertest.TestServer, vault string) string {
	tb.Helper()
	r := kvRaw(tb, ts, vaultToken(tb, ts), "POST", vault, "/keys/cmk/create?api-version=7.6", `{"kty":"RSA","key_size":2048}`)
	wantStatus(tb, r, 200)
	i := strings.Index(string(r.Body), `"kid":"`)
	rest := string(r.Body)[i+7:]
	return rest[:strings.IndexByte(rest, '"')]
}

func patchKey(tb testing.TB, ts *servertest.TestServer, tok, rg, account, identifier string) {
	tb.Helper()
	body := `{"properties":{"encryption":{"keySource":"Microsoft.KeyVault","keyVaultProperties":{"keyIdentifier":"` + identifier + `"}}}}`
	r := MustARM(tb, ts, tok, "PATCH", groupPath(ts, rg)+"/providers/Microsoft.Batch/batchAccounts/"+account+"?api-version=2024-07-01", body)
	wantStatus(tb, r, 200)
}

// BenchmarkKeyChange times a key change (a new key version, through the
// resource manager) on an account holding 100 tasks and on one holding
// 100,000, alternately, and reports the ratio: a key change rewraps the DEK
// only, so its cost must not grow with the data (target: at most 1.5). Run:
//
//	go test -run '^$' -bench KeyChange -benchtime 20x ./compat/
func BenchmarkKeyChange(b *testing.B) {
	ts := servertest.New(b, nil)
	tok := adminToken(b, ts)
	sizes := []struct {
		account string
		tasks   int
	}{{"small", 100}, {"large", 100000}}
	versions := map[string][2]string{}
	for _, s := range sizes {
		a := mustCustomerKeyAccount(b, ts, "rg-keychange", s.account)
		fillTasks(b, ts, s.account, s.tasks)
		versions[s.account] = [2]string{a.Encryption.KeyIdentifier, newKeyVersion(b, ts, s.account+"-kv")}
	}
	b.ResetTimer()
	var took [2]time.Duration
	for i := 0; i < b.N; i++ {
		for j, s := range sizes {
			start := time.Now()
			patchKey(b, ts, tok, "rg-keychange", s.account, versions[s.account][(i+1)%2])
			took[j] += time.Since(start)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(took[0].Microseconds())/float64(b.N)/1000, "ms/change-100-tasks")
	b.ReportMetric(float64(took[1].Microseconds())/float64(b.N)/1000, "ms/change-100k-tasks")
	b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "100k/100")
	// Every task still reads back.
	got, err := dataClient(b, ts, "large").GetTask(context.Background(), "data", "t99999", nil)
	if err != nil || *got.CommandLine != "echo 99999" {
		b.Fatalf("task after key changes: %v", err)
	}
}

// BenchmarkKeyLossDetection measures, at the default probe interval, the
// time from removing the account identity's access policy to the account
// locking, and from restoring it to the account unlocking (Azure promises
// recovery within 10 minutes; target: under 10 seconds both ways). Run:
//
//	go test -run '^$' -bench KeyLossDetection -benchtime 3x ./compat/
func BenchmarkKeyLossDetection(b *testing.B) {
	ts := servertest.New(b, nil) // default key probe interval
	tok := adminToken(b, ts)
	const rg, account = "rg-keyloss", "keyloss"
	mustCustomerKeyAccount(b, ts, rg, account)
	a, err := ts.Batch.Account(context.Background(), account)
	if err != nil {
		b.Fatal(err)
	}
	principal := a.Key.Wrapped.Identity
	policy := func(kind string) {
		body := fmt.Sprintf(`{"properties":{"accessPolicies":[{"tenantId":%q,"objectId":%q,"permissions":{"keys":["get","wrapKey","unwrapKey"]}}]}}`, ts.Admin.TenantID, principal)
		r := MustARM(b, ts, tok, "PUT", groupPath(ts, rg)+"/providers/Microsoft.KeyVault/vaults/"+account+"-kv/accessPolicies/"+kind+"?api-version=2024-11-01", body)
		wantStatus(b, r, 200, 201)
	}
	waitState := func(want string) time.Duration {
		start := time.Now()
		for time.Since(start) < 60*time.Second {
			a, err := ts.Batch.Account(context.Background(), account)
			if err != nil {
				b.Fatal(err)
			}
			if a.Key.State == want {
				return time.Since(start)
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.Fatalf("account not %s after 60 s", want)
		return 0
	}
	var lock, unlock time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		policy("remove")
		lock += waitState(batch.KeyInaccessible)
		policy("add")
		unlock += waitState(batch.KeyAvailable)
	}
	b.ReportMetric(lock.Seconds()/float64(b.N), "s/revoke-to-lock")
	b.ReportMetric(unlock.Seconds()/float64(b.N), "s/restore-to-unlock")
}
