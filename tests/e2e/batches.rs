//! The batched fast paths: Work streams that take chunks and give acknowledgements in batches,
//! and CompleteChunks for pollers. Each chunk is still completed exactly once, and every item of
//! a batch gets its own outcome.

use std::collections::HashMap;

use retryd_client::tonic::Code;
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::work_request::Kind as Request;
use retryd_client::v1::work_response::Kind as Response;
use retryd_client::v1::*;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::server::ServerProcess;
use crate::support::{Engine, TestDb};

on_both_engines!(batched_streams_and_batch_completions_complete_once_each);

pub async fn batched_streams_and_batch_completions_complete_once_each(engine: Engine) {
    const CHUNKS: usize = 300;
    let db = TestDb::new(engine).await;
    let server = ServerProcess::start(&db.url, &[]);
    let mut client = ChunkQueueClient::new(server.channel().await);
    client
        .create_job(CreateJobRequest {
            job_id: "batched".into(),
            queue: "b".into(),
            chunks: (0..CHUNKS)
                .map(|i| ChunkInput {
                    payload: i.to_string().into_bytes(),
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut completed: HashMap<i64, u32> = HashMap::new();

    // Pollers: a claim of 100, completed in one call with a stale token and an unknown chunk mixed in.
    let claimed = client
        .claim_chunks(ClaimChunksRequest {
            queue: "b".into(),
            worker_id: "p".into(),
            max_chunks: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .chunks;
    assert_eq!(claimed.len(), 100);
    let mut completions: Vec<CompleteChunkRequest> = claimed
        .iter()
        .map(|c| CompleteChunkRequest {
            chunk_id: c.chunk_id,
            lease_token: c.lease_token.clone(),
            result: vec![],
        })
        .collect();
    completions.push(CompleteChunkRequest {
        chunk_id: claimed[0].chunk_id,
        lease_token: "stale".into(),
        result: vec![],
    });
    completions.push(CompleteChunkRequest {
        chunk_id: 0,
        lease_token: "t".into(),
        result: vec![],
    });
    let outcomes = client
        .complete_chunks(CompleteChunksRequest { completions })
        .await
        .unwrap()
        .into_inner()
        .outcomes;
    assert_eq!(outcomes.len(), 102, "one outcome per completion, in order");
    for outcome in &outcomes[..100] {
        assert_eq!(outcome.code, 0, "{}", outcome.message);
        *completed.entry(outcome.chunk_id).or_default() += 1;
    }
    assert_eq!(outcomes[100].code, Code::FailedPrecondition as i32);
    assert_eq!(outcomes[101].code, Code::InvalidArgument as i32);
    let too_many = (0..1001).map(|_| CompleteChunkRequest::default()).collect();
    let refused = client
        .complete_chunks(CompleteChunksRequest {
            completions: too_many,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    // A batched Work stream takes the rest.
    let (requests, outbox) = tokio::sync::mpsc::channel(16);
    let send = |kind| WorkRequest { kind: Some(kind) };
    let start = WorkStart {
        queue: "b".into(),
        worker_id: "s".into(),
        lease_seconds: 0,
        batch: true,
    };
    requests.send(send(Request::Start(start))).await.unwrap();
    requests
        .send(send(Request::Credit(WorkCredit { count: 64 })))
        .await
        .unwrap();
    let mut responses = client
        .work(ReceiverStream::new(outbox))
        .await
        .unwrap()
        .into_inner();
    while completed.len() < CHUNKS {
        match responses.message().await.unwrap().unwrap().kind.unwrap() {
            Response::Chunks(batch) => {
                assert!(!batch.chunks.is_empty() && batch.chunks.len() <= 64);
                let completions = batch
                    .chunks
                    .into_iter()
                    .map(|c| CompleteChunkRequest {
                        chunk_id: c.chunk_id,
                        lease_token: c.lease_token,
                        result: vec![],
                    })
                    .collect();
                requests
                    .send(send(Request::CompleteBatch(CompleteChunksRequest {
                        completions,
                    })))
                    .await
                    .unwrap();
            }
            Response::Acks(batch) => {
                for ack in &batch.acks {
                    assert_eq!(
                        (ack.code, ack.kind()),
                        (0, WorkAckKind::Complete),
                        "{}",
                        ack.message
                    );
                    *completed.entry(ack.chunk_id).or_default() += 1;
                }
                let count = batch.acks.len() as u32;
                requests
                    .send(send(Request::Credit(WorkCredit { count })))
                    .await
                    .unwrap();
            }
            other => panic!("a batched stream got {other:?}"),
        }
    }
    assert!(completed.values().all(|&n| n == 1));
    let job = client
        .get_job(GetJobRequest {
            job_id: "batched".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (job.status(), job.completed_chunks),
        (JobStatus::Completed, CHUNKS as u32)
    );
}
