//! Conversions between protobuf messages and domain types.

pub mod devices;
pub mod uploads;

use retryd_client::v1 as pb;

use crate::core::chunks::{
    ChunkInfo, ChunkStatus, Job, JobProgress, JobStatus, LeasedChunk, QueueDepth,
};
use crate::core::limits::{CreateJobInput, RetryPolicyInput};
use crate::core::retry::RetryPolicy;
use crate::core::tasks::{RunKind, RunOutcome, TaskRun};
use crate::core::{Error, Result, Timestamp};
use crate::scheduler::TaskStatus;
use crate::service::health::SystemHealth;

pub fn timestamp(at: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = at.seconds_and_nanos();
    prost_types::Timestamp { seconds, nanos }
}

pub fn job_status(status: JobStatus) -> pb::JobStatus {
    match status {
        JobStatus::Pending => pb::JobStatus::Pending,
        JobStatus::Processing => pb::JobStatus::Processing,
        JobStatus::Completed => pb::JobStatus::Completed,
        JobStatus::PartialFailure => pb::JobStatus::PartialFailure,
        JobStatus::Failed => pb::JobStatus::Failed,
        JobStatus::Cancelled => pb::JobStatus::Cancelled,
    }
}

/// A status filter as a request carries it: unspecified (a number no status maps to) means
/// "any"; a number the contract does not know is refused rather than read as "any". `kind`
/// names the status in the message ("unknown job status 9").
pub fn status_filter<D: Copy, P: TryFrom<i32> + PartialEq>(
    value: i32,
    kind: &str,
    all: &[D],
    to_proto: impl Fn(D) -> P,
) -> Result<Option<D>> {
    let status = P::try_from(value)
        .map_err(|_| Error::invalid("status", format!("unknown {kind} status {value}")))?;
    Ok(all
        .iter()
        .copied()
        .find(|candidate| to_proto(*candidate) == status))
}

pub fn job_status_filter(value: i32) -> Result<Option<JobStatus>> {
    status_filter(value, "job", JobStatus::ALL, job_status)
}

pub fn chunk_status(status: ChunkStatus) -> pb::ChunkStatus {
    match status {
        ChunkStatus::Pending => pb::ChunkStatus::Pending,
        ChunkStatus::Processing => pb::ChunkStatus::Processing,
        ChunkStatus::Completed => pb::ChunkStatus::Completed,
        ChunkStatus::Failed => pb::ChunkStatus::Failed,
        ChunkStatus::Cancelled => pb::ChunkStatus::Cancelled,
    }
}

pub fn chunk_status_filter(value: i32) -> Result<Option<ChunkStatus>> {
    status_filter(value, "chunk", ChunkStatus::ALL, chunk_status)
}

pub fn create_job_input(request: pb::CreateJobRequest) -> CreateJobInput {
    CreateJobInput {
        job_id: request.job_id,
        queue: request.queue,
        payloads: request
            .chunks
            .into_iter()
            .map(|chunk| chunk.payload)
            .collect(),
        priority: request.priority,
        max_attempts: request.max_attempts,
        retry_policy: request.retry_policy.map(|policy| RetryPolicyInput {
            initial_backoff_ms: policy.initial_backoff_ms,
            multiplier: policy.multiplier,
            max_backoff_ms: policy.max_backoff_ms,
        }),
    }
}

fn retry_policy(policy: RetryPolicy) -> pb::RetryPolicy {
    pb::RetryPolicy {
        initial_backoff_ms: u32::try_from(policy.initial_backoff.as_millis()).unwrap_or(u32::MAX),
        multiplier: policy.multiplier,
        max_backoff_ms: u32::try_from(policy.max_backoff.as_millis()).unwrap_or(u32::MAX),
    }
}

pub fn job(job: Job) -> pb::Job {
    pb::Job {
        job_id: job.job_id,
        queue: job.queue,
        status: job_status(job.status).into(),
        total_chunks: job.total_chunks,
        priority: job.priority,
        max_attempts: job.max_attempts,
        retry_policy: Some(retry_policy(job.retry_policy)),
        completed_chunks: job.completed_chunks,
        failed_chunks: job.failed_chunks,
        created_at: Some(timestamp(job.created_at)),
        updated_at: Some(timestamp(job.updated_at)),
        finished_at: job.finished_at.map(timestamp),
    }
}

pub fn leased_chunk(chunk: LeasedChunk) -> pb::LeasedChunk {
    pb::LeasedChunk {
        chunk_id: chunk.chunk_id,
        job_id: chunk.job_id,
        index: chunk.index,
        payload: chunk.payload,
        attempt: chunk.attempt,
        lease_token: chunk.lease_token,
        lease_expires_at: Some(timestamp(chunk.lease_expires_at)),
        max_attempts: chunk.max_attempts,
    }
}

pub fn progress(progress: JobProgress) -> pb::JobProgress {
    pb::JobProgress {
        progress_percentage: (progress.percentage() * 100.0).round() / 100.0,
        overall_status: job_status(progress.status).into(),
        job_id: progress.job_id,
        total: progress.total,
        pending: progress.pending,
        processing: progress.processing,
        completed: progress.completed,
        failed: progress.failed,
        cancelled: progress.cancelled,
    }
}

pub fn chunk(chunk: ChunkInfo) -> pb::Chunk {
    pb::Chunk {
        chunk_id: chunk.chunk_id,
        job_id: chunk.job_id,
        index: chunk.index,
        status: chunk_status(chunk.status).into(),
        attempts: chunk.attempts,
        max_attempts: chunk.max_attempts,
        last_error: chunk.last_error.unwrap_or_default(),
        worker_id: chunk.worker_id.unwrap_or_default(),
        run_at: Some(timestamp(chunk.run_at)),
        lease_expires_at: chunk.lease_expires_at.map(timestamp),
        completed_at: chunk.completed_at.map(timestamp),
        payload_size: chunk.payload_size,
        result: chunk.result.unwrap_or_default(),
    }
}

fn queue_depth(depth: QueueDepth) -> pb::QueueDepth {
    pb::QueueDepth {
        queue: depth.queue,
        pending: depth.pending,
        processing: depth.processing,
        completed: depth.completed,
        failed: depth.failed,
        cancelled: depth.cancelled,
    }
}

pub fn system_health(health: SystemHealth) -> pb::SystemHealth {
    let status = if health.serving() {
        pb::ServingStatus::Serving
    } else {
        pb::ServingStatus::NotServing
    };
    pb::SystemHealth {
        status: status.into(),
        database: Some(pb::DatabaseHealth {
            engine: health.database.engine.to_owned(),
            reachable: health.database.reachable,
            latency_ms: health.database.latency.as_secs_f64() * 1000.0,
            error: health.database.error.unwrap_or_default(),
        }),
        queues: health.queues.into_iter().map(queue_depth).collect(),
        checked_at: Some(timestamp(health.checked_at)),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        tasks: health.tasks.into_iter().map(task).collect(),
        replica_id: health.replica_id,
        scheduler_leader: health.scheduler_leader,
        connections: health
            .connections
            .into_iter()
            .map(super::sync_convert::connection_health)
            .collect(),
        broker: health.broker.map(|broker| pb::BrokerHealth {
            connected: broker.connected,
            url: broker.url,
            since: Some(timestamp(broker.since)),
            last_error: broker.last_error.unwrap_or_default(),
        }),
    }
}

pub fn task_run(run: TaskRun) -> pb::TaskRun {
    pb::TaskRun {
        run_id: run.id,
        task: run.task,
        slot: run.slot.unwrap_or_default(),
        replica_id: run.replica_id,
        kind: match run.kind {
            RunKind::Schedule => pb::TaskRunKind::Schedule,
            RunKind::Manual => pb::TaskRunKind::Manual,
        }
        .into(),
        started_at: Some(timestamp(run.started_at)),
        finished_at: run.finished_at.map(timestamp),
        outcome: match run.outcome {
            None => pb::TaskRunOutcome::Unspecified,
            Some(RunOutcome::Ok) => pb::TaskRunOutcome::Ok,
            Some(RunOutcome::Error) => pb::TaskRunOutcome::Error,
        }
        .into(),
        counts: run.counts.into_iter().collect(),
        error: run.error.unwrap_or_default(),
    }
}

pub fn task(status: TaskStatus) -> pb::Task {
    pb::Task {
        name: status.name,
        enabled: status.enabled,
        interval_seconds: u32::try_from(status.interval.as_secs()).unwrap_or(u32::MAX),
        last_run: status.last_run.map(task_run),
    }
}
