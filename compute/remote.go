package compute

import (
	"context"
	"strings"
	"time"

	"custody"
)

// RemoteNode is what outlives the server process of a node whose agent runs
// elsewhere (issued with AddRemoteNode): its identity and the hash of its
// credential, never the credential itself. The node's state stays in memory.
type RemoteNode struct {
	Account        string
	PoolID         string
	NodeID         string
	CredentialHash string
	CreatedAt      time.Time
}

// NodeStore is the persistence of remote nodes' credentials.
type NodeStore interface {
	// PutNode stores a remote node (an existing node id or hash is
	// KindConflict).
	PutNode(ctx context.Context, n *RemoteNode) error
	// NodeByCredential returns the node a credential hash belongs to
	// (KindNotFound NodeNotFound).
	NodeByCredential(ctx context.Context, hash string) (*RemoteNode, error)
	// DeleteNode forgets a node's credential; a node not stored is no error.
	DeleteNode(ctx context.Context, account, poolID, nodeID string) error
	// PoolNodes lists the remote nodes of a pool.
	PoolNodes(ctx context.Context, account, poolID string) ([]*RemoteNode, error)
}

// loadRemoteNodes puts the remote nodes of every pool in memory, offline
// (or unusable while the account is locked) until their agents sync again.
func (s *Service) loadRemoteNodes(ctx context.Context) {
	if s.cfg.Nodes == nil {
		return
	}
	pools, err := s.cfg.Store.AllPools(ctx)
	if err != nil {
		s.log.Warn("compute: list pools to load remote nodes", "err", err)
		return
	}
	for _, p := range pools {
		rns, err := s.cfg.Nodes.PoolNodes(ctx, p.Account, p.ID)
		if err != nil {
			s.log.Warn("compute: load remote nodes", "account", p.Account, "pool", p.ID, "err", err)
			continue
		}
		for _, rn := range rns {
			s.adopt(p, rn)
		}
	}
}

// adopt puts a stored remote node in memory unless it is there already.
func (s *Service) adopt(p *Pool, rn *RemoteNode) *liveNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[rn.NodeID]; n != nil {
		return n
	}
	now := s.now()
	n := &liveNode{Node: Node{Account: p.Account, PoolID: p.ID, ID: rn.NodeID, State: NodeOffline, SchedulingEnabled: true,
		StateTransitionTime: now, AllocationTime: rn.CreatedAt, VMSize: p.VMSize, IsDedicated: true, LastSync: now},
		credHash: rn.CredentialHash, slots: p.TaskSlotsPerNode, fill: p.NodeFillType, runs: map[string]*run{}, wake: make(chan struct{}, 1),
		// Run ids continue past any a previous server process gave out, so
		// a late report of a run killed on rejoin cannot end a new one.
		seq: int(now.UnixMilli()), resumable: true}
	if s.locked[strings.ToLower(p.Account)] {
		n.drop = true
		n.State = NodeUnusable
	}
	s.nodes[n.ID] = n
	s.byCred[n.credHash] = n.ID
	return n
}

// recall makes sure the node a credential belongs to is in memory when the
// credential is stored but not yet loaded (an agent that syncs right after
// the server started).
func (s *Service) recall(ctx context.Context, cred string) {
	if s.cfg.Nodes == nil || cred == "" {
		return
	}
	h := hashCredential(cred)
	s.mu.Lock()
	_, ok := s.byCred[h]
	s.mu.Unlock()
	if ok {
		return
	}
	rn, err := s.cfg.Nodes.NodeByCredential(ctx, h)
	if err != nil {
		if !custody.IsNotFound(err) {
			s.log.Warn("compute: look up node credential", "err", err)
		}
		return
	}
	p, err := s.cfg.Store.Pool(ctx, rn.Account, rn.PoolID)
	switch {
	case custody.IsNotFound(err):
		s.forgetNode(ctx, rn.Account, rn.PoolID, rn.NodeID)
	case err != nil:
		s.log.Warn("compute: read the pool of a node", "account", rn.Account, "pool", rn.PoolID, "err", err)
	case p.State != PoolDeleting:
		s.adopt(p, rn)
	}
}

// forgetNode deletes a node's stored credential.
func (s *Service) forgetNode(ctx context.Context, account, poolID, nodeID string) {
	if s.cfg.Nodes == nil {
		return
	}
	if err := s.cfg.Nodes.DeleteNode(ctx, account, poolID, nodeID); err != nil {
		s.log.Warn("compute: delete node credential", "account", account, "pool", poolID, "node", nodeID, "err", err)
	}
}

// forgetPoolNodes deletes the stored credentials of a pool's nodes.
func (s *Service) forgetPoolNodes(ctx context.Context, account, poolID string) error {
	if s.cfg.Nodes == nil {
		return nil
	}
	rns, err := s.cfg.Nodes.PoolNodes(ctx, account, poolID)
	if err != nil {
		return err
	}
	for _, rn := range rns {
		if err := s.cfg.Nodes.DeleteNode(ctx, account, poolID, rn.NodeID); err != nil {
			return err
		}
	}
	return nil
}

// nodeOffline takes a remote node whose agent stopped syncing out of
// scheduling: its runs are requeued and it waits, offline, for the agent to
// join again with the same credential.
func (s *Service) nodeOffline(n *liveNode) {
	s.mu.Lock()
	lost := s.takeRuns(n)
	n.kill, n.outbox = nil, nil
	n.joined = false
	n.resumable = false
	n.StartTask = nil
	s.setState(n, NodeOffline)
	s.mu.Unlock()
	s.requeue(context.Background(), n.Account, lost, n.ID)
}
