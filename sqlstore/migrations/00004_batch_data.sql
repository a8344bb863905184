-- +goose Up
-- batch data plane: jobs, tasks and certificates of each account. Ids,
-- states, times, etags, counts and the pool id are plain (they are queried
-- and scheduled on); everything the customer wrote is in spec, sealed with
-- the account's DEK (format version, DEK generation, nonce, AES-256-GCM).
CREATE TABLE batch_jobs (
    account_key          TEXT NOT NULL,
    id_key               TEXT NOT NULL,
    id                   TEXT NOT NULL,
    pool_id              TEXT NOT NULL,
    state                TEXT NOT NULL,
    previous_state       TEXT NOT NULL,
    etag                 TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    last_modified        BIGINT NOT NULL,
    state_since          BIGINT NOT NULL,
    previous_state_since BIGINT NOT NULL,
    start_time           BIGINT NOT NULL,
    end_time             BIGINT NOT NULL,
    spec                 BYTEA NOT NULL,
    PRIMARY KEY (account_key, id_key)
);
CREATE INDEX batch_jobs_state ON batch_jobs (account_key, state, id_key);
CREATE INDEX batch_jobs_pool ON batch_jobs (account_key, pool_id);

CREATE TABLE batch_tasks (
    account_key          TEXT NOT NULL,
    job_key              TEXT NOT NULL,
    id_key               TEXT NOT NULL,
    job_id               TEXT NOT NULL,
    id                   TEXT NOT NULL,
    state                TEXT NOT NULL,
    previous_state       TEXT NOT NULL,
    etag                 TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    last_modified        BIGINT NOT NULL,
    state_since          BIGINT NOT NULL,
    previous_state_since BIGINT NOT NULL,
    retry_count          INTEGER NOT NULL,
    requeue_count        INTEGER NOT NULL,
    start_time           BIGINT NOT NULL,
    end_time             BIGINT NOT NULL,
    spec                 BYTEA NOT NULL,
    PRIMARY KEY (account_key, job_key, id_key)
);
CREATE INDEX batch_tasks_state ON batch_tasks (account_key, job_key, state, id_key);

CREATE TABLE batch_certificates (
    account_key          TEXT NOT NULL,
    id_key               TEXT NOT NULL,
    thumbprint_algorithm TEXT NOT NULL,
    thumbprint           TEXT NOT NULL,
    state                TEXT NOT NULL,
    previous_state       TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    state_since          BIGINT NOT NULL,
    previous_state_since BIGINT NOT NULL,
    spec                 BYTEA NOT NULL,
    PRIMARY KEY (account_key, id_key)
);

-- +goose Down
DROP TABLE batch_certificates;
DROP TABLE batch_tasks;
DROP TABLE batch_jobs;
