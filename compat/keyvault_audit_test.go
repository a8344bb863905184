package compat_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/keyvault"
	"custody/server/servertest"
	"custody/sqlstore"
)

// warmUnwrap wraps a DEK and unwraps it n times with c, so that every cache
// on the path holds the caller's entries, and returns the wrapped DEK.
func warmUnwrap(t *testing.T, c *azkeys.Client, key string, n int) []byte {
	t.Helper()
	ctx := context.Background()
	w, err := c.WrapKey(ctx, key, "", oaepParams(bytes.Repeat([]byte{1}, 32)), nil)
	if err != nil {
		t.Fatalf("wrap: %v", err)
	}
	for range n {
		if _, err := c.UnwrapKey(ctx, key, "", oaepParams(w.Result), nil); err != nil {
			t.Fatalf("unwrap while allowed: %v", err)
		}
	}
	return w.Result
}

// TestKeyVaultAuditStoredBeforeAnswer checks that every answered call's
// audit record is already in the database when the answer arrives (read
// from the store, with no flush), and that a shutdown while calls are in
// flight leaves a record for every answered call in the database file.
func TestKeyVaultAuditStoredBeforeAnswer(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	MustGroup(t, ts, adminToken(t, ts), "rg")
	mustKeyVault(t, ts, "rg", "kv-audit", vaultSpec{retentionDays: 7, policies: map[string][]string{adminObjectID(t, ts): {"all"}}})
	admin := keysClient(t, ts, "kv-audit", adminCredential(t, ts))
	if _, err := admin.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
		t.Fatal(err)
	}
	wrapped := warmUnwrap(t, admin, "k", 0)
	unwraps := func(recs []*keyvault.AuditRecord) int {
		n := 0
		for _, r := range recs {
			if r.Operation == "KeyUnwrap" && r.Outcome == "success" {
				n++
			}
		}
		return n
	}

	const n = 200
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= n {
				if _, err := admin.UnwrapKey(ctx, "k", "", oaepParams(wrapped), nil); err != nil {
					t.Errorf("unwrap: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	recs, err := ts.KeyVault.Keys.ListAudit(ctx, keyvault.AuditFilter{VaultName: "kv-audit", KeyName: "k", Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if got := unwraps(recs); got != n {
		t.Fatalf("%d unwrap records in the store right after %d answered unwraps, want all of them", got, n)
	}

	// Calls in flight while the server shuts down.
	var answered atomic.Int64
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := admin.UnwrapKey(ctx, "k", "", oaepParams(wrapped), nil); err != nil {
					var re *azcore.ResponseError
					if errors.As(err, &re) {
						t.Errorf("unwrap answered with an error: %v", err)
					}
					return
				}
				answered.Add(1)
			}
		})
	}
	for answered.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	if err := ts.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	close(stop)
	wg.Wait()
	db, err := sqlstore.Open(ctx, filepath.Join(ts.DataDir(), "custody.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err = (&sqlstore.KeyStore{DB: db}).ListAudit(ctx, keyvault.AuditFilter{VaultName: "kv-audit", KeyName: "k", Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := unwraps(recs), n+int(answered.Load()); got < want {
		t.Fatalf("%d unwrap records after a shutdown, want at least %d (every answered call)", got, want)
	}
}
