-- +goose Up
-- keyvault: vaults, keys, key versions, audit log. Vault names are global
-- (they are host names), so name_key is the primary key.
CREATE TABLE kv_vaults (
    name_key           TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    id                 TEXT NOT NULL,
    subscription_id    TEXT NOT NULL,
    resource_group     TEXT NOT NULL,
    rg_key             TEXT NOT NULL,
    location           TEXT NOT NULL,
    tags               TEXT NOT NULL,
    properties         TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    created_by         TEXT NOT NULL,
    deleted_at         BIGINT,
    scheduled_purge_at BIGINT
);
CREATE INDEX kv_vaults_group ON kv_vaults (subscription_id, rg_key);

CREATE TABLE kv_keys (
    vault_key          TEXT NOT NULL REFERENCES kv_vaults (name_key) ON DELETE CASCADE,
    name_key           TEXT NOT NULL,
    name               TEXT NOT NULL,
    tags               TEXT NOT NULL,
    managed            BOOLEAN NOT NULL,
    rotation_policy    TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    deleted_at         BIGINT,
    scheduled_purge_at BIGINT,
    PRIMARY KEY (vault_key, name_key)
);

CREATE TABLE kv_key_versions (
    vault_key      TEXT NOT NULL,
    key_name_key   TEXT NOT NULL,
    version        TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    kty            TEXT NOT NULL,
    crv            TEXT NOT NULL,
    key_size       BIGINT NOT NULL,
    key_ops        TEXT NOT NULL,
    enabled        BOOLEAN NOT NULL,
    not_before     BIGINT,
    expires        BIGINT,
    exportable     BOOLEAN NOT NULL,
    tags           TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (vault_key, key_name_key, version),
    FOREIGN KEY (vault_key, key_name_key) REFERENCES kv_keys (vault_key, name_key) ON DELETE CASCADE
);
CREATE INDEX kv_key_versions_seq ON kv_key_versions (vault_key, key_name_key, seq);

CREATE TABLE kv_audit (
    id         BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    caller_oid TEXT NOT NULL,
    vault_key  TEXT NOT NULL,
    key_name   TEXT NOT NULL,
    version    TEXT NOT NULL,
    operation  TEXT NOT NULL,
    outcome    TEXT NOT NULL
);
CREATE INDEX kv_audit_vault ON kv_audit (vault_key, key_name, at);

-- +goose Down
DROP TABLE kv_audit;
DROP TABLE kv_key_versions;
DROP TABLE kv_keys;
DROP TABLE kv_vaults;
