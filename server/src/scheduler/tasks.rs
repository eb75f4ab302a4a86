//! The built-in scheduled tasks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::Task;
use crate::core::tasks::TaskCounts;
use crate::core::{Clock, Result};
use crate::service::chunk_queue::ChunkQueueService;
use crate::service::devices::DeviceService;
use crate::service::sync_retry::SyncRetryService;
use crate::service::uploads::UploadService;
use crate::store::Store;

pub const RECOVER_STUCK_CHUNKS: &str = "recover_stuck_chunks";
pub const PRUNE_FINISHED_JOBS: &str = "prune_finished_jobs";

/// Chunks whose lease expired go back to pending, or to failed on their last attempt (the
/// seed's cleanup_stuck_chunks).
pub struct RecoverStuckChunks {
    pub chunk_queue: Arc<ChunkQueueService>,
}

#[async_trait]
impl Task for RecoverStuckChunks {
    fn name(&self) -> &'static str {
        RECOVER_STUCK_CHUNKS
    }

    async fn run(&self) -> Result<TaskCounts> {
        let outcome = self.chunk_queue.recover_stuck_chunks().await?;
        Ok(vec![
            ("recovered".into(), u64::from(outcome.recovered)),
            ("failed".into(), u64::from(outcome.failed)),
        ])
    }
}

/// Deletes finished jobs (with their chunks) and task run records older than the retention.
pub struct PruneFinishedJobs {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub retention: Duration,
}

/// Jobs deleted per statement, and at most this many statements a run: one run never holds the
/// database for long; what is left is pruned by the next run.
const PRUNE_BATCH: u32 = 1_000;
const PRUNE_BATCHES_PER_RUN: u32 = 100;

#[async_trait]
impl Task for PruneFinishedJobs {
    fn name(&self) -> &'static str {
        PRUNE_FINISHED_JOBS
    }

    async fn run(&self) -> Result<TaskCounts> {
        let before = self.clock.now().minus(self.retention);
        let mut jobs = 0;
        for _ in 0..PRUNE_BATCHES_PER_RUN {
            let deleted = self.store.prune_finished_jobs(before, PRUNE_BATCH).await?;
            jobs += deleted;
            if deleted < u64::from(PRUNE_BATCH) {
                break;
            }
        }
        let runs = self.store.prune_task_runs(before).await?;
        Ok(vec![("jobs".into(), jobs), ("task_runs".into(), runs)])
    }
}

pub const UPLOAD_SWEEP: &str = "upload_sweep";
pub const PRUNE_UPLOADS: &str = "prune_uploads";

/// Delivers uploads whose backoff is over and takes over deliveries whose replica died (the
/// seed's cron safety net); logged as a retry run with source "scheduled".
pub struct UploadSweep {
    pub uploads: Arc<UploadService>,
}

#[async_trait]
impl Task for UploadSweep {
    fn name(&self) -> &'static str {
        UPLOAD_SWEEP
    }

    async fn run(&self) -> Result<TaskCounts> {
        let report = self.uploads.sweep().await?;
        Ok(vec![
            ("attempted".into(), u64::from(report.run.attempted)),
            ("succeeded".into(), u64::from(report.run.succeeded)),
            ("failed".into(), u64::from(report.run.failed)),
        ])
    }
}

/// Removes retry logs past their retention and the content of uploads delivered long ago.
pub struct PruneUploads {
    pub uploads: Arc<UploadService>,
    pub retry_log_retention: Duration,
    pub delivered_content_retention: Duration,
}

#[async_trait]
impl Task for PruneUploads {
    fn name(&self) -> &'static str {
        PRUNE_UPLOADS
    }

    async fn run(&self) -> Result<TaskCounts> {
        let (logs, contents) = self
            .uploads
            .prune(self.retry_log_retention, self.delivered_content_retention)
            .await?;
        Ok(vec![
            ("retry_runs".into(), logs),
            ("contents".into(), contents),
        ])
    }
}

pub const PROCESS_SYNC_RETRIES: &str = "process_sync_retries";
pub const PRUNE_SYNC_RETRIES: &str = "prune_sync_retries";

/// SyncRetry's retry processor (the seed's process-sync-retries): sync leases that expired
/// count as recoverable failures, then up to `batch` retries whose time has come become
/// claimable.
pub struct ProcessSyncRetries {
    pub sync: Arc<SyncRetryService>,
    pub batch: u32,
}

#[async_trait]
impl Task for ProcessSyncRetries {
    fn name(&self) -> &'static str {
        PROCESS_SYNC_RETRIES
    }

    async fn run(&self) -> Result<TaskCounts> {
        let (expired, released) = self.sync.process_retries(self.batch).await?;
        Ok(vec![
            ("expired".into(), u64::from(expired)),
            ("released".into(), u64::from(released)),
        ])
    }
}

/// Deletes finished sync tasks and failure logs older than the retention (7 days by default),
/// and snapshots whose upload was abandoned as long ago.
pub struct PruneSyncRetries {
    pub sync: Arc<SyncRetryService>,
    pub retention: Duration,
}

#[async_trait]
impl Task for PruneSyncRetries {
    fn name(&self) -> &'static str {
        PRUNE_SYNC_RETRIES
    }

    async fn run(&self) -> Result<TaskCounts> {
        let pruned = self.sync.prune(self.retention).await?;
        Ok(vec![("pruned".into(), pruned)])
    }
}

pub const DEVICE_TIMEOUT_SWEEP: &str = "device_timeout_sweep";

/// DeviceImages' timeout rule: images still receiving when their device's wake time came are
/// failed and their retries queued; expired commands are deleted.
pub struct DeviceTimeoutSweep {
    pub devices: Arc<DeviceService>,
}

#[async_trait]
impl Task for DeviceTimeoutSweep {
    fn name(&self) -> &'static str {
        DEVICE_TIMEOUT_SWEEP
    }

    async fn run(&self) -> Result<TaskCounts> {
        let outcome = self.devices.run_timeout_sweep().await?;
        Ok(vec![
            (
                "images_timed_out".into(),
                u64::from(outcome.images_timed_out),
            ),
            ("retries_queued".into(), u64::from(outcome.retries_queued)),
            ("failed_to_queue".into(), u64::from(outcome.failed_to_queue)),
            (
                "expired_commands_removed".into(),
                u64::from(outcome.expired_commands_removed),
            ),
        ])
    }
}
