package compat_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/batch"
	"custody/server/servertest"
)

// TestCMKScale creates many customer-managed-key accounts through the API
// (sharing a vault, two keys and two identities, as a tenant might, plus ten
// with a key or an identity of their own), measures the idle server's CPU,
// then revokes and restores the access of the ten and measures how long each
// takes to lock and unlock, at the default monitor settings. The others must
// stay untouched.
//
// CI runs it small; the figure of record is
//
//	CUSTODY_CMK_SCALE_ACCOUNTS=10000 CUSTODY_CMK_SCALE_IDLE=30s go test -count=1 -run TestCMKScale -v -timeout 30m ./compat/
func TestCMKScale(t *testing.T) {
	n, idle := 60, 3*time.Second
	if v := os.Getenv("CUSTODY_CMK_SCALE_ACCOUNTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 20 {
			t.Fatalf("CUSTODY_CMK_SCALE_ACCOUNTS=%q: want a number of at least 20", v)
		}
	}
	if v := os.Getenv("CUSTODY_CMK_SCALE_IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil {
			t.Fatalf("CUSTODY_CMK_SCALE_IDLE=%q: %v", v, err)
		}
	}
	ts := servertest.New(t, nil) // default key monitor settings
	e := &cmkEnv{t: t, ts: ts, ctx: context.Background(), tok: adminToken(t, ts), accts: batchClient(t, ts), rg: "rg-scale"}
	MustGroup(t, ts, e.tok, e.rg)
	var err error
	if e.vaults, err = armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts)); err != nil {
		t.Fatal(err)
	}
	const vault = "kv-scale"
	kc := e.vault(vault)

	// What the bulk shares: two keys, two identities.
	var sharedKeys []azkeys.ID
	var sharedIDs []string // identity resource ids
	for i := range 2 {
		sharedKeys = append(sharedKeys, e.rsaKey(kc, fmt.Sprintf("shared-%d", i)))
		name := fmt.Sprintf("uami-shared-%d", i)
		e.grant(vault, MustIdentity(t, ts, e.tok, e.rg, name))
		sharedIDs = append(sharedIDs, identityPath(ts, e.rg, name))
	}
	// The ten: five with a key of their own, five with an identity of their
	// own.
	type victim struct {
		account, keyName, principal string
		kid                         azkeys.ID
		rid                         string
	}
	var victims []*victim
	for i := range 5 {
		v := &victim{account: fmt.Sprintf("ownkey%d", i), keyName: fmt.Sprintf("own-%d", i), rid: sharedIDs[0]}
		v.kid = e.rsaKey(kc, v.keyName)
		victims = append(victims, v)
	}
	for i := range 5 {
		name := fmt.Sprintf("uami-own-%d", i)
		v := &victim{account: fmt.Sprintf("ownid%d", i), kid: sharedKeys[0], rid: identityPath(ts, e.rg, name)}
		v.principal = MustIdentity(t, ts, e.tok, e.rg, name)
		e.grant(vault, v.principal)
		victims = append(victims, v)
	}

	// Create the accounts: raw ARM PUTs, four at a time.
	type spec struct{ name, kid, rid string }
	var specs []spec
	for _, v := range victims {
		specs = append(specs, spec{v.account, string(v.kid), v.rid})
	}
	for i := range n - len(victims) {
		specs = append(specs, spec{fmt.Sprintf("bulk%d", i), string(sharedKeys[i%2]), sharedIDs[(i/2)%2]})
	}
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	work := make(chan spec)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				body := fmt.Sprintf(`{"location":"westus2","identity":{"type":"UserAssigned","userAssignedIdentities":{%q:{}}},"properties":{"encryption":{"keySource":"Microsoft.KeyVault","keyVaultProperties":{"keyIdentifier":%q}}}}`, s.rid, s.kid)
				req, _ := http.NewRequest("PUT", ts.URL("management")+batchAccountPath(ts, e.rg, s.name)+"?api-version="+batchAPIVersion, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+e.tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := ts.Client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode >= 300 {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, s.name+": "+err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	for _, s := range specs {
		work <- s
	}
	close(work)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d accounts not created, first: %s", len(failures), failures[0])
	}
	as, err := ts.Batch.Accounts.ListAccounts(e.ctx, "", "")
	if err != nil || len(as) != n {
		t.Fatalf("accounts listed: %d, %v; want %d", len(as), err, n)
	}
	since := map[string]time.Time{}
	for _, a := range as {
		if a.Key.State != batch.KeyAvailable {
			t.Fatalf("account %s created %s", a.Name, a.Key)
		}
		since[a.Name] = a.Key.Since
	}
	t.Logf("created %d CMK accounts in %s", n, time.Since(start).Round(time.Second))

	// Idle CPU: the whole process (the test client is idle meanwhile).
	time.Sleep(2 * time.Second) // let the feed subscriptions settle
	cpu0, wall0 := processCPU(), time.Now()
	time.Sleep(idle)
	cpu, wall := processCPU()-cpu0, time.Since(wall0)
	share := float64(cpu) / float64(wall) * 100
	t.Logf("idle server CPU over %s with %d CMK accounts: %s = %.2f%% of one core", wall.Round(time.Millisecond), n, cpu, share)
	if share > 10 {
		t.Errorf("idle CPU %.2f%% of one core, want at most 10%%", share)
	}

	state := func(name string) string {
		a, err := ts.Batch.Accounts.Account(e.ctx, name)
		if err != nil {
			t.Fatalf("account %s: %v", name, err)
		}
		return a.Key.State
	}
	// waitAll waits for each victim to reach want and returns how long each
	// took from its own change.
	waitAll := func(at map[string]time.Time, want string) []time.Duration {
		var ds []time.Duration
		deadline := time.Now().Add(30 * time.Second)
		left := slices.Clone(victims)
		for len(left) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d accounts still not %s after 30 s, first %s", len(left), want, left[0].account)
			}
			left = slices.DeleteFunc(left, func(v *victim) bool {
				if state(v.account) == want {
					ds = append(ds, time.Since(at[v.account]))
					return true
				}
				return false
			})
			time.Sleep(10 * time.Millisecond)
		}
		slices.Sort(ds)
		return ds
	}
	setEnabled := func(name string, on bool) {
		if _, err := kc.UpdateKey(e.ctx, name, "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(on)}}, nil); err != nil {
			t.Fatalf("enable=%v key %s: %v", on, name, err)
		}
	}

	// Revoke: disable the own keys, remove the own identities' policies.
	at := map[string]time.Time{}
	for _, v := range victims {
		at[v.account] = time.Now()
		if v.keyName != "" {
			setEnabled(v.keyName, false)
		} else {
			e.policy(vault, v.principal, armkeyvault.AccessPolicyUpdateKindRemove)
		}
	}
	locks := waitAll(at, batch.KeyInaccessible)
	t.Logf("lock times of the ten: %v (p99 = max %s)", locks, locks[len(locks)-1])
	if p99 := locks[len(locks)-1]; p99 > 2*time.Second {
		t.Errorf("p99 lock time %s, want at most 2 s", p99)
	}

	// Restore.
	for _, v := range victims {
		at[v.account] = time.Now()
		if v.keyName != "" {
			setEnabled(v.keyName, true)
		} else {
			e.grant(vault, v.principal)
		}
	}
	unlocks := waitAll(at, batch.KeyAvailable)
	t.Logf("unlock times of the ten: %v (p99 = max %s)", unlocks, unlocks[len(unlocks)-1])
	if p99 := unlocks[len(unlocks)-1]; p99 > 2*time.Second {
		t.Errorf("p99 unlock time %s, want at most 2 s", p99)
	}

	// The others never changed state.
	as, err = ts.Batch.Accounts.ListAccounts(e.ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	touched := 0
	for _, a := range as {
		if strings.HasPrefix(a.Name, "bulk") && (a.Key.State != batch.KeyAvailable || !a.Key.Since.Equal(since[a.Name])) {
			touched++
			if touched < 4 {
				t.Errorf("bulk account %s changed: %s", a.Name, a.Key)
			}
		}
	}
	if touched > 0 {
		t.Errorf("%d of the %d other accounts changed state", touched, n-len(victims))
	}
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
