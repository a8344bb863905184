-- +goose Up
-- compute: pools of a batch account. The customer's pool specification
-- (display name, start task, metadata, image) is sealed with the account's
-- DEK in spec; the rest is service metadata kept in the clear.
CREATE TABLE compute_pools (
    account_key TEXT NOT NULL,
    id_key      TEXT NOT NULL,
    account     TEXT NOT NULL,
    id          TEXT NOT NULL,
    etag        TEXT NOT NULL,
    meta        TEXT NOT NULL,
    spec        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_key, id_key)
);

-- +goose Down
DROP TABLE compute_pools;
