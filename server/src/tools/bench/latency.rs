//! Latency from CreateJob to a worker holding the chunk, at a steady offered rate, with Work
//! streams waiting for work. Measured both from the CreateJob call (as the peer harness measures
//! from `addJob`) and from its return.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use retryd_client::tonic::transport::Channel;
use retryd_client::v1::*;

use super::report::BenchResult;
use super::stream::work_batched;
use super::{authorized, payload, BenchArgs, Client};

#[derive(Default)]
struct Stamps {
    called: HashMap<String, Instant>,
    returned: HashMap<String, Instant>,
    received: HashMap<String, Instant>,
}

type Shared = Arc<Mutex<Stamps>>;

fn lock(stamps: &Shared) -> std::sync::MutexGuard<'_, Stamps> {
    stamps.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn run(
    channel: &Channel,
    args: &BenchArgs,
    queue: &str,
) -> Result<Vec<BenchResult>, String> {
    let stamps: Shared = Arc::default();
    let workers: Vec<_> = (0..args.workers)
        .map(|n| {
            tokio::spawn(receiver(
                channel.clone(),
                args.clone(),
                queue.to_owned(),
                n,
                Arc::clone(&stamps),
            ))
        })
        .collect();
    // Let the streams open and start waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut creates = Vec::with_capacity(args.latency_chunks);
    for n in 0..args.latency_chunks {
        ticks.tick().await;
        let mut client = Client::new(channel.clone());
        let request = authorized(
            CreateJobRequest {
                job_id: format!("{queue}-{n}"),
                queue: queue.to_owned(),
                chunks: vec![ChunkInput {
                    payload: payload(args, n),
                }],
                ..Default::default()
            },
            args,
        );
        let stamps = Arc::clone(&stamps);
        creates.push(tokio::spawn(async move {
            let job_id = request.get_ref().job_id.clone();
            lock(&stamps).called.insert(job_id.clone(), Instant::now());
            let created = client.create_job(request).await;
            lock(&stamps).returned.insert(job_id, Instant::now());
            created.map(|_| ()).map_err(|status| status.to_string())
        }));
    }
    for create in creates {
        create.await.map_err(|e| e.to_string())??;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while lock(&stamps).received.len() < args.latency_chunks && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for worker in &workers {
        worker.abort();
    }

    let stamps = lock(&stamps);
    let all_received = stamps.received.len() == args.latency_chunks;
    let mut from_call = Vec::new();
    let mut from_return = Vec::new();
    for (job_id, received) in &stamps.received {
        if let Some(called) = stamps.called.get(job_id) {
            from_call.push(received.saturating_duration_since(*called));
        }
        if let Some(returned) = stamps.returned.get(job_id) {
            from_return.push(received.saturating_duration_since(*returned));
        }
    }
    let variant = |from: &str| {
        format!(
            "{} chunks at {}/s, {} Work streams, from CreateJob {from}",
            args.latency_chunks, args.rate, args.workers
        )
    };
    Ok(vec![
        latency_result("e2e_c8", variant("call"), from_call, all_received),
        latency_result("e2e_return", variant("return"), from_return, all_received),
    ])
}

fn latency_result(tag: &str, variant: String, mut samples: Vec<Duration>, ok: bool) -> BenchResult {
    samples.sort_unstable();
    let percentile = |p: f64| -> Option<f64> {
        if samples.is_empty() {
            return None;
        }
        let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        Some(samples[index].as_secs_f64() * 1000.0)
    };
    BenchResult {
        kind: "e2e",
        tag: tag.into(),
        variant,
        jobs: samples.len(),
        rate: None,
        p50: percentile(0.50),
        p90: percentile(0.90),
        p99: percentile(0.99),
        max: percentile(1.0),
        ok,
    }
}

async fn receiver(
    channel: Channel,
    args: BenchArgs,
    queue: String,
    n: usize,
    stamps: Shared,
) -> Result<(), String> {
    let record = |chunks: &[LeasedChunk]| {
        let now = Instant::now();
        let mut stamps = lock(&stamps);
        for chunk in chunks {
            stamps.received.entry(chunk.job_id.clone()).or_insert(now);
        }
    };
    work_batched(
        channel,
        &args,
        queue,
        format!("bench-latency-{n}"),
        8,
        record,
        |_| {},
    )
    .await
}
