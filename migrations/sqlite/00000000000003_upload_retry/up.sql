-- UploadRetry. An upload's content lives in the blob store under `blob_key` (a server-made name,
-- so client ids never become paths); the row says how much of it is durable (`received_bytes`)
-- and whether it counts as complete (`stored_at`).
CREATE TABLE uploads (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    upload_id             TEXT NOT NULL UNIQUE,
    owner                 TEXT NOT NULL,
    file_name             TEXT NOT NULL,
    content_type          TEXT NOT NULL,
    size_bytes            BIGINT NOT NULL CHECK (size_bytes >= 0),
    sha256                TEXT NOT NULL,
    destination           TEXT,
    blob_key              TEXT NOT NULL,
    status                TEXT NOT NULL
        CHECK (status IN ('pending', 'receiving', 'stored', 'delivering', 'delivered', 'failed')),
    received_bytes        BIGINT NOT NULL DEFAULT 0,
    failure_reason        TEXT,
    delivery_attempts     INTEGER NOT NULL DEFAULT 0,
    max_delivery_attempts INTEGER NOT NULL,
    next_delivery_at      BIGINT,
    -- The running delivery attempt's token and lease: a delivery whose lease expired (its
    -- replica died) is taken over, and the stale attempt can no longer record an outcome.
    delivery_token        TEXT,
    delivery_lease_until  BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    stored_at             BIGINT,
    delivered_at          BIGINT,
    content_pruned_at     BIGINT
);

CREATE INDEX uploads_by_owner ON uploads (owner, id);
CREATE INDEX uploads_by_status ON uploads (status, id);
-- The sweep: stored uploads whose next attempt is due, and deliveries whose lease ran out.
CREATE INDEX uploads_due ON uploads (next_delivery_at) WHERE status = 'stored';
CREATE INDEX uploads_delivering ON uploads (delivery_lease_until) WHERE status = 'delivering';
-- Pruning delivered content.
CREATE INDEX uploads_delivered ON uploads (delivered_at)
    WHERE status = 'delivered' AND content_pruned_at IS NULL;

-- One row per retry run (the seed's retry_logs), whatever started it.
CREATE TABLE upload_retry_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL CHECK (source IN ('client-flush', 'manual', 'scheduled')),
    attempted   INTEGER NOT NULL,
    succeeded   INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL
);

CREATE INDEX upload_retry_runs_by_start ON upload_retry_runs (started_at);
CREATE INDEX upload_retry_runs_by_source ON upload_retry_runs (source, started_at);
