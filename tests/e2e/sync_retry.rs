//! SyncRetry end to end: the real binary, a sync worker built on the Rust client's helper, and
//! a local HTTP upstream per source: one that fails with 503 twice and then answers, one whose
//! second answer is an empty CSV, and one that answers 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use retryd_client::auth::ApiKey;
use retryd_client::sync_worker::{run_syncs, SyncOutcome, SyncWorkerOptions};
use retryd_client::tonic::service::interceptor::InterceptedService;
use retryd_client::tonic::transport::Channel;
use retryd_client::v1::health_client::HealthClient;
use retryd_client::v1::scheduler_client::SchedulerClient;
use retryd_client::v1::sync_retry_client::SyncRetryClient;
use retryd_client::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::server::{create_key, write_config, ServerProcess};
use crate::support::{Engine, TestDb};

on_both_engines!(syncs_recover_keep_good_data_and_stop_at_refusals);

type Client = SyncRetryClient<InterceptedService<Channel, ApiKey>>;

const FLAKY_CSV: &str = "id,name\n1,a\n2,b\n3,c\n";
const FIRST_CSV: &str = "id,name\n1,a\n2,b\n";

/// A scripted HTTP upstream: what each path answers to its n-th request.
#[derive(Clone, Default)]
struct Upstream {
    hits: Arc<Mutex<HashMap<String, u32>>>,
}

impl Upstream {
    fn answer(path: &str, hit: u32) -> (u16, &'static str, &'static str) {
        match (path, hit) {
            ("/flaky", 1 | 2) => (503, "Service Unavailable", ""),
            ("/flaky", _) => (200, "OK", FLAKY_CSV),
            ("/empty", 1) => (200, "OK", FIRST_CSV),
            ("/empty", _) => (200, "OK", "id,name\n"),
            ("/denied", _) => (401, "Unauthorized", ""),
            _ => (404, "Not Found", ""),
        }
    }

    fn hits(&self, path: &str) -> u32 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Serves on a free port until the test ends; returns the address.
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let hits = Arc::clone(&self.hits);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let hits = Arc::clone(&hits);
                tokio::spawn(async move {
                    let request = read_head(&mut stream).await;
                    let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
                    let hit = {
                        let mut hits = hits.lock().unwrap();
                        let count = hits.entry(path.clone()).or_insert(0);
                        *count += 1;
                        *count
                    };
                    let (code, reason, body) = Upstream::answer(&path, hit);
                    let response = format!(
                        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        address
    }
}

/// Reads an HTTP request or response head (up to the blank line).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The sync worker's work: GET the source's URL (its config); a CSV's items are its rows
/// after the header.
async fn fetch(task: LeasedSyncTask) -> SyncOutcome {
    let rest = task.config.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = match TcpStream::connect(host).await {
        Ok(stream) => stream,
        Err(err) => return SyncOutcome::failed(format!("connection failed: {err}")),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status_line = head.lines().next().unwrap();
    let status = status_line.split_once(' ').unwrap().1;
    if !status.starts_with("200") {
        return SyncOutcome::failed(format!("HTTP {status}"));
    }
    let items = body.lines().count().saturating_sub(1) as u64;
    SyncOutcome::Snapshot {
        data: body.as_bytes().to_vec(),
        item_count: items,
        content_type: "text/csv".into(),
        sha256: None,
    }
}

async fn register(client: &mut Client, data_type: &str, url: String, interval: u32) {
    client
        .register_source(RegisterSourceRequest {
            data_type: data_type.into(),
            sync_interval_seconds: interval,
            retry_policy: Some(SyncRetryPolicy {
                base_delay_ms: 200,
                multiplier: 2.0,
                max_retries: Some(3),
                max_delay_ms: 2_000,
            }),
            config: url,
        })
        .await
        .unwrap();
}

async fn health_of(client: &mut Client) -> HashMap<String, ConnectionHealth> {
    client
        .get_connection_health(GetConnectionHealthRequest::default())
        .await
        .unwrap()
        .into_inner()
        .connections
        .into_iter()
        .map(|health| (health.data_type.clone(), health))
        .collect()
}

async fn dataset(client: &mut Client, data_type: &str) -> (Snapshot, String) {
    let mut stream = client
        .get_dataset(GetDatasetRequest {
            data_type: data_type.into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut snapshot = None;
    let mut data = Vec::new();
    while let Some(part) = stream.message().await.unwrap() {
        match part.kind.unwrap() {
            dataset_part::Kind::Snapshot(first) => snapshot = Some(first),
            dataset_part::Kind::Data(bytes) => data.extend(bytes),
        }
    }
    (snapshot.unwrap(), String::from_utf8(data).unwrap())
}

async fn failure_logs(client: &mut Client, data_type: &str) -> Vec<FailureLog> {
    client
        .list_failure_logs(ListFailureLogsRequest {
            data_type: data_type.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .logs
}

async fn tasks_of(client: &mut Client, data_type: &str) -> Vec<SyncTask> {
    client
        .list_retry_queue(ListRetryQueueRequest {
            data_type: data_type.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks
}

pub async fn syncs_recover_keep_good_data_and_stop_at_refusals(engine: Engine) {
    let db = TestDb::new(engine).await;
    let admin = ApiKey::new(&create_key(&db.url, "admin")).unwrap();
    let worker_key = ApiKey::new(&create_key(&db.url, "worker")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The retry processor runs every second, so second-scale retry delays come due quickly.
    let config = write_config(
        dir.path(),
        "[scheduler]\ntick_ms = 100\n[scheduler.process_sync_retries]\ninterval_seconds = 1\n",
    );
    let server = ServerProcess::start(&db.url, &["--config", config.to_str().unwrap()]);
    let channel = server.channel().await;
    let mut client = SyncRetryClient::with_interceptor(channel.clone(), admin.clone());

    let upstream = Upstream::default();
    let base = format!("http://{}", upstream.start().await);
    register(&mut client, "flaky", format!("{base}/flaky"), 3600).await;
    // Synced every second: the second sync finds the empty CSV.
    register(&mut client, "empty", format!("{base}/empty"), 1).await;
    register(&mut client, "denied", format!("{base}/denied"), 3600).await;

    let mut options = SyncWorkerOptions::new("e2e-sync-worker");
    options.api_key = Some(worker_key);
    options.poll_every = Duration::from_millis(100);
    options.heartbeat_every = Duration::from_millis(500);
    options.lease_seconds = 30;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_syncs(channel.clone(), options, fetch, async {
        let _ = stopped.await;
    }));

    let settled = async {
        loop {
            let health = health_of(&mut client).await;
            let status = |name: &str| health.get(name).map(|h| h.status());
            if status("flaky") == Some(ConnectionStatus::Healthy)
                && status("empty") == Some(ConnectionStatus::Unhealthy)
                && status("denied") == Some(ConnectionStatus::Unhealthy)
            {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let health = tokio::time::timeout(Duration::from_secs(60), settled)
        .await
        .expect("every source settled");

    // 503 twice, then data: healthy with the new snapshot.
    let flaky = &health["flaky"];
    assert_eq!((flaky.item_count, flaky.consecutive_failures), (3, 0));
    let (snapshot, data) = dataset(&mut client, "flaky").await;
    assert_eq!(
        (snapshot.version, snapshot.item_count, data.as_str()),
        (1, 3, FLAKY_CSV)
    );
    let logs = failure_logs(&mut client, "flaky").await;
    assert_eq!(logs.len(), 2);
    assert!(logs
        .iter()
        .all(|log| log.recoverable && log.matched_rule == "5xx"));
    let flaky_tasks = tasks_of(&mut client, "flaky").await;
    assert_eq!(
        (flaky_tasks[0].status(), flaky_tasks[0].retry_count),
        (SyncTaskStatus::Completed, 2)
    );
    assert_eq!(upstream.hits("/flaky"), 3);

    // An empty CSV after good data: the good data stays, the connection is unhealthy.
    let empty = &health["empty"];
    assert_eq!(empty.item_count, 2);
    assert!(
        empty.error_message.contains("empty data"),
        "{}",
        empty.error_message
    );
    let (snapshot, data) = dataset(&mut client, "empty").await;
    assert_eq!((snapshot.version, data.as_str()), (1, FIRST_CSV));
    let rollback = failure_logs(&mut client, "empty").await.remove(0);
    assert_eq!(
        (
            rollback.rolled_back_to_version,
            rollback.matched_rule.as_str(),
            rollback.recoverable
        ),
        (1, "empty data", false)
    );

    // 401: not recoverable, never retried.
    let denied = failure_logs(&mut client, "denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(
        (denied[0].recoverable, denied[0].matched_rule.as_str()),
        (false, "unauthorized")
    );
    let failed_at = denied[0].created_at.unwrap();
    // Proof that retries had their chance: two retry processor runs after the failure.
    let mut scheduler = SchedulerClient::with_interceptor(channel.clone(), admin.clone());
    let two_runs_later = async {
        loop {
            let runs = scheduler
                .list_task_runs(ListTaskRunsRequest {
                    task: "process_sync_retries".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .runs;
            let after = runs
                .iter()
                .filter(|run| {
                    let started = run.started_at.unwrap();
                    (started.seconds, started.nanos) > (failed_at.seconds, failed_at.nanos)
                        && run.finished_at.is_some()
                })
                .count();
            if after >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), two_runs_later)
        .await
        .expect("the retry processor kept running");
    assert_eq!(upstream.hits("/denied"), 1, "not retried");
    let denied_tasks = tasks_of(&mut client, "denied").await;
    assert_eq!(denied_tasks.len(), 1);
    assert_eq!(
        (denied_tasks[0].status(), denied_tasks[0].retry_count),
        (SyncTaskStatus::Failed, 0)
    );

    // The system health shows every connection.
    let system = HealthClient::with_interceptor(channel.clone(), admin)
        .get_system_health(GetSystemHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<&str> = system
        .connections
        .iter()
        .map(|c| c.data_type.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["denied", "empty", "flaky"]);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker stopped cleanly")
        .unwrap()
        .unwrap();
}
