package sqlstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"custody"
	"custody/keyvault"
	"custody/sqlstore"
)

func testKeyVersion(vault, key, version string, created time.Time) *keyvault.KeyVersion {
	return &keyvault.KeyVersion{
		VaultName: vault, KeyName: key, Version: version, Kty: "RSA", KeySize: 2048, KeyOps: []string{"wrapKey", "unwrapKey"},
		Enabled: true, Tags: map[string]string{"v": version}, CreatedAt: created, UpdatedAt: created,
		PublicJWK: []byte(`{"n":"AQAB","e":"AQAB"}`), PrivateSealed: []byte{1, 2, 3, version[0]},
	}
}

func TestKeyStore(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		vaults, keys := &sqlstore.VaultStore{DB: db}, &sqlstore.KeyStore{DB: db}
		if err := vaults.PutVault(ctx, testVault("Kv-Keys", "rg")); err != nil {
			t.Fatal(err)
		}
		t0 := time.Unix(1700000000, 0).UTC()
		k := &keyvault.Key{VaultName: "kv-keys", Name: "Key1", CreatedAt: t0, UpdatedAt: t0}
		for i, v := range []string{"aaaa", "bbbb", "cccc"} {
			if err := keys.CreateKeyVersion(ctx, k, testKeyVersion("kv-keys", "Key1", v, t0.Add(time.Duration(i)*time.Second))); err != nil {
				t.Fatalf("CreateKeyVersion(%s) = %v", v, err)
			}
		}
		if err := keys.CreateKeyVersion(ctx, k, testKeyVersion("kv-keys", "Key1", "aaaa", t0)); custody.ErrorKind(err) != custody.KindConflict {
			t.Fatalf("CreateKeyVersion of an existing version = %v, want a conflict", err)
		}
		got, err := keys.Key(ctx, "KV-KEYS", "key1")
		if err != nil || got.Name != "Key1" || got.Tags["v"] != "cccc" {
			t.Fatalf("Key = %+v, %v; want Key1 with the latest version's tags", got, err)
		}
		latest, err := keys.LatestKeyVersion(ctx, "kv-keys", "KEY1")
		if err != nil || latest.Version != "cccc" || string(latest.PrivateSealed) != "\x01\x02\x03c" {
			t.Fatalf("LatestKeyVersion = %+v, %v", latest, err)
		}
		vs, err := keys.ListKeyVersions(ctx, "kv-keys", "key1")
		if err != nil || len(vs) != 3 || vs[0].Version != "aaaa" || vs[2].Version != "cccc" {
			t.Fatalf("ListKeyVersions = %d versions, %v", len(vs), err)
		}
		// Update a version and the key.
		exp := t0.Add(time.Hour)
		vs[0].Enabled, vs[0].Expires, vs[0].KeyOps = false, &exp, []string{"unwrapKey"}
		if err := keys.UpdateKeyVersion(ctx, vs[0]); err != nil {
			t.Fatal(err)
		}
		v0, _ := keys.KeyVersion(ctx, "kv-keys", "key1", "AAAA")
		if v0.Enabled || !v0.Expires.Equal(exp) || len(v0.KeyOps) != 1 {
			t.Fatalf("updated version = %+v", v0)
		}
		del, purge := t0.Add(time.Minute), t0.Add(7*24*time.Hour)
		got.DeletedAt, got.ScheduledPurgeAt = &del, &purge
		got.RotationPolicy = &keyvault.RotationPolicy{ExpiryTime: "P90D", LifetimeActions: []keyvault.LifetimeAction{{TimeAfterCreate: "P30D", Action: "Rotate"}}}
		if err := keys.UpdateKey(ctx, got); err != nil {
			t.Fatal(err)
		}
		if live, _ := keys.ListKeys(ctx, "kv-keys", false); len(live) != 0 {
			t.Fatalf("live keys after delete = %d", len(live))
		}
		if gone, _ := keys.ListKeys(ctx, "kv-keys", true); len(gone) != 1 || gone[0].RotationPolicy.ExpiryTime != "P90D" {
			t.Fatalf("deleted keys = %+v", gone)
		}
		if rot, _ := keys.KeysWithRotationPolicy(ctx); len(rot) != 0 {
			t.Fatalf("a deleted key is listed for rotation: %d", len(rot))
		}
		due, _ := keys.KeysDueForPurge(ctx, purge.Add(time.Second))
		if len(due) != 1 {
			t.Fatalf("KeysDueForPurge = %d keys, want 1", len(due))
		}
		if err := keys.PurgeKey(ctx, "kv-keys", "key1"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM kv_key_versions`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("key version rows after purge = %d, %v", n, err)
		}
		if _, err := keys.Key(ctx, "kv-keys", "key1"); !custody.IsNotFound(err) {
			t.Fatalf("Key after purge = %v, want not found", err)
		}
	})
}

// TestAuditIDs appends audit records from many writers at once: ids are
// unique and increase in the order records were stored, on both engines.
func TestAuditIDs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		keys := &sqlstore.KeyStore{DB: db}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					batch := []*keyvault.AuditRecord{
						{Time: time.Now(), CallerOID: "oid", VaultName: "KV1", KeyName: "k", Operation: "KeyWrap", Outcome: "success"},
						{Time: time.Now(), CallerOID: "oid", VaultName: "kv2", KeyName: "K", Operation: "KeyGet", Outcome: "Forbidden"},
					}
					if err := keys.AppendAuditBatch(ctx, batch); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		all, err := keys.ListAudit(ctx, keyvault.AuditFilter{})
		if err != nil || len(all) != 160 {
			t.Fatalf("ListAudit = %d records, %v; want 160", len(all), err)
		}
		for i := 1; i < len(all); i++ {
			if all[i].ID >= all[i-1].ID {
				t.Fatalf("ids not strictly decreasing newest first: %d then %d", all[i-1].ID, all[i].ID)
			}
		}
		kv1, _ := keys.ListAudit(ctx, keyvault.AuditFilter{VaultName: "kv1", KeyName: "K", Limit: 5})
		if len(kv1) != 5 || kv1[0].VaultName != "kv1" || kv1[0].Operation != "KeyWrap" {
			t.Fatalf("filtered ListAudit = %+v", kv1)
		}
	})
}
