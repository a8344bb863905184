package sqlstore_test

import (
	"bytes"
	"context"
	"testing"

	"custody"
	"custody/batch"
	"custody/sqlstore"
)

// TestSharedKeysCompareAndSwap: an account stored before shared keys
// existed (the column's default) takes its first keys once; later changes
// must name the keys they replace; other account fields leave them alone.
func TestSharedKeysCompareAndSwap(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.BatchAccountStore{DB: db}
		a := &batch.Account{ID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/acct1", UID: "uid1",
			SubscriptionID: "s", ResourceGroup: "rg", Name: "acct1", Location: "westus2", Key: batch.AccountKey{Wrapped: batch.WrappedDEK{KeyID: "k1", Ciphertext: []byte{1}}}}
		if err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		// What the migration leaves in rows created before it (its default,
		// which SQLite keeps as text).
		if _, err := db.SQL().ExecContext(ctx, `UPDATE batch_accounts SET shared_keys = ''`); err != nil {
			t.Fatal(err)
		}
		first, second := []byte("sealed-1"), []byte("sealed-2")
		if err := s.UpdateSharedKeys(ctx, "acct1", "uid1", nil, first); err != nil {
			t.Fatalf("first keys: %v", err)
		}
		wantKind(t, s.UpdateSharedKeys(ctx, "acct1", "uid1", nil, second), custody.KindConflict)
		wantKind(t, s.UpdateSharedKeys(ctx, "acct1", "other-uid", first, second), custody.KindConflict)
		got, err := s.Account(ctx, "acct1")
		if err != nil {
			t.Fatal(err)
		}
		got.Tags, got.AuthModes = map[string]string{"t": "v"}, []string{batch.AuthModeAAD}
		if err := s.UpdateAccount(ctx, got, "k1"); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateSharedKeys(ctx, "acct1", "uid1", first, second); err != nil {
			t.Fatalf("replace keys: %v", err)
		}
		got, err = s.Account(ctx, "acct1")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.SharedKeys, second) || len(got.AuthModes) != 1 || got.AuthModes[0] != batch.AuthModeAAD {
			t.Fatalf("account = keys %q modes %v, want %q [AAD]", got.SharedKeys, got.AuthModes, second)
		}
	})
}
