//! SyncRetry's behaviours on every store engine, through its service with a manual clock: no
//! case sleeps.

use std::sync::Arc;
use std::time::Duration;

use retryd::core::limits::Limits;
use retryd::core::sync::classify::{ClassificationRule, ClassificationRules};
use retryd::core::sync::input::{PushInput, RecordChangeInput, RegisterSourceInput};
use retryd::core::sync::records::{
    ChangeResult, ChangeStatus, ConflictStatus, ConflictStrategy, Resolution, ResolutionKind,
};
use retryd::core::sync::snapshots::{CompletedSync, SnapshotInfo};
use retryd::core::sync::{HealthStatus, LeasedSyncTask, SyncSettings, SyncTaskStatus};
use retryd::core::{Error, ManualClock, Timestamp};
use retryd::service::sync_retry::{SyncClaimInput, SyncRetryService};
use retryd::store::Store;
use sha2::{Digest, Sha256};

const T0: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

struct Sync {
    service: SyncRetryService,
    clock: ManualClock,
}

fn sync_with(store: &Arc<dyn Store>, limits: Limits, settings: SyncSettings) -> Sync {
    let clock = ManualClock::starting_at(T0);
    let service = SyncRetryService::new(
        Arc::clone(store),
        Arc::new(clock.clone()),
        limits,
        &settings,
    )
    .unwrap();
    Sync { service, clock }
}

fn sync(store: &Arc<dyn Store>) -> Sync {
    sync_with(store, Limits::default(), SyncSettings::default())
}

impl Sync {
    /// A source synced every hour with the default retry policy (5, 10, 20 minutes).
    async fn register(&self, data_type: &str) {
        self.service
            .register_source(RegisterSourceInput {
                data_type: data_type.into(),
                sync_interval_seconds: 3600,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn claim(&self, data_type: &str) -> Option<LeasedSyncTask> {
        let mut tasks = self
            .service
            .claim(SyncClaimInput {
                worker_id: "worker-1".into(),
                data_types: vec![data_type.into()],
                max: 10,
                lease_seconds: 60,
            })
            .await
            .unwrap();
        assert!(tasks.len() <= 1, "one open task per data type");
        tasks.pop()
    }

    async fn fail(&self, task: &LeasedSyncTask, error: &str) -> retryd::core::sync::FailedSync {
        self.service
            .fail(task.task_id, task.lease_token.clone(), error.into(), None)
            .await
            .unwrap()
    }

    async fn complete(
        &self,
        task: &LeasedSyncTask,
        data: &[u8],
        items: u64,
        sha256: Option<String>,
    ) -> CompletedSync {
        let mut writer = self
            .service
            .begin_snapshot(task.task_id, task.lease_token.clone(), "text/csv".into())
            .await
            .unwrap();
        // In two writes, so the data is really streamed.
        let (first, second) = data.split_at(data.len() / 2);
        writer.write(first).await.unwrap();
        writer.write(second).await.unwrap();
        writer.finish(items, sha256).await.unwrap()
    }

    /// Claims the data type's due sync and completes it with `data`.
    async fn sync_data(&self, data_type: &str, data: &[u8], items: u64) -> CompletedSync {
        let task = self.claim(data_type).await.expect("a due sync");
        self.complete(&task, data, items, None).await
    }

    async fn dataset(&self, data_type: &str, version: u64) -> (SnapshotInfo, Vec<u8>) {
        let (info, mut reader) = self
            .service
            .open_dataset(data_type.into(), version)
            .await
            .unwrap();
        let mut data = Vec::new();
        while let Some(part) = reader.next_part().await.unwrap() {
            data.extend(part);
        }
        (info, data)
    }

    async fn health(&self, data_type: &str) -> retryd::core::sync::ConnectionHealth {
        self.service
            .connection_health(data_type.into())
            .await
            .unwrap()
            .remove(0)
    }

    /// Moves the clock and runs the retry processor; returns how many retries it released.
    async fn advance_and_process(&self, by: Duration) -> u32 {
        self.clock.advance(by);
        self.service.process_retries(10).await.unwrap().1
    }
}

pub async fn sync_retries_back_off_5_10_20_minutes_then_stop(store: Arc<dyn Store>) {
    let sync = sync(&store);
    sync.register("orders").await;
    let task = sync
        .claim("orders")
        .await
        .expect("a new source is due at once");
    assert_eq!(task.retry_count, 0);
    let mut elapsed = Duration::ZERO;
    for (retry, delay, error) in [
        (1, 5 * MINUTE, "HTTP 503 Service Unavailable"),
        (2, 10 * MINUTE, "connection reset by peer"),
        (3, 20 * MINUTE, "request timed out"),
    ] {
        let task = if retry == 1 {
            task.clone()
        } else {
            sync.claim("orders").await.expect("the released retry")
        };
        assert_eq!(task.retry_count, retry - 1);
        let failed = sync.fail(&task, error).await;
        assert!(failed.classification.recoverable, "{error}");
        assert_eq!(failed.task.status, SyncTaskStatus::RetryScheduled);
        assert_eq!(failed.task.retry_count, retry);
        let due = T0.plus(elapsed).plus(delay);
        assert_eq!(failed.task.next_retry_at, Some(due), "retry {retry}");

        // Not before its time, even when the processor runs.
        assert_eq!(sync.advance_and_process(delay - MINUTE).await, 0);
        assert!(sync.claim("orders").await.is_none());
        // Due, but claimable only once the processor released it.
        sync.clock.advance(MINUTE);
        assert!(sync.claim("orders").await.is_none());
        assert_eq!(sync.service.process_retries(10).await.unwrap(), (0, 1));
        elapsed += delay;
    }
    let last = sync.claim("orders").await.expect("the third retry");
    assert_eq!(last.retry_count, 3);
    let failed = sync.fail(&last, "network unreachable").await;
    assert_eq!(failed.task.status, SyncTaskStatus::Exhausted);
    assert_eq!(failed.task.next_retry_at, None);

    // No fourth retry (the next scheduled sync is not due before the hour is over).
    assert_eq!(sync.advance_and_process(20 * MINUTE).await, 0);
    assert!(sync.claim("orders").await.is_none());
    let logs = sync
        .service
        .failure_logs("orders".into(), 0, "")
        .await
        .unwrap()
        .items;
    let retry_counts: Vec<u32> = logs.iter().map(|log| log.retry_count).collect();
    assert_eq!(retry_counts, vec![3, 2, 1, 0], "one log per failure");
    let exhausted = sync
        .service
        .list_tasks("orders".into(), Some(SyncTaskStatus::Exhausted), 0, "")
        .await
        .unwrap()
        .items;
    assert_eq!(exhausted.len(), 1);
}

pub async fn errors_are_classified_by_rule_and_non_recoverable_wins(store: Arc<dyn Store>) {
    let sync = sync(&store);
    let cases: &[(&str, bool, Option<&str>)] = &[
        ("network is unreachable", true, Some("network")),
        ("read timed out after 30 s", true, Some("timeout")),
        ("429: rate limit exceeded", true, Some("rate limit")),
        ("upstream answered 502", true, Some("5xx")),
        ("connection refused", true, Some("connection")),
        ("DNS lookup of api.example.com failed", true, Some("dns")),
        ("SSL handshake failed", true, Some("ssl")),
        ("504 Gateway Timeout", true, Some("gateway timeout")),
        ("empty data from upstream", false, Some("empty data")),
        (
            "Invalid API credentials",
            false,
            Some("invalid credentials"),
        ),
        (
            "schema validation error on row 3",
            false,
            Some("schema error"),
        ),
        ("HTTP 401 Unauthorized", false, Some("unauthorized")),
        ("malformed JSON data", false, Some("malformed data")),
        // Both kinds match: not recoverable wins.
        ("503 while unauthorized", false, Some("unauthorized")),
        (
            "timeout reading malformed data",
            false,
            Some("malformed data"),
        ),
        // Neither: not retried.
        ("disk full on port 5432", false, None),
    ];
    for (message, recoverable, rule) in cases {
        let classification = sync.service.classify(message);
        assert_eq!(
            (
                classification.recoverable,
                classification.matched_rule.as_deref()
            ),
            (*recoverable, *rule),
            "{message}"
        );
    }

    // The store acts on the classification: an unmatched error waits for a person; a worker's
    // own verdict overrides the rules.
    sync.register("orders").await;
    let task = sync.claim("orders").await.unwrap();
    let failed = sync.fail(&task, "disk full").await;
    assert_eq!(failed.task.status, SyncTaskStatus::Failed);
    assert_eq!(failed.classification.matched_rule, None);
    sync.service.retry_now(task.task_id).await.unwrap();
    let task = sync.claim("orders").await.unwrap();
    let failed = sync
        .service
        .fail(
            task.task_id,
            task.lease_token,
            "disk full".into(),
            Some(true),
        )
        .await
        .unwrap();
    assert_eq!(failed.task.status, SyncTaskStatus::RetryScheduled);
    assert_eq!(
        failed.classification.matched_rule.as_deref(),
        Some("worker")
    );

    // Rules are configurable.
    let settings = SyncSettings {
        classification: ClassificationRules {
            recoverable: vec![ClassificationRule {
                name: "quota".into(),
                pattern: r"quota\s+exceeded".into(),
            }],
            non_recoverable: Vec::new(),
        },
        ..SyncSettings::default()
    };
    let custom = sync_with(&store, Limits::default(), settings);
    let classification = custom.service.classify("Quota exceeded, try later");
    assert!(classification.recoverable);
    assert_eq!(classification.matched_rule.as_deref(), Some("quota"));
    assert!(!custom.service.classify("HTTP 503").recoverable);
}

pub async fn connection_health_follows_failures_and_recovers(store: Arc<dyn Store>) {
    let sync = sync(&store);
    sync.register("orders").await;
    assert_eq!(sync.health("orders").await.status, HealthStatus::Unknown);
    sync.sync_data("orders", b"id\n1\n2\n3\n", 3).await;
    let health = sync.health("orders").await;
    assert_eq!(
        (health.status, health.item_count, health.last_success_at),
        (HealthStatus::Healthy, 3, Some(T0))
    );

    sync.clock.advance(HOUR);
    let task = sync.claim("orders").await.expect("the next scheduled sync");
    let failed = sync.fail(&task, "HTTP 503").await;
    assert_eq!(failed.health.status, HealthStatus::Degraded);
    let mut expected_failures = 1;
    for delay in [5 * MINUTE, 10 * MINUTE, 20 * MINUTE] {
        assert_eq!(sync.advance_and_process(delay).await, 1);
        let task = sync.claim("orders").await.unwrap();
        let failed = sync.fail(&task, "HTTP 503").await;
        expected_failures += 1;
        let health = failed.health;
        assert_eq!(health.consecutive_failures, expected_failures);
        assert_eq!(health.item_count, 3, "the good data is still there");
        assert_eq!(health.error_message.as_deref(), Some("HTTP 503"));
        assert_eq!(health.last_failure_at, Some(sync.clock_now()));
        let expected = if failed.task.status == SyncTaskStatus::Exhausted {
            HealthStatus::Unhealthy
        } else {
            HealthStatus::Degraded
        };
        assert_eq!(health.status, expected);
    }
    let health = sync.health("orders").await;
    assert_eq!(
        (health.status, health.consecutive_failures),
        (HealthStatus::Unhealthy, 4)
    );

    // The next scheduled sync succeeds: healthy, failures forgotten.
    sync.clock.advance(HOUR);
    sync.sync_data("orders", b"id\n1\n", 1).await;
    let health = sync.health("orders").await;
    assert_eq!(
        (
            health.status,
            health.consecutive_failures,
            health.item_count,
            health.error_message
        ),
        (HealthStatus::Healthy, 0, 1, None)
    );
    assert_eq!(health.last_success_at, Some(sync.clock_now()));

    // A failure that is not recoverable makes it unhealthy at once, and is not retried.
    sync.clock.advance(HOUR);
    let task = sync.claim("orders").await.unwrap();
    let failed = sync.fail(&task, "invalid credentials").await;
    assert_eq!(failed.health.status, HealthStatus::Unhealthy);
    assert_eq!(failed.task.status, SyncTaskStatus::Failed);
    assert_eq!(sync.advance_and_process(2 * HOUR).await, 0);
    assert!(
        sync.claim("orders").await.is_none(),
        "the task waits for a person, and blocks new syncs"
    );
    let cancelled = sync.service.cancel(task.task_id).await.unwrap();
    assert_eq!(cancelled.status, SyncTaskStatus::Cancelled);
    assert!(sync.claim("orders").await.is_some(), "syncs resume");
}

impl Sync {
    fn clock_now(&self) -> Timestamp {
        use retryd::core::Clock;
        self.clock.now()
    }
}

pub async fn empty_or_corrupt_data_never_replaces_good_data(store: Arc<dyn Store>) {
    let sync = sync(&store);
    sync.register("orders").await;
    let good = b"id,name\n1,a\n2,b\n";
    let first = sync.sync_data("orders", good, 2).await;
    assert!(first.accepted);
    assert_eq!(first.snapshot.as_ref().unwrap().version, 1);

    sync.clock.advance(HOUR);
    let task = sync.claim("orders").await.unwrap();
    let rejected = sync.complete(&task, b"id,name\n", 0, None).await;
    assert!(!rejected.accepted);
    assert!(rejected.reason.as_deref().unwrap().contains("empty data"));
    assert_eq!(rejected.snapshot.as_ref().unwrap().version, 1, "v1 kept");
    assert_eq!(rejected.task.status, SyncTaskStatus::Failed);
    assert_eq!(rejected.health.status, HealthStatus::Unhealthy);
    assert_eq!(rejected.health.item_count, 2);
    let (info, data) = sync.dataset("orders", 0).await;
    assert_eq!(
        (info.version, info.current, data.as_slice()),
        (1, true, &good[..])
    );
    let log = sync
        .service
        .failure_logs("orders".into(), 0, "")
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(
        (
            log.recoverable,
            log.matched_rule.as_deref(),
            log.rolled_back_to
        ),
        (false, Some("empty data"), Some(1)),
        "the rollback is logged"
    );
    assert_eq!(sync.advance_and_process(HOUR).await, 0, "not retried");
    assert!(sync.claim("orders").await.is_none());

    // A person retries; data that does not match its checksum is rejected the same way.
    sync.service.retry_now(task.task_id).await.unwrap();
    let task = sync.claim("orders").await.unwrap();
    let wrong = hex::encode(Sha256::digest(b"something else"));
    let rejected = sync
        .complete(&task, b"id,name\n9,x\n", 1, Some(wrong))
        .await;
    assert!(!rejected.accepted);
    assert!(rejected.reason.unwrap().contains("checksum"));
    assert_eq!(sync.dataset("orders", 0).await.1, good.to_vec());

    sync.service.retry_now(task.task_id).await.unwrap();
    let task = sync.claim("orders").await.unwrap();
    let next = b"id,name\n3,c\n";
    let right = hex::encode(Sha256::digest(next));
    let accepted = sync.complete(&task, next, 1, Some(right.clone())).await;
    assert!(accepted.accepted);
    let snapshot = accepted.snapshot.unwrap();
    assert_eq!((snapshot.version, snapshot.checksum), (2, right));
    assert_eq!(accepted.health.status, HealthStatus::Healthy);

    // With no data before, an empty sync is an honest empty dataset.
    sync.register("returns").await;
    let empty = sync.sync_data("returns", b"", 0).await;
    assert!(empty.accepted);
    assert_eq!(empty.snapshot.unwrap().item_count, 0);
}

pub async fn snapshots_beyond_the_retention_are_pruned(store: Arc<dyn Store>) {
    let settings = SyncSettings {
        snapshot_retention: 3,
        ..SyncSettings::default()
    };
    let sync = sync_with(&store, Limits::default(), settings);
    sync.register("orders").await;
    for version in 1..=5u8 {
        sync.sync_data("orders", &[version; 10], 1).await;
        sync.clock.advance(HOUR);
    }
    let kept: Vec<(u64, bool)> = sync
        .service
        .list_snapshots("orders".into())
        .await
        .unwrap()
        .iter()
        .map(|snapshot| (snapshot.version, snapshot.current))
        .collect();
    assert_eq!(kept, vec![(5, true), (4, false), (3, false)]);
    let (old, data) = sync.dataset("orders", 3).await;
    assert_eq!((old.version, old.current, data), (3, false, vec![3; 10]));
    let err = sync
        .service
        .open_dataset("orders".into(), 2)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    let rolled = sync.service.rollback_to("orders".into(), 4).await.unwrap();
    assert!(rolled.current);
    assert_eq!(sync.dataset("orders", 0).await.1, vec![4; 10]);
    assert!(matches!(
        sync.service.rollback_to("orders".into(), 1).await,
        Err(Error::NotFound { .. })
    ));

    // Large data is stored and read back in bounded parts.
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let accepted = sync.sync_data("orders", &big, 1).await;
    assert_eq!(accepted.snapshot.unwrap().version, 6);
    assert_eq!(sync.dataset("orders", 0).await.1, big);

    // Past the size limit: refused, and nothing is kept.
    let tight = sync_with(
        &store,
        Limits {
            max_snapshot_bytes: 16,
            ..Limits::default()
        },
        SyncSettings::default(),
    );
    tight.clock.set(sync.clock_now().plus(HOUR));
    let task = tight.claim("orders").await.unwrap();
    let mut writer = tight
        .service
        .begin_snapshot(task.task_id, task.lease_token.clone(), String::new())
        .await
        .unwrap();
    let err = writer.write(&[0; 17]).await.unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted { .. }), "{err:?}");
    writer.discard().await;
    assert_eq!(tight.dataset("orders", 0).await.0.version, 6);
}

fn change(
    change_id: &str,
    record_id: &str,
    base: u64,
    at: u64,
    payload: &str,
) -> RecordChangeInput {
    RecordChangeInput {
        change_id: change_id.into(),
        record_id: record_id.into(),
        base_version: base,
        updated_at: Some(T0.plus(Duration::from_secs(at))),
        payload: payload.as_bytes().to_vec(),
        deleted: false,
    }
}

async fn push(
    sync: &Sync,
    client: &str,
    strategy: ConflictStrategy,
    changes: Vec<RecordChangeInput>,
) -> Vec<ChangeResult> {
    sync.service
        .push(PushInput {
            collection: "notes".into(),
            client_id: client.into(),
            strategy: Some(strategy),
            changes,
        })
        .await
        .unwrap()
}

async fn payload_of(sync: &Sync, record_id: &str) -> (u64, String) {
    let records = sync
        .service
        .pull("notes".into(), 0, 1000)
        .await
        .unwrap()
        .records;
    let record = records
        .into_iter()
        .find(|record| record.record_id == record_id)
        .unwrap();
    (record.version, String::from_utf8(record.payload).unwrap())
}

/// Both clients have version 1 of `record`; the phone edits it online (at t=10, version 2)
/// while the laptop, offline, edited its copy at `laptop_at`; the laptop pushes later.
async fn offline_edit(
    sync: &Sync,
    record: &str,
    strategy: ConflictStrategy,
    laptop_at: u64,
) -> ChangeResult {
    let created = push(
        sync,
        "phone",
        strategy,
        vec![change(&format!("{record}-0"), record, 0, 1, "v1")],
    )
    .await;
    assert_eq!(
        (created[0].status, created[0].version),
        (ChangeStatus::Applied, 1)
    );
    let online = push(
        sync,
        "phone",
        strategy,
        vec![change(&format!("{record}-1"), record, 1, 10, "phone")],
    )
    .await;
    assert_eq!(online[0].version, 2);
    push(
        sync,
        "laptop",
        strategy,
        vec![change(
            &format!("{record}-2"),
            record,
            1,
            laptop_at,
            "laptop",
        )],
    )
    .await
    .remove(0)
}

pub async fn each_conflict_strategy_settles_an_offline_edit(store: Arc<dyn Store>) {
    let sync = sync(&store);
    let local = offline_edit(&sync, "local", ConflictStrategy::LocalWins, 5).await;
    assert_eq!((local.status, local.version), (ChangeStatus::Applied, 3));
    assert_eq!(payload_of(&sync, "local").await, (3, "laptop".into()));

    let remote = offline_edit(&sync, "remote", ConflictStrategy::RemoteWins, 20).await;
    assert_eq!(remote.status, ChangeStatus::Conflict);
    let server = remote.server_record.unwrap();
    assert_eq!((server.version, server.payload), (2, b"phone".to_vec()));
    assert_eq!(remote.conflict_id, None);
    assert_eq!(payload_of(&sync, "remote").await, (2, "phone".into()));

    let newer = offline_edit(&sync, "newer", ConflictStrategy::NewestWins, 20).await;
    assert_eq!((newer.status, newer.version), (ChangeStatus::Applied, 3));
    assert_eq!(payload_of(&sync, "newer").await, (3, "laptop".into()));
    let older = offline_edit(&sync, "older", ConflictStrategy::NewestWins, 5).await;
    assert_eq!(older.status, ChangeStatus::Conflict);
    assert_eq!(payload_of(&sync, "older").await, (2, "phone".into()));

    let manual = offline_edit(&sync, "manual", ConflictStrategy::Manual, 20).await;
    assert_eq!(manual.status, ChangeStatus::Conflict);
    let conflict_id = manual.conflict_id.expect("kept for a person");
    assert_eq!(payload_of(&sync, "manual").await, (2, "phone".into()));
    let open = sync
        .service
        .conflicts("notes".into(), Some(ConflictStatus::Open), 0, "")
        .await
        .unwrap()
        .items;
    assert_eq!(open.len(), 1);
    let conflict = &open[0];
    assert_eq!(conflict.conflict_id, conflict_id);
    assert_eq!(
        (
            conflict.local_payload.as_slice(),
            conflict.server_payload.as_slice(),
            conflict.base_version,
            conflict.server_version
        ),
        (&b"laptop"[..], &b"phone"[..], 1, 2)
    );

    // A change based on a version the server never had is rejected.
    let rejected = push(
        &sync,
        "laptop",
        ConflictStrategy::LocalWins,
        vec![change("bad", "local", 9, 1, "x")],
    )
    .await;
    assert_eq!(rejected[0].status, ChangeStatus::Rejected);
    assert!(matches!(
        rejected[0].rejection,
        Some(Error::FailedPrecondition(_))
    ));
}

pub async fn manual_conflicts_are_resolved_by_a_person(store: Arc<dyn Store>) {
    let sync = sync(&store);
    let mut ids = Vec::new();
    for record in ["keep-local", "keep-remote", "merge"] {
        let result = offline_edit(&sync, record, ConflictStrategy::Manual, 20).await;
        ids.push(result.conflict_id.unwrap());
    }
    let local = sync
        .service
        .resolve(ids[0], Resolution::Local)
        .await
        .unwrap();
    assert_eq!(
        (local.status, local.resolution, local.resolved_version),
        (
            ConflictStatus::Resolved,
            Some(ResolutionKind::Local),
            Some(3)
        )
    );
    assert_eq!(payload_of(&sync, "keep-local").await, (3, "laptop".into()));

    let remote = sync
        .service
        .resolve(ids[1], Resolution::Remote)
        .await
        .unwrap();
    assert_eq!(remote.resolved_version, Some(2));
    assert_eq!(payload_of(&sync, "keep-remote").await, (2, "phone".into()));

    let merged = Resolution::Merged {
        payload: b"phone+laptop".to_vec(),
        deleted: false,
    };
    sync.service.resolve(ids[2], merged).await.unwrap();
    assert_eq!(payload_of(&sync, "merge").await, (3, "phone+laptop".into()));

    let again = sync.service.resolve(ids[0], Resolution::Remote).await;
    assert!(
        matches!(again, Err(Error::FailedPrecondition(_))),
        "{again:?}"
    );
    assert!(matches!(
        sync.service.resolve(999_999, Resolution::Local).await,
        Err(Error::NotFound { .. })
    ));
    let open = sync
        .service
        .conflicts(String::new(), Some(ConflictStatus::Open), 0, "")
        .await
        .unwrap();
    assert!(open.items.is_empty());
}

pub async fn pushes_are_idempotent_per_change_id(store: Arc<dyn Store>) {
    let sync = sync(&store);
    let first = push(
        &sync,
        "phone",
        ConflictStrategy::NewestWins,
        vec![change("c1", "r1", 0, 1, "hello")],
    )
    .await;
    let again = push(
        &sync,
        "phone",
        ConflictStrategy::NewestWins,
        vec![change("c1", "r1", 0, 1, "hello")],
    )
    .await;
    assert_eq!(first, again);
    assert_eq!(payload_of(&sync, "r1").await, (1, "hello".into()));
    let pulled = sync.service.pull("notes".into(), 0, 100).await.unwrap();
    assert_eq!(pulled.next_cursor, 1, "the replay made no change");

    let reused = push(
        &sync,
        "phone",
        ConflictStrategy::NewestWins,
        vec![change("c1", "r1", 0, 1, "other")],
    )
    .await;
    assert_eq!(reused[0].status, ChangeStatus::Rejected);
    assert!(matches!(
        reused[0].rejection,
        Some(Error::AlreadyExists { .. })
    ));
    // Another client may use the same change id.
    let other = push(
        &sync,
        "laptop",
        ConflictStrategy::NewestWins,
        vec![change("c1", "r2", 0, 1, "mine")],
    )
    .await;
    assert_eq!(other[0].status, ChangeStatus::Applied);

    // A replayed manual conflict returns the same conflict, and opens no second one.
    let conflict = offline_edit(&sync, "m", ConflictStrategy::Manual, 20).await;
    let replay = push(
        &sync,
        "laptop",
        ConflictStrategy::Manual,
        vec![change("m-2", "m", 1, 20, "laptop")],
    )
    .await;
    assert_eq!(replay[0].conflict_id, conflict.conflict_id);
    let all = sync
        .service
        .conflicts("notes".into(), None, 0, "")
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);

    // Past the batch limit: refused as a whole.
    let tight = sync_with(
        &store,
        Limits {
            max_changes_per_push: 2,
            ..Limits::default()
        },
        SyncSettings::default(),
    );
    let err = tight
        .service
        .push(PushInput {
            collection: "notes".into(),
            client_id: "phone".into(),
            strategy: None,
            changes: (0..3)
                .map(|i| change(&format!("x{i}"), "x", 0, 1, "x"))
                .collect(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted { .. }), "{err:?}");
}

pub async fn pulling_from_a_cursor_returns_later_changes_in_order(store: Arc<dyn Store>) {
    let sync = sync(&store);
    let changes = (1..=5)
        .map(|i| change(&format!("c{i}"), &format!("r{i}"), 0, i, &format!("p{i}")))
        .collect();
    push(&sync, "phone", ConflictStrategy::NewestWins, changes).await;
    sync.service
        .push(PushInput {
            collection: "other".into(),
            client_id: "phone".into(),
            strategy: None,
            changes: vec![change("o1", "o1", 0, 1, "elsewhere")],
        })
        .await
        .unwrap();

    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let page = sync.service.pull("notes".into(), cursor, 2).await.unwrap();
        seen.extend(page.records.iter().map(|record| record.record_id.clone()));
        cursor = page.next_cursor;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, vec!["r1", "r2", "r3", "r4", "r5"]);

    push(
        &sync,
        "laptop",
        ConflictStrategy::NewestWins,
        vec![change("c6", "r2", 1, 9, "p2b")],
    )
    .await;
    let later = sync
        .service
        .pull("notes".into(), cursor, 100)
        .await
        .unwrap();
    assert_eq!(later.records.len(), 1, "only what changed after the cursor");
    let record = &later.records[0];
    assert_eq!(
        (
            record.record_id.as_str(),
            record.version,
            record.changed_by.as_str()
        ),
        ("r2", 2, "laptop")
    );
    let end = sync
        .service
        .pull("notes".into(), later.next_cursor, 100)
        .await
        .unwrap();
    assert!(end.records.is_empty());
    assert_eq!(end.next_cursor, later.next_cursor);

    // Deletions travel as tombstones.
    let mut delete = change("c7", "r3", 1, 10, "");
    delete.deleted = true;
    sync.service
        .push(PushInput {
            collection: "notes".into(),
            client_id: "phone".into(),
            strategy: None,
            changes: vec![delete],
        })
        .await
        .unwrap();
    let tombstone = sync
        .service
        .pull("notes".into(), end.next_cursor, 100)
        .await
        .unwrap()
        .records
        .remove(0);
    assert!(tombstone.deleted);
}
