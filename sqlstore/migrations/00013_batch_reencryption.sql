-- +goose Up
-- batch: re-encryption of an account's data under a new DEK generation.
-- During one, dek_old holds the previous generation (dek_old_generation),
-- wrapped by the same key as the current DEK (JSON of the wrapped DEK; 0
-- and '' otherwise); reencryption is the state of the last re-encryption
-- (JSON: status, counts, times, the walk's cursor; '' if none).
ALTER TABLE batch_accounts ADD COLUMN dek_old_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batch_accounts ADD COLUMN dek_old TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_accounts ADD COLUMN reencryption TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE batch_accounts DROP COLUMN reencryption;
ALTER TABLE batch_accounts DROP COLUMN dek_old;
ALTER TABLE batch_accounts DROP COLUMN dek_old_generation;
