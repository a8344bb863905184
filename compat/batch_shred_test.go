package compat_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/batch/armbatch/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"custody/server"
	"custody/server/servertest"
)

// TestBatchCustomerManagedKeyPurgedForGood shows crypto-shredding: once the
// customer's key is purged from the vault, the account's data cannot be
// read by anyone, through any path the server offers, and a new key of the
// same name does not bring it back.
func TestBatchCustomerManagedKeyPurgedForGood(t *testing.T) {
	var vaultDays atomic.Int64 // how far the key vault's clock is ahead
	ts := servertest.New(t, func(c *server.Config) {
		c.KeyProbeInterval = probeInterval
		c.KeyVaultClock = func() time.Time { return time.Now().Add(time.Duration(vaultDays.Load()) * 24 * time.Hour) }
	})
	e := &cmkEnv{t: t, ts: ts, ctx: context.Background(), tok: adminToken(t, ts), accts: batchClient(t, ts), rg: "rg-shred"}
	MustGroup(t, ts, e.tok, e.rg)
	var err error
	if e.vaults, err = armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts)); err != nil {
		t.Fatal(err)
	}

	acct := mustCreateAccount(t, e.accts, e.rg, "shredacct", armbatch.AccountCreateParameters{
		Location: to.Ptr("westus2"),
		Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)},
	})
	kc := e.vault("kvshred")
	e.grant("kvshred", *acct.Identity.PrincipalID)
	kid := e.rsaKey(kc, "cmk")
	e.mustSetKey("shredacct", "Microsoft.KeyVault", string(kid))

	data := dataClient(t, ts, "shredacct")
	if _, err := data.CreateJob(e.ctx, azbatch.CreateJobContent{ID: to.Ptr("job1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := data.CreateTask(e.ctx, "job1", azbatch.CreateTaskContent{ID: to.Ptr("t1"), CommandLine: to.Ptr("echo shredded-secret")}, nil); err != nil {
		t.Fatal(err)
	}

	// Delete the key, then purge it once the retention period has passed.
	if _, err := kc.DeleteKey(e.ctx, "cmk", nil); err != nil {
		t.Fatal(err)
	}
	e.waitLocked("shredacct", "cmk")
	if _, err := kc.PurgeDeletedKey(e.ctx, "cmk", nil); err == nil {
		t.Fatal("purge allowed under purge protection before the retention period ended")
	}
	vaultDays.Store(8) // the vault keeps deleted keys 7 days
	if _, err := kc.PurgeDeletedKey(e.ctx, "cmk", nil); err != nil {
		t.Fatalf("purge after the retention period: %v", err)
	}
	var n int
	if err := ts.DB.SQL().QueryRow(`SELECT COUNT(*) FROM kv_key_versions WHERE key_name_key = 'cmk'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("key versions left after purge: %d (%v)", n, err)
	}
	if _, err := kc.RecoverDeletedKey(e.ctx, "cmk", nil); err == nil {
		t.Fatal("a purged key was recovered")
	}

	// The data is gone for good: data-plane reads fail, switching back to
	// the platform key is refused, and a new key with the same name cannot
	// unwrap the account's data key.
	_, err = data.GetTask(e.ctx, "job1", "t1", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusConflict || re.ErrorCode != "AccountKeyInaccessible" {
		t.Fatalf("reading a task after the key was purged: %v, want 409 AccountKeyInaccessible", err)
	}
	_, err = e.setKey("shredacct", "Microsoft.Batch", "")
	wantCode(t, "switch back after purge", err, http.StatusConflict, "AccountKeyInaccessible")
	newKid := e.rsaKey(kc, "cmk")
	_, err = e.setKey("shredacct", "Microsoft.KeyVault", string(newKid))
	wantCode(t, "a new key of the same name", err, http.StatusConflict, "AccountKeyInaccessible")
	time.Sleep(3 * probeInterval)
	if st := e.status("shredacct"); st.State != "KeyInaccessible" {
		t.Fatalf("account unlocked after its key was purged: %+v", st)
	}
	// Deleting the account still works.
	poller, err := e.accts.BeginDelete(e.ctx, e.rg, "shredacct", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(e.ctx, nil); err != nil {
		t.Fatalf("delete the shredded account: %v", err)
	}
}
