package batch_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"custody"
	"custody/batch"
	"custody/identity"
	"custody/rm"
	"custody/secret"
	"custody/sqlstore"
)

// fakeVault is a named fake of a key vault's REST API for unit tests of the
// account service: RSA-OAEP-256 with real keys, and switches that make it
// refuse or fail the way a vault does. The compat tests use the real vault.
type fakeVault struct {
	mu       sync.Mutex
	versions map[string]*rsa.PrivateKey // version -> key
	latest   string
	refuse   string // non-empty: every call is a definite refusal with this reason
	outage   bool   // every call fails as an outage
	recovery string
	calls    int
}

func newFakeVault(t *testing.T) *fakeVault {
	v := &fakeVault{versions: map[string]*rsa.PrivateKey{}, recovery: "Recoverable"}
	v.newVersion(t)
	return v
}

func (v *fakeVault) newVersion(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ver := fmt.Sprintf("%032x", len(v.versions)+1)
	v.versions[ver], v.latest = k, ver
	return ver
}

const vaultURL = "https://kv1.vault.localhost:8443"

func (v *fakeVault) check(id batch.KeyID) (*rsa.PrivateKey, string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	if v.refuse != "" {
		return nil, "", &batch.KeyError{Definite: true, Reason: v.refuse}
	}
	if v.outage {
		return nil, "", &batch.KeyError{Reason: "vault unreachable", Err: errors.New("timeout")}
	}
	ver := id.Version
	if ver == "" {
		ver = v.latest
	}
	k := v.versions[ver]
	if k == nil {
		return nil, "", &batch.KeyError{Definite: true, Reason: "no such version"}
	}
	return k, ver, nil
}

func (v *fakeVault) GetKey(_ context.Context, id batch.KeyID, _ string) (batch.KeyInfo, error) {
	k, ver, err := v.check(id)
	if err != nil {
		return batch.KeyInfo{}, err
	}
	kid := id
	kid.Version = ver
	return batch.KeyInfo{KID: kid, Kty: "RSA", KeySize: k.N.BitLen(), Enabled: true, KeyOps: []string{"wrapKey", "unwrapKey"}, RecoveryLevel: v.recovery}, nil
}

func (v *fakeVault) WrapKey(_ context.Context, id batch.KeyID, _ string, dek []byte) (batch.KeyID, []byte, error) {
	k, ver, err := v.check(id)
	if err != nil {
		return batch.KeyID{}, nil, err
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.PublicKey, dek, nil)
	kid := id
	kid.Version = ver
	return kid, ct, err
}

func (v *fakeVault) UnwrapKey(_ context.Context, id batch.KeyID, _ string, wrapped []byte) ([]byte, error) {
	k, _, err := v.check(id)
	if err != nil {
		return nil, err
	}
	return rsa.DecryptOAEP(sha256.New(), rand.Reader, k, wrapped, nil)
}

type fakeIdentities struct{}

func (fakeIdentities) CreateSystemAssigned(context.Context, string) (string, error) {
	return identity.NewID(), nil
}
func (fakeIdentities) DeleteSystemAssigned(context.Context, string) error { return nil }
func (fakeIdentities) UserAssigned(_ context.Context, rid string) (batch.UserAssignedIdentity, error) {
	return batch.UserAssignedIdentity{PrincipalID: "pid-" + filepath.Base(rid), ClientID: "cid"}, nil
}

type env struct {
	svc   *batch.Service
	vault *fakeVault
	now   time.Time
	sub   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "custody.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	sealer, _ := secret.NewSealer(key)
	store := &sqlstore.BatchAccountStore{DB: db}
	platform, err := batch.NewPlatformKEK(ctx, store, sealer)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{vault: newFakeVault(t), now: time.Now(), sub: identity.NewID()}
	r := &rm.Service{Store: &sqlstore.RMStore{DB: db}, SubscriptionID: e.sub, NewID: identity.NewID}
	if _, err := r.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: e.sub, Name: "rg", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	e.svc = &batch.Service{
		Accounts: store, Platform: platform, Vault: e.vault, Identities: fakeIdentities{}, RM: r,
		Domain: "localhost", Port: 8443, GracePeriod: time.Minute, NewID: identity.NewID,
		Now: func() time.Time { return e.now },
	}
	return e
}

func (e *env) create(t *testing.T, name string, identityType string, enc batch.Encryption) *batch.Account {
	t.Helper()
	a := &batch.Account{
		ID:             rm.ResourceID(e.sub, "rg", "Microsoft.Batch", "batchAccounts", name),
		SubscriptionID: e.sub, ResourceGroup: "rg", Name: name, Location: "westus2",
		Identity: batch.AccountIdentity{Type: identityType}, Encryption: enc,
	}
	if identityType == batch.IdentityUserAssigned {
		a.Identity.UserAssigned = map[string]batch.UserAssignedIdentity{"/subscriptions/x/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ua1": {}}
	}
	got, err := e.svc.CreateAccount(context.Background(), a)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return got
}

func sealOpen(t *testing.T, e *env, name string) {
	t.Helper()
	a, dek, err := e.svc.DEK(context.Background(), name)
	if err != nil {
		t.Fatalf("DEK of %s: %v", name, err)
	}
	ct := dek.Seal(a.UID, batch.Ref{Kind: "job", ID: "j1", Field: "spec"}, []byte("hello"))
	pt, err := dek.Open(a.UID, batch.Ref{Kind: "job", ID: "j1", Field: "spec"}, ct)
	if err != nil || string(pt) != "hello" {
		t.Fatalf("round trip: %q, %v", pt, err)
	}
}

func TestCustomerKeyLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	versioned := vaultURL + "/keys/k1/" + e.vault.latest
	a := e.create(t, "acct1", batch.IdentityUserAssigned, batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: versioned})
	if a.Key.Wrapped.KeyID != versioned || a.Key.State != batch.KeyAvailable {
		t.Fatalf("key = %+v, want wrapped by %s and available", a.Key, versioned)
	}
	// Seal something with the DEK, then change keys; the same DEK must
	// keep opening it.
	_, dek, _ := e.svc.DEK(ctx, "acct1")
	ref := batch.Ref{Kind: "task", ID: "j1/t1", Field: "spec"}
	ct := dek.Seal(a.UID, ref, []byte("command line"))

	v2 := e.vault.newVersion(t)
	if _, err := e.svc.SetEncryption(ctx, "acct1", batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: vaultURL + "/keys/k1/" + v2}); err != nil {
		t.Fatalf("new version: %v", err)
	}
	if _, err := e.svc.SetEncryption(ctx, "acct1", batch.Encryption{KeySource: batch.KeySourceBatch}); err != nil {
		t.Fatalf("back to platform: %v", err)
	}
	got, _ := e.svc.Account(ctx, "acct1")
	if got.Key.Wrapped.KeySource != batch.KeySourceBatch || got.Encryption.KeyIdentifier != "" {
		t.Fatalf("after switching back: %+v", got.Key.Wrapped)
	}
	// The vault may now refuse everything: a platform-key account does not care.
	e.vault.refuse = "key deleted"
	_, dek2, err := e.svc.DEK(ctx, "acct1")
	if err != nil {
		t.Fatalf("DEK after switching back, vault refusing: %v", err)
	}
	pt, err := dek2.Open(a.UID, ref, ct)
	if err != nil || string(pt) != "command line" {
		t.Fatalf("open after key changes: %q, %v", pt, err)
	}
}

func TestMonitorLocksOnRefusalAndUnlocks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create(t, "acct2", batch.IdentityUserAssigned, batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: vaultURL + "/keys/k1/" + e.vault.latest})
	e.vault.refuse = "Key Vault refused unwrapKey: (Forbidden) access policy removed"
	if err := e.svc.Probe(ctx, "acct2"); err != nil {
		t.Fatal(err)
	}
	a, _ := e.svc.Account(ctx, "acct2")
	if a.Key.State != batch.KeyInaccessible || a.Key.Reason != e.vault.refuse {
		t.Fatalf("after refusal: state %s reason %q", a.Key.State, a.Key.Reason)
	}
	_, _, err := e.svc.DEK(ctx, "acct2")
	if custody.ErrorCode(err) != "AccountKeyInaccessible" {
		t.Fatalf("DEK of a locked account: %v, want AccountKeyInaccessible", err)
	}
	if _, err := e.svc.Update(ctx, "acct2", map[string]string{"a": "b"}, nil, nil); custody.ErrorCode(err) != "AccountKeyInaccessible" {
		t.Fatalf("update of a locked account: %v", err)
	}
	if _, err := e.svc.SetEncryption(ctx, "acct2", batch.Encryption{KeySource: batch.KeySourceBatch}); custody.ErrorCode(err) != "AccountKeyInaccessible" {
		t.Fatalf("switching back while locked: %v, want refusal", err)
	}
	e.vault.refuse = ""
	if err := e.svc.Probe(ctx, "acct2"); err != nil {
		t.Fatal(err)
	}
	a, _ = e.svc.Account(ctx, "acct2")
	if a.Key.State != batch.KeyAvailable {
		t.Fatalf("after restore: %s", a.Key)
	}
	sealOpen(t, e, "acct2")
}

func TestMonitorRidesOutOutagesForTheGracePeriod(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create(t, "acct3", batch.IdentityUserAssigned, batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: vaultURL + "/keys/k1/" + e.vault.latest})
	e.vault.outage = true
	e.now = e.now.Add(30 * time.Second)
	e.svc.Probe(ctx, "acct3")
	if a, _ := e.svc.Account(ctx, "acct3"); a.Key.State != batch.KeyAvailable {
		t.Fatalf("locked within the grace period: %s", a.Key)
	}
	sealOpen(t, e, "acct3") // served from the cached DEK
	e.now = e.now.Add(2 * time.Minute)
	e.svc.Probe(ctx, "acct3")
	if a, _ := e.svc.Account(ctx, "acct3"); a.Key.State != batch.KeyInaccessible {
		t.Fatalf("not locked after the grace period: %s", a.Key)
	}
}

func TestVersionlessIdentifierFollowsLatestVersion(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create(t, "acct4", batch.IdentityUserAssigned, batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: vaultURL + "/keys/k1"})
	v2 := e.vault.newVersion(t)
	if err := e.svc.Probe(ctx, "acct4"); err != nil {
		t.Fatal(err)
	}
	a, _ := e.svc.Account(ctx, "acct4")
	if want := vaultURL + "/keys/k1/" + v2; a.Key.Wrapped.KeyID != want {
		t.Fatalf("wrapped by %s, want %s", a.Key.Wrapped.KeyID, want)
	}
	if a.Encryption.KeyIdentifier != vaultURL+"/keys/k1" {
		t.Fatalf("identifier changed to %s", a.Encryption.KeyIdentifier)
	}
	sealOpen(t, e, "acct4")
}

func TestCreateRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base := func(name string) *batch.Account {
		return &batch.Account{ID: rm.ResourceID(e.sub, "rg", "Microsoft.Batch", "batchAccounts", name), SubscriptionID: e.sub, ResourceGroup: "rg", Name: name, Location: "westus2"}
	}
	cases := []struct {
		name string
		mod  func(a *batch.Account)
		code string
	}{
		{"bad name", func(a *batch.Account) { a.Name = "Bad_Name" }, "AccountNameInvalid"},
		{"system-assigned with customer key", func(a *batch.Account) {
			a.Identity.Type = batch.IdentitySystemAssigned
			a.Encryption = batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: vaultURL + "/keys/k1"}
		}, "SystemAssignedIdentityNotYetAuthorized"},
		{"no identity with customer key", func(a *batch.Account) {
			a.Encryption = batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: vaultURL + "/keys/k1"}
		}, "AccountIdentityRequired"},
		{"identifier not a URL", func(a *batch.Account) {
			a.Identity = batch.AccountIdentity{Type: batch.IdentityUserAssigned, UserAssigned: map[string]batch.UserAssignedIdentity{"/x/ua": {}}}
			a.Encryption = batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: "kv1/keys/k1"}
		}, "InvalidKeyIdentifier"},
		{"unknown key source", func(a *batch.Account) { a.Encryption.KeySource = "Other" }, "InvalidKeySource"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := base("acct" + fmt.Sprint(len(c.name)))
			c.mod(a)
			_, err := e.svc.CreateAccount(ctx, a)
			if got := custody.ErrorCode(err); got != c.code {
				t.Fatalf("code = %s (%v), want %s", got, err, c.code)
			}
		})
	}
	// A vault without purge protection is refused, and nothing is stored.
	e.vault.recovery = "Recoverable+Purgeable"
	a := base("nopurge")
	a.Identity = batch.AccountIdentity{Type: batch.IdentityUserAssigned, UserAssigned: map[string]batch.UserAssignedIdentity{"/x/ua": {}}}
	a.Encryption = batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: vaultURL + "/keys/k1"}
	if _, err := e.svc.CreateAccount(ctx, a); custody.ErrorCode(err) != "KeyVaultPurgeProtectionRequired" {
		t.Fatalf("no purge protection: %v", err)
	}
	if _, err := e.svc.Account(ctx, "nopurge"); !custody.IsNotFound(err) {
		t.Fatalf("refused account was stored: %v", err)
	}
}

func TestPlatformKeyRotationKeepsOldWraps(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.create(t, "plat1", batch.IdentityNone, batch.Encryption{})
	old := a.Key.Wrapped.KeyID
	if _, err := e.svc.Platform.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if e.svc.Platform.ActiveID() == old {
		t.Fatal("rotation kept the same active key")
	}
	raw, err := e.svc.Platform.Unwrap(ctx, a.UID, a.Key.Wrapped)
	if err != nil || len(raw) != 32 {
		t.Fatalf("unwrap under the old platform key: %v", err)
	}
	// Bound to the account: another UID cannot unwrap it.
	if _, err := e.svc.Platform.Unwrap(ctx, "other-uid", a.Key.Wrapped); err == nil {
		t.Fatal("a wrapped DEK opened for another account")
	}
	if bytes.Equal(raw, make([]byte, 32)) {
		t.Fatal("zero DEK")
	}
}

// TestMonitorFence: while Fence refuses (a replica that lost the active
// lease), the monitor probes nothing, so a refused key does not lock its
// account; once it allows, the account locks.
func TestMonitorFence(t *testing.T) {
	e := newEnv(t)
	e.create(t, "acct3", batch.IdentityUserAssigned, batch.Encryption{KeySource: batch.KeySourceKeyVault, KeyIdentifier: vaultURL + "/keys/k1/" + e.vault.latest})
	var fenced atomic.Bool
	fenced.Store(true)
	e.svc.Now = time.Now // the monitor's schedule follows the real clock
	e.svc.ProbeInterval = 50 * time.Millisecond
	e.svc.Fence = func(context.Context) error {
		if fenced.Load() {
			return errors.New("not the active replica")
		}
		return nil
	}
	e.vault.refuse = "Key Vault refused unwrapKey: (Forbidden) access policy removed"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { e.svc.RunMonitor(ctx, nil); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(600 * time.Millisecond)
	if a, _ := e.svc.Account(ctx, "acct3"); a.Key.State != batch.KeyAvailable {
		t.Fatalf("a fenced monitor probed: state %s", a.Key.State)
	}
	fenced.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, _ := e.svc.Account(ctx, "acct3")
		if a.Key.State == batch.KeyInaccessible {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the monitor did not lock the account once allowed: state %s", a.Key.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
