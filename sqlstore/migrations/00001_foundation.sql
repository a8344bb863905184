-- +goose Up
-- Server-wide settings: tenant and subscription ids, chosen on first start.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- identity: principals, their credentials, token signing keys.
CREATE TABLE principals (
    object_id    TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    display_name TEXT NOT NULL,
    resource_id  TEXT NOT NULL DEFAULT '',
    resource_key TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL
);
CREATE INDEX principals_resource ON principals (kind, resource_key);

CREATE TABLE credentials (
    key_id     TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES principals (app_id) ON DELETE CASCADE,
    hash       BYTEA NOT NULL,
    hint       TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX credentials_app ON credentials (app_id);

CREATE TABLE user_assigned_identities (
    id_key          TEXT PRIMARY KEY,
    id              TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    resource_group  TEXT NOT NULL,
    rg_key          TEXT NOT NULL,
    name            TEXT NOT NULL,
    location        TEXT NOT NULL,
    tags            TEXT NOT NULL,
    principal_id    TEXT NOT NULL REFERENCES principals (object_id),
    created_at      BIGINT NOT NULL
);
CREATE INDEX uai_group ON user_assigned_identities (subscription_id, rg_key);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    algorithm      TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    active         BOOLEAN NOT NULL,
    created_at     BIGINT NOT NULL
);

-- rm: resource groups, role assignments, long-running operations.
CREATE TABLE resource_groups (
    subscription_id TEXT NOT NULL,
    name_key        TEXT NOT NULL,
    name            TEXT NOT NULL,
    location        TEXT NOT NULL,
    tags            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, name_key)
);

CREATE TABLE role_assignments (
    id_key             TEXT PRIMARY KEY,
    id                 TEXT NOT NULL,
    name               TEXT NOT NULL,
    scope              TEXT NOT NULL,
    scope_key          TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    principal_id       TEXT NOT NULL,
    principal_type     TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    created_at         BIGINT NOT NULL
);
CREATE INDEX role_assignments_principal ON role_assignments (principal_id);
CREATE INDEX role_assignments_scope ON role_assignments (scope_key);

CREATE TABLE operations (
    id          TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    error_code  TEXT NOT NULL,
    error_msg   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- +goose Down
DROP TABLE operations;
DROP TABLE role_assignments;
DROP TABLE resource_groups;
DROP TABLE signing_keys;
DROP TABLE user_assigned_identities;
DROP TABLE credentials;
DROP TABLE principals;
DROP TABLE settings;
