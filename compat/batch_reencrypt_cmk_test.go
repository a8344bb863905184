package compat_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"custody/server"
	"custody/server/servertest"
)

// TestBatchReencryptionCustomerKey re-encrypts a customer-managed-key
// account and, while it runs, changes the key to a new version (both DEK
// generations are rewrapped by it), then revokes the identity's access:
// the account locks, the re-encryption pauses (status Paused, no progress),
// and once access returns it resumes from where it stopped and finishes,
// with every task equal and no value of the old generation left.
func TestBatchReencryptionCustomerKey(t *testing.T) {
	const n = 3000
	ts := servertest.New(t, func(c *server.Config) {
		c.KeyProbeInterval = probeInterval
		c.DisableLocalNodes = true
		c.ReencryptBatch = 2 // slow enough to change the key and revoke it midway
		c.ReencryptSettle = 200 * time.Millisecond
	})
	e := &cmkEnv{t: t, ts: ts, ctx: context.Background(), tok: adminToken(t, ts), accts: batchClient(t, ts), rg: "rg-cmk"}
	MustGroup(t, ts, e.tok, e.rg)
	var err error
	if e.vaults, err = armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts)); err != nil {
		t.Fatal(err)
	}
	c := e.newCase("reenc", true)
	fillTasks(t, ts, c.account, n)
	dc := dataClient(t, ts, c.account)
	before := taskSnapshot(t, dc, "data")
	oldGen := func() uint32 { a, _ := ts.Batch.Account(e.ctx, c.account); return a.Key.Generation }()

	if r := MustARM(t, ts, e.tok, "POST", batchAccountPath(ts, e.rg, c.account)+"/reencrypt?api-version="+batchAPIVersion, ""); r.Status != http.StatusAccepted {
		t.Fatalf("POST reencrypt: %d %s", r.Status, r.Body)
	}
	waitProgress := func(what string, cond func(*reencryptionState) bool) *reencryptionState {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			st := reencryptionOf(t, ts, e.tok, e.rg, c.account)
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v", what, st)
			}
		}
	}
	waitProgress("some progress", func(s *reencryptionState) bool { return s.RecordsDone > 0 })

	// A key change now rewraps both generations with the new version.
	v2 := e.rsaKey(c.kc, c.keyName)
	e.mustSetKey(c.account, "Microsoft.KeyVault", string(v2))
	a, err := ts.Batch.Account(e.ctx, c.account)
	if err != nil {
		t.Fatal(err)
	}
	if a.Reencryption.Status != "InProgress" {
		t.Fatalf("the re-encryption finished before the key change (%+v): too fast to test", a.Reencryption)
	}
	if a.Key.Wrapped.KeyID != string(v2) || a.Key.Old == nil || a.Key.Old.Wrapped.KeyID != string(v2) || a.Key.Old.Generation != oldGen {
		t.Fatalf("after the key change: current wrapped by %s, old %+v; want both wrapped by %s", a.Key.Wrapped.KeyID, a.Key.Old, v2)
	}

	// Key loss: the account locks and the re-encryption pauses.
	e.policy(c.vault, c.principal, armkeyvault.AccessPolicyUpdateKindRemove)
	e.waitLocked(c.account, c.keyName)
	paused := waitProgress("Paused", func(s *reencryptionState) bool { return s.Status == "Paused" })
	time.Sleep(500 * time.Millisecond)
	if st := reencryptionOf(t, ts, e.tok, e.rg, c.account); st.Status != "Paused" || st.RecordsDone != paused.RecordsDone {
		t.Errorf("while locked: %+v, want Paused at %d records", st, paused.RecordsDone)
	}
	if paused.RecordsDone >= paused.RecordsTotal {
		t.Fatalf("paused with every record done (%+v): too fast to test", paused)
	}
	if _, err := dc.GetTask(e.ctx, "data", "t1", nil); err == nil || !strings.Contains(err.Error(), "AccountKeyInaccessible") {
		t.Errorf("reading a task while locked: %v, want AccountKeyInaccessible", err)
	}

	// Access returns: unlock, resume (the old generation unwraps with the
	// new key version), finish.
	e.grant(c.vault, c.principal)
	e.waitAvailable(c.account)
	final := waitProgress("Succeeded", func(s *reencryptionState) bool { return s.Status == "Succeeded" })
	t.Logf("paused at %d of %d records; finished %+v", paused.RecordsDone, paused.RecordsTotal, final)
	if final.RecordsDone != int64(n+1) {
		t.Errorf("final state %+v, want %d records", final, n+1)
	}
	after := taskSnapshot(t, dc, "data")
	for id, want := range before {
		if after[id] != want {
			t.Fatalf("task %s after = %s, want %s", id, after[id], want)
		}
	}
	g := sealedGenerations(t, ts, c.account)
	if g[oldGen] != 0 || g[oldGen+1] != n+1 {
		t.Errorf("sealed values by generation after = %v, want all %d of generation %d", g, n+1, oldGen+1)
	}
	if a, _ := ts.Batch.Account(e.ctx, c.account); a.Key.Old != nil {
		t.Errorf("the old DEK is still in the account row: %+v", a.Key.Old)
	}
}
