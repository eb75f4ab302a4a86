-- Scheduler runs. A scheduled run claims its (task, slot) first, so however many replicas share
-- the database, each slot of each task runs at most once. Manual runs have no slot.
CREATE TABLE task_runs (
    id          BIGSERIAL PRIMARY KEY,
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

-- Cross-replica wake-ups: every replica LISTENs on retryd_events. Statement-level triggers with
-- transition tables send one notification per queue that got claimable work and per job that
-- changed, at commit, whichever replica made the change.
CREATE FUNCTION retryd_notify_claimable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queue_name TEXT;
BEGIN
    FOR queue_name IN SELECT DISTINCT queue FROM changed_rows WHERE status = 'pending' LOOP
        PERFORM pg_notify('retryd_events', 'q:' || queue_name);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_inserted_notify AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION retryd_notify_claimable();
CREATE TRIGGER chunks_updated_notify AFTER UPDATE ON chunks
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION retryd_notify_claimable();

CREATE FUNCTION retryd_notify_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed_job TEXT;
BEGIN
    FOR changed_job IN SELECT DISTINCT job_id FROM changed_rows LOOP
        PERFORM pg_notify('retryd_events', 'j:' || changed_job);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_updated_notify AFTER UPDATE ON jobs
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION retryd_notify_job_changed();
