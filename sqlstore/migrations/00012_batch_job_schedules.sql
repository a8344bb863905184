-- +goose Up
-- batch data plane: job schedules. Ids, states, times, etag and the run
-- bookkeeping (next_run: when the next job is due, 0 for none; job_count:
-- the number n of the last job created, {id}:job-{n}; last_run: the
-- occurrence that job was created for; recent_job_id) are plain, so the
-- runner finds due schedules without the DEK and a restart neither misses
-- nor doubles a run. Everything the customer wrote (schedule, job
-- specification, metadata, display name) is in spec, sealed with the
-- account's DEK.
CREATE TABLE batch_job_schedules (
    account_key          TEXT NOT NULL,
    id_key               TEXT NOT NULL,
    id                   TEXT NOT NULL,
    state                TEXT NOT NULL,
    previous_state       TEXT NOT NULL,
    etag                 TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    last_modified        BIGINT NOT NULL,
    state_since          BIGINT NOT NULL,
    previous_state_since BIGINT NOT NULL,
    end_time             BIGINT NOT NULL,
    next_run             BIGINT NOT NULL,
    last_run             BIGINT NOT NULL,
    job_count            BIGINT NOT NULL,
    recent_job_id        TEXT NOT NULL,
    spec                 BYTEA NOT NULL,
    PRIMARY KEY (account_key, id_key)
);
CREATE INDEX batch_job_schedules_due ON batch_job_schedules (state, next_run);

-- +goose Down
DROP TABLE batch_job_schedules;
