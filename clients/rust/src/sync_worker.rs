//! Run a function per SyncRetry task: claims due syncs and retries (as many as there is room
//! for), runs the function for each on its own task while heartbeats keep its lease, and
//! reports the outcome: the data as a streamed snapshot, or the failure for the server to
//! classify (or as the function says).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tonic::Status> {
//! use retryd_client::sync_worker::{run_syncs, SyncOutcome, SyncWorkerOptions};
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
//!     .connect()
//!     .await
//!     .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
//! let options = SyncWorkerOptions::new("importer-1");
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! run_syncs(channel, options, |task| async move {
//!     println!("syncing {} (retry {})", task.data_type, task.retry_count);
//!     SyncOutcome::snapshot(b"id\n1\n".to_vec(), 1)
//! }, async { let _ = stopped.await; })
//! .await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::Status;

use crate::auth::ApiKey;
use crate::v1::complete_sync_request::Kind as Upload;
use crate::v1::sync_retry_client::SyncRetryClient;
use crate::v1::{
    ClaimSyncTasksRequest, CompleteSyncRequest, CompleteSyncResponse, ExtendSyncLeaseRequest,
    FailSyncRequest, FailSyncResponse, LeasedSyncTask, SnapshotBegin, SnapshotEnd,
};

/// Data is sent in messages of this size, well under every default message limit.
const PART_BYTES: usize = 1024 * 1024;

/// What became of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The data fetched.
    Snapshot {
        data: Vec<u8>,
        item_count: u64,
        content_type: String,
        /// The lowercase hex SHA-256 the data should have (e.g. as the upstream announced it);
        /// the server rejects data that does not match.
        sha256: Option<String>,
    },
    /// The sync failed. With `retryable` unset the server classifies `error_message`.
    Failed {
        error_message: String,
        retryable: Option<bool>,
    },
}

impl SyncOutcome {
    pub fn snapshot(data: Vec<u8>, item_count: u64) -> Self {
        Self::Snapshot {
            data,
            item_count,
            content_type: String::new(),
            sha256: None,
        }
    }

    /// A failure for the server's rules to classify.
    pub fn failed(error_message: impl Into<String>) -> Self {
        Self::Failed {
            error_message: error_message.into(),
            retryable: None,
        }
    }
}

/// How the server settled a reported outcome.
#[derive(Debug, Clone)]
pub enum SyncReport {
    Completed(CompleteSyncResponse),
    Failed(FailSyncResponse),
    /// The report was refused (e.g. the lease was lost).
    Refused(Status),
}

#[derive(Debug, Clone)]
pub struct SyncWorkerOptions {
    pub worker_id: String,
    /// Data types to work on; empty: all.
    pub data_types: Vec<String>,
    /// Syncs run at once.
    pub concurrency: u32,
    /// Lease per task, in seconds (0: the server's default).
    pub lease_seconds: u32,
    /// While a sync runs, its lease is extended this often.
    pub heartbeat_every: Duration,
    /// How often to look for due syncs when there was nothing to claim.
    pub poll_every: Duration,
    pub api_key: Option<ApiKey>,
}

impl SyncWorkerOptions {
    pub fn new(worker_id: &str) -> Self {
        Self {
            worker_id: worker_id.to_owned(),
            data_types: Vec::new(),
            concurrency: 4,
            lease_seconds: 120,
            heartbeat_every: Duration::from_secs(30),
            poll_every: Duration::from_secs(5),
            api_key: None,
        }
    }
}

/// Works syncs until `shutdown` resolves (then finishes the syncs in hand) or a claim fails
/// (the error is returned).
pub async fn run_syncs<F, Fut>(
    channel: Channel,
    options: SyncWorkerOptions,
    work: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Status>
where
    F: Fn(LeasedSyncTask) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = SyncOutcome> + Send + 'static,
{
    run_syncs_with_reports(channel, options, work, |_, _| {}, shutdown).await
}

/// `run_syncs`, telling `on_report` how the server settled each task's outcome.
pub async fn run_syncs_with_reports<F, Fut>(
    channel: Channel,
    options: SyncWorkerOptions,
    work: F,
    on_report: impl Fn(&LeasedSyncTask, &SyncReport),
    shutdown: impl Future<Output = ()>,
) -> Result<(), Status>
where
    F: Fn(LeasedSyncTask) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = SyncOutcome> + Send + 'static,
{
    let work = Arc::new(work);
    let client = Client {
        inner: SyncRetryClient::new(channel),
        api_key: options.api_key.clone(),
    };
    let concurrency = options.concurrency.max(1) as usize;
    let mut in_hand = JoinSet::new();
    let mut stopping = false;
    tokio::pin!(shutdown);
    loop {
        let room = concurrency - in_hand.len();
        if !stopping && room > 0 {
            let claim = ClaimSyncTasksRequest {
                worker_id: options.worker_id.clone(),
                data_types: options.data_types.clone(),
                max: room as u32,
                lease_seconds: options.lease_seconds,
            };
            let tasks = client
                .clone()
                .inner
                .claim_sync_tasks(client.request(claim))
                .await?
                .into_inner()
                .tasks;
            for task in tasks {
                let run = sync_one(Arc::clone(&work), client.clone(), task, options.clone());
                in_hand.spawn(run);
            }
        }
        tokio::select! {
            _ = &mut shutdown, if !stopping => stopping = true,
            Some(joined) = in_hand.join_next() => {
                if let Ok((task, report)) = joined {
                    on_report(&task, &report);
                }
            }
            // Nothing in hand finished: look for due syncs again after a while.
            _ = tokio::time::sleep(options.poll_every), if !stopping => {}
        }
        if stopping && in_hand.is_empty() {
            return Ok(());
        }
    }
}

/// The generated client with the key to put on every call.
#[derive(Clone)]
struct Client {
    inner: SyncRetryClient<Channel>,
    api_key: Option<ApiKey>,
}

impl Client {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let request = tonic::Request::new(message);
        match &self.api_key {
            Some(key) => key.authorize(request),
            None => request,
        }
    }
}

async fn sync_one<F, Fut>(
    work: Arc<F>,
    client: Client,
    task: LeasedSyncTask,
    options: SyncWorkerOptions,
) -> (LeasedSyncTask, SyncReport)
where
    F: Fn(LeasedSyncTask) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = SyncOutcome> + Send + 'static,
{
    let running = work(task.clone());
    tokio::pin!(running);
    let every = options.heartbeat_every.max(Duration::from_millis(10));
    let mut heartbeats = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let outcome = loop {
        tokio::select! {
            outcome = &mut running => break outcome,
            _ = heartbeats.tick() => {
                let extend = ExtendSyncLeaseRequest {
                    task_id: task.task_id,
                    lease_token: task.lease_token.clone(),
                    lease_seconds: options.lease_seconds,
                };
                // A lost lease shows when the outcome is reported.
                let _ = client.clone().inner.extend_sync_lease(client.request(extend)).await;
            }
        }
    };
    let report = match report(&client, &task, outcome).await {
        Ok(report) => report,
        Err(status) => SyncReport::Refused(status),
    };
    (task, report)
}

async fn report(
    client: &Client,
    task: &LeasedSyncTask,
    outcome: SyncOutcome,
) -> Result<SyncReport, Status> {
    let mut inner = client.inner.clone();
    match outcome {
        SyncOutcome::Snapshot {
            data,
            item_count,
            content_type,
            sha256,
        } => {
            let begin = SnapshotBegin {
                task_id: task.task_id,
                lease_token: task.lease_token.clone(),
                content_type,
            };
            let end = SnapshotEnd {
                item_count,
                sha256: sha256.unwrap_or_default(),
            };
            let parts = data
                .chunks(PART_BYTES)
                .map(|part| Upload::Data(part.to_vec()));
            let messages: Vec<CompleteSyncRequest> = std::iter::once(Upload::Begin(begin))
                .chain(parts)
                .chain(std::iter::once(Upload::End(end)))
                .map(|kind| CompleteSyncRequest { kind: Some(kind) })
                .collect();
            let request = client.request(tokio_stream::iter(messages));
            Ok(SyncReport::Completed(
                inner.complete_sync(request).await?.into_inner(),
            ))
        }
        SyncOutcome::Failed {
            error_message,
            retryable,
        } => {
            let fail = FailSyncRequest {
                task_id: task.task_id,
                lease_token: task.lease_token.clone(),
                error_message,
                retryable,
            };
            Ok(SyncReport::Failed(
                inner.fail_sync(client.request(fail)).await?.into_inner(),
            ))
        }
    }
}
