-- ChunkQueue. Instants are microseconds since the Unix epoch (BIGINT) in both engines, so one
-- query text serves both; to read them in psql: to_timestamp(created_at / 1e6).

CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id             TEXT NOT NULL UNIQUE,
    queue              TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN
                         ('pending', 'processing', 'completed', 'partial_failure', 'failed', 'cancelled')),
    priority           INTEGER NOT NULL,
    max_attempts       INTEGER NOT NULL,
    backoff_initial_us BIGINT NOT NULL,
    backoff_multiplier DOUBLE NOT NULL,
    backoff_max_us     BIGINT NOT NULL,
    total_chunks       INTEGER NOT NULL,
    completed_chunks   INTEGER NOT NULL DEFAULT 0,
    failed_chunks      INTEGER NOT NULL DEFAULT 0,
    content_hash       TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    finished_at        BIGINT
);

CREATE INDEX jobs_by_queue_status ON jobs (queue, status, id);
CREATE INDEX jobs_by_status ON jobs (status, id);

CREATE TABLE chunks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    chunk_index      INTEGER NOT NULL,
    -- queue and priority are copied from the job so a claim reads one index only.
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                       ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    payload          BLOB NOT NULL,
    result           BLOB,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           BIGINT NOT NULL,
    lease_token      TEXT,
    lease_expires_at BIGINT,
    worker_id        TEXT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    UNIQUE (job_id, chunk_index)
);

-- The claim: ready chunks of a queue, higher priority first, then oldest.
CREATE INDEX chunks_claimable ON chunks (queue, priority DESC, id) WHERE status = 'pending';
-- Stuck-lease recovery.
CREATE INDEX chunks_leased ON chunks (lease_expires_at) WHERE status = 'processing';
-- Progress counts per job.
CREATE INDEX chunks_by_job_status ON chunks (job_id, status);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'service', 'worker', 'reader')),
    created_at  BIGINT NOT NULL
);
