package identity_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"custody/identity"
	"custody/secret"
	"custody/sqlstore"
)

func TestRotateIfOlder(t *testing.T) {
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "custody.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := make([]byte, 32)
	rand.Read(key)
	sealer, _ := secret.NewSealer(key)
	now := time.Now()
	a, err := identity.NewAuthority(ctx, &sqlstore.IdentityStore{DB: db}, sealer, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	first := a.ActiveKID()
	if rotated, err := a.RotateIfOlder(ctx, 24*time.Hour); err != nil || rotated {
		t.Fatalf("a new key was rotated: %v, %v", rotated, err)
	}
	now = now.Add(25 * time.Hour)
	if rotated, err := a.RotateIfOlder(ctx, 24*time.Hour); err != nil || !rotated {
		t.Fatalf("an old key was kept: %v, %v", rotated, err)
	}
	if a.ActiveKID() == first {
		t.Fatal("active key unchanged after rotation")
	}
	// A restart sees the key's age from the store.
	b, err := identity.NewAuthority(ctx, &sqlstore.IdentityStore{DB: db}, sealer, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if rotated, _ := b.RotateIfOlder(ctx, 24*time.Hour); rotated {
		t.Fatal("the freshly rotated key was rotated again after a restart")
	}
	if len(b.JWKS().Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want both", len(b.JWKS().Keys))
	}
}
