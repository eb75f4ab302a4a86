//! ChunkQueue's use cases.

use std::sync::Arc;
use std::time::Duration;

use crate::core::chunks::{
    ChunkInfo, ChunkSettled, ChunkStatus, ClaimRequest, Completion, CreatedJob, FailOutcome,
    Failure, Job, JobFilter, JobProgress, JobStatus, LeasedChunk, Page, QueueDepth, RecoverOutcome,
};
use crate::core::limits::{CreateJobInput, Limits};
use crate::core::{Clock, Result, Timestamp};
use crate::events::Events;
use crate::service::paging::page_request;
use crate::store::Store;

pub struct ChunkQueueService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Arc<Events>,
    limits: Limits,
    /// A waiting claimer re-checks the database at least this often, so work whose wake-up was
    /// missed (or made ready by time passing) is found without a tight polling loop.
    fallback_poll: Duration,
}

/// A claim as received.
#[derive(Debug, Clone, Default)]
pub struct ClaimInput {
    pub queue: String,
    pub worker_id: String,
    pub max_chunks: u32,
    pub lease_seconds: u32,
    pub wait_seconds: u32,
}

/// A claim whose fields are validated; reused by a Work stream for every batch it leases.
#[derive(Debug, Clone)]
pub struct ClaimSpec {
    pub queue: String,
    pub worker_id: String,
    pub lease: Duration,
}

impl ChunkQueueService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        events: Arc<Events>,
        limits: Limits,
        fallback_poll: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            events,
            limits,
            fallback_poll,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub async fn create_job(&self, input: CreateJobInput) -> Result<CreatedJob> {
        let generated_id = uuid::Uuid::new_v4().to_string();
        let job = self.limits.new_job(input, generated_id)?;
        let created = self.store.create_job(job, self.clock.now()).await?;
        if created.created {
            self.events.work_available(&created.job.queue);
            self.events.job_changed(&created.job.job_id);
        }
        Ok(created)
    }

    pub async fn get_job(&self, job_id: String) -> Result<Job> {
        let job_id = self.limits.id("job_id", job_id)?;
        self.store.get_job(&job_id).await
    }

    pub async fn list_jobs(
        &self,
        queue: String,
        status: Option<JobStatus>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Job>> {
        let queue = if queue.is_empty() {
            None
        } else {
            Some(self.limits.queue(queue)?)
        };
        let page = page_request(&self.limits, page_size, 50, page_token)?;
        self.store
            .list_jobs(JobFilter { queue, status }, page)
            .await
    }

    pub async fn cancel_job(&self, job_id: String) -> Result<Job> {
        let job_id = self.limits.id("job_id", job_id)?;
        let job = self.store.cancel_job(&job_id, self.clock.now()).await?;
        self.events.job_changed(&job.job_id);
        Ok(job)
    }

    pub fn claim_spec(
        &self,
        queue: String,
        worker_id: String,
        lease_seconds: u32,
    ) -> Result<ClaimSpec> {
        Ok(ClaimSpec {
            queue: self.limits.queue(queue)?,
            worker_id: self.limits.id("worker_id", worker_id)?,
            lease: self.limits.lease("lease_seconds", lease_seconds)?,
        })
    }

    /// Claims chunks, waiting up to `wait_seconds` for some to become ready.
    pub async fn claim(&self, input: ClaimInput) -> Result<Vec<LeasedChunk>> {
        let spec = self.claim_spec(input.queue, input.worker_id, input.lease_seconds)?;
        let max_chunks = self.limits.claim_batch("max_chunks", input.max_chunks)?;
        let wait = self.limits.wait(input.wait_seconds)?;
        let deadline = tokio::time::Instant::now() + wait;
        let lease_token = new_lease_token();
        loop {
            let signal = self.events.queue_signal(&spec.queue);
            let chunks = self.claim_now(&spec, max_chunks, &lease_token).await?;
            let now = tokio::time::Instant::now();
            if !chunks.is_empty() || now >= deadline {
                return Ok(chunks);
            }
            let pause = self
                .pause_until_ready(&spec.queue)
                .await?
                .min(deadline - now);
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Leases up to `max_chunks` ready chunks now, under `lease_token`.
    pub async fn claim_now(
        &self,
        spec: &ClaimSpec,
        max_chunks: u32,
        lease_token: &str,
    ) -> Result<Vec<LeasedChunk>> {
        let claim = ClaimRequest {
            queue: spec.queue.clone(),
            worker_id: spec.worker_id.clone(),
            max_chunks,
            lease: spec.lease,
            lease_token: lease_token.to_owned(),
        };
        let chunks = self.store.claim_chunks(&claim, self.clock.now()).await?;
        if chunks.len() == max_chunks as usize {
            // There may be more: pass the wake-up on to another waiter.
            self.events.work_available(&spec.queue);
        }
        let mut last_job: Option<&str> = None;
        for chunk in &chunks {
            if last_job != Some(chunk.job_id.as_str()) {
                self.events.job_changed(&chunk.job_id);
                last_job = Some(&chunk.job_id);
            }
        }
        Ok(chunks)
    }

    /// How long a claimer with nothing to do may sleep: until the queue's next backed-off chunk
    /// is due, and never longer than the fallback poll.
    pub async fn pause_until_ready(&self, queue: &str) -> Result<Duration> {
        let now = self.clock.now();
        Ok(match self.store.earliest_pending_run_at(queue).await? {
            Some(due) if due > now => due.since(now).min(self.fallback_poll),
            Some(_) => Duration::from_millis(10),
            None => self.fallback_poll,
        })
    }

    pub fn completion(
        &self,
        chunk_id: i64,
        lease_token: String,
        result: Vec<u8>,
    ) -> Result<Completion> {
        self.limits.payload("result", &result)?;
        Ok(Completion {
            chunk_id: self.limits.chunk_id(chunk_id)?,
            lease_token: self.limits.lease_token(lease_token)?,
            result,
        })
    }

    /// Completes validated completions; one result per completion, in order.
    pub async fn complete(
        &self,
        completions: Vec<Completion>,
    ) -> Result<Vec<Result<ChunkSettled>>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let results = self
            .store
            .complete_chunks(completions, self.clock.now())
            .await?;
        let mut last_job: Option<&str> = None;
        for settled in results.iter().flatten() {
            if last_job != Some(settled.job_id.as_str()) {
                self.events.job_changed(&settled.job_id);
                last_job = Some(&settled.job_id);
            }
        }
        Ok(results)
    }

    pub async fn fail(
        &self,
        chunk_id: i64,
        lease_token: String,
        error_message: String,
        retryable: bool,
    ) -> Result<FailOutcome> {
        let failure = Failure {
            chunk_id: self.limits.chunk_id(chunk_id)?,
            lease_token: self.limits.lease_token(lease_token)?,
            error_message: self.limits.error_message(error_message),
            retryable,
            jitter: fastrand::f64(),
        };
        let outcome = self.store.fail_chunk(failure, self.clock.now()).await?;
        self.events.job_changed(&outcome.settled.job_id);
        Ok(outcome)
    }

    pub async fn extend_lease(
        &self,
        chunk_id: i64,
        lease_token: String,
        lease_seconds: u32,
    ) -> Result<Timestamp> {
        let chunk_id = self.limits.chunk_id(chunk_id)?;
        let lease_token = self.limits.lease_token(lease_token)?;
        let lease = self.limits.lease("lease_seconds", lease_seconds)?;
        let expires_at = self.clock.now().plus(lease);
        self.store
            .extend_lease(chunk_id, &lease_token, expires_at)
            .await
    }

    /// Releases every lease taken under tokens starting with `token_prefix`.
    pub async fn release_leases(&self, token_prefix: &str) -> Result<RecoverOutcome> {
        let outcome = self
            .store
            .release_leases(token_prefix, self.clock.now())
            .await?;
        if outcome.recovered > 0 || outcome.failed > 0 {
            self.events.work_available_everywhere();
        }
        Ok(outcome)
    }

    pub async fn progress(&self, job_id: String) -> Result<JobProgress> {
        let job_id = self.limits.id("job_id", job_id)?;
        self.store.job_progress(&job_id).await
    }

    pub async fn list_chunks(
        &self,
        job_id: String,
        status: Option<ChunkStatus>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<ChunkInfo>> {
        let job_id = self.limits.id("job_id", job_id)?;
        let page = page_request(&self.limits, page_size, 100, page_token)?;
        self.store.list_chunks(&job_id, status, page).await
    }

    pub async fn retry_failed_chunks(&self, job_id: String) -> Result<(u32, JobStatus)> {
        let job_id = self.limits.id("job_id", job_id)?;
        let job = self.store.get_job(&job_id).await?;
        let outcome = self
            .store
            .retry_failed_chunks(&job_id, self.clock.now())
            .await?;
        if outcome.0 > 0 {
            self.events.work_available(&job.queue);
            self.events.job_changed(&job_id);
        }
        Ok(outcome)
    }

    pub async fn recover_stuck_chunks(&self) -> Result<RecoverOutcome> {
        let outcome = self.store.recover_stuck_chunks(self.clock.now()).await?;
        if outcome.recovered > 0 || outcome.failed > 0 {
            self.events.work_available_everywhere();
        }
        Ok(outcome)
    }

    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>> {
        self.store.queue_depths().await
    }
}

/// A fresh, unguessable lease token. Work streams put their own prefix first, so all of a
/// stream's leases can be released together.
pub fn new_lease_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
