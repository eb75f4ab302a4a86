//! What operators and other clients rely on beyond the service contracts: reflection, gRPC-Web
//! with CORS, health that follows the database, graceful shutdown, the CLI, and the README's
//! grpcurl walk-through.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use retryd_client::tonic::Code;
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::health_client::HealthClient as SystemHealthClient;
use retryd_client::v1::*;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::server::{write_config, ServerProcess, BINARY};
use crate::support::TestDb;

const SERVICES: &[&str] = &[
    "retryd.v1.ChunkQueue",
    "retryd.v1.Health",
    "grpc.health.v1.Health",
];

/// The services a reflection version lists: the two versions are the same protocol in two
/// generated modules.
macro_rules! listed_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let request = tonic_reflection::pb::$version::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut client =
            tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient::new(
                $channel,
            );
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            responses.message().await.unwrap().unwrap().message_response
        else {
            panic!("expected a service list")
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[tokio::test]
async fn reflection_lists_every_service_over_v1_and_v1alpha() {
    let db = TestDb::sqlite();
    let server = ServerProcess::start(&db.url, &[]);
    let channel = server.channel().await;
    let listed = [
        ("v1", listed_services!(v1, channel.clone())),
        ("v1alpha", listed_services!(v1alpha, channel)),
    ];
    for (version, names) in &listed {
        for service in SERVICES {
            assert!(
                names.iter().any(|name| name == service),
                "{version} lists {service}: {names:?}"
            );
        }
    }
}

/// One HTTP/1.1 exchange on a fresh connection; returns the whole response.
fn http1(address: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response
}

#[tokio::test]
async fn browsers_reach_the_server_through_grpc_web_with_cors() {
    let db = TestDb::sqlite();
    let server = ServerProcess::start(&db.url, &[]);

    let preflight = format!(
        "OPTIONS /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: {0}\r\nOrigin: http://app.example\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web,authorization\r\n\
         Connection: close\r\n\r\n",
        server.address
    );
    let response =
        String::from_utf8_lossy(&http1(&server.address, preflight.as_bytes())).to_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(
        response.contains("access-control-allow-origin: http://app.example"),
        "{response}"
    );
    assert!(response.contains("authorization"), "{response}");

    // An empty HealthCheckRequest in a gRPC-Web frame: flag 0, length 0.
    let body = [0u8, 0, 0, 0, 0];
    let mut call = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: {0}\r\nOrigin: http://app.example\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {1}\r\nConnection: close\r\n\r\n",
        server.address,
        body.len()
    )
    .into_bytes();
    call.extend_from_slice(&body);
    let response = http1(&server.address, &call);
    let text = String::from_utf8_lossy(&response).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("content-type: application/grpc-web+proto"),
        "{text}"
    );
    assert!(text.contains("access-control-expose-headers"), "{text}");
    // The message frame carries status SERVING (field 1 = 1), the trailer frame grpc-status 0.
    assert!(response.windows(2).any(|w| w == [0x08, 0x01]), "{text}");
    assert!(text.contains("grpc-status:0"), "{text}");
}

#[tokio::test]
async fn health_follows_the_database_and_recovers_with_it() {
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "health_check_interval_ms = 100\ndatabase_acquire_timeout_ms = 1000\n",
    );
    let server = ServerProcess::start(&db.url, &["--config", config.to_str().unwrap()]);
    let channel = server.channel().await;
    let mut standard = HealthClient::new(channel.clone());
    let mut updates = standard
        .watch(HealthCheckRequest {
            service: "retryd.v1.ChunkQueue".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut system = SystemHealthClient::new(channel.clone())
        .watch_system_health(WatchSystemHealthRequest {
            interval_seconds: 3600,
        })
        .await
        .unwrap()
        .into_inner();
    let first = system.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    assert!(first.database.as_ref().unwrap().reachable);
    assert_eq!(
        updates.message().await.unwrap().unwrap().status,
        1,
        "SERVING"
    );

    db.take_postgres_offline().await;
    // Both streams report the change by themselves: no polling by the test.
    let down = tokio::time::timeout(Duration::from_secs(30), updates.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(down.status, 2, "NOT_SERVING");
    let down = tokio::time::timeout(Duration::from_secs(30), system.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(down.status(), ServingStatus::NotServing);
    assert!(!down.database.unwrap().error.is_empty());
    let refused = ChunkQueueClient::new(channel.clone())
        .get_job(GetJobRequest { job_id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());

    db.bring_postgres_online().await;
    let up = tokio::time::timeout(Duration::from_secs(30), updates.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(up.status, 1, "SERVING again, with no manual step");
    let up = tokio::time::timeout(Duration::from_secs(30), system.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(up.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn sigterm_ends_streams_and_the_process_cleanly() {
    let db = TestDb::sqlite();
    let mut server = ServerProcess::start(&db.url, &[]);
    let mut client = ChunkQueueClient::new(server.channel().await);
    client
        .create_job(CreateJobRequest {
            job_id: "j".into(),
            chunks: vec![ChunkInput { payload: vec![1] }],
            ..Default::default()
        })
        .await
        .unwrap();
    // Held open: the stream must be ended by the server, not by the client leaving.
    let (_requests, mut responses) =
        crate::support::open_work_stream(&mut client, "", "w", 1).await;
    assert!(
        responses.message().await.unwrap().is_some(),
        "a chunk was pushed"
    );

    server.signal("TERM");
    let ended = responses
        .message()
        .await
        .expect_err("the stream ends with a status");
    assert_eq!(ended.code(), Code::Unavailable, "{}", ended.message());
    let status = server.wait_for_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");

    // The lease the stream held was released: a restarted server hands the chunk out again.
    let server = ServerProcess::start(&db.url, &[]);
    let mut client = ChunkQueueClient::new(server.channel().await);
    let claimed = client
        .claim_chunks(ClaimChunksRequest {
            worker_id: "w2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claimed.chunks.len(), 1);
    assert_eq!(claimed.chunks[0].attempt, 2);
}

#[test]
fn config_prints_the_layers_and_migrate_prepares_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "listen = \"127.0.0.1:7000\"\n[limits]\nmax_payload_bytes = 5\n",
    );
    let database = format!("sqlite://{}", dir.path().join("db/retryd.db").display());
    let output = Command::new(BINARY)
        .args(["config", "--config", config.to_str().unwrap()])
        .env("RETRYD_LISTEN", "127.0.0.1:7001")
        .env("RETRYD_DATABASE_URL", &database)
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        printed.contains("listen = \"127.0.0.1:7001\""),
        "env beats the file:\n{printed}"
    );
    assert!(
        printed.contains("max_payload_bytes = 5"),
        "the file beats defaults:\n{printed}"
    );
    assert!(printed.contains(&database), "{printed}");

    let output = Command::new(BINARY)
        .args([
            "migrate",
            "--database-url",
            &database,
            "--listen",
            "127.0.0.1:7002",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("db/retryd.db").exists());
}

/// Runs the README's bash block between `<!-- MARKER:start -->` and `<!-- MARKER:end -->`
/// against a fresh server, and checks that its output names every `expected` text.
fn run_readme_block(marker: &str, expected: &[&str]) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split(&format!("<!-- {marker}:start -->"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("<!-- {marker}:end -->")).next())
        .unwrap_or_else(|| panic!("the README marks its {marker}"));
    let script = section
        .trim()
        .strip_prefix("```bash")
        .and_then(|body| body.strip_suffix("```"))
        .unwrap_or_else(|| panic!("the {marker} is one bash block"));

    let db = TestDb::sqlite();
    let server = ServerProcess::start(&db.url, &[]);
    let output = Command::new("bash")
        .args(["-e", "-u", "-o", "pipefail", "-c", script])
        .env("ADDR", &server.address)
        .output()
        .expect("bash, grpcurl and jq are needed (see README)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{marker} failed:\n{stdout}\n{stderr}"
    );
    for expected in expected {
        assert!(
            stdout.contains(expected) || stderr.contains(expected),
            "missing {expected:?}:\n{stdout}\n{stderr}"
        );
    }
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_pasted() {
    run_readme_block(
        "walkthrough",
        &[
            "retryd.v1.ChunkQueue",
            "grpc.reflection.v1alpha.ServerReflection",
            "JOB_STATUS_PENDING",
            "leaseToken",
            "FailedPrecondition",
            "refused, as expected",
            "\"completed\": 1",
            "SMTP timeout",
            "SERVING",
            "JOB_STATUS_CANCELLED",
        ],
    );
}

#[tokio::test]
async fn the_readme_upload_walkthrough_runs_as_pasted() {
    run_readme_block(
        "upload-walkthrough",
        &[
            "UPLOAD_STATUS_PENDING",
            "UPLOAD_STATUS_RECEIVING 10",
            "FailedPrecondition",
            "continues at offset 10",
            "refused, as expected",
            "UPLOAD_STATUS_STORED",
            "hello from an offline client",
            "RETRY_OUTCOME_ALREADY_DONE",
            "\"source\":\"client-flush\",\"runs\":\"1\"",
        ],
    );
}

#[tokio::test]
async fn every_call_carries_a_request_id() {
    let db = TestDb::sqlite();
    let server = ServerProcess::start(&db.url, &[]);
    let mut client = ChunkQueueClient::new(server.channel().await);

    // A new id when the client sends none, also on refused calls.
    let answer = client.list_jobs(ListJobsRequest::default()).await.unwrap();
    let generated = answer
        .metadata()
        .get("x-request-id")
        .expect("a request id")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(generated.len() >= 32, "{generated}");
    let refused = client
        .get_job(GetJobRequest {
            job_id: "missing".into(),
        })
        .await
        .unwrap_err();
    let other = refused
        .metadata()
        .get("x-request-id")
        .expect("a request id on errors too");
    assert_ne!(other.to_str().unwrap(), generated, "each call has its own");

    // The client's own id is kept and returned.
    let mut request = retryd_client::tonic::Request::new(ListJobsRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let answer = client.list_jobs(request).await.unwrap();
    assert_eq!(
        answer.metadata().get("x-request-id").unwrap(),
        "trace-me-42"
    );
}
