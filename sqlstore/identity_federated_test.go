package sqlstore_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"custody"
	"custody/identity"
	"custody/sqlstore"
)

// TestFederatedCredentials: federated credentials round-trip, are unique
// by name per application, are deleted one by one, and go with their
// principal.
func TestFederatedCredentials(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.IdentityStore{DB: db}
		sp := newPrincipal(identity.KindServicePrincipal, "")
		MustCreatePrincipal(t, s, sp)
		c := &identity.FederatedCredential{ID: identity.NewID(), AppID: sp.AppID, Name: "custody", Issuer: "https://login.example/t/v2.0",
			Subject: "3f2c", Audiences: []string{identity.AssertionAudience}, Description: "d", CreatedAt: t0}
		if err := s.AddFederatedCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
		got, err := s.FederatedCredentials(ctx, sp.AppID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]*identity.FederatedCredential{c}, got); diff != "" {
			t.Errorf("read back (-want +got):\n%s", diff)
		}
		dup := *c
		dup.ID = identity.NewID()
		if err := s.AddFederatedCredential(ctx, &dup); custody.ErrorKind(err) != custody.KindConflict {
			t.Errorf("a second credential named %q: %v, want KindConflict", c.Name, err)
		}
		if err := s.DeleteFederatedCredential(ctx, sp.AppID, identity.NewID()); custody.ErrorKind(err) != custody.KindNotFound {
			t.Errorf("delete an unknown credential: %v, want KindNotFound", err)
		}
		if err := s.DeleteFederatedCredential(ctx, sp.AppID, c.ID); err != nil {
			t.Fatal(err)
		}
		dup.Name = "again"
		if err := s.AddFederatedCredential(ctx, &dup); err != nil {
			t.Fatal(err)
		}
		if err := s.DeletePrincipal(ctx, sp.ObjectID); err != nil {
			t.Fatal(err)
		}
		if got, err := s.FederatedCredentials(ctx, sp.AppID); err != nil || len(got) != 0 {
			t.Errorf("credentials after the principal's deletion: %v, %v", got, err)
		}
	})
}
