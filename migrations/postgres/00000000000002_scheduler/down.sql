DROP TRIGGER jobs_updated_notify ON jobs;
DROP FUNCTION retryd_notify_job_changed();
DROP TRIGGER chunks_updated_notify ON chunks;
DROP TRIGGER chunks_inserted_notify ON chunks;
DROP FUNCTION retryd_notify_claimable();
DROP INDEX jobs_finished;
DROP TABLE task_runs;
