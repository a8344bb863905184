package sqlstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"custody"
	"custody/keyvault"
	"custody/sqlstore"
)

func testVault(name, rg string) *keyvault.Vault {
	now := time.Unix(1700000000, 0).UTC()
	return &keyvault.Vault{
		ID:             "/subscriptions/sub1/resourceGroups/" + rg + "/providers/Microsoft.KeyVault/vaults/" + name,
		SubscriptionID: "sub1", ResourceGroup: rg, Name: name, Location: "westus2",
		Tags: map[string]string{"env": "test"}, TenantID: "tenant1", SKU: "standard",
		AccessPolicies:        []keyvault.AccessPolicy{{TenantID: "tenant1", ObjectID: "oid1", Keys: []string{"get", "wrapKey"}}},
		EnablePurgeProtection: true, SoftDeleteRetentionDays: 7, PublicNetworkAccess: "Enabled",
		NetworkACLs: &keyvault.NetworkACLs{DefaultAction: "Allow", Bypass: "AzureServices", IPRules: []string{"10.0.0.0/24"}},
		CreatedAt:   now, UpdatedAt: now, CreatedBy: "oid1",
	}
}

func TestVaultStore(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.VaultStore{DB: db}
		keys := &sqlstore.KeyStore{DB: db}

		t.Run("RoundTrip", func(t *testing.T) {
			v := testVault("Vault-One", "RG1")
			if err := s.PutVault(ctx, v); err != nil {
				t.Fatal(err)
			}
			got, err := s.Vault(ctx, "vault-one")
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != "Vault-One" || got.ID != v.ID || got.ResourceGroup != "RG1" || got.Tags["env"] != "test" || !got.EnablePurgeProtection ||
				got.SoftDeleteRetentionDays != 7 || got.SKU != "standard" || got.TenantID != "tenant1" || got.CreatedBy != "oid1" {
				t.Fatalf("read back %+v", got)
			}
			if len(got.AccessPolicies) != 1 || got.AccessPolicies[0].ObjectID != "oid1" || strings.Join(got.AccessPolicies[0].Keys, ",") != "get,wrapKey" {
				t.Fatalf("access policies %+v", got.AccessPolicies)
			}
			if got.NetworkACLs == nil || got.NetworkACLs.IPRules[0] != "10.0.0.0/24" {
				t.Fatalf("network acls %+v", got.NetworkACLs)
			}
			if !got.CreatedAt.Equal(v.CreatedAt) || got.DeletedAt != nil {
				t.Fatalf("times: %v %v", got.CreatedAt, got.DeletedAt)
			}
		})

		t.Run("ErrNotFound", func(t *testing.T) {
			if _, err := s.Vault(ctx, "nope"); custody.ErrorKind(err) != custody.KindNotFound {
				t.Fatalf("err = %v, want not found", err)
			}
			if err := s.PurgeVault(ctx, "nope"); custody.ErrorKind(err) != custody.KindNotFound {
				t.Fatalf("purge err = %v, want not found", err)
			}
		})

		t.Run("ListAndSoftDelete", func(t *testing.T) {
			for _, n := range []string{"b-vault", "a-vault", "c-vault"} {
				if err := s.PutVault(ctx, testVault(n, "rg2")); err != nil {
					t.Fatal(err)
				}
			}
			c, _ := s.Vault(ctx, "c-vault")
			del := time.Unix(1700000100, 0).UTC()
			purge := del.Add(7 * 24 * time.Hour)
			c.DeletedAt, c.ScheduledPurgeAt = &del, &purge
			if err := s.PutVault(ctx, c); err != nil {
				t.Fatal(err)
			}
			live, err := s.ListVaults(ctx, "sub1", "Rg2", false)
			if err != nil {
				t.Fatal(err)
			}
			if len(live) != 2 || live[0].Name != "a-vault" || live[1].Name != "b-vault" {
				t.Fatalf("live = %v", vaultNames(live))
			}
			gone, err := s.ListVaults(ctx, "sub1", "", true)
			if err != nil {
				t.Fatal(err)
			}
			if len(gone) != 1 || gone[0].Name != "c-vault" || !gone[0].DeletedAt.Equal(del) || !gone[0].ScheduledPurgeAt.Equal(purge) {
				t.Fatalf("deleted = %v", vaultNames(gone))
			}
			all, err := s.ListVaults(ctx, "sub1", "", false)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 3 { // Vault-One, a-vault, b-vault
				t.Fatalf("live in subscription = %v", vaultNames(all))
			}
			due, err := s.VaultsDueForPurge(ctx, purge.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if len(due) != 1 || due[0].Name != "c-vault" {
				t.Fatalf("due = %v", vaultNames(due))
			}
			if due, _ := s.VaultsDueForPurge(ctx, purge.Add(-time.Second)); len(due) != 0 {
				t.Fatalf("due before the purge date = %v", vaultNames(due))
			}
			// Recover: clearing the dates makes it live again.
			c.DeletedAt, c.ScheduledPurgeAt = nil, nil
			if err := s.PutVault(ctx, c); err != nil {
				t.Fatal(err)
			}
			if live, _ := s.ListVaults(ctx, "sub1", "rg2", false); len(live) != 3 {
				t.Fatalf("after recover live = %v", vaultNames(live))
			}
		})

		t.Run("PurgeRemovesKeys", func(t *testing.T) {
			v := testVault("keyed", "rg3")
			if err := s.PutVault(ctx, v); err != nil {
				t.Fatal(err)
			}
			now := time.Unix(1700000000, 0).UTC()
			if err := keys.CreateKeyVersion(ctx, &keyvault.Key{VaultName: "keyed", Name: "k1", CreatedAt: now, UpdatedAt: now},
				&keyvault.KeyVersion{VaultName: "keyed", KeyName: "k1", Version: strings.Repeat("ab", 16), Kty: "RSA", KeySize: 2048,
					Enabled: true, PublicJWK: []byte("{}"), PrivateSealed: []byte{1}, CreatedAt: now, UpdatedAt: now}); err != nil {
				t.Fatal(err)
			}
			// An update keeps the keys (it must not delete and re-insert the row).
			v.Tags = map[string]string{"changed": "yes"}
			if err := s.PutVault(ctx, v); err != nil {
				t.Fatal(err)
			}
			if n := vaultRowCount(t, db, "kv_keys", "keyed"); n != 1 {
				t.Fatalf("keys after update = %d, want 1", n)
			}
			if err := s.PurgeVault(ctx, "KEYED"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Vault(ctx, "keyed"); custody.ErrorKind(err) != custody.KindNotFound {
				t.Fatalf("vault after purge: %v", err)
			}
			if n := vaultRowCount(t, db, "kv_keys", "keyed"); n != 0 {
				t.Fatalf("keys after purge = %d", n)
			}
			if n := vaultRowCount(t, db, "kv_key_versions", "keyed"); n != 0 {
				t.Fatalf("key versions after purge = %d", n)
			}
		})
	})
}

func vaultRowCount(t *testing.T, db *sqlstore.DB, table, vault string) int {
	t.Helper()
	var n int
	if err := db.SQL().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM `+table+` WHERE vault_key = $1`, vault).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func vaultNames(vs []*keyvault.Vault) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}
