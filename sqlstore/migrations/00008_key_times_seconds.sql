-- +goose Up
-- keyvault: a key version's nbf and exp are stored in Unix seconds, not
-- nanoseconds, so that dates after 2262 (up to the end of year 9999) fit in
-- a BIGINT.
UPDATE kv_key_versions SET not_before = not_before / 1000000000 WHERE not_before IS NOT NULL;
UPDATE kv_key_versions SET expires = expires / 1000000000 WHERE expires IS NOT NULL;

-- +goose Down
UPDATE kv_key_versions SET not_before = not_before * 1000000000 WHERE not_before IS NOT NULL;
UPDATE kv_key_versions SET expires = expires * 1000000000 WHERE expires IS NOT NULL;
