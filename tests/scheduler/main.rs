//! The scheduler in process, on both engines, with a manual clock: no test waits for a tick.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use retryd::core::chunks::{ClaimRequest, NewJob};
use retryd::core::limits::Limits;
use retryd::core::retry::RetryPolicy;
use retryd::core::tasks::{RunKind, RunOutcome, TaskCounts};
use retryd::core::{Clock, Error, ManualClock, Result, Timestamp};
use retryd::events::Events;
use retryd::scheduler::tasks::RecoverStuckChunks;
use retryd::scheduler::{ScheduledTask, Scheduler, Task};
use retryd::service::chunk_queue::ChunkQueueService;
use retryd::store::Store;
use support::{Engine, TestDb};

macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::Engine::Postgres).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::Engine::Sqlite).await;
                }
            )*
        }
    };
}

on_both_engines!(
    each_slot_runs_once_however_many_schedulers_tick,
    failed_and_manual_runs_are_recorded,
    the_recovery_task_requeues_expired_leases,
);

const MINUTE: Duration = Duration::from_secs(60);

/// Counts its runs; fails when told to.
struct Counting {
    runs: AtomicU32,
    fail: bool,
}

#[async_trait]
impl Task for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    async fn run(&self) -> Result<TaskCounts> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail {
            return Err(Error::Unavailable("the thing is down".into()));
        }
        Ok(vec![("run".into(), u64::from(n))])
    }
}

fn scheduler(
    store: &Arc<dyn Store>,
    clock: &ManualClock,
    task: Arc<dyn Task>,
    replica: &str,
) -> Scheduler {
    let tasks = vec![ScheduledTask {
        task,
        interval: MINUTE,
        enabled: true,
    }];
    Scheduler::new(
        tasks,
        Arc::clone(store),
        Arc::new(clock.clone()),
        store.leader_elector(),
        replica.into(),
    )
}

fn start() -> ManualClock {
    ManualClock::starting_at(Timestamp::from_micros(1_800_000_000_000_000))
}

async fn each_slot_runs_once_however_many_schedulers_tick(engine: Engine) {
    let db = TestDb::new(engine).await;
    // Two replicas: on Postgres each has its own store, pool and advisory-lock session.
    let (store_a, store_b) = (db.open().await, db.open().await);
    let clock = start();
    let task = Arc::new(Counting {
        runs: AtomicU32::new(0),
        fail: false,
    });
    let a = scheduler(&store_a, &clock, task.clone(), "a");
    let b = scheduler(&store_b, &clock, task.clone(), "b");

    for _ in 0..3 {
        a.tick().await;
        b.tick().await;
    }
    assert_eq!(
        task.runs.load(Ordering::SeqCst),
        1,
        "one run for the first slot"
    );
    clock.advance(Duration::from_secs(30));
    a.tick().await;
    b.tick().await;
    assert_eq!(task.runs.load(Ordering::SeqCst), 1, "still the same slot");
    clock.advance(MINUTE);
    b.tick().await;
    a.tick().await;
    assert_eq!(
        task.runs.load(Ordering::SeqCst),
        2,
        "one run for the next slot"
    );

    let runs = a
        .runs(
            Some("counting"),
            retryd::core::chunks::PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(runs.items.len(), 2);
    assert!(runs
        .items
        .iter()
        .all(|run| run.outcome == Some(RunOutcome::Ok)));
    if engine == Engine::Postgres {
        // Only the leader ran anything, and exactly one of the two leads.
        assert_ne!(a.is_leader(), b.is_leader());
        let leader = if a.is_leader() { "a" } else { "b" };
        assert!(runs.items.iter().all(|run| run.replica_id == leader));

        // The leader's process ends: its session, and with it the lock, go away.
        let (old_leader, survivor, survivor_name) = if a.is_leader() {
            (a, b, "b")
        } else {
            (b, a, "a")
        };
        drop(old_leader);
        drop(if leader == "a" { store_a } else { store_b });
        clock.advance(MINUTE);
        let mut took_over = false;
        for _ in 0..50 {
            if !survivor.tick().await.is_empty() {
                took_over = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(took_over, "the other replica ran the next slot");
        assert!(survivor.is_leader());
        let status = survivor.status().await.unwrap();
        assert_eq!(
            status[0].last_run.as_ref().unwrap().replica_id,
            survivor_name
        );
    }
}

async fn failed_and_manual_runs_are_recorded(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open().await;
    let clock = start();
    let task = Arc::new(Counting {
        runs: AtomicU32::new(0),
        fail: true,
    });
    let scheduler = scheduler(&store, &clock, task, "solo");

    let runs = scheduler.tick().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Some(RunOutcome::Error));
    assert!(runs[0]
        .error
        .as_deref()
        .unwrap()
        .contains("the thing is down"));

    clock.advance(Duration::from_secs(5));
    let manual = scheduler.run_now("counting").await.unwrap();
    assert_eq!((manual.kind, manual.slot), (RunKind::Manual, None));
    let status = scheduler.status().await.unwrap();
    assert_eq!(
        status[0].last_run.as_ref().unwrap().id,
        manual.id,
        "health shows the last run"
    );
    assert!(matches!(
        scheduler.run_now("nope").await,
        Err(Error::NotFound { .. })
    ));
}

async fn the_recovery_task_requeues_expired_leases(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open().await;
    let clock = start();
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let queue = Arc::new(ChunkQueueService::new(
        Arc::clone(&store),
        Arc::clone(&clock_arc),
        Arc::new(Events::default()),
        Limits::default(),
        Duration::from_secs(1),
    ));
    let job = NewJob {
        job_id: "j".into(),
        queue: "q".into(),
        priority: 0,
        max_attempts: 3,
        retry_policy: RetryPolicy::default(),
        payloads: vec![b"x".to_vec()],
    };
    store.create_job(job, clock.now()).await.unwrap();
    let claim = ClaimRequest {
        queue: "q".into(),
        worker_id: "w".into(),
        max_chunks: 1,
        lease: Duration::from_secs(90),
        lease_token: "t".into(),
    };
    store.claim_chunks(&claim, clock.now()).await.unwrap();

    let recovery = Arc::new(RecoverStuckChunks { chunk_queue: queue });
    let scheduler = scheduler(&store, &clock, recovery, "solo");
    let first = scheduler.tick().await;
    assert_eq!(
        first[0].counts,
        vec![("recovered".to_owned(), 0), ("failed".to_owned(), 0)]
    );
    clock.advance(Duration::from_secs(91));
    let second = scheduler.tick().await;
    assert_eq!(
        second[0].counts,
        vec![("recovered".to_owned(), 1), ("failed".to_owned(), 0)]
    );
    assert_eq!(store.job_progress("j").await.unwrap().pending, 1);
}
