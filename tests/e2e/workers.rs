//! Many workers, two ways of working, one job: every chunk is handed out once and completed once,
//! and WatchJob streams the progress up to 100%.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use retryd_client::tonic::transport::Channel;
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::work_request::Kind as Request;
use retryd_client::v1::work_response::Kind as Response;
use retryd_client::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::server::ServerProcess;
use crate::support::{Engine, TestDb};

const CHUNKS: usize = 1_000;
const QUEUE: &str = "e2e";

/// Per chunk: how often it was handed to a worker, and how often a completion was accepted.
#[derive(Default)]
struct Tally {
    deliveries: HashMap<i64, u32>,
    completions: HashMap<i64, u32>,
    by_streams: usize,
    by_pollers: usize,
}

type Shared = Arc<Mutex<Tally>>;

on_both_engines!(thousand_chunks_over_work_streams_and_pollers_complete_once_each);

pub async fn thousand_chunks_over_work_streams_and_pollers_complete_once_each(engine: Engine) {
    let db = TestDb::new(engine).await;
    let server = ServerProcess::start(&db.url, &[]);
    let channel = server.channel().await;
    let mut client = ChunkQueueClient::new(channel.clone());

    let chunks = (0..CHUNKS)
        .map(|i| ChunkInput {
            payload: format!("chunk {i}").into_bytes(),
        })
        .collect();
    let job = client
        .create_job(CreateJobRequest {
            job_id: "thousand".into(),
            queue: QUEUE.into(),
            chunks,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.total_chunks, CHUNKS as u32);

    let mut watch = client
        .watch_job(WatchJobRequest {
            job_id: job.job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(progress) = watch.message().await.unwrap() {
            seen.push(progress);
        }
        seen
    });

    let tally: Shared = Arc::default();
    let mut workers = Vec::new();
    for n in 0..4 {
        workers.push(tokio::spawn(work_stream(
            channel.clone(),
            format!("stream-{n}"),
            Arc::clone(&tally),
        )));
    }
    for n in 0..2 {
        workers.push(tokio::spawn(poller(
            channel.clone(),
            format!("poller-{n}"),
            Arc::clone(&tally),
        )));
    }

    // The watch ends when the job is final; the deadline only keeps a broken build from hanging.
    let seen = tokio::time::timeout(Duration::from_secs(300), watcher)
        .await
        .expect("the job finishes")
        .unwrap();
    // Acknowledgements may trail the final progress by a moment.
    let acknowledged = async {
        while tally.lock().unwrap().completions.len() < CHUNKS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), acknowledged)
        .await
        .expect("every completion acknowledged");
    for worker in &workers {
        worker.abort();
    }

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    assert_eq!(tally.completions.len(), CHUNKS);
    assert!(
        tally.completions.values().all(|&n| n == 1),
        "a chunk was completed twice"
    );
    assert!(
        tally.deliveries.values().all(|&n| n == 1),
        "a chunk was handed out twice"
    );
    assert_eq!(tally.by_streams + tally.by_pollers, CHUNKS);
    assert!(
        tally.by_streams > 0 && tally.by_pollers > 0,
        "both ways of working took part"
    );

    let last = seen.last().expect("progress was streamed");
    assert_eq!(last.overall_status(), JobStatus::Completed);
    assert_eq!(
        (last.completed, last.progress_percentage),
        (CHUNKS as u32, 100.0)
    );
    assert!(
        seen.len() >= 2,
        "progress was streamed as it changed, not only at the end"
    );
    assert!(
        seen.windows(2)
            .all(|pair| pair[0].progress_percentage <= pair[1].progress_percentage),
        "progress never goes backwards"
    );
    let finished = client
        .get_job(GetJobRequest { job_id: job.job_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (finished.status(), finished.completed_chunks),
        (JobStatus::Completed, CHUNKS as u32)
    );
}

async fn work_stream(channel: Channel, worker_id: String, tally: Shared) {
    let mut client = ChunkQueueClient::new(channel);
    let (requests, outbox) = mpsc::channel(64);
    let send = |kind| WorkRequest { kind: Some(kind) };
    requests
        .send(send(Request::Start(WorkStart {
            queue: QUEUE.into(),
            worker_id,
            lease_seconds: 60,
            batch: false,
        })))
        .await
        .unwrap();
    requests
        .send(send(Request::Credit(WorkCredit { count: 8 })))
        .await
        .unwrap();
    let mut responses = client
        .work(ReceiverStream::new(outbox))
        .await
        .unwrap()
        .into_inner();
    while let Some(response) = responses.message().await.unwrap() {
        match response.kind.unwrap() {
            Response::Chunk(chunk) => {
                *tally
                    .lock()
                    .unwrap()
                    .deliveries
                    .entry(chunk.chunk_id)
                    .or_default() += 1;
                let complete = CompleteChunkRequest {
                    chunk_id: chunk.chunk_id,
                    lease_token: chunk.lease_token,
                    result: chunk.payload,
                };
                requests
                    .send(send(Request::Complete(complete)))
                    .await
                    .unwrap();
            }
            Response::Ack(ack) => {
                assert_eq!(
                    (ack.code, ack.kind()),
                    (0, WorkAckKind::Complete),
                    "{}",
                    ack.message
                );
                {
                    let mut tally = tally.lock().unwrap();
                    *tally.completions.entry(ack.chunk_id).or_default() += 1;
                    tally.by_streams += 1;
                }
                requests
                    .send(send(Request::Credit(WorkCredit { count: 1 })))
                    .await
                    .unwrap();
            }
            other => panic!("a stream that did not ask for batches got {other:?}"),
        }
    }
}

async fn poller(channel: Channel, worker_id: String, tally: Shared) {
    let mut client = ChunkQueueClient::new(channel);
    loop {
        let claimed = client
            .claim_chunks(ClaimChunksRequest {
                queue: QUEUE.into(),
                worker_id: worker_id.clone(),
                max_chunks: 5,
                lease_seconds: 60,
                wait_seconds: 1,
            })
            .await
            .unwrap()
            .into_inner();
        for chunk in claimed.chunks {
            *tally
                .lock()
                .unwrap()
                .deliveries
                .entry(chunk.chunk_id)
                .or_default() += 1;
            client
                .complete_chunk(CompleteChunkRequest {
                    chunk_id: chunk.chunk_id,
                    lease_token: chunk.lease_token,
                    result: Vec::new(),
                })
                .await
                .unwrap();
            let mut tally = tally.lock().unwrap();
            *tally.completions.entry(chunk.chunk_id).or_default() += 1;
            tally.by_pollers += 1;
        }
    }
}
