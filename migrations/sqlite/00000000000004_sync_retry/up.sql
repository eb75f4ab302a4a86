-- SyncRetry. Sources with their connection health, the retry queue (one row per sync task),
-- failure logs, versioned snapshots stored in parts, and record sync (records, per-collection
-- change cursors, the push log that makes pushes idempotent, conflicts).

CREATE TABLE sync_sources (
    data_type            TEXT PRIMARY KEY,
    sync_interval_us     BIGINT NOT NULL,
    retry_base_delay_us  BIGINT NOT NULL,
    retry_multiplier     DOUBLE NOT NULL,
    retry_max_retries    INTEGER NOT NULL,
    retry_max_delay_us   BIGINT NOT NULL,
    config               TEXT NOT NULL DEFAULT '',
    next_sync_at         BIGINT NOT NULL,
    -- The snapshot GetDataset returns; NULL until the first accepted sync.
    current_version      BIGINT,
    -- The highest version ever given out, so versions never repeat.
    last_version         BIGINT NOT NULL DEFAULT 0,
    health_status        TEXT NOT NULL DEFAULT 'unknown' CHECK (health_status IN
                           ('unknown', 'healthy', 'degraded', 'unhealthy')),
    last_check_at        BIGINT,
    item_count           BIGINT NOT NULL DEFAULT 0,
    health_error         TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_success_at      BIGINT,
    last_failure_at      BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE sync_tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    data_type        TEXT NOT NULL REFERENCES sync_sources (data_type) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'retry_scheduled',
                       'completed', 'failed', 'exhausted', 'cancelled')),
    retry_count      INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    next_retry_at    BIGINT,
    lease_token      TEXT,
    lease_expires_at BIGINT,
    worker_id        TEXT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);

-- At most one open task per data type: concurrent claimers cannot both start a scheduled sync.
CREATE UNIQUE INDEX sync_tasks_one_open ON sync_tasks (data_type)
    WHERE status IN ('pending', 'processing', 'retry_scheduled', 'failed');
CREATE INDEX sync_tasks_claimable ON sync_tasks (id) WHERE status = 'pending';
CREATE INDEX sync_tasks_due_retries ON sync_tasks (next_retry_at) WHERE status = 'retry_scheduled';
CREATE INDEX sync_tasks_leased ON sync_tasks (lease_expires_at) WHERE status = 'processing';
CREATE INDEX sync_tasks_by_type ON sync_tasks (data_type, id);
CREATE INDEX sync_tasks_finished ON sync_tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE sync_failure_logs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        BIGINT NOT NULL,
    data_type      TEXT NOT NULL,
    error_message  TEXT NOT NULL,
    recoverable    BOOLEAN NOT NULL,
    matched_rule   TEXT NOT NULL,
    retry_count    INTEGER NOT NULL,
    rolled_back_to BIGINT,
    created_at     BIGINT NOT NULL
);

CREATE INDEX sync_failure_logs_by_type ON sync_failure_logs (data_type, id);
CREATE INDEX sync_failure_logs_by_time ON sync_failure_logs (created_at);

-- A snapshot is staged (version NULL) while its data streams in, and gets its version when
-- the sync is accepted; a rejected one is deleted with its parts.
CREATE TABLE sync_snapshots (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    data_type    TEXT NOT NULL REFERENCES sync_sources (data_type) ON DELETE CASCADE,
    task_id      BIGINT NOT NULL,
    version      BIGINT,
    item_count   BIGINT NOT NULL DEFAULT 0,
    byte_size    BIGINT NOT NULL DEFAULT 0,
    checksum     TEXT NOT NULL DEFAULT '',
    content_type TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    UNIQUE (data_type, version)
);

CREATE INDEX sync_snapshots_staged ON sync_snapshots (created_at) WHERE version IS NULL;

CREATE TABLE sync_snapshot_parts (
    snapshot_id BIGINT NOT NULL REFERENCES sync_snapshots (id) ON DELETE CASCADE,
    part_index  INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (snapshot_id, part_index)
);

-- Each collection's change counter; its row is locked by every push, so cursors are handed out
-- in commit order and a puller never skips a change committed late.
CREATE TABLE sync_collections (
    collection TEXT PRIMARY KEY,
    last_seq   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sync_records (
    collection TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    version    BIGINT NOT NULL,
    payload    BLOB NOT NULL,
    deleted    BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL,
    changed_by TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (collection, record_id)
);

CREATE INDEX sync_records_by_seq ON sync_records (collection, seq);

CREATE TABLE sync_pushes (
    collection   TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    change_id    TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('applied', 'conflict', 'rejected')),
    version      BIGINT NOT NULL,
    conflict_id  BIGINT,
    message      TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (collection, client_id, change_id)
);

CREATE TABLE sync_conflicts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    collection        TEXT NOT NULL,
    record_id         TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    change_id         TEXT NOT NULL,
    base_version      BIGINT NOT NULL,
    local_payload     BLOB NOT NULL,
    local_deleted     BOOLEAN NOT NULL,
    local_updated_at  BIGINT NOT NULL,
    server_version    BIGINT NOT NULL,
    server_payload    BLOB NOT NULL,
    server_deleted    BOOLEAN NOT NULL,
    server_updated_at BIGINT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    resolution        TEXT CHECK (resolution IN ('local', 'remote', 'merged')),
    resolved_version  BIGINT,
    created_at        BIGINT NOT NULL,
    resolved_at       BIGINT
);

CREATE INDEX sync_conflicts_by_collection ON sync_conflicts (collection, id);
