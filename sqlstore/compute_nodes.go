package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"custody"
	"custody/compute"
)

// ComputeNodeStore implements compute.NodeStore: the identity and
// credential hash of remote nodes.
type ComputeNodeStore struct{ DB *DB }

var _ compute.NodeStore = (*ComputeNodeStore)(nil)

const nodeCols = `account, pool_id, node_id, credential_hash, created_at`

func scanNode(row interface{ Scan(...any) error }) (*compute.RemoteNode, error) {
	var n compute.RemoteNode
	var created int64
	if err := row.Scan(&n.Account, &n.PoolID, &n.NodeID, &n.CredentialHash, &created); err != nil {
		return nil, err
	}
	n.CreatedAt = fromUnix(created)
	return &n, nil
}

func (s *ComputeNodeStore) PutNode(ctx context.Context, n *compute.RemoteNode) error {
	_, err := s.DB.db.ExecContext(ctx, `INSERT INTO compute_nodes (account_key, pool_key, `+nodeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		lower(n.Account), lower(n.PoolID), n.Account, n.PoolID, n.NodeID, n.CredentialHash, unix(n.CreatedAt))
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "NodeExists", "The node %q or its credential already exists.", n.NodeID)
	}
	return dbErr(err, "insert node")
}

func (s *ComputeNodeStore) NodeByCredential(ctx context.Context, hash string) (*compute.RemoteNode, error) {
	n, err := scanNode(s.DB.db.QueryRowContext(ctx, `SELECT `+nodeCols+` FROM compute_nodes WHERE credential_hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "NodeNotFound", "No node has this credential.")
	}
	return n, dbErr(err, "read node")
}

func (s *ComputeNodeStore) DeleteNode(ctx context.Context, account, poolID, nodeID string) error {
	_, err := s.DB.db.ExecContext(ctx, `DELETE FROM compute_nodes WHERE account_key = $1 AND pool_key = $2 AND node_id = $3`,
		lower(account), lower(poolID), nodeID)
	return dbErr(err, "delete node")
}

func (s *ComputeNodeStore) PoolNodes(ctx context.Context, account, poolID string) ([]*compute.RemoteNode, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT `+nodeCols+` FROM compute_nodes WHERE account_key = $1 AND pool_key = $2 ORDER BY node_id`,
		lower(account), lower(poolID))
	if err != nil {
		return nil, dbErr(err, "list nodes")
	}
	defer rows.Close()
	var out []*compute.RemoteNode
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, dbErr(err, "scan node")
		}
		out = append(out, n)
	}
	return out, dbErr(rows.Err(), "list nodes")
}
