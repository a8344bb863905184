-- +goose Up
-- compute: nodes whose agents run elsewhere and join with a node credential.
-- Only the credential's SHA-256 hash is stored, with the account, pool and
-- node it belongs to, so that agents can join again after a restart. The
-- nodes' state is kept in the server's memory.
CREATE TABLE compute_nodes (
    credential_hash TEXT NOT NULL PRIMARY KEY,
    account_key     TEXT NOT NULL,
    pool_key        TEXT NOT NULL,
    node_id         TEXT NOT NULL,
    account         TEXT NOT NULL,
    pool_id         TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX compute_nodes_by_pool ON compute_nodes (account_key, pool_key, node_id);

-- +goose Down
DROP INDEX compute_nodes_by_pool;
DROP TABLE compute_nodes;
