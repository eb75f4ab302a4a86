-- DeviceImages. Battery devices wake on a schedule, say hello, send an image in chunks over MQTT
-- and sleep. A device is known by its MAC (12 uppercase hex digits).
CREATE TABLE devices (
    id                    BIGSERIAL PRIMARY KEY,
    mac                   TEXT NOT NULL UNIQUE,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('registered', 'awake', 'asleep')),
    wake_interval_seconds INTEGER NOT NULL DEFAULT 0,
    -- The timeout rule compares images' progress against this.
    next_wake_at          BIGINT,
    last_seen_at          BIGINT,
    firmware              TEXT NOT NULL DEFAULT '',
    battery_percent       INTEGER NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

-- One wake-to-sleep cycle with its telemetry (the seed's device_wake_sessions).
CREATE TABLE device_wake_sessions (
    id                 BIGSERIAL PRIMARY KEY,
    device_id          BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    status             TEXT NOT NULL
        CHECK (status IN ('in_progress', 'completed', 'timeout', 'error')),
    started_at         BIGINT NOT NULL,
    ended_at           BIGINT,
    chunks_sent        INTEGER NOT NULL DEFAULT 0,
    chunks_total       INTEGER NOT NULL DEFAULT 0,
    -- Comma-separated chunk indices still missing when the session ended.
    chunks_missing     TEXT NOT NULL DEFAULT '',
    firmware           TEXT NOT NULL DEFAULT '',
    battery_percent    INTEGER NOT NULL DEFAULT 0,
    battery_millivolts INTEGER NOT NULL DEFAULT 0,
    wifi_retries       INTEGER NOT NULL DEFAULT 0,
    rssi_dbm           INTEGER NOT NULL DEFAULT 0,
    -- Comma-separated device error codes.
    error_codes        TEXT NOT NULL DEFAULT ''
);

CREATE INDEX device_wake_sessions_by_device ON device_wake_sessions (device_id, id);

-- An image and which of its chunks arrived: bit i of chunk_bitmap is chunk i, so storing a chunk
-- twice sets the same bit and changes nothing.
CREATE TABLE device_images (
    id              BIGSERIAL PRIMARY KEY,
    device_id       BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    image_name      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'receiving', 'complete', 'failed')),
    total_chunks    INTEGER NOT NULL CHECK (total_chunks > 0),
    size_bytes      BIGINT NOT NULL CHECK (size_bytes >= 0),
    sha256          TEXT NOT NULL,
    chunk_bitmap    BYTEA NOT NULL,
    chunks_received INTEGER NOT NULL DEFAULT 0,
    retry_count     INTEGER NOT NULL DEFAULT 0,
    max_retries     INTEGER NOT NULL,
    failed_at       BIGINT,
    timeout_reason  TEXT,
    -- Where the assembled image lives in the blob store once complete.
    blob_key        TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    completed_at    BIGINT,
    UNIQUE (device_id, image_name)
);

CREATE INDEX device_images_by_status ON device_images (status, id);

-- Chunks of images not assembled yet; deleted once the image is in the blob store.
CREATE TABLE device_image_chunks (
    image_id    BIGINT NOT NULL REFERENCES device_images (id) ON DELETE CASCADE,
    chunk_index INTEGER NOT NULL,
    data        BYTEA NOT NULL,
    PRIMARY KEY (image_id, chunk_index)
);

-- Commands wait for the device's next hello; never delivered once expired.
CREATE TABLE device_commands (
    id            BIGSERIAL PRIMARY KEY,
    device_id     BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    command_type  TEXT NOT NULL,
    payload       BYTEA NOT NULL,
    priority      INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 10),
    scheduled_for BIGINT NOT NULL,
    expires_at    BIGINT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'sent')),
    created_at    BIGINT NOT NULL,
    sent_at       BIGINT
);

CREATE INDEX device_commands_due ON device_commands (device_id, status, priority);
CREATE INDEX device_commands_expiry ON device_commands (expires_at);

CREATE TABLE device_alerts (
    id              BIGSERIAL PRIMARY KEY,
    device_id       BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    alert_type      TEXT NOT NULL,
    severity        TEXT NOT NULL,
    message         TEXT NOT NULL,
    image_name      TEXT,
    created_at      BIGINT NOT NULL,
    acknowledged_at BIGINT
);

CREATE INDEX device_alerts_by_device ON device_alerts (device_id, id);

CREATE TABLE device_history (
    id         BIGSERIAL PRIMARY KEY,
    device_id  BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    message    TEXT NOT NULL,
    image_name TEXT,
    session_id BIGINT,
    created_at BIGINT NOT NULL
);

CREATE INDEX device_history_by_device ON device_history (device_id, id);
