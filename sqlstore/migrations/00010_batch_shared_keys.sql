-- +goose Up
-- batch: an account's shared keys (primary and secondary), sealed under the
-- root key. Accounts created before this column get keys on first use.
ALTER TABLE batch_accounts ADD COLUMN shared_keys BYTEA NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE batch_accounts DROP COLUMN shared_keys;
