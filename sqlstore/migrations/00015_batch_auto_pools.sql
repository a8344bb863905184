-- +goose Up
-- batch: which job or job schedule each auto pool belongs to, so the pool
-- is deleted when its owner ends (unless keep_alive). bound is 0 from the
-- pool's creation until its job is stored. Ids and flags only: the pool's
-- specification is sealed in its job's or schedule's spec.
CREATE TABLE batch_auto_pools (
    account_key TEXT NOT NULL,
    pool_key    TEXT NOT NULL,
    account     TEXT NOT NULL,
    pool_id     TEXT NOT NULL,
    owner_kind  TEXT NOT NULL,
    owner_key   TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    keep_alive  INTEGER NOT NULL,
    bound       INTEGER NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_key, pool_key)
);
CREATE INDEX batch_auto_pools_owner ON batch_auto_pools (account_key, owner_kind, owner_key);

-- +goose Down
DROP TABLE batch_auto_pools;
