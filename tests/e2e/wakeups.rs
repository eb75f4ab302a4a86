//! Waiting workers are woken by new work, not by polling: with the fallback poll set far beyond
//! the wait, a claimer or stream only gets a chunk created after it started waiting if the
//! wake-up reached it.

use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::work_request::Kind as Request;
use retryd_client::v1::work_response::Kind as Response;
use retryd_client::v1::*;

use crate::support::server::{write_config, ServerProcess};
use crate::support::{Engine, TestDb};

on_both_engines!(new_work_wakes_waiting_claimers_and_streams);

pub async fn new_work_wakes_waiting_claimers_and_streams(engine: Engine) {
    let db = TestDb::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "claim_fallback_poll_ms = 3600000\n");
    let server = ServerProcess::start(&db.url, &["--config", config.to_str().unwrap()]);
    let channel = server.channel().await;
    let mut client = ChunkQueueClient::new(channel.clone());

    // A long poll that starts before any work exists.
    let mut claimer = ChunkQueueClient::new(channel.clone());
    let waiting_claim = tokio::spawn(async move {
        claimer
            .claim_chunks(ClaimChunksRequest {
                queue: "polled".into(),
                worker_id: "w".into(),
                wait_seconds: 60,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    });

    // A Work stream with credit, also before any work exists.
    let (requests, mut pushed) =
        crate::support::open_work_stream(&mut client, "pushed", "s", 1).await;

    // Let both reach their wait: the stream has checked for work once it answers a heartbeat.
    let heartbeat = ExtendLeaseRequest {
        chunk_id: 1,
        lease_token: "none".into(),
        lease_seconds: 0,
    };
    requests
        .send(WorkRequest {
            kind: Some(Request::Heartbeat(heartbeat)),
        })
        .await
        .unwrap();
    let Some(Response::Ack(ack)) = pushed.message().await.unwrap().unwrap().kind else {
        panic!("expected an ack")
    };
    assert_ne!(ack.code, 0, "no such lease");

    for queue in ["polled", "pushed"] {
        client
            .create_job(CreateJobRequest {
                job_id: format!("job-{queue}"),
                queue: queue.into(),
                chunks: vec![ChunkInput {
                    payload: queue.as_bytes().to_vec(),
                }],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // The deadlines only turn a missing wake-up into a failure instead of a hang.
    let deadline = std::time::Duration::from_secs(30);
    let claimed = tokio::time::timeout(deadline, waiting_claim)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(
        claimed.chunks.len(),
        1,
        "the long poll was woken by the new job"
    );
    assert_eq!(claimed.chunks[0].payload, b"polled");
    let next = tokio::time::timeout(deadline, pushed.message())
        .await
        .expect("woken");
    let Some(Response::Chunk(chunk)) = next.unwrap().unwrap().kind else {
        panic!("expected a pushed chunk")
    };
    assert_eq!(chunk.payload, b"pushed");
}
