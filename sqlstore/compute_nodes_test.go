package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"custody"
	"custody/compute"
	"custody/sqlstore"
)

// TestComputeNodeStore: remote nodes' credential hashes are stored with
// their account, pool and node, found by hash, listed by pool (account and
// pool matched case-insensitively) and deleted.
func TestComputeNodeStore(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.ComputeNodeStore{DB: db}
		created := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
		a := &compute.RemoteNode{Account: "Acct1", PoolID: "Pool-A", NodeID: "tvmps_a_d", CredentialHash: "hash-a", CreatedAt: created}
		b := &compute.RemoteNode{Account: "Acct1", PoolID: "Pool-A", NodeID: "tvmps_b_d", CredentialHash: "hash-b", CreatedAt: created}
		other := &compute.RemoteNode{Account: "Acct1", PoolID: "Pool-B", NodeID: "tvmps_c_d", CredentialHash: "hash-c", CreatedAt: created}
		for _, n := range []*compute.RemoteNode{a, b, other} {
			if err := s.PutNode(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		wantKind(t, s.PutNode(ctx, &compute.RemoteNode{Account: "acct1", PoolID: "pool-x", NodeID: "tvmps_x_d", CredentialHash: "hash-a", CreatedAt: created}), custody.KindConflict)
		wantKind(t, s.PutNode(ctx, &compute.RemoteNode{Account: "ACCT1", PoolID: "pool-a", NodeID: "tvmps_a_d", CredentialHash: "hash-new", CreatedAt: created}), custody.KindConflict)

		got, err := s.NodeByCredential(ctx, "hash-b")
		if err != nil {
			t.Fatal(err)
		}
		if *got != *b {
			t.Errorf("node by credential = %+v, want %+v", got, b)
		}
		_, err = s.NodeByCredential(ctx, "hash-unknown")
		wantKind(t, err, custody.KindNotFound)

		ns, err := s.PoolNodes(ctx, "ACCT1", "pool-a")
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 2 || *ns[0] != *a || *ns[1] != *b {
			t.Errorf("pool nodes = %+v, want %+v and %+v", ns, a, b)
		}

		if err := s.DeleteNode(ctx, "acct1", "POOL-A", "tvmps_a_d"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteNode(ctx, "acct1", "pool-a", "tvmps_a_d"); err != nil {
			t.Errorf("deleting a node twice: %v", err)
		}
		_, err = s.NodeByCredential(ctx, "hash-a")
		wantKind(t, err, custody.KindNotFound)
		if ns, err := s.PoolNodes(ctx, "acct1", "pool-a"); err != nil || len(ns) != 1 || ns[0].NodeID != "tvmps_b_d" {
			t.Errorf("pool nodes after delete = %+v, %v", ns, err)
		}
		if ns, err := s.PoolNodes(ctx, "acct1", "pool-b"); err != nil || len(ns) != 1 || *ns[0] != *other {
			t.Errorf("other pool's nodes = %+v, %v", ns, err)
		}
		// A node id freed by a delete may be stored again.
		if err := s.PutNode(ctx, &compute.RemoteNode{Account: "acct1", PoolID: "pool-a", NodeID: "tvmps_a_d", CredentialHash: "hash-a2", CreatedAt: created}); err != nil {
			t.Errorf("put after delete: %v", err)
		}
	})
}
