-- +goose Up
-- batch: accounts (with their wrapped DEK and key state) and the platform
-- key ring. The wrapped DEK lives in the account row, so a key change is one
-- UPDATE: all or nothing.
CREATE TABLE batch_accounts (
    name_key        TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    id              TEXT NOT NULL,
    uid             TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    resource_group  TEXT NOT NULL,
    rg_key          TEXT NOT NULL,
    location        TEXT NOT NULL,
    tags            TEXT NOT NULL,
    identity        TEXT NOT NULL,
    key_source      TEXT NOT NULL,
    key_identifier  TEXT NOT NULL,
    properties      TEXT NOT NULL,
    dek_generation  BIGINT NOT NULL,
    dek_key_source  TEXT NOT NULL,
    dek_key_id      TEXT NOT NULL,
    dek_algorithm   TEXT NOT NULL,
    dek_identity    TEXT NOT NULL,
    dek_wrapped     BYTEA NOT NULL,
    key_state       TEXT NOT NULL,
    key_reason      TEXT NOT NULL,
    key_since       BIGINT NOT NULL,
    key_last_probe  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX batch_accounts_group ON batch_accounts (subscription_id, rg_key);

CREATE TABLE batch_platform_keys (
    id         TEXT PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    active     BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE batch_platform_keys;
DROP TABLE batch_accounts;
