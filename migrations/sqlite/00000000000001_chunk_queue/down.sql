DROP TABLE api_keys;
DROP TABLE chunks;
DROP TABLE jobs;
