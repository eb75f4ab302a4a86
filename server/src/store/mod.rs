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
use crate::core::device_messages::{HelloReport, SleepReport};
use crate::core::devices::{
    Alert, AlertFilter, ChunkReceipt, Command, CommandFilter, Device, HelloOutcome, HistoryEvent,
    Image, ImageFilter, NewCommand, NewDevice, NewImage, RetryReset, SweepOutcome, WakeSession,
};
use crate::core::sync::records::{
    ChangeResult, Conflict, ConflictFilter, PulledChanges, Push, Resolution,
};
use crate::core::sync::snapshots::{CompletedSync, SnapshotInfo, SnapshotUpload};
use crate::core::sync::{
    ConnectionHealth, FailedSync, FailureLog, LeasedSyncTask, NewSource, Source, SyncClaim,
    SyncFailure, SyncTask, SyncTaskFilter,
};
use crate::core::tasks::{NewTaskRun, RunOutcome, TaskCounts, TaskRun};
use crate::core::uploads::{
    DeliveryLease, DeliveryReport, DeliverySelection, NewRetryRun, NewUpload, RetryRun,
    RetryRunFilter, SourceHealth, Upload, UploadFilter,
};
use crate::core::{Result, Timestamp};

mod chunk_queue;
mod device_rows;
mod device_sessions;
mod devices;
mod error;
mod keys;
mod migrate;
mod paging;
pub mod postgres;
mod rows;
mod schema;
pub mod sqlite;
mod sync;
mod sync_records;
mod sync_rows;
mod task_runs;
mod upload_rows;
mod uploads;

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
    /// Deletes up to `limit` final jobs (and their chunks) that finished before `before`.
    async fn prune_finished_jobs(&self, before: Timestamp, limit: u32) -> Result<u64>;
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
pub trait TaskRunStore: Send + Sync {
    /// Records the start of a run. For a scheduled run, returns `None` when its (task, slot) was
    /// already taken: another replica ran that tick.
    async fn start_task_run(&self, run: &NewTaskRun) -> Result<Option<i64>>;
    async fn finish_task_run(
        &self,
        id: i64,
        finished_at: Timestamp,
        outcome: RunOutcome,
        counts: &TaskCounts,
        error: Option<&str>,
    ) -> Result<()>;
    /// The most recent run of each task.
    async fn latest_task_runs(&self) -> Result<Vec<TaskRun>>;
    /// Runs newest first, optionally of one task.
    async fn list_task_runs(&self, task: Option<&str>, page: PageRequest) -> Result<Page<TaskRun>>;
    async fn prune_task_runs(&self, before: Timestamp) -> Result<u64>;
}

#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Declares an upload whose content will live under `blob_key`, or returns the existing one
    /// when `upload_id` is taken by the same declaration (AlreadyExists when it differs).
    async fn create_upload(
        &self,
        upload: &NewUpload,
        blob_key: String,
        now: Timestamp,
    ) -> Result<Upload>;
    async fn get_upload(&self, upload_id: &str) -> Result<Upload>;
    /// The uploads among `upload_ids` that exist, in no particular order.
    async fn find_uploads(&self, upload_ids: &[String]) -> Result<Vec<Upload>>;
    /// Newest first.
    async fn list_uploads(&self, filter: &UploadFilter, page: PageRequest) -> Result<Page<Upload>>;
    /// Records that the first `received_bytes` bytes are durable in the blob store. Progress
    /// never moves back, and only an upload that takes content moves. Returns the upload after.
    async fn record_received(
        &self,
        upload_id: &str,
        received_bytes: u64,
        now: Timestamp,
    ) -> Result<Upload>;
    /// The content is complete and verified: STORED, with its first delivery due at
    /// `deliver_at`. FailedPrecondition when the upload takes no content any more.
    async fn mark_stored(
        &self,
        upload_id: &str,
        deliver_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Upload>;
    /// The content did not match its checksum: FAILED with `reason`, progress back to 0.
    async fn mark_content_rejected(
        &self,
        upload_id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Upload>;
    /// Hands up to `limit` uploads to delivery attempts: each becomes DELIVERING under a fresh
    /// token, leased until `lease_until`, its attempt counted. Never hands one upload to two
    /// live attempts; an attempt whose lease ran out is taken over.
    async fn claim_deliveries(
        &self,
        selection: &DeliverySelection,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<DeliveryLease>>;
    /// Extends a running attempt's lease; false when the attempt no longer holds the upload.
    async fn extend_delivery(
        &self,
        upload_id: &str,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<bool>;
    /// Records how an attempt ended. `None` when the attempt no longer held the upload (its
    /// lease ran out and another run took it over): nothing changes.
    async fn finish_delivery(
        &self,
        upload_id: &str,
        token: &str,
        report: &DeliveryReport,
        now: Timestamp,
    ) -> Result<Option<Upload>>;
    async fn insert_retry_run(&self, run: &NewRetryRun) -> Result<RetryRun>;
    /// Newest first.
    async fn list_retry_runs(
        &self,
        filter: &RetryRunFilter,
        page: PageRequest,
    ) -> Result<Page<RetryRun>>;
    /// Runs started in [from, until], summed per source (sources without runs are left out).
    async fn retry_run_sums(&self, from: Timestamp, until: Timestamp) -> Result<Vec<SourceHealth>>;
    async fn prune_retry_runs(&self, before: Timestamp) -> Result<u64>;
    /// Up to `limit` delivered uploads whose content is still kept, delivered before `before`.
    async fn delivered_content_before(&self, before: Timestamp, limit: u32) -> Result<Vec<Upload>>;
    async fn mark_content_pruned(&self, upload_id: &str, now: Timestamp) -> Result<()>;
}

/// Decides which replica runs the scheduled tasks.
#[async_trait]
pub trait LeaderElector: Send + Sync {
    /// Whether this process leads now, trying to become leader if nobody does. Called on every
    /// scheduler tick, so a lost leadership (a dead connection) is noticed within one tick.
    async fn lead(&self) -> bool;
}

/// Where changes made by other replicas are announced.
pub trait ChangeSink: Send + Sync {
    fn work_available(&self, queue: &str);
    fn job_changed(&self, job_id: &str);
    /// Announcements may have been missed (the listening connection was lost): everyone
    /// waiting should look again.
    fn resync(&self);
}

/// SyncRetry: sources, their sync tasks (the retry queue), failure logs, connection health,
/// snapshots, and record sync with conflicts.
#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Creates the source (due at once, health unknown) or updates an existing one's settings.
    async fn register_source(&self, source: &NewSource, now: Timestamp) -> Result<Source>;
    async fn list_sources(&self) -> Result<Vec<Source>>;
    /// Starts a task for every matching source whose interval has passed and that has no open
    /// task, then leases up to `max` pending tasks, oldest first. No task is leased twice.
    async fn claim_sync_tasks(
        &self,
        claim: &SyncClaim,
        now: Timestamp,
    ) -> Result<Vec<LeasedSyncTask>>;
    async fn extend_sync_lease(
        &self,
        task_id: i64,
        lease_token: &str,
        expires_at: Timestamp,
    ) -> Result<Timestamp>;
    /// Records a classified failure: failure log, health, and a retry, exhaustion or a wait for
    /// a person.
    async fn fail_sync(&self, failure: SyncFailure, now: Timestamp) -> Result<FailedSync>;
    /// Stages a snapshot for the leased task; returns its id for the parts.
    async fn begin_snapshot(
        &self,
        task_id: i64,
        lease_token: &str,
        content_type: &str,
        now: Timestamp,
    ) -> Result<i64>;
    async fn append_snapshot_part(&self, snapshot_id: i64, index: u32, data: &[u8]) -> Result<()>;
    /// Judges a staged snapshot: accepted as the new current version (old versions beyond the
    /// retention pruned), or rejected and deleted with the failure recorded.
    async fn finish_snapshot(
        &self,
        upload: SnapshotUpload,
        now: Timestamp,
    ) -> Result<CompletedSync>;
    /// Deletes a staged snapshot whose stream broke off.
    async fn discard_snapshot(&self, snapshot_id: i64) -> Result<()>;
    /// Kept versions, newest first.
    async fn list_snapshots(&self, data_type: &str) -> Result<Vec<SnapshotInfo>>;
    /// A kept version (the current one when `version` is None) and the id its parts hang on.
    async fn find_snapshot(
        &self,
        data_type: &str,
        version: Option<u64>,
    ) -> Result<(SnapshotInfo, i64)>;
    /// Part `index` of a snapshot; None past the last.
    async fn snapshot_part(&self, snapshot_id: i64, index: u32) -> Result<Option<Vec<u8>>>;
    async fn rollback_to(
        &self,
        data_type: &str,
        version: u64,
        now: Timestamp,
    ) -> Result<SnapshotInfo>;
    /// Tasks newest first.
    async fn list_sync_tasks(
        &self,
        filter: SyncTaskFilter,
        page: PageRequest,
    ) -> Result<Page<SyncTask>>;
    async fn retry_sync_now(&self, task_id: i64, now: Timestamp) -> Result<SyncTask>;
    async fn cancel_sync_task(&self, task_id: i64, now: Timestamp) -> Result<SyncTask>;
    /// Failure logs newest first.
    async fn list_failure_logs(
        &self,
        data_type: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<FailureLog>>;
    /// Health of one data type (NotFound when unknown) or of all.
    async fn connection_health(&self, data_type: Option<&str>) -> Result<Vec<ConnectionHealth>>;
    /// Makes up to `limit` retries whose time has come claimable, earliest first.
    async fn release_due_retries(&self, now: Timestamp, limit: u32) -> Result<u32>;
    /// Leases that expired count as recoverable failures ("lease expired").
    async fn expire_sync_leases(&self, now: Timestamp) -> Result<u32>;
    /// Deletes finished tasks and failure logs older than `before`, and staged snapshots
    /// abandoned since then.
    async fn prune_sync_history(&self, before: Timestamp) -> Result<u64>;

    /// Applies a push in one transaction; one result per change, in order.
    async fn push_changes(&self, push: &Push, now: Timestamp) -> Result<Vec<ChangeResult>>;
    async fn pull_changes(&self, collection: &str, since: u64, limit: u32)
        -> Result<PulledChanges>;
    /// Conflicts newest first.
    async fn list_conflicts(
        &self,
        filter: ConflictFilter,
        page: PageRequest,
    ) -> Result<Page<Conflict>>;
    async fn resolve_conflict(
        &self,
        conflict_id: i64,
        resolution: Resolution,
        now: Timestamp,
    ) -> Result<Conflict>;
}

/// DeviceImages: devices, the images they send in chunks, the commands waiting for their next
/// wake, and the alerts and history an operator reads. Devices are named by normalized MACs.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Registers the device, or updates the name and wake schedule of a registered one.
    async fn register_device(&self, device: &NewDevice, now: Timestamp) -> Result<Device>;
    async fn get_device(&self, mac: &str) -> Result<Device>;
    /// Devices by MAC, with their pending and failed image counts.
    async fn list_devices(&self, page: PageRequest) -> Result<Page<Device>>;
    /// Records an announced image, or returns it as it is when announced again with the same
    /// fields (AlreadyExists with other fields).
    async fn begin_image(&self, mac: &str, image: &NewImage, now: Timestamp) -> Result<Image>;
    /// Stores one chunk idempotently: a chunk already in (or of a complete image) changes
    /// nothing. NotFound for an unknown device or image, OutOfRange for an index past the end.
    /// A failed image taking chunks again is receiving again.
    async fn store_chunk(
        &self,
        mac: &str,
        image_name: &str,
        index: u32,
        data: &[u8],
        now: Timestamp,
    ) -> Result<ChunkReceipt>;
    /// The stored chunks of an image, by index.
    async fn image_chunks(&self, mac: &str, image_name: &str) -> Result<Vec<Vec<u8>>>;
    async fn get_image(&self, mac: &str, image_name: &str) -> Result<Image>;
    /// Newest first.
    async fn list_images(&self, filter: &ImageFilter, page: PageRequest) -> Result<Page<Image>>;
    async fn queue_command(
        &self,
        mac: &str,
        command: &NewCommand,
        now: Timestamp,
    ) -> Result<Command>;
    /// The device's pending commands that are due and unexpired at `now`, highest priority
    /// first (then earliest scheduled, then oldest).
    async fn due_commands(&self, mac: &str, now: Timestamp) -> Result<Vec<Command>>;
    /// Newest first.
    async fn list_commands(
        &self,
        filter: &CommandFilter,
        page: PageRequest,
    ) -> Result<Page<Command>>;
    /// The timeout rule over every receiving image whose device's wake time has come (see
    /// `core::devices::decide_timeout`), then deletes pending commands that expired.
    async fn run_timeout_sweep(&self, now: Timestamp) -> Result<SweepOutcome>;
    /// Every failed image of the device: retry_count back to 0 and a retry queued for the next
    /// wake (or now, when the device's wake time is unknown or past).
    async fn retry_failed_images(&self, mac: &str, now: Timestamp) -> Result<RetryReset>;
    /// Newest first.
    async fn list_alerts(&self, filter: &AlertFilter, page: PageRequest) -> Result<Page<Alert>>;
    /// Acknowledging twice keeps the first time.
    async fn acknowledge_alert(&self, alert_id: i64, now: Timestamp) -> Result<Alert>;
    /// Newest first, of one device or all.
    async fn list_history(
        &self,
        mac: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<HistoryEvent>>;
}

/// DeviceImages' device side: what HELLO, chunks and sleep change.
#[async_trait]
pub trait DeviceSessionStore: Send + Sync {
    /// Closes a session the device left open (as timeout), applies the timeout rule to the
    /// device's images whose wake time came (before the HELLO moves it), records the telemetry
    /// and next wake, opens a session, and returns the due, unexpired pending commands, highest
    /// priority first.
    async fn device_hello(
        &self,
        mac: &str,
        hello: &HelloReport,
        now: Timestamp,
    ) -> Result<HelloOutcome>;
    /// Pending commands of the device among `command_ids` become sent. Returns how many did.
    async fn mark_commands_sent(
        &self,
        mac: &str,
        command_ids: &[i64],
        now: Timestamp,
    ) -> Result<u32>;
    /// Closes the session (completed, or error with error codes) and records the next wake.
    async fn device_sleep(&self, mac: &str, sleep: &SleepReport, now: Timestamp) -> Result<()>;
    /// The image is in the blob store at `blob_key`: complete, its chunks and waiting retries
    /// deleted. A complete image is returned as it is; FailedPrecondition while chunks miss.
    async fn complete_image(
        &self,
        mac: &str,
        image_name: &str,
        blob_key: &str,
        now: Timestamp,
    ) -> Result<Image>;
    /// The assembled chunks did not match the checksum: the image is failed, its chunks
    /// forgotten, and (retries left) a retry of every chunk queued.
    async fn reject_image_checksum(
        &self,
        mac: &str,
        image_name: &str,
        now: Timestamp,
    ) -> Result<Image>;
    /// (mac, image name) of images holding every chunk but not complete (a crash between the
    /// last chunk and the assembly).
    async fn images_awaiting_assembly(&self, limit: u32) -> Result<Vec<(String, String)>>;
    /// Newest first, of one device or all.
    async fn list_wake_sessions(
        &self,
        mac: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<WakeSession>>;
    /// History events after `after_id`, oldest first (for watchers).
    async fn history_after(
        &self,
        mac: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<HistoryEvent>>;
    /// The newest history event's id; 0 when there is none.
    async fn last_history_id(&self) -> Result<i64>;
}

#[async_trait]
pub trait Store:
    ChunkStore + KeyStore + TaskRunStore + UploadStore + SyncStore + DeviceStore + DeviceSessionStore
{
    /// "postgres" or "sqlite".
    fn engine(&self) -> &'static str;
    /// A trivial query: is the database there?
    async fn ping(&self) -> Result<()>;
    /// The elector for this database: an advisory lock on Postgres, always this process on
    /// SQLite (one process owns the file).
    fn leader_elector(&self) -> Arc<dyn LeaderElector>;
    /// Forwards changes other processes make to `sink`, for as long as the process runs. `None`
    /// when only this process can change the database.
    fn listen_for_changes(&self, sink: Arc<dyn ChangeSink>) -> Option<tokio::task::JoinHandle<()>>;
}

/// The elector of a database only one process uses.
pub struct SoleLeader;

#[async_trait]
impl LeaderElector for SoleLeader {
    async fn lead(&self) -> bool {
        true
    }
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
