//! Several replicas on one Postgres, and crashes: real `retryd` server and worker processes,
//! short configured intervals (the scheduler ticks every 100 ms, stuck chunks are recovered every
//! second), and no test sleeping for minutes.

#[path = "../support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use retryd_client::tonic::transport::Channel;
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::scheduler_client::SchedulerClient;
use retryd_client::v1::*;
use support::server::{write_config, ServerProcess};
use support::workers::{assert_each_completed_at_most_once, WorkerProcess};
use support::TestDb;

const FAST_CONFIG: &str = "\
claim_fallback_poll_ms = 500
watch_fallback_poll_ms = 500
health_check_interval_ms = 200
database_acquire_timeout_ms = 2000
shutdown_grace_seconds = 2
[scheduler]
tick_ms = 100
[scheduler.recover_stuck_chunks]
interval_seconds = 1
[scheduler.prune_finished_jobs]
interval_seconds = 1
";

struct Cluster {
    _dir: tempfile::TempDir,
    config: String,
    servers: Vec<ServerProcess>,
}

impl Cluster {
    fn start(db: &TestDb, replicas: usize, extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &format!("{extra_config}\n{FAST_CONFIG}"));
        let config = config.to_str().unwrap().to_owned();
        let servers = (0..replicas)
            .map(|_| ServerProcess::start(&db.url, &["--config", &config]))
            .collect();
        Self {
            _dir: dir,
            config,
            servers,
        }
    }

    /// Starts one more replica, on a given address when set.
    fn start_replica(&mut self, db: &TestDb, listen: Option<&str>) {
        let mut args = vec!["--config", self.config.as_str()];
        if let Some(listen) = listen {
            args.extend(["--listen", listen]);
        }
        self.servers.push(ServerProcess::start(&db.url, &args));
    }
}

async fn queue_client(server: &ServerProcess) -> ChunkQueueClient<Channel> {
    ChunkQueueClient::new(server.channel().await)
}

/// Creates `jobs` jobs of `chunks` chunks each, spread over the servers.
async fn create_jobs(
    servers: &[ServerProcess],
    queue: &str,
    jobs: usize,
    chunks: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..jobs {
        let mut client = queue_client(&servers[n % servers.len()]).await;
        let job = client
            .create_job(CreateJobRequest {
                job_id: format!("{queue}-{n}"),
                queue: queue.into(),
                chunks: (0..chunks)
                    .map(|i| ChunkInput {
                        payload: i.to_string().into_bytes(),
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(job.job_id);
    }
    ids
}

/// Waits until every job is completed, asking `server`; answers that fail (a replica or the
/// database being restarted) are retried. The deadline only keeps a broken build from hanging.
async fn wait_for_completion(server: &ServerProcess, job_ids: &[String], deadline: Duration) {
    let started = Instant::now();
    let mut client = queue_client(server).await;
    let mut pending: HashSet<&String> = job_ids.iter().collect();
    while !pending.is_empty() {
        assert!(started.elapsed() < deadline, "jobs still open: {pending:?}");
        let mut done = Vec::new();
        for job_id in &pending {
            if let Ok(job) = client
                .get_job(GetJobRequest {
                    job_id: (*job_id).clone(),
                })
                .await
            {
                assert!(
                    matches!(
                        job.get_ref().status(),
                        JobStatus::Pending | JobStatus::Processing | JobStatus::Completed
                    ),
                    "{job:?}"
                );
                if job.get_ref().status() == JobStatus::Completed {
                    done.push(*job_id);
                }
            }
        }
        for job_id in done {
            pending.remove(job_id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every job's chunks are all completed, and the job counted each once.
async fn assert_jobs_exact(server: &ServerProcess, job_ids: &[String], chunks: u32) {
    let mut client = queue_client(server).await;
    for job_id in job_ids {
        let progress = client
            .get_job_progress(GetJobProgressRequest {
                job_id: job_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (progress.total, progress.completed, progress.failed),
            (chunks, chunks, 0),
            "{job_id}"
        );
        let job = client
            .get_job(GetJobRequest {
                job_id: job_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            job.completed_chunks, chunks,
            "{job_id}: completions counted once"
        );
    }
}

async fn all_task_runs(server: &ServerProcess) -> Vec<TaskRun> {
    let mut client = SchedulerClient::new(server.channel().await);
    let mut runs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_task_runs(ListTaskRunsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        runs.extend(page.runs);
        if page.next_page_token.is_empty() {
            return runs;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_the_work_and_the_schedule() {
    const JOBS: usize = 20;
    const CHUNKS: usize = 1_000;
    let db = TestDb::postgres().await;
    let cluster = Cluster::start(&db, 3, "");
    let job_ids = create_jobs(&cluster.servers, "shared", JOBS, CHUNKS).await;
    let workers: Vec<WorkerProcess> = (0..6)
        .map(|n| {
            let server = &cluster.servers[n % 3];
            let mode = if n < 3 { "stream" } else { "poll" };
            WorkerProcess::start(&server.url(), "shared", mode, &["--concurrency", "16"])
        })
        .collect();

    wait_for_completion(&cluster.servers[0], &job_ids, Duration::from_secs(600)).await;
    // Let the last acknowledgements reach the workers' output.
    let started = Instant::now();
    while assert_each_completed_at_most_once(&workers) < JOBS * CHUNKS
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(assert_each_completed_at_most_once(&workers), JOBS * CHUNKS);
    assert!(
        workers.iter().all(|worker| !worker.completed().is_empty()),
        "every worker took part"
    );
    assert_jobs_exact(&cluster.servers[1], &job_ids, CHUNKS as u32).await;

    // Each scheduled task ran once per tick, on one replica, and the replicas agreed on a leader.
    let runs = all_task_runs(&cluster.servers[2]).await;
    let mut per_slot: HashMap<(String, i64), u32> = HashMap::new();
    for run in runs
        .iter()
        .filter(|run| run.kind() == TaskRunKind::Schedule)
    {
        *per_slot.entry((run.task.clone(), run.slot)).or_default() += 1;
        assert_eq!(run.outcome(), TaskRunOutcome::Ok, "{run:?}");
    }
    assert!(
        per_slot.values().all(|&n| n == 1),
        "a slot ran twice: {per_slot:?}"
    );
    for task in ["recover_stuck_chunks", "prune_finished_jobs"] {
        let ticks = per_slot.keys().filter(|(name, _)| name == task).count();
        assert!(ticks >= 2, "{task} ran on {ticks} ticks");
    }
    let runners: HashSet<&str> = runs.iter().map(|run| run.replica_id.as_str()).collect();
    assert_eq!(runners.len(), 1, "one leader ran everything: {runners:?}");
    let mut leaders = 0;
    for server in &cluster.servers {
        let tasks = SchedulerClient::new(server.channel().await)
            .list_tasks(ListTasksRequest {})
            .await
            .unwrap()
            .into_inner();
        leaders += usize::from(tasks.leader);
    }
    assert_eq!(leaders, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_hands_the_schedule_to_another_replica() {
    let db = TestDb::postgres().await;
    let mut cluster = Cluster::start(&db, 3, "");
    // Find the leader once it has run something.
    let started = Instant::now();
    let leader_id = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no leader emerged"
        );
        if let Some(run) = all_task_runs(&cluster.servers[0]).await.first() {
            break run.replica_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut leader_index = None;
    for (index, server) in cluster.servers.iter().enumerate() {
        let tasks = SchedulerClient::new(server.channel().await)
            .list_tasks(ListTasksRequest {})
            .await
            .unwrap()
            .into_inner();
        if tasks.replica_id == leader_id {
            assert!(tasks.leader);
            leader_index = Some(index);
        }
    }
    let mut leader = cluster
        .servers
        .remove(leader_index.expect("the leader is one of ours"));
    leader.signal("KILL");
    leader.wait_for_exit(Duration::from_secs(10));
    let killed_at = Instant::now();

    let survivor = &cluster.servers[0];
    let new_leader = loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "nobody took over"
        );
        let runs = all_task_runs(survivor).await;
        if let Some(run) = runs.iter().find(|run| run.replica_id != leader_id) {
            break run.replica_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(new_leader, leader_id);
    let runs = all_task_runs(survivor).await;
    let mut per_slot: HashMap<(String, i64), u32> = HashMap::new();
    for run in runs
        .iter()
        .filter(|run| run.kind() == TaskRunKind::Schedule)
    {
        *per_slot.entry((run.task.clone(), run.slot)).or_default() += 1;
    }
    assert!(
        per_slot.values().all(|&n| n == 1),
        "no slot ran twice across the hand-over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_while_holding_leases_loses_nothing() {
    const CHUNKS: usize = 3_000;
    let db = TestDb::postgres().await;
    let cluster = Cluster::start(&db, 1, "");
    let server = &cluster.servers[0];
    let job_ids = create_jobs(&cluster.servers, "crashy", 1, CHUNKS).await;
    // Slow workers, so the victim holds leases when it dies: one polls (its leases expire and
    // are recovered), one streams (its leases are released when the stream breaks).
    let slow = [
        "--concurrency",
        "8",
        "--work-ms",
        "20",
        "--lease-seconds",
        "2",
    ];
    let mut victims = vec![
        WorkerProcess::start(&server.url(), "crashy", "poll", &slow),
        WorkerProcess::start(&server.url(), "crashy", "stream", &slow),
    ];
    let survivors = [
        WorkerProcess::start(&server.url(), "crashy", "poll", &["--lease-seconds", "2"]),
        WorkerProcess::start(&server.url(), "crashy", "stream", &["--lease-seconds", "2"]),
    ];
    let started = Instant::now();
    while victims.iter().any(|victim| victim.completed().len() < 20) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the victims never got going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for victim in &mut victims {
        victim.kill();
    }

    wait_for_completion(server, &job_ids, Duration::from_secs(300)).await;
    assert_jobs_exact(server, &job_ids, CHUNKS as u32).await;
    let mut everyone = victims;
    everyone.extend(survivors);
    let reported = assert_each_completed_at_most_once(&everyone);
    // A completion accepted just before a kill may not have been printed by the victim.
    assert!(reported >= CHUNKS - 16, "{reported} completions reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_load_and_restarted_loses_nothing() {
    const CHUNKS: usize = 5_000;
    let db = TestDb::postgres().await;
    let mut cluster = Cluster::start(&db, 1, "");
    let address = cluster.servers[0].address.clone();
    let url = cluster.servers[0].url();
    let job_ids = create_jobs(&cluster.servers, "restarted", 1, CHUNKS).await;
    let flags = [
        "--concurrency",
        "8",
        "--work-ms",
        "2",
        "--lease-seconds",
        "2",
    ];
    let workers = [
        WorkerProcess::start(&url, "restarted", "stream", &flags),
        WorkerProcess::start(&url, "restarted", "poll", &flags),
    ];
    let started = Instant::now();
    while assert_each_completed_at_most_once(&workers) < 500 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress before the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut killed = cluster.servers.remove(0);
    killed.signal("KILL");
    killed.wait_for_exit(Duration::from_secs(10));
    let done_before = assert_each_completed_at_most_once(&workers);
    assert!(done_before < CHUNKS, "the kill came mid-load");

    cluster.start_replica(&db, Some(&address));
    wait_for_completion(&cluster.servers[0], &job_ids, Duration::from_secs(300)).await;
    assert_jobs_exact(&cluster.servers[0], &job_ids, CHUNKS as u32).await;
    let reported = assert_each_completed_at_most_once(&workers);
    assert!(
        reported > done_before,
        "the workers carried on with the restarted server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_on_one_replica_sees_completions_made_on_another() {
    let db = TestDb::postgres().await;
    // Fallback polls of an hour: only notifications can carry the change across.
    let cluster = Cluster::start(&db, 2, "");
    let dir = tempfile::tempdir().unwrap();
    let slow_poll = write_config(
        dir.path(),
        "claim_fallback_poll_ms = 3600000\nwatch_fallback_poll_ms = 3600000\n",
    );
    let watcher_side = ServerProcess::start(&db.url, &["--config", slow_poll.to_str().unwrap()]);
    let worker_side = &cluster.servers[0];
    let job_ids = create_jobs(std::slice::from_ref(worker_side), "watched", 1, 2).await;

    let mut watch = queue_client(&watcher_side)
        .await
        .watch_job(WatchJobRequest {
            job_id: job_ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.completed, 0);

    // A long poll on the watcher's replica is woken by work created on the other one.
    let mut waiting = queue_client(&watcher_side).await;
    let long_poll = tokio::spawn(async move {
        waiting
            .claim_chunks(ClaimChunksRequest {
                queue: "late".into(),
                worker_id: "w".into(),
                wait_seconds: 60,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    });

    let mut client = queue_client(worker_side).await;
    let leased = client
        .claim_chunks(ClaimChunksRequest {
            queue: "watched".into(),
            worker_id: "w".into(),
            max_chunks: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .chunks;
    for chunk in leased {
        client
            .complete_chunk(CompleteChunkRequest {
                chunk_id: chunk.chunk_id,
                lease_token: chunk.lease_token,
                result: vec![],
            })
            .await
            .unwrap();
    }
    let deadline = Duration::from_secs(30);
    let mut last = first;
    while last.overall_status() != JobStatus::Completed {
        last = tokio::time::timeout(deadline, watch.message())
            .await
            .expect("the change arrived")
            .unwrap()
            .unwrap();
    }
    assert_eq!((last.completed, last.progress_percentage), (2, 100.0));

    create_jobs(std::slice::from_ref(worker_side), "late", 1, 1).await;
    let claimed = tokio::time::timeout(deadline, long_poll)
        .await
        .expect("woken across replicas")
        .unwrap();
    assert_eq!(claimed.chunks.len(), 1);
}
