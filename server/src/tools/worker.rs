//! `retryd worker`: a ready-made worker that claims chunks from a queue and completes them after
//! an optional pretend delay. Useful to try a queue by hand, to load a server, and in the
//! crash tests. Prints `completed <chunk_id>` on stdout for every completion the server accepted,
//! and keeps reconnecting (with backoff) while the server is away.

use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};
use retryd_client::auth::ApiKey;
use retryd_client::tonic::transport::{Channel, Endpoint};
use retryd_client::tonic::{Request, Status};
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::{
    ClaimChunksRequest, CompleteChunkRequest, LeasedChunk, WorkAck, WorkAckKind,
};
use retryd_client::worker::{run_chunks_with_acks, Outcome, WorkerOptions};

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The server to work for.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// `stream`: chunks pushed over a Work stream; `poll`: ClaimChunks long polls.
    #[arg(long, value_enum, default_value = "stream")]
    pub mode: WorkerMode,
    /// Chunks held at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u32,
    /// Lease per chunk, in seconds (0: the server's default).
    #[arg(long, default_value_t = 0)]
    pub lease_seconds: u32,
    /// Pretend each chunk takes this long.
    #[arg(long, default_value_t = 0)]
    pub work_ms: u64,
    /// Sent as `authorization: Bearer <key>` when set.
    #[arg(long, env = "RETRYD_API_KEY")]
    pub api_key: Option<String>,
    /// Defaults to host and process id.
    #[arg(long)]
    pub worker_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerMode {
    Stream,
    Poll,
}

pub async fn run(args: WorkerArgs) -> Result<(), String> {
    let endpoint = Endpoint::from_shared(args.server.clone())
        .map_err(|err| format!("invalid --server: {err}"))?
        .connect_timeout(Duration::from_secs(2));
    let worker_id = args
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("retryd-worker-{}", std::process::id()));
    let mut backoff = Duration::from_millis(50);
    loop {
        let outcome = match endpoint.connect().await {
            Ok(channel) => match args.mode {
                WorkerMode::Stream => work_stream(channel, &args, &worker_id).await,
                WorkerMode::Poll => poll(channel, &args, &worker_id).await,
            },
            Err(err) => Err(Status::unavailable(err.to_string())),
        };
        match outcome {
            // Progress was made: start over quickly.
            Ok(()) => backoff = Duration::from_millis(50),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "worker: reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The request, with the API key when one is configured.
fn authorized<T>(message: T, api_key: Option<&str>) -> Result<Request<T>, Status> {
    let request = Request::new(message);
    Ok(match api_key {
        Some(key) => ApiKey::new(key)?.authorize(request),
        None => request,
    })
}

fn report_completed(chunk_id: i64) {
    let mut out = std::io::stdout().lock();
    // A reader (a test, a pipe) needs every line as soon as the server accepted it.
    let _ = writeln!(out, "completed {chunk_id}");
    let _ = out.flush();
}

async fn pretend_work(args: &WorkerArgs) {
    if args.work_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.work_ms)).await;
    }
}

/// Works over a Work stream with the client crate's worker helper, printing every completion
/// the server accepted.
async fn work_stream(channel: Channel, args: &WorkerArgs, worker_id: &str) -> Result<(), Status> {
    let mut options = WorkerOptions::new(&args.queue, worker_id);
    options.concurrency = args.concurrency.max(1);
    options.lease_seconds = args.lease_seconds;
    options.api_key = args.api_key.as_deref().map(ApiKey::new).transpose()?;
    let on_ack = |ack: &WorkAck| {
        if ack.code == 0 && ack.kind() == WorkAckKind::Complete {
            report_completed(ack.chunk_id);
        } else if ack.code != 0 {
            tracing::warn!(
                chunk_id = ack.chunk_id,
                message = ack.message,
                "worker: outcome refused"
            );
        }
    };
    let args_for_work = args.clone();
    let no_op = move |_chunk| {
        let args = args_for_work.clone();
        async move {
            pretend_work(&args).await;
            Outcome::Complete(Vec::new())
        }
    };
    run_chunks_with_acks(channel, options, no_op, on_ack, std::future::pending()).await?;
    Err(Status::unavailable("the Work stream ended"))
}

async fn poll(channel: Channel, args: &WorkerArgs, worker_id: &str) -> Result<(), Status> {
    let client = ChunkQueueClient::new(channel);
    loop {
        let claim = ClaimChunksRequest {
            queue: args.queue.clone(),
            worker_id: worker_id.to_owned(),
            max_chunks: args.concurrency.max(1),
            lease_seconds: args.lease_seconds,
            wait_seconds: 5,
        };
        let chunks = client
            .clone()
            .claim_chunks(authorized(claim, args.api_key.as_deref())?)
            .await?
            .into_inner()
            .chunks;
        let tasks: Vec<_> = chunks
            .into_iter()
            .map(|chunk| tokio::spawn(complete_one(client.clone(), chunk, args.clone())))
            .collect();
        for task in tasks {
            match task.await {
                Ok(Err(status)) if status.code() != tonic::Code::FailedPrecondition => {
                    return Err(status)
                }
                _ => {}
            }
        }
    }
}

async fn complete_one(
    mut client: ChunkQueueClient<Channel>,
    chunk: LeasedChunk,
    args: WorkerArgs,
) -> Result<(), Status> {
    pretend_work(&args).await;
    let complete = CompleteChunkRequest {
        chunk_id: chunk.chunk_id,
        lease_token: chunk.lease_token,
        result: Vec::new(),
    };
    client
        .complete_chunk(authorized(complete, args.api_key.as_deref())?)
        .await?;
    report_completed(chunk.chunk_id);
    Ok(())
}
