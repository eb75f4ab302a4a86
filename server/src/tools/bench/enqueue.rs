//! Enqueue throughput: CreateJob with many chunks per call, and with one chunk per call.

use std::time::Instant;

use futures_util::{stream, StreamExt};
use retryd_client::tonic::transport::Channel;
use retryd_client::v1::{ChunkInput, CreateJobRequest};

use super::report::BenchResult;
use super::{authorized, payload, rate, BenchArgs, Client};

/// Creates `chunks` chunks in jobs of `per_job` with `concurrency` calls in flight; returns the
/// job ids.
pub async fn create(
    channel: &Channel,
    args: &BenchArgs,
    queue: &str,
    chunks: usize,
    per_job: usize,
    concurrency: usize,
) -> Result<Vec<String>, String> {
    let per_job = per_job.max(1);
    let jobs = chunks.div_ceil(per_job);
    let calls = (0..jobs).map(|job| {
        let mut client = Client::new(channel.clone());
        let first = job * per_job;
        let size = per_job.min(chunks - first);
        let request = CreateJobRequest {
            job_id: format!("{queue}-{job}"),
            queue: queue.to_owned(),
            chunks: (first..first + size)
                .map(|n| ChunkInput {
                    payload: payload(args, n),
                })
                .collect(),
            ..Default::default()
        };
        let request = authorized(request, args);
        async move {
            client
                .create_job(request)
                .await
                .map(|job| job.into_inner().job_id)
        }
    });
    let created: Vec<_> = stream::iter(calls)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    created
        .into_iter()
        .map(|result| result.map_err(|status| format!("CreateJob failed: {status}")))
        .collect()
}

pub async fn run(
    channel: &Channel,
    args: &BenchArgs,
    queue: &str,
) -> Result<Vec<BenchResult>, String> {
    let started = Instant::now();
    let jobs = create(
        channel,
        args,
        &format!("{queue}-bulk"),
        args.chunks,
        args.create_batch,
        args.enqueue_concurrency,
    )
    .await?;
    let bulk_rate = rate(args.chunks, started.elapsed());
    let bulk = BenchResult::throughput(
        "enqueue",
        "enq_bulk",
        format!(
            "CreateJob, {} chunks per call, {} in flight",
            args.create_batch, args.enqueue_concurrency
        ),
        args.chunks,
        bulk_rate,
        jobs.len() == args.chunks.div_ceil(args.create_batch.max(1)),
    );

    let started = Instant::now();
    let singles = args.single_enqueue_chunks;
    let jobs = create(channel, args, &format!("{queue}-x1"), singles, 1, 8).await?;
    let single = BenchResult::throughput(
        "enqueue",
        "enq_x1",
        "CreateJob, 1 chunk per call, 8 in flight".into(),
        singles,
        rate(singles, started.elapsed()),
        jobs.len() == singles,
    );
    Ok(vec![bulk, single])
}
