//! The Rust client's worker helper against the real server: a function per chunk, with retryable
//! and final failures, an API key, and a clean stop once the job is done.

use std::time::Duration;

use retryd_client::auth::ApiKey;
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::*;
use retryd_client::worker::{run_chunks, Outcome, WorkerOptions};

use crate::support::server::{create_key, ServerProcess};
use crate::support::{Engine, TestDb};

on_both_engines!(the_worker_helper_runs_a_function_per_chunk);

pub async fn the_worker_helper_runs_a_function_per_chunk(engine: Engine) {
    let db = TestDb::new(engine).await;
    let admin = ApiKey::new(&create_key(&db.url, "admin")).unwrap();
    let worker_key = ApiKey::new(&create_key(&db.url, "worker")).unwrap();
    let server = ServerProcess::start(&db.url, &[]);
    let channel = server.channel().await;
    let mut client = ChunkQueueClient::with_interceptor(channel.clone(), admin);
    client
        .create_job(CreateJobRequest {
            job_id: "helped".into(),
            queue: "helper".into(),
            chunks: (0..40).map(|i| ChunkInput { payload: vec![i] }).collect(),
            retry_policy: Some(RetryPolicy {
                initial_backoff_ms: 10,
                multiplier: 2.0,
                max_backoff_ms: 50,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watch = client
        .watch_job(WatchJobRequest {
            job_id: "helped".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let mut options = WorkerOptions::new("helper", "helper-1");
    options.concurrency = 4;
    options.api_key = Some(worker_key);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_chunks(
        channel.clone(),
        options,
        |chunk| async move {
            match (chunk.payload[0], chunk.attempt) {
                (7, _) => Outcome::Fail("bad input".into()),
                (3, 1) => Outcome::Retry("flaky".into()),
                (n, _) => Outcome::Complete(vec![n * 2]),
            }
        },
        async {
            let _ = stopped.await;
        },
    ));

    let finished = async {
        loop {
            let progress = watch.message().await.unwrap().unwrap();
            if progress.overall_status() != JobStatus::Processing
                && progress.overall_status() != JobStatus::Pending
            {
                return progress;
            }
        }
    };
    let last = tokio::time::timeout(Duration::from_secs(60), finished)
        .await
        .expect("the job finished");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker stopped cleanly")
        .unwrap()
        .unwrap();

    assert_eq!(last.overall_status(), JobStatus::PartialFailure);
    assert_eq!((last.completed, last.failed), (39, 1));
    let chunks = client
        .list_chunks(ListChunksRequest {
            job_id: "helped".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .chunks;
    assert_eq!(
        (chunks[3].attempts, chunks[3].status()),
        (2, ChunkStatus::Completed),
        "retried once"
    );
    assert_eq!(
        (chunks[7].last_error.as_str(), chunks[7].status()),
        ("bad input", ChunkStatus::Failed)
    );
    assert_eq!(chunks[5].result, vec![10], "the function's result is kept");
}

/// A chunk that takes longer than its lease keeps it with heartbeats: the recovery task (every
/// second here) does not take it away, and the first attempt completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_keep_a_long_chunk_leased() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::server::write_config(
        dir.path(),
        "[scheduler]\ntick_ms = 100\n[scheduler.recover_stuck_chunks]\ninterval_seconds = 1\n",
    );
    let server = ServerProcess::start(&db.url, &["--config", config.to_str().unwrap()]);
    let channel = server.channel().await;
    let mut client = ChunkQueueClient::new(channel.clone());
    client
        .create_job(CreateJobRequest {
            job_id: "long".into(),
            queue: "slow".into(),
            chunks: vec![ChunkInput { payload: vec![1] }],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut options = WorkerOptions::new("slow", "patient");
    options.lease_seconds = 1;
    options.heartbeat_every = Duration::from_millis(200);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_chunks(
        channel,
        options,
        |_| async {
            // Three times the lease, across at least two recovery runs.
            tokio::time::sleep(Duration::from_millis(3_000)).await;
            Outcome::Complete(Vec::new())
        },
        async {
            let _ = stopped.await;
        },
    ));
    let mut watch = client
        .watch_job(WatchJobRequest {
            job_id: "long".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let finished = async {
        loop {
            if watch.message().await.unwrap().unwrap().overall_status() == JobStatus::Completed {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), finished)
        .await
        .expect("completed");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let chunk = client
        .list_chunks(ListChunksRequest {
            job_id: "long".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .chunks
        .remove(0);
    assert_eq!(chunk.attempts, 1, "the lease was never lost");
}
