DROP INDEX jobs_finished;
DROP TABLE task_runs;
