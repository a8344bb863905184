-- +goose Up
-- The outcome of each task's last run, written in the same statement as the
-- task's state so that a restart keeps both. Exit code, result, failure
-- code, pool and node ids and times are service-generated and plain.
-- failure_message can quote the command a node could not start, so it holds
-- the message sealed with the account's DEK like spec (NULL: none).
ALTER TABLE batch_tasks ADD COLUMN exit_code BIGINT;
ALTER TABLE batch_tasks ADD COLUMN result TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_tasks ADD COLUMN failure_code TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_tasks ADD COLUMN failure_message BYTEA;
ALTER TABLE batch_tasks ADD COLUMN pool_id TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_tasks ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_tasks ADD COLUMN last_retry_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batch_tasks ADD COLUMN last_requeue_time BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE batch_tasks DROP COLUMN last_requeue_time;
ALTER TABLE batch_tasks DROP COLUMN last_retry_time;
ALTER TABLE batch_tasks DROP COLUMN node_id;
ALTER TABLE batch_tasks DROP COLUMN pool_id;
ALTER TABLE batch_tasks DROP COLUMN failure_message;
ALTER TABLE batch_tasks DROP COLUMN failure_code;
ALTER TABLE batch_tasks DROP COLUMN result;
ALTER TABLE batch_tasks DROP COLUMN exit_code;
