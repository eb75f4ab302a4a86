//! Processing throughput: a backlog of no-op chunks worked by Work streams or ClaimChunks
//! pollers, from the first chunk handed out to the last completion acknowledged. Every run
//! checks that each chunk was completed exactly once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use retryd_client::tonic::transport::Channel;
use retryd_client::v1::*;
use tokio::sync::Notify;

use super::enqueue::create;
use super::report::BenchResult;
use super::stream::{completion_of, work_batched};
use super::{authorized, rate, BenchArgs, Client, WorkerConfig};

/// What the workers of one run saw, shared between them.
#[derive(Default)]
struct Tally {
    first_chunk: Option<Instant>,
    last_completion: Option<Instant>,
    completed: Vec<i64>,
}

struct Run {
    tally: Mutex<Tally>,
    target: usize,
    done: Notify,
}

impl Run {
    fn new(target: usize) -> Arc<Self> {
        Arc::new(Self {
            tally: Mutex::default(),
            target,
            done: Notify::new(),
        })
    }

    fn chunks_arrived(&self) {
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        tally.first_chunk.get_or_insert_with(Instant::now);
    }

    fn completed(&self, chunk_ids: impl IntoIterator<Item = i64>) {
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        tally.completed.extend(chunk_ids);
        tally.last_completion = Some(Instant::now());
        if tally.completed.len() >= self.target {
            self.done.notify_one();
        }
    }

    fn is_done(&self) -> bool {
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .completed
            .len()
            >= self.target
    }

    /// Chunks per second, and whether every chunk was completed exactly once.
    fn outcome(&self) -> (f64, bool) {
        let tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        let unique: HashSet<i64> = tally.completed.iter().copied().collect();
        let exactly_once = tally.completed.len() == self.target && unique.len() == self.target;
        let elapsed = match (tally.first_chunk, tally.last_completion) {
            (Some(first), Some(last)) => last.duration_since(first),
            _ => Duration::ZERO,
        };
        (rate(tally.completed.len(), elapsed), exactly_once)
    }
}

/// The jobs' own counts agree: every chunk completed, none failed.
async fn jobs_complete(channel: &Channel, args: &BenchArgs, job_ids: &[String]) -> bool {
    let mut client = Client::new(channel.clone());
    for job_id in job_ids {
        let request = authorized(
            GetJobProgressRequest {
                job_id: job_id.clone(),
            },
            args,
        );
        match client.get_job_progress(request).await {
            Ok(progress) => {
                let progress = progress.into_inner();
                if progress.completed != progress.total || progress.failed != 0 {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Longest a processing run may take before it is reported as failed instead of hanging.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// Waits until every chunk is completed; false if the deadline passed first.
async fn wait_for(run: &Run) -> bool {
    let deadline = Instant::now() + RUN_DEADLINE;
    while !run.is_done() {
        if Instant::now() >= deadline {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), run.done.notified()).await;
    }
    true
}

/// Runs a worker until the run is done, starting it again after an error (as a real worker
/// reconnects): an error still shows in the figures, but does not stall the run.
async fn keep_working<F, Fut>(run: Arc<Run>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    while !run.is_done() {
        if let Err(err) = work().await {
            tracing::warn!(error = %err, "bench worker: starting over");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub async fn run_streams(
    channel: &Channel,
    args: &BenchArgs,
    queue: &str,
) -> Result<Vec<BenchResult>, String> {
    let mut results = Vec::new();
    for (n, config) in args.stream_configs.iter().enumerate() {
        let queue = format!("{queue}-{n}");
        let (rate, ok) = measure(channel, args, &queue, *config, Way::Stream).await?;
        let variant = format!(
            "{} Work streams, {} credits each, batched messages",
            config.workers, config.batch
        );
        results.push(BenchResult::throughput(
            "process",
            "proc_stream",
            variant,
            args.chunks,
            rate,
            ok,
        ));
    }
    Ok(results)
}

pub async fn run_pollers(
    channel: &Channel,
    args: &BenchArgs,
    queue: &str,
) -> Result<Vec<BenchResult>, String> {
    let mut results = Vec::new();
    for (n, config) in args.poll_configs.iter().enumerate() {
        let queue = format!("{queue}-{n}");
        let (rate, ok) = measure(channel, args, &queue, *config, Way::Poll).await?;
        let variant = format!(
            "{} ClaimChunks pollers, {} per claim, CompleteChunks batches",
            config.workers, config.batch
        );
        results.push(BenchResult::throughput(
            "process",
            "proc_poll",
            variant,
            args.chunks,
            rate,
            ok,
        ));
    }
    Ok(results)
}

#[derive(Clone, Copy)]
enum Way {
    Stream,
    Poll,
}

/// Enqueues the backlog (not timed), works it with `config`, and returns chunks per second
/// and whether every chunk was completed exactly once.
async fn measure(
    channel: &Channel,
    args: &BenchArgs,
    queue: &str,
    config: WorkerConfig,
    way: Way,
) -> Result<(f64, bool), String> {
    let job_ids = create(
        channel,
        args,
        queue,
        args.chunks,
        args.create_batch,
        args.enqueue_concurrency,
    )
    .await?;
    let run = Run::new(args.chunks);
    let workers: Vec<_> = (0..config.workers)
        .map(|n| {
            let (channel, args, queue, run) = (
                channel.clone(),
                args.clone(),
                queue.to_owned(),
                Arc::clone(&run),
            );
            tokio::spawn(keep_working(Arc::clone(&run), move || {
                let (channel, args, queue, run) = (
                    channel.clone(),
                    args.clone(),
                    queue.clone(),
                    Arc::clone(&run),
                );
                async move {
                    match way {
                        Way::Stream => {
                            stream_worker(channel, args, queue, n, config.batch, run).await
                        }
                        Way::Poll => poller(channel, args, queue, n, config.batch, run).await,
                    }
                }
            }))
        })
        .collect();
    let finished = wait_for(&run).await;
    for worker in &workers {
        worker.abort();
    }
    let (chunks_per_second, exactly_once) = run.outcome();
    let ok = finished && exactly_once && jobs_complete(channel, args, &job_ids).await;
    Ok((chunks_per_second, ok))
}

async fn stream_worker(
    channel: Channel,
    args: BenchArgs,
    queue: String,
    n: usize,
    credits: u32,
    run: Arc<Run>,
) -> Result<(), String> {
    let worker_id = format!("bench-stream-{n}");
    work_batched(
        channel,
        &args,
        queue,
        worker_id,
        credits,
        |_| run.chunks_arrived(),
        |acks| {
            run.completed(
                acks.iter()
                    .filter(|ack| ack.code == 0)
                    .map(|ack| ack.chunk_id),
            )
        },
    )
    .await
}

async fn poller(
    channel: Channel,
    args: BenchArgs,
    queue: String,
    n: usize,
    claim_batch: u32,
    run: Arc<Run>,
) -> Result<(), String> {
    let mut client = Client::new(channel);
    while !run.is_done() {
        let claim = ClaimChunksRequest {
            queue: queue.clone(),
            worker_id: format!("bench-poller-{n}"),
            max_chunks: claim_batch,
            lease_seconds: 0,
            wait_seconds: 1,
        };
        let chunks = client
            .claim_chunks(authorized(claim, &args))
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .chunks;
        if chunks.is_empty() {
            continue;
        }
        run.chunks_arrived();
        let completions = chunks.into_iter().map(completion_of).collect();
        let outcomes = client
            .complete_chunks(authorized(CompleteChunksRequest { completions }, &args))
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .outcomes;
        run.completed(
            outcomes
                .into_iter()
                .filter(|outcome| outcome.code == 0)
                .map(|outcome| outcome.chunk_id),
        );
    }
    Ok(())
}
