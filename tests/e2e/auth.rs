//! API keys: with a key in the database every call needs one, and the key's role decides what it
//! may do. Refused calls change nothing.

use retryd_client::tonic::metadata::MetadataValue;
use retryd_client::tonic::transport::Channel;
use retryd_client::tonic::{Code, Request};
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::*;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::server::{create_key, ServerProcess};
use crate::support::{Engine, TestDb};

fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        let value = MetadataValue::try_from(format!("Bearer {key}")).unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn new_job(job_id: &str) -> CreateJobRequest {
    CreateJobRequest {
        job_id: job_id.into(),
        chunks: vec![ChunkInput {
            payload: b"x".to_vec(),
        }],
        ..Default::default()
    }
}

async fn code_of<T>(
    call: impl std::future::Future<Output = Result<T, retryd_client::tonic::Status>>,
) -> Code {
    match call.await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

on_both_engines!(keys_and_roles_gate_every_call);

pub async fn keys_and_roles_gate_every_call(engine: Engine) {
    let db = TestDb::new(engine).await;
    let admin = create_key(&db.url, "admin");
    let service = create_key(&db.url, "service");
    let worker = create_key(&db.url, "worker");
    let reader = create_key(&db.url, "reader");
    let server = ServerProcess::start(&db.url, &[]);
    let channel: Channel = server.channel().await;
    let mut client = ChunkQueueClient::new(channel.clone());

    // The standard health check needs no key, so probes keep working.
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, 1, "SERVING");

    // No key, a malformed key, and a forged secret for a real key id.
    assert_eq!(
        code_of(client.create_job(with_key(new_job("a"), None))).await,
        Code::Unauthenticated
    );
    assert_eq!(
        code_of(client.create_job(with_key(new_job("a"), Some("garbage")))).await,
        Code::Unauthenticated
    );
    let key_id = admin.split('_').nth(1).unwrap();
    let forged = format!("rtd_{key_id}_{}", "0".repeat(64));
    assert_eq!(
        code_of(client.create_job(with_key(new_job("a"), Some(&forged)))).await,
        Code::Unauthenticated
    );
    let mut system = retryd_client::v1::health_client::HealthClient::new(channel.clone());
    assert_eq!(
        code_of(system.get_system_health(with_key(GetSystemHealthRequest {}, None))).await,
        Code::Unauthenticated
    );

    // Roles that may not do the call.
    assert_eq!(
        code_of(client.create_job(with_key(new_job("a"), Some(&reader)))).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(client.create_job(with_key(new_job("a"), Some(&worker)))).await,
        Code::PermissionDenied
    );
    let claim = || ClaimChunksRequest {
        worker_id: "w".into(),
        ..Default::default()
    };
    assert_eq!(
        code_of(client.claim_chunks(with_key(claim(), Some(&reader)))).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(client.claim_chunks(with_key(claim(), Some(&service)))).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(
            client.recover_stuck_chunks(with_key(RecoverStuckChunksRequest {}, Some(&service)))
        )
        .await,
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(client.list_jobs(with_key(ListJobsRequest::default(), Some(&worker)))).await,
        Code::PermissionDenied
    );

    // None of the refused calls created anything.
    let jobs = client
        .list_jobs(with_key(ListJobsRequest::default(), Some(&reader)))
        .await
        .unwrap();
    assert!(jobs.into_inner().jobs.is_empty());

    // Roles that may.
    client
        .create_job(with_key(new_job("a"), Some(&service)))
        .await
        .unwrap();
    let leased = client
        .claim_chunks(with_key(claim(), Some(&worker)))
        .await
        .unwrap()
        .into_inner()
        .chunks;
    assert_eq!(leased.len(), 1);
    client
        .get_job(with_key(
            GetJobRequest { job_id: "a".into() },
            Some(&reader),
        ))
        .await
        .unwrap();
    system
        .get_system_health(with_key(GetSystemHealthRequest {}, Some(&reader)))
        .await
        .unwrap();
    client
        .recover_stuck_chunks(with_key(RecoverStuckChunksRequest {}, Some(&admin)))
        .await
        .unwrap();
    client
        .create_job(with_key(new_job("b"), Some(&admin)))
        .await
        .unwrap();
    let jobs = client
        .list_jobs(with_key(ListJobsRequest::default(), Some(&admin)))
        .await
        .unwrap();
    assert_eq!(jobs.into_inner().jobs.len(), 2);
}

/// Without a key the server refuses to listen beyond loopback unless told it is fine.
#[tokio::test]
async fn no_key_means_loopback_only_unless_insecure_is_asked_for() {
    let db = TestDb::sqlite();
    let refused = ServerProcess::try_start(&db.url, &["--listen", "0.0.0.0:0"])
        .err()
        .expect("the server must refuse to start");
    assert!(refused.contains("refusing to listen"), "{refused}");

    let insecure = ServerProcess::start(&db.url, &["--listen", "0.0.0.0:0", "--insecure-no-auth"]);
    drop(insecure);

    create_key(&db.url, "admin");
    let with_key = ServerProcess::start(&db.url, &["--listen", "0.0.0.0:0"]);
    drop(with_key);
}
