//! Rows as the tables hold them, and their conversion to and from domain types.

use std::time::Duration;

use diesel::prelude::*;

use super::schema::{chunks, jobs, task_runs};
use crate::core::chunks::{ChunkInfo, ChunkStatus, Job, JobStatus, LeasedChunk, NewJob};
use crate::core::retry::RetryPolicy;
use crate::core::tasks::{decode_counts, RunKind, RunOutcome, TaskRun};
use crate::core::{Error, Result, Timestamp};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct JobRow {
    pub id: i64,
    pub job_id: String,
    pub queue: String,
    pub status: String,
    pub priority: i32,
    pub max_attempts: i32,
    pub backoff_initial_us: i64,
    pub backoff_multiplier: f64,
    pub backoff_max_us: i64,
    pub total_chunks: i32,
    pub completed_chunks: i32,
    pub failed_chunks: i32,
    pub content_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl JobRow {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial_backoff: micros(self.backoff_initial_us),
            multiplier: self.backoff_multiplier,
            max_backoff: micros(self.backoff_max_us),
        }
    }

    pub fn into_job(self) -> Result<Job> {
        Ok(Job {
            status: job_status(&self.status)?,
            retry_policy: self.retry_policy(),
            job_id: self.job_id,
            queue: self.queue,
            priority: self.priority,
            max_attempts: count(self.max_attempts),
            total_chunks: count(self.total_chunks),
            completed_chunks: count(self.completed_chunks),
            failed_chunks: count(self.failed_chunks),
            created_at: Timestamp::from_micros(self.created_at),
            updated_at: Timestamp::from_micros(self.updated_at),
            finished_at: self.finished_at.map(Timestamp::from_micros),
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = jobs)]
pub struct NewJobRow<'a> {
    pub job_id: &'a str,
    pub queue: &'a str,
    pub status: &'static str,
    pub priority: i32,
    pub max_attempts: i32,
    pub backoff_initial_us: i64,
    pub backoff_multiplier: f64,
    pub backoff_max_us: i64,
    pub total_chunks: i32,
    pub completed_chunks: i32,
    pub failed_chunks: i32,
    pub content_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'a> NewJobRow<'a> {
    pub fn new(job: &'a NewJob, now: Timestamp) -> Self {
        Self {
            job_id: &job.job_id,
            queue: &job.queue,
            status: JobStatus::Pending.as_str(),
            priority: job.priority,
            max_attempts: to_i32(job.max_attempts),
            backoff_initial_us: job.retry_policy.initial_backoff.as_micros() as i64,
            backoff_multiplier: job.retry_policy.multiplier,
            backoff_max_us: job.retry_policy.max_backoff.as_micros() as i64,
            total_chunks: to_i32(job.payloads.len() as u32),
            completed_chunks: 0,
            failed_chunks: 0,
            content_hash: job.content_hash(),
            created_at: now.as_micros(),
            updated_at: now.as_micros(),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = chunks)]
pub struct NewChunkRow<'a> {
    pub job_id: &'a str,
    pub chunk_index: i32,
    pub queue: &'a str,
    pub priority: i32,
    pub status: &'static str,
    pub payload: &'a [u8],
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: i64,
    pub created_at: i64,
}

/// A chunk as a claim returns it.
#[derive(Debug, QueryableByName)]
#[diesel(table_name = chunks)]
pub struct ClaimedRow {
    pub id: i64,
    pub job_id: String,
    pub chunk_index: i32,
    pub priority: i32,
    pub payload: Vec<u8>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease_expires_at: Option<i64>,
}

impl ClaimedRow {
    pub fn into_leased(self, lease_token: &str) -> LeasedChunk {
        LeasedChunk {
            chunk_id: self.id,
            job_id: self.job_id,
            index: count(self.chunk_index),
            payload: self.payload,
            attempt: count(self.attempts),
            max_attempts: count(self.max_attempts),
            lease_token: lease_token.to_owned(),
            lease_expires_at: Timestamp::from_micros(self.lease_expires_at.unwrap_or_default()),
        }
    }
}

/// A chunk a batch completion settled.
#[derive(Debug, QueryableByName)]
#[diesel(table_name = chunks)]
pub struct SettledRow {
    pub id: i64,
    pub job_id: String,
    pub queue: String,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = chunks)]
pub struct ChunkRow {
    pub id: i64,
    pub job_id: String,
    pub chunk_index: i32,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub worker_id: Option<String>,
    pub run_at: i64,
    pub lease_expires_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub result: Option<Vec<u8>>,
}

impl ChunkRow {
    pub fn into_info(self, payload_size: i32) -> Result<ChunkInfo> {
        Ok(ChunkInfo {
            chunk_id: self.id,
            job_id: self.job_id,
            index: count(self.chunk_index),
            status: chunk_status(&self.status)?,
            attempts: count(self.attempts),
            max_attempts: count(self.max_attempts),
            last_error: self.last_error,
            worker_id: self.worker_id,
            run_at: Timestamp::from_micros(self.run_at),
            lease_expires_at: self.lease_expires_at.map(Timestamp::from_micros),
            completed_at: self.completed_at.map(Timestamp::from_micros),
            payload_size: count(payload_size),
            result: self.result,
        })
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = task_runs)]
pub struct TaskRunRow {
    pub id: i64,
    pub task: String,
    pub slot: Option<i64>,
    pub replica_id: String,
    pub kind: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
    pub counts: String,
    pub error: Option<String>,
}

impl TaskRunRow {
    pub fn into_run(self) -> Result<TaskRun> {
        Ok(TaskRun {
            kind: RunKind::parse(&self.kind)
                .ok_or_else(|| Error::Internal(format!("unknown run kind {:?}", self.kind)))?,
            outcome: self.outcome.as_deref().and_then(RunOutcome::parse),
            counts: decode_counts(&self.counts),
            id: self.id,
            task: self.task,
            slot: self.slot,
            replica_id: self.replica_id,
            started_at: Timestamp::from_micros(self.started_at),
            finished_at: self.finished_at.map(Timestamp::from_micros),
            error: self.error,
        })
    }
}

pub fn job_status(text: &str) -> Result<JobStatus> {
    JobStatus::parse(text).ok_or_else(|| Error::Internal(format!("unknown job status {text:?}")))
}

pub fn chunk_status(text: &str) -> Result<ChunkStatus> {
    ChunkStatus::parse(text)
        .ok_or_else(|| Error::Internal(format!("unknown chunk status {text:?}")))
}

/// Counts are never negative in the tables (CHECKed by the code that writes them).
pub fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// Validated inputs are far below i32::MAX; saturate rather than wrap just in case.
pub fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(u64::try_from(value).unwrap_or(0))
}
