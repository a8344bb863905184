package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/batch/armbatch/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/msi/armmsi"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody"
	"custody/batch"
	"custody/server"
	"custody/server/servertest"
)

// probeInterval is the key monitor's interval in these tests.
const probeInterval = 200 * time.Millisecond

// encryptionStatus is the account's extra property: whether its key is
// reachable.
type encryptionStatus struct {
	State           string `json:"state"`
	Reason          string `json:"reason"`
	Since           string `json:"since"`
	KeyVersionInUse string `json:"keyVersionInUse"`
}

// cmkEnv is a server with a fast key monitor and the SDK clients of the
// customer-managed-key walk-through.
type cmkEnv struct {
	t      *testing.T
	ts     *servertest.TestServer
	ctx    context.Context
	tok    string
	accts  *armbatch.AccountClient
	vaults *armkeyvault.VaultsClient
	rg     string
}

func newCMKEnv(t *testing.T) *cmkEnv {
	t.Helper()
	ts := servertest.New(t, func(c *server.Config) { c.KeyProbeInterval = probeInterval })
	e := &cmkEnv{t: t, ts: ts, ctx: context.Background(), tok: adminToken(t, ts), accts: batchClient(t, ts), rg: "rg-cmk"}
	MustGroup(t, ts, e.tok, e.rg)
	var err error
	if e.vaults, err = armkeyvault.NewVaultsClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts)); err != nil {
		t.Fatal(err)
	}
	return e
}

// vault creates a vault with soft delete and purge protection where the
// admin may do everything and returns the admin's keys client.
func (e *cmkEnv) vault(name string) *azkeys.Client {
	e.t.Helper()
	mustKeyVault(e.t, e.ts, e.rg, name, vaultSpec{retentionDays: 7, purgeProtection: true, policies: map[string][]string{adminObjectID(e.t, e.ts): {"all"}}})
	return keysClient(e.t, e.ts, name, adminCredential(e.t, e.ts))
}

// grant adds an access policy for principal with get, wrapKey, unwrapKey.
func (e *cmkEnv) grant(vault, principal string) {
	e.t.Helper()
	e.policy(vault, principal, armkeyvault.AccessPolicyUpdateKindAdd)
}

func (e *cmkEnv) policy(vault, principal string, kind armkeyvault.AccessPolicyUpdateKind) {
	e.t.Helper()
	_, err := e.vaults.UpdateAccessPolicy(e.ctx, e.rg, vault, kind, armkeyvault.VaultAccessPolicyParameters{
		Properties: &armkeyvault.VaultAccessPolicyProperties{AccessPolicies: []*armkeyvault.AccessPolicyEntry{{
			TenantID: to.Ptr(e.ts.Admin.TenantID), ObjectID: to.Ptr(principal),
			Permissions: &armkeyvault.Permissions{Keys: []*armkeyvault.KeyPermissions{
				to.Ptr(armkeyvault.KeyPermissionsGet), to.Ptr(armkeyvault.KeyPermissionsWrapKey), to.Ptr(armkeyvault.KeyPermissionsUnwrapKey)}},
		}}},
	}, nil)
	if err != nil {
		e.t.Fatalf("access policy %s for %s on %s: %v", kind, principal, vault, err)
	}
}

// rsaKey creates an RSA-2048 key (or a new version of it) and returns its
// versioned identifier.
func (e *cmkEnv) rsaKey(kc *azkeys.Client, name string) azkeys.ID {
	e.t.Helper()
	k, err := kc.CreateKey(e.ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048)}, nil)
	if err != nil {
		e.t.Fatalf("create key %s: %v", name, err)
	}
	return *k.Key.KID
}

// setKey points the account at a key identifier with the SDK's PATCH.
func (e *cmkEnv) setKey(account, source, identifier string) (armbatch.AccountClientUpdateResponse, error) {
	enc := &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySource(source))}
	if identifier != "" {
		enc.KeyVaultProperties = &armbatch.KeyVaultProperties{KeyIdentifier: to.Ptr(identifier)}
	}
	return e.accts.Update(e.ctx, e.rg, account, armbatch.AccountUpdateParameters{Properties: &armbatch.AccountUpdateProperties{Encryption: enc}}, nil)
}

func (e *cmkEnv) mustSetKey(account, source, identifier string) {
	e.t.Helper()
	res, err := e.setKey(account, source, identifier)
	if err != nil {
		e.t.Fatalf("set key of %s to %s %s: %v", account, source, identifier, err)
	}
	if got := *res.Properties.Encryption.KeySource; string(got) != source {
		e.t.Fatalf("keySource after set = %s, want %s", got, source)
	}
	if identifier != "" && *res.Properties.Encryption.KeyVaultProperties.KeyIdentifier != identifier {
		e.t.Fatalf("keyIdentifier after set = %s, want %s", *res.Properties.Encryption.KeyVaultProperties.KeyIdentifier, identifier)
	}
}

// status reads encryptionStatus with a plain GET (the SDK has no field for
// it).
func (e *cmkEnv) status(account string) encryptionStatus {
	e.t.Helper()
	r := MustARM(e.t, e.ts, e.tok, "GET", batchAccountPath(e.ts, e.rg, account)+"?api-version="+batchAPIVersion, "")
	if r.Status != http.StatusOK {
		e.t.Fatalf("GET account %s: %d %s", account, r.Status, r.Body)
	}
	var v struct {
		Properties struct {
			EncryptionStatus encryptionStatus `json:"encryptionStatus"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil {
		e.t.Fatal(err)
	}
	return v.Properties.EncryptionStatus
}

// waitStatus waits (up to 15 s, i.e. many probe intervals) until cond holds
// for the account's encryptionStatus.
func (e *cmkEnv) waitStatus(account, what string, cond func(encryptionStatus) bool) encryptionStatus {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := e.status(account)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("account %s: waited for %s; encryptionStatus = %+v", account, what, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *cmkEnv) waitLocked(account, keyName string) encryptionStatus {
	e.t.Helper()
	st := e.waitStatus(account, "KeyInaccessible", func(s encryptionStatus) bool { return s.State == batch.KeyInaccessible })
	if !strings.Contains(st.Reason, keyName) {
		e.t.Errorf("lock reason does not name key %s: %q", keyName, st.Reason)
	}
	if _, err := time.Parse(time.RFC3339, st.Since); err != nil {
		e.t.Errorf("encryptionStatus.since %q: %v", st.Since, err)
	}
	return st
}

func (e *cmkEnv) waitAvailable(account string) encryptionStatus {
	e.t.Helper()
	return e.waitStatus(account, "Available", func(s encryptionStatus) bool { return s.State == batch.KeyAvailable })
}

// seal seals a probe value with the account's data key, to prove later
// that key changes kept the same data key.
func (e *cmkEnv) seal(account string) (uid string, sealed []byte) {
	e.t.Helper()
	a, dek, err := e.ts.Batch.DEK(e.ctx, account)
	if err != nil {
		e.t.Fatalf("data key of %s: %v", account, err)
	}
	return a.UID, dek.Seal(a.UID, batch.Ref{Kind: "probe", ID: "1", Field: "value"}, []byte("customer data"))
}

func (e *cmkEnv) mustOpen(account, uid string, sealed []byte) {
	e.t.Helper()
	_, dek, err := e.ts.Batch.DEK(e.ctx, account)
	if err != nil {
		e.t.Fatalf("data key of %s: %v", account, err)
	}
	got, err := dek.Open(uid, batch.Ref{Kind: "probe", ID: "1", Field: "value"}, sealed)
	if err != nil || string(got) != "customer data" {
		e.t.Fatalf("data sealed before the key change no longer opens: %q, %v", got, err)
	}
}

func wantCode(t *testing.T, what string, err error, status int, code string) string {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("%s: %v, want %d %s", what, err, status, code)
	}
	return re.Error()
}

// TestBatchCustomerManagedKeyWalkthrough follows the seed page with the
// real SDK clients: a system-assigned account, a vault with purge
// protection and an access policy for the account, an RSA-2048 key, then
// every key change the page describes, plus a versionless identifier that
// follows new versions, back to Microsoft.Batch, and deleting the old key.
func TestBatchCustomerManagedKeyWalkthrough(t *testing.T) {
	e := newCMKEnv(t)
	acct := mustCreateAccount(t, e.accts, e.rg, "mybatchaccount", armbatch.AccountCreateParameters{
		Location: to.Ptr("West US 2"),
		Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)},
	})
	principal := *acct.Identity.PrincipalID
	uid, sealed := e.seal("mybatchaccount")

	kc := e.vault("kvcmk")
	k1v1 := e.rsaKey(kc, "key1")

	// Before the access policy exists the key is refused, naming the
	// identity, and nothing changes.
	_, err := e.setKey("mybatchaccount", "Microsoft.KeyVault", string(k1v1))
	if msg := wantCode(t, "set key without access", err, 400, "KeyVaultAccessFailed"); !strings.Contains(msg, principal) {
		t.Errorf("refusal does not name the principal %s: %s", principal, msg)
	}
	if st := e.status("mybatchaccount"); st.State != "Available" || !strings.HasPrefix(st.KeyVersionInUse, "platform-") {
		t.Fatalf("a refused key change changed the account: %+v", st)
	}

	e.grant("kvcmk", principal)
	e.mustSetKey("mybatchaccount", "Microsoft.KeyVault", string(k1v1))
	if st := e.status("mybatchaccount"); st.State != "Available" || st.KeyVersionInUse != string(k1v1) {
		t.Fatalf("after enabling CMK: %+v, want key %s in use", st, k1v1)
	}
	e.mustOpen("mybatchaccount", uid, sealed)

	// Update the key version.
	k1v2 := e.rsaKey(kc, "key1")
	e.mustSetKey("mybatchaccount", "Microsoft.KeyVault", string(k1v2))
	if st := e.status("mybatchaccount"); st.KeyVersionInUse != string(k1v2) {
		t.Fatalf("after new version: %+v, want %s", st, k1v2)
	}
	// A different key.
	k2v1 := e.rsaKey(kc, "key2")
	e.mustSetKey("mybatchaccount", "Microsoft.KeyVault", string(k2v1))
	if st := e.status("mybatchaccount"); st.KeyVersionInUse != string(k2v1) {
		t.Fatalf("after different key: %+v, want %s", st, k2v1)
	}
	e.mustOpen("mybatchaccount", uid, sealed)

	// A versionless identifier follows the key's latest version.
	versionless := strings.TrimSuffix(string(k2v1), "/"+k2v1.Version())
	e.mustSetKey("mybatchaccount", "Microsoft.KeyVault", versionless)
	if st := e.status("mybatchaccount"); st.KeyVersionInUse != string(k2v1) {
		t.Fatalf("after versionless: %+v, want %s", st, k2v1)
	}
	k2v2 := e.rsaKey(kc, "key2")
	start := time.Now()
	e.waitStatus("mybatchaccount", "the new version "+string(k2v2), func(s encryptionStatus) bool { return s.KeyVersionInUse == string(k2v2) })
	if d := time.Since(start); d > 20*probeInterval {
		t.Errorf("following the new version took %s (probe interval %s)", d, probeInterval)
	}
	got, err := e.accts.Get(e.ctx, e.rg, "mybatchaccount", nil)
	if err != nil || *got.Properties.Encryption.KeyVaultProperties.KeyIdentifier != versionless {
		t.Fatalf("the account's identifier should stay versionless: %v", err)
	}
	e.mustOpen("mybatchaccount", uid, sealed)

	// Back to Microsoft-managed keys; then the customer's keys may go.
	e.mustSetKey("mybatchaccount", "Microsoft.Batch", "")
	if st := e.status("mybatchaccount"); !strings.HasPrefix(st.KeyVersionInUse, "platform-") || st.State != "Available" {
		t.Fatalf("after Microsoft.Batch: %+v", st)
	}
	if _, err := kc.DeleteKey(e.ctx, "key1", nil); err != nil {
		t.Fatalf("delete key1: %v", err)
	}
	if _, err := kc.DeleteKey(e.ctx, "key2", nil); err != nil {
		t.Fatalf("delete key2: %v", err)
	}
	time.Sleep(5 * probeInterval)
	if st := e.status("mybatchaccount"); st.State != "Available" {
		t.Fatalf("deleting keys no longer in use locked the account: %+v", st)
	}
	e.mustOpen("mybatchaccount", uid, sealed)
	// Tags still change.
	if _, err := e.accts.Update(e.ctx, e.rg, "mybatchaccount", armbatch.AccountUpdateParameters{Tags: map[string]*string{"done": to.Ptr("yes")}}, nil); err != nil {
		t.Fatalf("update after the walk-through: %v", err)
	}
}

// revocation is one way of losing the key, and how to undo it.
type revocation struct {
	name string
	// userAssigned: the account reaches the key with a user-assigned
	// identity (created with the key in one PUT).
	userAssigned bool
	apply        func(e *cmkEnv, c *cmkCase)
	// undo restores access; nil if it cannot be undone (the account is
	// then deleted while locked).
	undo func(e *cmkEnv, c *cmkCase)
}

// cmkCase is one account on a customer key in its own vault.
type cmkCase struct {
	account, vault, keyName string
	principal               string
	uamiName                string
	kid                     azkeys.ID
	kc                      *azkeys.Client
}

func (e *cmkEnv) newCase(name string, userAssigned bool) *cmkCase {
	e.t.Helper()
	c := &cmkCase{account: "acct" + name, vault: "kv-" + name, keyName: "key-" + name}
	c.kc = e.vault(c.vault)
	c.kid = e.rsaKey(c.kc, c.keyName)
	if userAssigned {
		c.uamiName = "uami-" + name
		c.principal = MustIdentity(e.t, e.ts, e.tok, e.rg, c.uamiName)
		e.grant(c.vault, c.principal)
		rid := identityPath(e.ts, e.rg, c.uamiName)
		a := mustCreateAccount(e.t, e.accts, e.rg, c.account, armbatch.AccountCreateParameters{
			Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeUserAssigned),
				UserAssignedIdentities: map[string]*armbatch.UserAssignedIdentities{rid: {}}},
			Properties: &armbatch.AccountCreateProperties{Encryption: &armbatch.EncryptionProperties{
				KeySource: to.Ptr(armbatch.KeySourceMicrosoftKeyVault), KeyVaultProperties: &armbatch.KeyVaultProperties{KeyIdentifier: to.Ptr(string(c.kid))}}},
		})
		if *a.Properties.Encryption.KeySource != armbatch.KeySourceMicrosoftKeyVault {
			e.t.Fatalf("created with keySource %s", *a.Properties.Encryption.KeySource)
		}
	} else {
		a := mustCreateAccount(e.t, e.accts, e.rg, c.account, armbatch.AccountCreateParameters{
			Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)}})
		c.principal = *a.Identity.PrincipalID
		e.grant(c.vault, c.principal)
		e.mustSetKey(c.account, "Microsoft.KeyVault", string(c.kid))
	}
	if st := e.status(c.account); st.State != "Available" || st.KeyVersionInUse != string(c.kid) {
		e.t.Fatalf("account %s on its key: %+v", c.account, st)
	}
	return c
}

func (e *cmkEnv) updateKey(c *cmkCase, p azkeys.UpdateKeyParameters) {
	e.t.Helper()
	if _, err := c.kc.UpdateKey(e.ctx, c.keyName, c.kid.Version(), p, nil); err != nil {
		e.t.Fatalf("update key %s: %v", c.kid, err)
	}
}

func allKeyOps() []*azkeys.KeyOperation {
	var out []*azkeys.KeyOperation
	for _, op := range []azkeys.KeyOperation{azkeys.KeyOperationEncrypt, azkeys.KeyOperationDecrypt, azkeys.KeyOperationSign,
		azkeys.KeyOperationVerify, azkeys.KeyOperationWrapKey, azkeys.KeyOperationUnwrapKey} {
		out = append(out, to.Ptr(op))
	}
	return out
}

// TestBatchCustomerManagedKeyRevocation removes access to the key in each
// way the design names and checks that the account locks (reading its
// status and deleting it still work, changes are refused, switching back to
// Microsoft.Batch is refused) and unlocks once access returns.
func TestBatchCustomerManagedKeyRevocation(t *testing.T) {
	causes := []revocation{
		{name: "policy",
			apply: func(e *cmkEnv, c *cmkCase) { e.policy(c.vault, c.principal, armkeyvault.AccessPolicyUpdateKindRemove) },
			undo:  func(e *cmkEnv, c *cmkCase) { e.grant(c.vault, c.principal) }},
		{name: "disabled",
			apply: func(e *cmkEnv, c *cmkCase) {
				e.updateKey(c, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)}})
			},
			undo: func(e *cmkEnv, c *cmkCase) {
				e.updateKey(c, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(true)}})
			}},
		{name: "expired",
			apply: func(e *cmkEnv, c *cmkCase) {
				e.updateKey(c, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Expires: to.Ptr(time.Now().Add(-time.Minute))}})
			},
			undo: func(e *cmkEnv, c *cmkCase) {
				e.updateKey(c, azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Expires: to.Ptr(time.Now().Add(24 * time.Hour))}})
			}},
		{name: "deleted",
			apply: func(e *cmkEnv, c *cmkCase) {
				if _, err := c.kc.DeleteKey(e.ctx, c.keyName, nil); err != nil {
					e.t.Fatalf("delete key: %v", err)
				}
			},
			undo: func(e *cmkEnv, c *cmkCase) {
				if _, err := c.kc.RecoverDeletedKey(e.ctx, c.keyName, nil); err != nil {
					e.t.Fatalf("recover key: %v", err)
				}
			}},
		{name: "keyops",
			apply: func(e *cmkEnv, c *cmkCase) {
				e.updateKey(c, azkeys.UpdateKeyParameters{KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationEncrypt), to.Ptr(azkeys.KeyOperationDecrypt)}})
			},
			undo: func(e *cmkEnv, c *cmkCase) { e.updateKey(c, azkeys.UpdateKeyParameters{KeyOps: allKeyOps()}) }},
		{name: "vault",
			apply: func(e *cmkEnv, c *cmkCase) {
				if _, err := e.vaults.Delete(e.ctx, e.rg, c.vault, nil); err != nil {
					e.t.Fatalf("delete vault: %v", err)
				}
			},
			undo: func(e *cmkEnv, c *cmkCase) {
				p, err := e.vaults.BeginCreateOrUpdate(e.ctx, e.rg, c.vault, armkeyvault.VaultCreateOrUpdateParameters{
					Location: to.Ptr("westus2"),
					Properties: &armkeyvault.VaultProperties{TenantID: to.Ptr(e.ts.Admin.TenantID), CreateMode: to.Ptr(armkeyvault.CreateModeRecover),
						SKU: &armkeyvault.SKU{Family: to.Ptr(armkeyvault.SKUFamilyA), Name: to.Ptr(armkeyvault.SKUNameStandard)}},
				}, nil)
				if err == nil {
					_, err = p.PollUntilDone(e.ctx, fastPoll)
				}
				if err != nil {
					e.t.Fatalf("recover vault: %v", err)
				}
			}},
		{name: "identity", userAssigned: true,
			apply: func(e *cmkEnv, c *cmkCase) {
				client, err := armmsi.NewUserAssignedIdentitiesClient(e.ts.Admin.SubscriptionID, adminCredential(e.t, e.ts), armOptions(e.ts))
				if err != nil {
					e.t.Fatal(err)
				}
				if _, err := client.Delete(e.ctx, e.rg, c.uamiName, nil); err != nil {
					e.t.Fatalf("delete identity: %v", err)
				}
			}},
	}
	e := newCMKEnv(t)
	for _, rc := range causes {
		t.Run(rc.name, func(t *testing.T) {
			e.t = t
			c := e.newCase(rc.name, rc.userAssigned)
			uid, sealed := e.seal(c.account)
			rc.apply(e, c)
			start := time.Now()
			st := e.waitLocked(c.account, c.keyName)
			if d := time.Since(start); d > 20*probeInterval {
				t.Errorf("locking took %s (probe interval %s)", d, probeInterval)
			}
			t.Logf("locked: %s", st.Reason)

			// Changes are refused with the account's error; so is going back
			// to the platform key.
			_, err := e.accts.Update(e.ctx, e.rg, c.account, armbatch.AccountUpdateParameters{Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
			if msg := wantCode(t, "tags while locked", err, 409, "AccountKeyInaccessible"); !strings.Contains(msg, c.account) || !strings.Contains(msg, c.keyName) {
				t.Errorf("locked error does not name the account and key: %s", msg)
			}
			_, err = e.setKey(c.account, "Microsoft.Batch", "")
			wantCode(t, "back to Microsoft.Batch while locked", err, 409, "AccountKeyInaccessible")
			_, err = e.accts.BeginCreate(e.ctx, e.rg, c.account, armbatch.AccountCreateParameters{Location: to.Ptr("westus2")}, nil)
			wantCode(t, "PUT while locked", err, 409, "AccountKeyInaccessible")
			// The data plane's key is gone from memory.
			if _, _, err := e.ts.Batch.DEK(e.ctx, c.account); custody.ErrorCode(err) != "AccountKeyInaccessible" {
				t.Errorf("data key while locked: %v, want AccountKeyInaccessible", err)
			}
			// Reading works, through the SDK too.
			if _, err := e.accts.Get(e.ctx, e.rg, c.account, nil); err != nil {
				t.Errorf("get while locked: %v", err)
			}
			listed := false
			for p := e.accts.NewListByResourceGroupPager(e.rg, nil); p.More(); {
				page, err := p.NextPage(e.ctx)
				if err != nil {
					t.Fatalf("list while locked: %v", err)
				}
				for _, a := range page.Value {
					listed = listed || *a.Name == c.account
				}
			}
			if !listed {
				t.Errorf("a locked account is missing from the list")
			}

			if rc.undo == nil {
				// Deleting still works while locked.
				dp, err := e.accts.BeginDelete(e.ctx, e.rg, c.account, nil)
				if err == nil {
					_, err = dp.PollUntilDone(e.ctx, fastPoll)
				}
				if err != nil {
					t.Fatalf("delete while locked: %v", err)
				}
				_, err = e.accts.Get(e.ctx, e.rg, c.account, nil)
				wantCode(t, "get after delete", err, 404, "ResourceNotFound")
				return
			}
			rc.undo(e, c)
			start = time.Now()
			e.waitAvailable(c.account)
			if d := time.Since(start); d > 20*probeInterval {
				t.Errorf("unlocking took %s (probe interval %s)", d, probeInterval)
			}
			e.mustOpen(c.account, uid, sealed)
			if _, err := e.accts.Update(e.ctx, e.rg, c.account, armbatch.AccountUpdateParameters{Tags: map[string]*string{"a": to.Ptr("b")}}, nil); err != nil {
				t.Errorf("update after unlock: %v", err)
			}
			// And now Microsoft.Batch is allowed.
			e.mustSetKey(c.account, "Microsoft.Batch", "")
		})
	}
}

// TestBatchCustomerManagedKeyLockedDelete deletes a locked account.
func TestBatchCustomerManagedKeyLockedDelete(t *testing.T) {
	e := newCMKEnv(t)
	c := e.newCase("del", false)
	e.policy(c.vault, c.principal, armkeyvault.AccessPolicyUpdateKindRemove)
	e.waitLocked(c.account, c.keyName)
	r := MustARM(t, e.ts, e.tok, "DELETE", batchAccountPath(e.ts, e.rg, c.account)+"?api-version="+batchAPIVersion, "")
	wantStatus(t, r, 202)
	dp, err := e.accts.BeginDelete(e.ctx, e.rg, c.account, nil)
	if err == nil {
		_, err = dp.PollUntilDone(e.ctx, fastPoll)
	}
	if err != nil {
		t.Fatalf("second delete: %v", err)
	}
	_, err = e.accts.Get(e.ctx, e.rg, c.account, nil)
	wantCode(t, "get after delete", err, 404, "ResourceNotFound")
}

// connRecorder is a TCP listener that records the connections made to it.
type connRecorder struct {
	ln    net.Listener
	conns chan string // remote address of each accepted connection, in order
}

func newConnRecorder(t *testing.T, addr string) *connRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	r := &connRecorder{ln: ln, conns: make(chan string, 1000)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	return r
}

// count returns how many connections were made to the listener so far. It
// connects once itself and reads the accepted connections up to its own:
// the listener accepts in order, so every earlier one is counted.
func (r *connRecorder) count(t *testing.T) int {
	t.Helper()
	c, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	for remote := range r.conns {
		if remote == c.LocalAddr().String() {
			return n
		}
		n++
	}
	return n
}

// TestKeyIdentifierHostAllowList: a key identifier may name only this
// server's vaults or a configured external vault host; any other host is
// refused with 400 before the server connects to it.
func TestKeyIdentifierHostAllowList(t *testing.T) {
	refused := newConnRecorder(t, "127.0.0.2:0")
	allowed := newConnRecorder(t, "127.0.0.2:0")
	ts := servertest.New(t, func(c *server.Config) {
		c.ExternalVaultHosts = []string{allowed.ln.Addr().String()}
		c.ExternalVaultCredentials = []batch.ExternalCredential{{Hosts: []string{allowed.ln.Addr().String()},
			Authority: "https://" + allowed.ln.Addr().String() + "/", TenantID: "t", ClientID: "c", ClientSecret: "s"}}
	})
	ctx := context.Background()
	tok := adminToken(t, ts)
	MustGroup(t, ts, tok, "rg1")
	MustIdentity(t, ts, tok, "rg1", "uami")
	rid := identityPath(ts, "rg1", "uami")
	c := batchClient(t, ts)
	mustCreateAccount(t, c, "rg1", "acctsys", armbatch.AccountCreateParameters{Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeSystemAssigned)}})

	port := portOf(ts)
	for _, kid := range []string{
		"https://" + refused.ln.Addr().String() + "/keys/k1",
		"https://" + refused.ln.Addr().String() + "/keys/k1/0123456789abcdef0123456789abcdef",
		"https://kv1.vault." + ts.Endpoint.Domain + ".evil.example:" + port + "/keys/k1",
		"https://kv1.vault.example.com/keys/k1",
		"https://kv1.notvault." + ts.Endpoint.Domain + ":" + port + "/keys/k1",
		"https://kv1.vault." + ts.Endpoint.Domain + ":1/keys/k1",
		"https://a.b.vault." + ts.Endpoint.Domain + ":" + port + "/keys/k1",
		"https://login." + ts.Endpoint.Domain + ":" + port + "/keys/k1",
	} {
		t.Run(kid, func(t *testing.T) {
			_, err := c.Update(ctx, "rg1", "acctsys", armbatch.AccountUpdateParameters{Properties: &armbatch.AccountUpdateProperties{
				Encryption: &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySourceMicrosoftKeyVault), KeyVaultProperties: &armbatch.KeyVaultProperties{KeyIdentifier: to.Ptr(kid)}}}}, nil)
			wantResponseError(t, err, http.StatusBadRequest, "InvalidKeyIdentifier")
			_, err = c.BeginCreate(ctx, "rg1", "acctua", armbatch.AccountCreateParameters{Location: to.Ptr("westus2"),
				Identity: &armbatch.AccountIdentity{Type: to.Ptr(armbatch.ResourceIdentityTypeUserAssigned), UserAssignedIdentities: map[string]*armbatch.UserAssignedIdentities{rid: {}}},
				Properties: &armbatch.AccountCreateProperties{Encryption: &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySourceMicrosoftKeyVault),
					KeyVaultProperties: &armbatch.KeyVaultProperties{KeyIdentifier: to.Ptr(kid)}}}}, nil)
			wantResponseError(t, err, http.StatusBadRequest, "InvalidKeyIdentifier")
		})
	}
	if n := refused.count(t); n != 0 {
		t.Errorf("the server opened %d connection(s) to a refused vault host", n)
	}

	// A configured external vault host is used: the server connects to it
	// (and, as nothing answers TLS there, the key is refused as unreachable).
	_, err := c.Update(ctx, "rg1", "acctsys", armbatch.AccountUpdateParameters{Properties: &armbatch.AccountUpdateProperties{
		Encryption: &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySourceMicrosoftKeyVault), KeyVaultProperties: &armbatch.KeyVaultProperties{
			KeyIdentifier: to.Ptr("https://" + allowed.ln.Addr().String() + "/keys/k1")}}}}, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode >= 500 || re.ErrorCode == "InvalidKeyIdentifier" {
		t.Errorf("key in an allowed external vault: err = %v, want a 4xx other than InvalidKeyIdentifier", err)
	}
	if n := allowed.count(t); n == 0 {
		t.Errorf("the server did not connect to the configured external vault host")
	}
}
