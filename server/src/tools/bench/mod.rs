//! `retryd bench`: a load generator. It starts a server (or targets one) and measures enqueue
//! throughput, processing throughput over Work streams and ClaimChunks pollers, and the latency
//! from CreateJob to a worker holding the chunk at a steady offered rate. Every processing run
//! checks that each chunk was completed exactly once. Prints a table; `--json` writes one result
//! per line in the shape of `../shared/bench/peers` so the figures can sit side by side.

mod enqueue;
mod latency;
mod process;
mod report;
mod stream;
mod target;
mod upload;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use retryd_client::tonic::transport::Channel;

pub use report::BenchResult;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Target a running server instead of starting one.
    #[arg(long)]
    pub server: Option<String>,
    /// The database of the server the bench starts (default: a SQLite file in a temporary
    /// directory). Use a database of its own: the bench fills it.
    #[arg(long = "bench-database-url")]
    pub database_url: Option<String>,
    /// Chunks per throughput measurement.
    #[arg(long, default_value_t = 20_000)]
    pub chunks: usize,
    #[arg(long, default_value_t = 16)]
    pub payload_bytes: usize,
    /// Work streams in the latency measurement.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Work stream configurations to measure processing with, as STREAMSxCREDITS (credits: the
    /// chunks each stream may hold at once). The best is the one compared with peers.
    #[arg(long, value_delimiter = ',', default_value = "8x256,4x1000")]
    pub stream_configs: Vec<WorkerConfig>,
    /// ClaimChunks poller configurations, as POLLERSxBATCH (chunks per ClaimChunks and per
    /// CompleteChunks call).
    #[arg(long, value_delimiter = ',', default_value = "8x100,4x500")]
    pub poll_configs: Vec<WorkerConfig>,
    /// Chunks per CreateJob call in bulk enqueue.
    #[arg(long, default_value_t = 1_000)]
    pub create_batch: usize,
    /// CreateJob calls in flight at once.
    #[arg(long, default_value_t = 8)]
    pub enqueue_concurrency: usize,
    /// Chunks enqueued one per CreateJob call.
    #[arg(long, default_value_t = 5_000)]
    pub single_enqueue_chunks: usize,
    /// Offered rate of the latency measurement, chunks per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    #[arg(long, default_value_t = 1_000)]
    pub latency_chunks: usize,
    /// Which measurements to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "enqueue,process-stream,process-poll,latency"
    )]
    pub sections: Vec<Section>,
    /// Size of the file of the upload measurement, in MiB.
    #[arg(long, default_value_t = 256)]
    pub upload_mib: usize,
    /// Part size of the upload measurement, in KiB.
    #[arg(long, default_value_t = 1024)]
    pub upload_part_kib: usize,
    /// Also write the results as JSON lines here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Sent as `authorization: Bearer <key>` when set.
    #[arg(long, env = "RETRYD_API_KEY")]
    pub api_key: Option<String>,
}

/// How many workers, and how many chunks each takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    pub workers: usize,
    pub batch: u32,
}

impl std::str::FromStr for WorkerConfig {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (workers, batch) = text
            .split_once('x')
            .ok_or("expected WORKERSxBATCH, e.g. 8x256")?;
        let workers = workers
            .parse()
            .map_err(|_| format!("bad worker count in {text:?}"))?;
        let batch = batch
            .parse()
            .map_err(|_| format!("bad batch size in {text:?}"))?;
        if workers == 0 || batch == 0 {
            return Err(format!("{text:?}: workers and batch must be positive"));
        }
        Ok(Self { workers, batch })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    Enqueue,
    ProcessStream,
    ProcessPoll,
    Latency,
    /// Upload throughput (MiB/s) into the blob store, beside dd on the same disk. Not in the
    /// default set: it measures the disk more than the queue.
    Upload,
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let target = target::Target::start(&args).await?;
    let channel = target.channel().await?;
    let engine = target.engine.clone();
    let mut results = Vec::new();
    let idle_rss = target.rss_kib();
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    warm_up(&channel, &args, &format!("bench-{run_id}-warmup")).await?;
    for section in &args.sections {
        let queue = format!("bench-{run_id}-{section:?}").to_lowercase();
        let outcome = match section {
            Section::Enqueue => enqueue::run(&channel, &args, &queue).await,
            Section::ProcessStream => process::run_streams(&channel, &args, &queue).await,
            Section::ProcessPoll => process::run_pollers(&channel, &args, &queue).await,
            Section::Latency => latency::run(&channel, &args, &queue).await,
            Section::Upload => upload::run(&channel, &args, &target.scratch_dir()).await,
        };
        results.extend(outcome?);
    }
    let memory = target.peak_rss_kib().map(|peak| report::Memory {
        idle_kib: idle_rss,
        peak_kib: peak,
    });
    report::print(&engine, &results, memory.as_ref());
    if let Some(path) = &args.json {
        report::write_json(path, &engine, &results, memory.as_ref())?;
    }
    if results.iter().any(|result| !result.ok) {
        return Err("a check failed (see the table)".into());
    }
    Ok(())
}

/// Opens the server's database connections and the client's HTTP/2 connection before anything
/// is timed: the figures are for a server in its steady state, not for its first second.
async fn warm_up(channel: &Channel, args: &BenchArgs, queue: &str) -> Result<(), String> {
    enqueue::create(channel, args, queue, 1_600, 100, 16).await?;
    Ok(())
}

fn payload(args: &BenchArgs, n: usize) -> Vec<u8> {
    let mut payload = n.to_string().into_bytes();
    payload.resize(args.payload_bytes.max(payload.len()), b'.');
    payload
}

pub(crate) fn authorized<T>(message: T, args: &BenchArgs) -> retryd_client::tonic::Request<T> {
    let mut request = retryd_client::tonic::Request::new(message);
    if let Some(key) = &args.api_key {
        if let Ok(value) = format!("Bearer {key}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
    }
    request
}

pub(crate) fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

pub(crate) type Client = retryd_client::v1::chunk_queue_client::ChunkQueueClient<Channel>;
