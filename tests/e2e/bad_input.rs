//! Every class of bad input gets its precise status, and the data is the same afterwards.

use retryd_client::tonic::{Code, Status};
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::work_request::Kind as Request;
use retryd_client::v1::*;

use crate::support::server::{write_config, ServerProcess};
use crate::support::{Engine, TestDb};

fn expect(result: Result<impl std::fmt::Debug, Status>, code: Code, field: &str) {
    let status = result.expect_err("the call should be refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(field),
        "{:?} should name {field:?}",
        status.message()
    );
}

/// Everything a client can see of the data, to compare before and after refused calls.
async fn snapshot(
    client: &mut ChunkQueueClient<retryd_client::tonic::transport::Channel>,
) -> String {
    let jobs = client
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let chunks = client
        .list_chunks(ListChunksRequest {
            job_id: "good".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    format!("{jobs:?}\n{chunks:?}")
}

on_both_engines!(each_bad_input_gets_its_status_and_changes_nothing);

pub async fn each_bad_input_gets_its_status_and_changes_nothing(engine: Engine) {
    let db = TestDb::new(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[limits]\nmax_payload_bytes = 1024\nmax_chunks_per_job = 100\n",
    );
    let server = ServerProcess::start(&db.url, &["--config", config.to_str().unwrap()]);
    let mut client = ChunkQueueClient::new(server.channel().await);

    let chunk = |size: usize| ChunkInput {
        payload: vec![7; size],
    };
    let job = |job_id: &str, chunks: Vec<ChunkInput>| CreateJobRequest {
        job_id: job_id.into(),
        queue: "q".into(),
        chunks,
        ..Default::default()
    };
    client
        .create_job(job("good", vec![chunk(10), chunk(10)]))
        .await
        .unwrap();
    let leased = client
        .claim_chunks(ClaimChunksRequest {
            queue: "q".into(),
            worker_id: "w".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .chunks
        .remove(0);
    let before = snapshot(&mut client).await;

    // Missing or invalid fields.
    expect(
        client.create_job(job("empty", vec![])).await,
        Code::InvalidArgument,
        "chunks",
    );
    let mut bad_queue = job("bad-queue", vec![chunk(1)]);
    bad_queue.queue = "no spaces allowed".into();
    expect(
        client.create_job(bad_queue).await,
        Code::InvalidArgument,
        "queue",
    );
    let mut bad_attempts = job("bad-attempts", vec![chunk(1)]);
    bad_attempts.max_attempts = 1_000_000;
    expect(
        client.create_job(bad_attempts).await,
        Code::InvalidArgument,
        "max_attempts",
    );
    let mut bad_policy = job("bad-policy", vec![chunk(1)]);
    bad_policy.retry_policy = Some(RetryPolicy {
        multiplier: 0.5,
        ..Default::default()
    });
    expect(
        client.create_job(bad_policy).await,
        Code::InvalidArgument,
        "retry_policy.multiplier",
    );
    expect(
        client.create_job(job("x\u{7}", vec![chunk(1)])).await,
        Code::InvalidArgument,
        "job_id",
    );
    let claim = |worker_id: &str, max_chunks, wait_seconds| ClaimChunksRequest {
        queue: "q".into(),
        worker_id: worker_id.into(),
        max_chunks,
        wait_seconds,
        ..Default::default()
    };
    expect(
        client.claim_chunks(claim("", 1, 0)).await,
        Code::InvalidArgument,
        "worker_id",
    );
    expect(
        client.claim_chunks(claim("w", 1, 100_000)).await,
        Code::InvalidArgument,
        "wait_seconds",
    );
    let list = |status, page_size, page_token: &str| ListJobsRequest {
        status,
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    };
    expect(
        client.list_jobs(list(99, 0, "")).await,
        Code::InvalidArgument,
        "status",
    );
    expect(
        client.list_jobs(list(0, 1_000_000, "")).await,
        Code::InvalidArgument,
        "page_size",
    );
    expect(
        client.list_jobs(list(0, 0, "forged")).await,
        Code::InvalidArgument,
        "page_token",
    );
    expect(
        client
            .get_job(GetJobRequest {
                job_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "job_id",
    );
    let complete = |chunk_id, lease_token: &str, result: Vec<u8>| CompleteChunkRequest {
        chunk_id,
        lease_token: lease_token.into(),
        result,
    };
    expect(
        client.complete_chunk(complete(0, "t", vec![])).await,
        Code::InvalidArgument,
        "chunk_id",
    );
    expect(
        client
            .complete_chunk(complete(leased.chunk_id, "", vec![]))
            .await,
        Code::InvalidArgument,
        "lease_token",
    );

    // Past a limit.
    expect(
        client.create_job(job("huge", vec![chunk(1025)])).await,
        Code::ResourceExhausted,
        "chunks[0].payload",
    );
    expect(
        client.create_job(job("many", vec![chunk(1); 101])).await,
        Code::ResourceExhausted,
        "chunks",
    );
    expect(
        client.claim_chunks(claim("w", 100_000, 0)).await,
        Code::ResourceExhausted,
        "max_chunks",
    );
    expect(
        client
            .complete_chunk(complete(
                leased.chunk_id,
                &leased.lease_token,
                vec![0; 2000],
            ))
            .await,
        Code::ResourceExhausted,
        "result",
    );

    // Unknown objects.
    expect(
        client
            .get_job(GetJobRequest {
                job_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    expect(
        client
            .cancel_job(CancelJobRequest {
                job_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    expect(
        client
            .get_job_progress(GetJobProgressRequest {
                job_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    expect(
        client
            .watch_job(WatchJobRequest {
                job_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    expect(
        client.complete_chunk(complete(987_654, "t", vec![])).await,
        Code::NotFound,
        "987654",
    );

    // A lease token that is not current, and an idempotency key reused with other content.
    expect(
        client
            .complete_chunk(complete(leased.chunk_id, "stale", vec![]))
            .await,
        Code::FailedPrecondition,
        "lease token",
    );
    let fail = FailChunkRequest {
        chunk_id: leased.chunk_id,
        lease_token: "stale".into(),
        ..Default::default()
    };
    expect(
        client.fail_chunk(fail).await,
        Code::FailedPrecondition,
        "lease token",
    );
    let extend = ExtendLeaseRequest {
        chunk_id: leased.chunk_id,
        lease_token: "stale".into(),
        lease_seconds: 5,
    };
    expect(
        client.extend_lease(extend).await,
        Code::FailedPrecondition,
        "lease token",
    );
    expect(
        client.create_job(job("good", vec![chunk(10)])).await,
        Code::AlreadyExists,
        "good",
    );

    // A Work stream that does not start with `start` is ended with the reason.
    let opening = WorkRequest {
        kind: Some(Request::Credit(WorkCredit { count: 1 })),
    };
    let stream = tokio_stream::iter(vec![opening]);
    let mut responses = client.work(stream).await.unwrap().into_inner();
    expect(responses.message().await, Code::InvalidArgument, "start");

    assert_eq!(
        snapshot(&mut client).await,
        before,
        "refused calls changed nothing"
    );
    // The good job still works normally.
    client
        .complete_chunk(complete(leased.chunk_id, &leased.lease_token, vec![]))
        .await
        .unwrap();
}
