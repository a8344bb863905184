package compute

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"custody"
	"custody/batch"
	"custody/node"
)

// memPools and memNodes are in-memory stores (the SQL ones are tested in
// sqlstore and through the server in compat).
type memPools struct {
	mu sync.Mutex
	m  map[string]*Pool
}

func (s *memPools) CreatePool(_ context.Context, p *Pool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *p
	s.m[strings.ToLower(p.ID)] = &c
	return nil
}

func (s *memPools) Pool(_ context.Context, _, id string) (*Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.m[strings.ToLower(id)]
	if p == nil {
		return nil, poolNotFound(id)
	}
	c := *p
	return &c, nil
}

func (s *memPools) ListPools(ctx context.Context, _ string) ([]*Pool, error) { return s.AllPools(ctx) }

func (s *memPools) AllPools(context.Context) ([]*Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Pool
	for _, p := range s.m {
		c := *p
		out = append(out, &c)
	}
	return out, nil
}

func (s *memPools) UpdatePool(ctx context.Context, p *Pool, _ string) error {
	return s.CreatePool(ctx, p)
}

func (s *memPools) DeletePool(_ context.Context, _, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, strings.ToLower(id))
	return nil
}

type memNodes struct {
	mu sync.Mutex
	m  map[string]RemoteNode // by hash
}

func (s *memNodes) PutNode(_ context.Context, n *RemoteNode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[n.CredentialHash] = *n
	return nil
}

func (s *memNodes) NodeByCredential(_ context.Context, hash string) (*RemoteNode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.m[hash]
	if !ok {
		return nil, custody.Errorf(custody.KindNotFound, "NodeNotFound", "No node has this credential.")
	}
	return &n, nil
}

func (s *memNodes) DeleteNode(_ context.Context, _, _, nodeID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, n := range s.m {
		if n.NodeID == nodeID {
			delete(s.m, h)
		}
	}
	return nil
}

func (s *memNodes) PoolNodes(_ context.Context, _, poolID string) ([]*RemoteNode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*RemoteNode
	for _, n := range s.m {
		if strings.EqualFold(n.PoolID, poolID) {
			c := n
			out = append(out, &c)
		}
	}
	return out, nil
}

type oneAccount struct {
	a   *batch.Account
	dek *batch.DEK
}

func (k oneAccount) DEK(context.Context, string) (*batch.Account, *batch.DEK, error) {
	return k.a, k.dek, nil
}

// TestRemoteNodeOutlivesRestartAndLoss: a remote node's credential works
// with a new service on the same stores (the node is offline until its agent
// syncs, is told to rejoin, and joins), a node lost for missing heartbeats
// goes offline instead of leaving, and a removed node's credential is
// refused and deleted.
func TestRemoteNodeOutlivesRestartAndLoss(t *testing.T) {
	ctx := context.Background()
	dek, err := batch.NewDEK(batch.GenerateDEKBytes(), 1)
	if err != nil {
		t.Fatal(err)
	}
	pools, nodes := &memPools{m: map[string]*Pool{}}, &memNodes{m: map[string]RemoteNode{}}
	var mu sync.Mutex
	clock := time.Now()
	cfg := Config{Store: pools, Nodes: nodes, Keys: oneAccount{&batch.Account{Name: "acct", UID: "uid"}, dek}, Poll: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }}
	s1 := New(cfg)
	if _, err := s1.CreatePool(ctx, "acct", &Pool{ID: "p1", VMSize: "standard_d2s_v3", TargetDedicated: 1}); err != nil {
		t.Fatal(err)
	}
	id, cred, err := s1.AddRemoteNode(ctx, "acct", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.m) != 1 {
		t.Fatalf("stored nodes %v", nodes.m)
	}
	for h := range nodes.m {
		if strings.Contains(h, cred) || h != hashCredential(cred) {
			t.Fatalf("stored %q for the credential, want its hash", h)
		}
	}
	join := func(s *Service, when string) {
		t.Helper()
		jr, err := s.Join(ctx, cred, node.JoinRequest{})
		if err != nil || jr.NodeID != id {
			t.Fatalf("%s: join: %+v %v", when, jr, err)
		}
		if st := s.NodeStates("acct", "p1"); len(st) != 1 || st[0] != NodeIdle {
			t.Fatalf("%s: states after join %v", when, st)
		}
	}
	rejoin := func(s *Service, when string) {
		t.Helper()
		resp, err := s.Sync(ctx, cred, node.SyncRequest{})
		if err != nil || !resp.Rejoin || resp.State != NodeOffline {
			t.Fatalf("%s: sync: %+v %v; want rejoin, offline", when, resp, err)
		}
		join(s, when)
	}
	join(s1, "first")

	s2 := New(cfg) // a restart
	s2.loadRemoteNodes(ctx)
	if st := s2.NodeStates("acct", "p1"); len(st) != 1 || st[0] != NodeOffline {
		t.Fatalf("after the restart: states %v, want offline", st)
	}
	rejoin(s2, "after the restart")

	// A restart where the agent syncs before the nodes are loaded.
	s3 := New(cfg)
	rejoin(s3, "sync before load")
	s3.loadRemoteNodes(ctx)
	if st := s3.NodeStates("acct", "p1"); len(st) != 1 {
		t.Fatalf("nodes after a late load %v", st)
	}

	mu.Lock()
	clock = clock.Add(time.Hour)
	mu.Unlock()
	s3.detectLost(ctx)
	if st := s3.NodeStates("acct", "p1"); len(st) != 1 || st[0] != NodeOffline {
		t.Fatalf("lost: states %v, want offline", st)
	}
	rejoin(s3, "after the loss")

	if err := s3.RemoveNodes(ctx, "acct", "p1", []string{id}); err != nil {
		t.Fatal(err)
	}
	_, err = s3.Sync(ctx, cred, node.SyncRequest{})
	if custody.ErrorKind(err) != custody.KindUnauthenticated || custody.ErrorCode(err) != "NodeCredentialInvalid" {
		t.Errorf("sync of a removed node: %v", err)
	}
	if len(nodes.m) != 0 {
		t.Errorf("stored nodes after removal %v", nodes.m)
	}
	if _, err := New(cfg).Join(ctx, cred, node.JoinRequest{}); custody.ErrorKind(err) != custody.KindUnauthenticated {
		t.Errorf("join of a removed node after a restart: %v", err)
	}
}
