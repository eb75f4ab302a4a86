//! Postgres itself is stopped and started again while retryd runs under load. This stops the
//! whole Postgres server, so it is a test binary of its own: `cargo test` runs test binaries one
//! after another, so no other test is using Postgres meanwhile.

#[path = "../support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use retryd_client::tonic::Code;
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::*;
use support::server::{write_config, ServerProcess};
use support::workers::{assert_each_completed_at_most_once, WorkerProcess};
use support::TestDb;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn pg_ctl(action: &str) {
    let versions = std::fs::read_dir("/etc/postgresql").expect("a Debian PostgreSQL install");
    let version = versions
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .max()
        .expect("a PostgreSQL version");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

/// Starts Postgres again even if the test fails half-way, so later tests find it running.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let running = Command::new("pg_isready")
            .args(["-h", "127.0.0.1", "-q"])
            .status();
        if !matches!(running, Ok(status) if status.success()) {
            pg_ctl("start");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_is_survived_with_exact_counts() {
    const CHUNKS: usize = 5_000;
    let _restart_guard = RestartOnDrop;
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "health_check_interval_ms = 100\ndatabase_acquire_timeout_ms = 500\nclaim_fallback_poll_ms = 500\n\
         [scheduler]\ntick_ms = 100\n[scheduler.recover_stuck_chunks]\ninterval_seconds = 1\n",
    );
    let server = ServerProcess::start(&db.url, &["--config", config.to_str().unwrap()]);
    let channel = server.channel().await;
    let mut client = ChunkQueueClient::new(channel.clone());
    client
        .create_job(CreateJobRequest {
            job_id: "survivor".into(),
            queue: "restart".into(),
            chunks: (0..CHUNKS)
                .map(|i| ChunkInput {
                    payload: i.to_string().into_bytes(),
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let flags = [
        "--concurrency",
        "8",
        "--work-ms",
        "2",
        "--lease-seconds",
        "2",
    ];
    let workers = [
        WorkerProcess::start(&server.url(), "restart", "stream", &flags),
        WorkerProcess::start(&server.url(), "restart", "poll", &flags),
    ];

    // A client that keeps asking, and remembers every answer's code.
    let codes = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (codes, stop, mut client) = (Arc::clone(&codes), Arc::clone(&stop), client.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let code = match client
                    .get_job_progress(GetJobProgressRequest {
                        job_id: "survivor".into(),
                    })
                    .await
                {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                };
                codes.lock().unwrap().push(code);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let started = Instant::now();
    while assert_each_completed_at_most_once(&workers) < 500 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress before the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pg_ctl("stop");
    // Down: calls fail with UNAVAILABLE and the standard health check says NOT_SERVING.
    let mut health = HealthClient::new(channel.clone());
    let stopped_at = Instant::now();
    loop {
        assert!(
            stopped_at.elapsed() < Duration::from_secs(30),
            "the outage was never reported"
        );
        let saw_unavailable = codes.lock().unwrap().contains(&Code::Unavailable);
        let check = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        if saw_unavailable && check.into_inner().status == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done_during_outage = assert_each_completed_at_most_once(&workers);
    pg_ctl("start");

    // Back with no manual step: SERVING again, and the work finishes.
    let restarted_at = Instant::now();
    loop {
        assert!(
            restarted_at.elapsed() < Duration::from_secs(60),
            "never served again"
        );
        let check = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        if check.into_inner().status == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        assert!(
            restarted_at.elapsed() < Duration::from_secs(300),
            "the job never finished"
        );
        if let Ok(job) = client
            .get_job(GetJobRequest {
                job_id: "survivor".into(),
            })
            .await
        {
            if job.into_inner().status() == JobStatus::Completed {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    prober.await.unwrap();

    let progress = client
        .get_job_progress(GetJobProgressRequest {
            job_id: "survivor".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (progress.completed, progress.failed, progress.total),
        (CHUNKS as u32, 0, CHUNKS as u32)
    );
    let job = client
        .get_job(GetJobRequest {
            job_id: "survivor".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        job.completed_chunks, CHUNKS as u32,
        "every completion counted once"
    );
    assert!(
        assert_each_completed_at_most_once(&workers) > done_during_outage,
        "workers carried on"
    );
    let codes = codes.lock().unwrap();
    let unexpected: Vec<_> = codes
        .iter()
        .filter(|code| !matches!(code, Code::Ok | Code::Unavailable))
        .collect();
    assert!(
        unexpected.is_empty(),
        "calls failed with other codes than UNAVAILABLE: {unexpected:?}"
    );
}
