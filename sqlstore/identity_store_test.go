package sqlstore_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"custody"
	"custody/identity"
	"custody/sqlstore"
)

var t0 = time.Unix(1_800_000_000, 123_456_789).UTC()

func newPrincipal(kind identity.PrincipalKind, resourceID string) *identity.Principal {
	return &identity.Principal{
		ObjectID: identity.NewID(), AppID: identity.NewID(), TenantID: "tenant-1", Kind: kind,
		DisplayName: "p-" + string(kind), ResourceID: resourceID, CreatedAt: t0,
	}
}

func MustCreatePrincipal(tb testing.TB, s *sqlstore.IdentityStore, p *identity.Principal) {
	tb.Helper()
	if err := s.CreatePrincipal(context.Background(), p); err != nil {
		tb.Fatalf("CreatePrincipal: %v", err)
	}
}

func TestPrincipals(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.IdentityStore{DB: db}
		sp := newPrincipal(identity.KindServicePrincipal, "")
		sys := newPrincipal(identity.KindSystemAssigned, "/subscriptions/s/resourceGroups/RG1/providers/Microsoft.Batch/batchAccounts/Acct")
		MustCreatePrincipal(t, s, sp)
		MustCreatePrincipal(t, s, sys)

		for name, get := range map[string]func() (*identity.Principal, error){
			"Principal":        func() (*identity.Principal, error) { return s.Principal(ctx, sp.ObjectID) },
			"PrincipalByAppID": func() (*identity.Principal, error) { return s.PrincipalByAppID(ctx, sp.AppID) },
		} {
			got, err := get()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if diff := cmp.Diff(sp, got); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
			}
		}
		got, err := s.PrincipalByResource(ctx, identity.KindSystemAssigned, "/SUBSCRIPTIONS/s/resourcegroups/rg1/providers/microsoft.batch/batchaccounts/acct")
		if err != nil {
			t.Fatalf("PrincipalByResource in other casing: %v", err)
		}
		if diff := cmp.Diff(sys, got); diff != "" {
			t.Errorf("PrincipalByResource mismatch (-want +got):\n%s", diff)
		}
		_, err = s.PrincipalByResource(ctx, identity.KindUserAssigned, sys.ResourceID)
		wantKind(t, err, custody.KindNotFound)

		dupOID := newPrincipal(identity.KindServicePrincipal, "")
		dupOID.ObjectID = sp.ObjectID
		wantKind(t, s.CreatePrincipal(ctx, dupOID), custody.KindConflict)
		dupApp := newPrincipal(identity.KindServicePrincipal, "")
		dupApp.AppID = sp.AppID
		wantKind(t, s.CreatePrincipal(ctx, dupApp), custody.KindConflict)

		list, err := s.ListPrincipals(ctx, identity.KindServicePrincipal)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ObjectID != sp.ObjectID {
			t.Errorf("ListPrincipals(ServicePrincipal) = %d principals, want only %s", len(list), sp.ObjectID)
		}

		_, err = s.Principal(ctx, identity.NewID())
		wantKind(t, err, custody.KindNotFound)
		_, err = s.PrincipalByAppID(ctx, identity.NewID())
		wantKind(t, err, custody.KindNotFound)

		// Deleting a principal deletes its credentials.
		if err := s.AddCredential(ctx, &identity.Credential{KeyID: identity.NewID(), AppID: sp.AppID, Hash: []byte{1, 2, 3}, Hint: "abc", ExpiresAt: t0.AddDate(1, 0, 0), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeletePrincipal(ctx, sp.ObjectID); err != nil {
			t.Fatalf("DeletePrincipal: %v", err)
		}
		_, err = s.Principal(ctx, sp.ObjectID)
		wantKind(t, err, custody.KindNotFound)
		if creds, err := s.Credentials(ctx, sp.AppID); err != nil || len(creds) != 0 {
			t.Errorf("credentials after delete = %d, %v; want none", len(creds), err)
		}
		wantKind(t, s.DeletePrincipal(ctx, sp.ObjectID), custody.KindNotFound)
		// The ids are free again.
		MustCreatePrincipal(t, s, sp)
	})
}

func TestCredentials(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.IdentityStore{DB: db}
		a, b := newPrincipal(identity.KindServicePrincipal, ""), newPrincipal(identity.KindServicePrincipal, "")
		MustCreatePrincipal(t, s, a)
		MustCreatePrincipal(t, s, b)
		hash := make([]byte, 48)
		for i := range hash {
			hash[i] = byte(255 - i) // not valid UTF-8: must survive as bytes
		}
		want := []*identity.Credential{
			{KeyID: identity.NewID(), AppID: a.AppID, Hash: hash, Hint: "xY~", ExpiresAt: t0.AddDate(1, 0, 0), CreatedAt: t0},
			{KeyID: identity.NewID(), AppID: a.AppID, Hash: []byte{0, 0, 0}, Hint: "q.-", ExpiresAt: t0.AddDate(2, 0, 0), CreatedAt: t0.Add(time.Second)},
		}
		for _, c := range want {
			if err := s.AddCredential(ctx, c); err != nil {
				t.Fatalf("AddCredential: %v", err)
			}
		}
		if err := s.AddCredential(ctx, &identity.Credential{KeyID: identity.NewID(), AppID: b.AppID, Hash: []byte{9}, Hint: "bbb", ExpiresAt: t0, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Credentials(ctx, a.AppID)
		if err != nil {
			t.Fatal(err)
		}
		byKey := map[string]*identity.Credential{}
		for _, c := range got {
			byKey[c.KeyID] = c
		}
		if len(got) != len(want) {
			t.Fatalf("Credentials = %d, want %d", len(got), len(want))
		}
		for _, w := range want {
			if diff := cmp.Diff(w, byKey[w.KeyID]); diff != "" {
				t.Errorf("credential %s mismatch (-want +got):\n%s", w.KeyID, diff)
			}
		}
		if !bytes.Equal(byKey[want[0].KeyID].Hash, hash) {
			t.Error("hash bytes changed in the database")
		}
		if got, err := s.Credentials(ctx, identity.NewID()); err != nil || len(got) != 0 {
			t.Errorf("Credentials of an unknown app = %d, %v; want none", len(got), err)
		}
	})
}

func TestUserAssignedIdentities(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.IdentityStore{DB: db}
		id := "/subscriptions/sub1/resourceGroups/RG1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
		u := &identity.UserAssignedIdentity{ID: id, SubscriptionID: "sub1", ResourceGroup: "RG1", Name: "id1", Location: "westus2",
			Tags: map[string]string{"env": "test"}, TenantID: "tenant-1", CreatedAt: t0}
		p := newPrincipal(identity.KindUserAssigned, id)
		u.PrincipalID, u.ClientID = p.ObjectID, p.AppID

		got, created, err := s.PutUserAssignedIdentity(ctx, u, p)
		if err != nil || !created {
			t.Fatalf("first put: created %v, err %v; want created", created, err)
		}
		if diff := cmp.Diff(u, got); diff != "" {
			t.Errorf("first put mismatch (-want +got):\n%s", diff)
		}

		// A second put (new location and tags, and fresh ids as the service
		// makes them) keeps the original ids and principal.
		u2 := *u
		u2.Location, u2.Tags = "eastus", map[string]string{"env": "prod", "x": "y"}
		p2 := newPrincipal(identity.KindUserAssigned, id)
		u2.PrincipalID, u2.ClientID = p2.ObjectID, p2.AppID
		u2.CreatedAt = t0.Add(time.Hour)
		got, created, err = s.PutUserAssignedIdentity(ctx, &u2, p2)
		if err != nil || created {
			t.Fatalf("second put: created %v, err %v; want updated", created, err)
		}
		want := *u
		want.Location, want.Tags = u2.Location, u2.Tags
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("second put mismatch (-want +got):\n%s", diff)
		}
		if _, err := s.Principal(ctx, p2.ObjectID); !custody.IsNotFound(err) {
			t.Errorf("the second put created principal %s: err = %v", p2.ObjectID, err)
		}
		if pp, err := s.PrincipalByResource(ctx, identity.KindUserAssigned, id); err != nil || pp.ObjectID != p.ObjectID {
			t.Errorf("principal of the identity = %v, %v; want %s", pp, err, p.ObjectID)
		}

		// Lookups and lists ignore the casing of ids and group names.
		if got, err := s.UserAssignedIdentity(ctx, "/SUBSCRIPTIONS/sub1/resourcegroups/rg1/providers/microsoft.managedidentity/userassignedidentities/ID1"); err != nil || got.PrincipalID != p.ObjectID {
			t.Errorf("get in other casing = %v, %v", got, err)
		}
		other := "/subscriptions/sub1/resourceGroups/rg10/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
		if _, _, err := s.PutUserAssignedIdentity(ctx, &identity.UserAssignedIdentity{ID: other, SubscriptionID: "sub1", ResourceGroup: "rg10", Name: "id1", Location: "westus2", CreatedAt: t0},
			newPrincipal(identity.KindUserAssigned, other)); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			sub, rg string
			want    int
		}{{"sub1", "rg1", 1}, {"sub1", "RG1", 1}, {"sub1", "rg10", 1}, {"sub1", "", 2}, {"sub2", "", 0}, {"sub1", "rg", 0}} {
			list, err := s.ListUserAssignedIdentities(ctx, tt.sub, tt.rg)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != tt.want {
				t.Errorf("List(%q, %q) = %d identities, want %d", tt.sub, tt.rg, len(list), tt.want)
			}
		}

		if err := s.DeleteUserAssignedIdentity(ctx, strings.ToUpper(id)); err != nil {
			t.Fatalf("delete: %v", err)
		}
		_, err = s.UserAssignedIdentity(ctx, id)
		wantKind(t, err, custody.KindNotFound)
		_, err = s.Principal(ctx, p.ObjectID)
		wantKind(t, err, custody.KindNotFound)
		wantKind(t, s.DeleteUserAssignedIdentity(ctx, id), custody.KindNotFound)
	})
}

func TestSigningKeys(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.IdentityStore{DB: db}
		if keys, err := s.SigningKeys(ctx); err != nil || len(keys) != 0 {
			t.Fatalf("SigningKeys on an empty store = %d, %v", len(keys), err)
		}
		add := func(kid string, active bool, at time.Time) *identity.SigningKey {
			t.Helper()
			k := &identity.SigningKey{KID: kid, Algorithm: "RS256", PrivateSealed: []byte("sealed-" + kid + "\x00\xff"), Active: active, CreatedAt: at}
			if err := s.AddSigningKey(ctx, k); err != nil {
				t.Fatalf("AddSigningKey(%s): %v", kid, err)
			}
			return k
		}
		k1 := add("k1", true, t0)
		k2 := add("k2", true, t0.Add(time.Minute))
		k3 := add("k3", false, t0.Add(2*time.Minute))
		k4 := add("k4", true, t0.Add(3*time.Minute))
		k5 := add("k5", false, t0.Add(4*time.Minute))
		keys, err := s.SigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k1.Active, k2.Active = false, false
		want := []*identity.SigningKey{k1, k2, k3, k4, k5}
		if diff := cmp.Diff(want, keys); diff != "" {
			t.Errorf("SigningKeys mismatch (-want +got):\n%s", diff)
		}
		active := 0
		for _, k := range keys {
			if k.Active {
				active++
			}
		}
		if active != 1 {
			t.Errorf("%d active keys, want 1", active)
		}
		if err := s.AddSigningKey(ctx, &identity.SigningKey{KID: "k1", Algorithm: "RS256", PrivateSealed: []byte("x"), Active: true, CreatedAt: t0}); err == nil {
			t.Error("adding a key with a used kid succeeded")
		}
		// The failed add changed nothing.
		again, err := s.SigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, again); diff != "" {
			t.Errorf("SigningKeys after a failed add (-want +got):\n%s", diff)
		}
	})
}
