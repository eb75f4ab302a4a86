DROP TABLE upload_retry_runs;
DROP TABLE uploads;
