//! Run a function per chunk of a queue over a `Work` stream: the server pushes chunks as the
//! worker has room (`concurrency`), each chunk's function runs on its own task, long-running
//! chunks keep their lease alive with heartbeats, and the outcome is reported on the stream.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tonic::Status> {
//! use retryd_client::worker::{run_chunks, Outcome, WorkerOptions};
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
//!     .connect()
//!     .await
//!     .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
//! let options = WorkerOptions::new("emails", "mailer-1");
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! run_chunks(channel, options, |chunk| async move {
//!     println!("chunk {} of job {}", chunk.index, chunk.job_id);
//!     Outcome::Complete(Vec::new())
//! }, async { let _ = stopped.await; })
//! .await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Status;

use crate::auth::ApiKey;
use crate::v1::chunk_queue_client::ChunkQueueClient;
use crate::v1::work_request::Kind as Outgoing;
use crate::v1::work_response::Kind as Incoming;
use crate::v1::{
    CompleteChunkRequest, ExtendLeaseRequest, FailChunkRequest, LeasedChunk, WorkAck, WorkAckKind,
    WorkCredit, WorkRequest, WorkStart,
};

/// What became of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done, with an optional result kept with the chunk.
    Complete(Vec<u8>),
    /// Failed; try again after the job's backoff (until its attempts are used up).
    Retry(String),
    /// Failed for good.
    Fail(String),
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queue: String,
    pub worker_id: String,
    /// Chunks worked on at once.
    pub concurrency: u32,
    /// Lease per chunk, in seconds (0: the server's default).
    pub lease_seconds: u32,
    /// While a chunk's function runs, its lease is extended this often.
    pub heartbeat_every: Duration,
    pub api_key: Option<ApiKey>,
}

impl WorkerOptions {
    pub fn new(queue: &str, worker_id: &str) -> Self {
        Self {
            queue: queue.to_owned(),
            worker_id: worker_id.to_owned(),
            concurrency: 8,
            lease_seconds: 60,
            heartbeat_every: Duration::from_secs(20),
            api_key: None,
        }
    }
}

/// Works chunks until `shutdown` resolves (then finishes the chunks in hand and closes the
/// stream cleanly) or the stream fails (the error is returned; reconnecting is the caller's
/// choice).
pub async fn run_chunks<F, Fut>(
    channel: Channel,
    options: WorkerOptions,
    work: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Status>
where
    F: Fn(LeasedChunk) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    run_chunks_with_acks(channel, options, work, |_| {}, shutdown).await
}

/// `run_chunks`, telling `on_ack` how the server settled each outcome (code 0: accepted).
pub async fn run_chunks_with_acks<F, Fut>(
    channel: Channel,
    options: WorkerOptions,
    work: F,
    on_ack: impl Fn(&WorkAck),
    shutdown: impl Future<Output = ()>,
) -> Result<(), Status>
where
    F: Fn(LeasedChunk) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let work = Arc::new(work);
    let (requests, outbox) = mpsc::channel::<WorkRequest>(options.concurrency as usize * 2 + 4);
    let send = |kind| WorkRequest { kind: Some(kind) };
    let start = WorkStart {
        queue: options.queue.clone(),
        worker_id: options.worker_id.clone(),
        lease_seconds: options.lease_seconds,
        batch: false,
    };
    let opening = [
        send(Outgoing::Start(start)),
        send(Outgoing::Credit(WorkCredit {
            count: options.concurrency.max(1),
        })),
    ];
    for message in opening {
        requests
            .send(message)
            .await
            .map_err(|_| Status::cancelled("worker stopped"))?;
    }
    let mut request = tonic::Request::new(ReceiverStream::new(outbox));
    if let Some(key) = &options.api_key {
        request = key.authorize(request);
    }
    let mut responses = ChunkQueueClient::new(channel)
        .work(request)
        .await?
        .into_inner();

    let mut in_hand = JoinSet::new();
    let mut stopping = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            response = responses.message(), if !stopping => match response? {
                Some(response) => match response.kind {
                    Some(Incoming::Chunk(chunk)) => {
                        let lease = Lease { heartbeat_every: options.heartbeat_every, seconds: options.lease_seconds };
                        in_hand.spawn(work_one(Arc::clone(&work), chunk, requests.clone(), lease));
                    }
                    // An outcome was settled (or refused): there is room for another chunk.
                    // Heartbeat acknowledgements free nothing.
                    Some(Incoming::Ack(ack)) => {
                        on_ack(&ack);
                        if ack.kind() != WorkAckKind::Heartbeat {
                            let _ = requests.send(send(Outgoing::Credit(WorkCredit { count: 1 }))).await;
                        }
                    }
                    _ => {}
                },
                None => return Err(Status::unavailable("the server ended the Work stream")),
            },
            _ = &mut shutdown, if !stopping => stopping = true,
            Some(_) = in_hand.join_next(), if stopping => {}
            else => break,
        }
        if stopping && in_hand.is_empty() {
            break;
        }
    }
    // Closing our side ends the stream; the outcomes sent are settled first.
    drop(requests);
    while let Ok(Some(_)) = responses.message().await {}
    Ok(())
}

/// How a chunk's lease is kept alive while its function runs.
#[derive(Clone, Copy)]
struct Lease {
    heartbeat_every: Duration,
    seconds: u32,
}

async fn work_one<F, Fut>(
    work: Arc<F>,
    chunk: LeasedChunk,
    requests: mpsc::Sender<WorkRequest>,
    lease: Lease,
) where
    F: Fn(LeasedChunk) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let (chunk_id, lease_token) = (chunk.chunk_id, chunk.lease_token.clone());
    let running = work(chunk);
    tokio::pin!(running);
    let every = lease.heartbeat_every.max(Duration::from_millis(10));
    let mut heartbeats = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let outcome = loop {
        tokio::select! {
            outcome = &mut running => break outcome,
            _ = heartbeats.tick() => {
                let extend = ExtendLeaseRequest { chunk_id, lease_token: lease_token.clone(), lease_seconds: lease.seconds };
                let _ = requests.send(WorkRequest { kind: Some(Outgoing::Heartbeat(extend)) }).await;
            }
        }
    };
    let kind = match outcome {
        Outcome::Complete(result) => Outgoing::Complete(CompleteChunkRequest {
            chunk_id,
            lease_token,
            result,
        }),
        Outcome::Retry(error_message) => Outgoing::Fail(FailChunkRequest {
            chunk_id,
            lease_token,
            error_message,
            retryable: true,
        }),
        Outcome::Fail(error_message) => Outgoing::Fail(FailChunkRequest {
            chunk_id,
            lease_token,
            error_message,
            retryable: false,
        }),
    };
    let _ = requests.send(WorkRequest { kind: Some(kind) }).await;
}
