-- Scheduler runs. A scheduled run claims its (task, slot) first, so however many replicas share
-- the database, each slot of each task runs at most once. Manual runs have no slot.
CREATE TABLE task_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task        TEXT NOT NULL,
    slot        BIGINT,
    replica_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('schedule', 'manual')),
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT CHECK (outcome IN ('ok', 'error')),
    counts      TEXT NOT NULL DEFAULT '',
    error       TEXT,
    UNIQUE (task, slot)
);

CREATE INDEX task_runs_by_task ON task_runs (task, id);
CREATE INDEX task_runs_by_start ON task_runs (started_at);
-- Pruning finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
