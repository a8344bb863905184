-- +goose Up
-- identity: federated identity credentials of service principals (workload
-- identity federation): an assertion another issuer signed, whose issuer,
-- subject and audience match one of them, signs the principal in.
CREATE TABLE federated_credentials (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES principals (app_id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    audiences   TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    UNIQUE (app_id, name)
);

-- +goose Down
DROP TABLE federated_credentials;
