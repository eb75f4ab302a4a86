//! The storage API: what the services need from a database, as traits over domain types.
//!
//! Two engines implement it with the same behaviour, chosen by the database URL: Postgres
//! (`postgres://…`, pooled, `FOR UPDATE SKIP LOCKED` claims) and SQLite (any other URL, a file
//! path; `BEGIN IMMEDIATE` write transactions). Their shared queries are written once in
//! [`chunk_queue`] and [`keys`]; each engine adds only what differs. The conformance suite in
//! `tests/conformance` runs every behaviour against both.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::auth::ApiKeyRecord;
use crate::core::chunks::{
    ChunkInfo, ChunkSettled, ChunkStatus, ClaimRequest, Completion, CreatedJob, FailOutcome,
    Failure, Job, JobFilter, JobProgress, JobStatus, LeasedChunk, NewJob, Page, PageRequest,
    QueueDepth, RecoverOutcome,
};
use crate::core::{Result, Timestamp};

mod chunk_queue;
mod error;
mod keys;
mod migrate;
pub mod postgres;
mod rows;
mod schema;
pub mod sqlite;

#[async_trait]
pub trait ChunkStore: Send + Sync {
    /// Creates the job and its chunks, or returns the existing job when `job_id` is taken by a
    /// job with the same content (AlreadyExists when the content differs).
    async fn create_job(&self, job: NewJob, now: Timestamp) -> Result<CreatedJob>;
    async fn get_job(&self, job_id: &str) -> Result<Job>;
    async fn list_jobs(&self, filter: JobFilter, page: PageRequest) -> Result<Page<Job>>;
    /// Cancels every chunk that is not final. Cancelling a cancelled job changes nothing;
    /// cancelling an otherwise finished job is FailedPrecondition.
    async fn cancel_job(&self, job_id: &str, now: Timestamp) -> Result<Job>;

    /// Leases up to `max_chunks` ready chunks (pending, `run_at` reached) of the queue: higher
    /// priority first, then oldest. No chunk is ever leased to two claimers at once.
    async fn claim_chunks(&self, claim: &ClaimRequest, now: Timestamp) -> Result<Vec<LeasedChunk>>;
    /// Completes each chunk whose lease token is current; one result per completion, in order.
    /// Repeating an accepted completion with the same token succeeds and changes nothing.
    async fn complete_chunks(
        &self,
        completions: Vec<Completion>,
        now: Timestamp,
    ) -> Result<Vec<Result<ChunkSettled>>>;
    /// A failed attempt: back to pending after the job's backoff, or failed for good when not
    /// retryable or out of attempts.
    async fn fail_chunk(&self, failure: Failure, now: Timestamp) -> Result<FailOutcome>;
    async fn extend_lease(
        &self,
        chunk_id: i64,
        lease_token: &str,
        expires_at: Timestamp,
    ) -> Result<Timestamp>;
    /// Gives up the leases whose token starts with `token_prefix` (a disconnected Work stream's):
    /// each chunk goes back to pending, or to failed if that was its last attempt.
    async fn release_leases(&self, token_prefix: &str, now: Timestamp) -> Result<RecoverOutcome>;
    /// Expired leases: back to pending, or to failed if that was the chunk's last attempt.
    async fn recover_stuck_chunks(&self, now: Timestamp) -> Result<RecoverOutcome>;
    /// Failed chunks back to pending with their attempts at 0; returns how many.
    async fn retry_failed_chunks(&self, job_id: &str, now: Timestamp) -> Result<(u32, JobStatus)>;

    async fn job_progress(&self, job_id: &str) -> Result<JobProgress>;
    async fn list_chunks(
        &self,
        job_id: &str,
        status: Option<ChunkStatus>,
        page: PageRequest,
    ) -> Result<Page<ChunkInfo>>;
    /// Chunk counts per queue and status.
    async fn queue_depths(&self) -> Result<Vec<QueueDepth>>;
    /// When the queue's next pending chunk becomes claimable, so a waiting claimer can sleep
    /// until a backoff ends instead of polling.
    async fn earliest_pending_run_at(&self, queue: &str) -> Result<Option<Timestamp>>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_api_key(&self, key: &ApiKeyRecord, now: Timestamp) -> Result<()>;
    async fn find_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>>;
    async fn count_api_keys(&self) -> Result<u64>;
}

#[async_trait]
pub trait Store: ChunkStore + KeyStore {
    /// "postgres" or "sqlite".
    fn engine(&self) -> &'static str;
    /// A trivial query: is the database there?
    async fn ping(&self) -> Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: usize,
    /// How long a call waits for a free connection (or a new one) before UNAVAILABLE.
    pub acquire_timeout: std::time::Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Opens the database the URL names and brings its schema up to date.
pub async fn open(database_url: &str, pool: &PoolSettings) -> Result<Arc<dyn Store>> {
    if is_postgres_url(database_url) {
        Ok(Arc::new(postgres::PgStore::open(database_url, pool).await?))
    } else {
        Ok(Arc::new(
            sqlite::SqliteStore::open(database_url, pool).await?,
        ))
    }
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
