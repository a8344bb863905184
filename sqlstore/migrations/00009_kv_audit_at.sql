-- +goose Up
-- keyvault: the sweep deletes audit records past the retention by time.
CREATE INDEX kv_audit_at ON kv_audit (at);

-- +goose Down
DROP INDEX kv_audit_at;
