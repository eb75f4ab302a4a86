//! UploadRetry on every engine: the upload service over the store under test, a real blob
//! directory and real file:// deliveries, with a manual clock (no case sleeps to prove time).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use retryd::blobs::LocalDirectory;
use retryd::core::chunks::PageRequest;
use retryd::core::retry::RetryPolicy;
use retryd::core::uploads::*;
use retryd::core::{Error, ManualClock, Timestamp};
use retryd::delivery::Deliveries;
use retryd::service::uploads::{UploadService, UploadSettings};
use retryd::store::Store;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const T0: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);
const BACKOFF: Duration = Duration::from_secs(10);

struct Fixture {
    service: Arc<UploadService>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    drop_root: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture(store: Arc<dyn Store>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let drop_root = dir.path().join("drop");
    let clock = Arc::new(ManualClock::starting_at(T0));
    let settings = UploadSettings {
        policy: UploadPolicy {
            max_delivery_attempts: 3,
            delivery_backoff: RetryPolicy {
                initial_backoff: BACKOFF,
                multiplier: 2.0,
                max_backoff: Duration::from_secs(3600),
            },
            file_destination_roots: vec![drop_root.clone()],
            ..UploadPolicy::default()
        },
        // Checkpoints happen when a call ends, or every 8 bytes.
        checkpoint_bytes: 8,
        checkpoint_interval: Duration::from_secs(3600),
        // Deliveries happen in the runs the cases start, never behind their back.
        deliver_on_store: false,
        ..UploadSettings::default()
    };
    let service = Arc::new(UploadService::new(
        Arc::clone(&store),
        Arc::new(LocalDirectory::open(dir.path().join("blobs")).unwrap()),
        Arc::new(Deliveries::new(Duration::from_secs(10)).unwrap()),
        clock.clone(),
        retryd::core::limits::Limits::default(),
        settings,
    ));
    Fixture {
        service,
        store,
        clock,
        drop_root,
        _dir: dir,
    }
}

fn sha(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

fn declaration(id: &str, content: &[u8], destination: &str) -> CreateUploadInput {
    CreateUploadInput {
        upload_id: id.into(),
        owner: "alice".into(),
        file_name: format!("{id}.bin"),
        content_type: "application/octet-stream".into(),
        size_bytes: content.len() as u64,
        sha256: sha(content),
        destination: destination.into(),
    }
}

impl Fixture {
    fn directory(&self, name: &str) -> (PathBuf, String) {
        let dir = self.drop_root.join(name);
        let url = format!("file://{}", dir.display());
        (dir, url)
    }

    /// One UploadContent call: `parts` from `offset`, then the end of the call.
    async fn send(&self, id: &str, offset: u64, parts: &[&[u8]]) -> Result<Upload, Error> {
        let mut receiving = self.service.begin_receiving(id.to_owned(), offset).await?;
        let mut at = offset;
        let mut outcome = Ok(());
        for part in parts {
            outcome = receiving.append(id, at, part.to_vec()).await;
            if outcome.is_err() {
                break;
            }
            at += part.len() as u64;
        }
        let ended = receiving.end().await;
        outcome?;
        ended
    }

    async fn upload(&self, id: &str, content: &[u8], destination: &str) -> Upload {
        self.service
            .create_upload(declaration(id, content, destination))
            .await
            .unwrap();
        self.send(id, 0, &[content]).await.unwrap()
    }

    async fn download(&self, id: &str) -> Result<Vec<u8>, Error> {
        let (_, mut reader) = self.service.download(id.into(), 0).await?;
        let mut content = Vec::new();
        reader.read_to_end(&mut content).await.unwrap();
        Ok(content)
    }

    async fn get(&self, id: &str) -> Upload {
        self.service.get_upload(id.into()).await.unwrap()
    }
}

/// The directory destination `dir` cannot be created while a plain file has its name.
fn block(dir: &PathBuf) {
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(dir, b"not a directory").unwrap();
}

fn unblock(dir: &PathBuf) {
    std::fs::remove_file(dir).unwrap();
}

pub async fn uploads_are_declared_once(store: Arc<dyn Store>) {
    let f = fixture(store);
    let first = f
        .service
        .create_upload(declaration("u1", b"hello", ""))
        .await
        .unwrap();
    assert_eq!(first.status, UploadStatus::Pending);
    assert_eq!(first.received_bytes, 0);
    let again = f
        .service
        .create_upload(declaration("u1", b"hello", ""))
        .await
        .unwrap();
    assert_eq!(again, first);
    let other = f
        .service
        .create_upload(declaration("u1", b"hello!", ""))
        .await;
    assert!(
        matches!(other, Err(Error::AlreadyExists { .. })),
        "{other:?}"
    );

    let mut bad = declaration("u2", b"x", "");
    bad.file_name = "../etc/passwd".into();
    let refused = f.service.create_upload(bad).await;
    assert!(
        matches!(&refused, Err(Error::InvalidArgument { field, .. }) if field == "file_name"),
        "{refused:?}"
    );
    assert!(matches!(
        f.service.get_upload("u2".into()).await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn content_resumes_where_it_stopped(store: Arc<dyn Store>) {
    let f = fixture(store);
    let content = b"0123456789abcdefghij";
    f.service
        .create_upload(declaration("u1", content, ""))
        .await
        .unwrap();

    let stopped = f
        .send("u1", 0, &[&content[..5], &content[5..10]])
        .await
        .unwrap();
    assert_eq!(stopped.status, UploadStatus::Receiving);
    assert_eq!(stopped.received_bytes, 10);

    // A call that starts anywhere else is refused and changes nothing.
    for offset in [0, 5, 11] {
        let refused = f.send("u1", offset, &[b"zz"]).await;
        assert!(
            matches!(refused, Err(Error::FailedPrecondition(_))),
            "{refused:?}"
        );
    }
    // Within a call, a part that skips ahead is refused; what came before it is kept.
    let mut receiving = f.service.begin_receiving("u1".into(), 10).await.unwrap();
    receiving
        .append("u1", 10, content[10..12].to_vec())
        .await
        .unwrap();
    let skipped = receiving.append("u1", 14, content[14..16].to_vec()).await;
    assert!(
        matches!(skipped, Err(Error::FailedPrecondition(_))),
        "{skipped:?}"
    );
    let past_end = receiving.append("u1", 12, vec![b'x'; 9]).await;
    assert!(
        matches!(past_end, Err(Error::OutOfRange(_))),
        "{past_end:?}"
    );
    let other_upload = receiving.append("u9", 12, vec![b'x']).await;
    assert!(matches!(other_upload, Err(Error::InvalidArgument { .. })));
    assert_eq!(receiving.end().await.unwrap().received_bytes, 12);

    let stored = f.send("u1", 12, &[&content[12..]]).await.unwrap();
    assert_eq!(stored.status, UploadStatus::Stored);
    assert_eq!(stored.received_bytes, 20);
    assert!(stored.stored_at.is_some());
    assert_eq!(f.download("u1").await.unwrap(), content);
    let more = f.send("u1", 20, &[b""]).await;
    assert!(
        matches!(more, Err(Error::FailedPrecondition(_))),
        "{more:?}"
    );
}

pub async fn a_checksum_mismatch_discards_the_content(store: Arc<dyn Store>) {
    let f = fixture(store);
    let content = b"the right content";
    f.service
        .create_upload(declaration("u1", content, ""))
        .await
        .unwrap();
    assert!(matches!(
        f.download("u1").await,
        Err(Error::FailedPrecondition(_))
    ));
    let wrong = f.send("u1", 0, &[b"the wrong content"]).await;
    assert!(matches!(wrong, Err(Error::DataLoss(_))), "{wrong:?}");
    let failed = f.get("u1").await;
    assert_eq!(failed.status, UploadStatus::Failed);
    assert_eq!(failed.received_bytes, 0);
    assert!(failed.failure_reason.unwrap().contains("sha256 mismatch"));
    assert!(f.download("u1").await.is_err());

    let stored = f
        .send("u1", 0, &[&content[..4], &content[4..]])
        .await
        .unwrap();
    assert_eq!(stored.status, UploadStatus::Stored);
    assert_eq!(stored.failure_reason, None);
    assert_eq!(f.download("u1").await.unwrap(), content);
}

pub async fn recorded_progress_never_moves_back(store: Arc<dyn Store>) {
    let f = fixture(store);
    f.service
        .create_upload(declaration("u1", &[7; 32], ""))
        .await
        .unwrap();
    let ahead = f.store.record_received("u1", 16, T0).await.unwrap();
    assert_eq!(ahead.received_bytes, 16);
    let behind = f.store.record_received("u1", 8, T0).await.unwrap();
    assert_eq!(behind.received_bytes, 16);
}

pub async fn failed_deliveries_back_off_then_succeed(store: Arc<dyn Store>) {
    let f = fixture(store);
    let (dir, url) = f.directory("inbox");
    block(&dir);
    let content = b"deliver me";
    let stored = f.upload("u1", content, &url).await;
    assert_eq!(stored.status, UploadStatus::Stored);
    assert_eq!(stored.next_delivery_at, Some(T0));

    let first = f.service.sweep().await.unwrap();
    assert_eq!((first.run.attempted, first.run.failed), (1, 1));
    assert_eq!(first.uploads[0].outcome, RetryOutcome::RetryScheduled);
    let waiting = f.get("u1").await;
    assert_eq!(waiting.status, UploadStatus::Stored);
    assert_eq!(waiting.delivery_attempts, 1);
    assert!(waiting.failure_reason.unwrap().contains("cannot create"));
    let next = waiting.next_delivery_at.unwrap();
    assert!(
        next >= T0.plus(BACKOFF / 2) && next <= T0.plus(BACKOFF),
        "{next:?}"
    );

    // Before the backoff ends the sweep leaves it alone.
    f.clock.advance(BACKOFF / 2 - Duration::from_millis(1));
    let early = f.service.sweep().await.unwrap();
    assert_eq!(early.run.attempted, 0);

    unblock(&dir);
    f.clock.advance(BACKOFF);
    let second = f.service.sweep().await.unwrap();
    assert_eq!((second.run.attempted, second.run.succeeded), (1, 1));
    let delivered = f.get("u1").await;
    assert_eq!(delivered.status, UploadStatus::Delivered);
    assert!(delivered.delivered_at.is_some());
    assert_eq!(std::fs::read(dir.join("u1.bin")).unwrap(), content);
    // Nothing is left half-written beside it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let runs = f
        .store
        .list_retry_runs(
            &RetryRunFilter::default(),
            PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    let attempted: Vec<u32> = runs.items.iter().map(|run| run.attempted).collect();
    assert_eq!(attempted, [1, 0, 1], "newest first");
    assert!(runs
        .items
        .iter()
        .all(|run| run.source == RetrySource::Scheduled));
}

pub async fn deliveries_give_up_after_their_attempts_and_a_person_can_retry(store: Arc<dyn Store>) {
    let f = fixture(store);
    let (dir, url) = f.directory("never");
    block(&dir);
    f.upload("u1", b"content", &url).await;
    for attempt in 1..=3 {
        let run = f.service.sweep().await.unwrap();
        assert_eq!(run.run.attempted, 1, "attempt {attempt}");
        f.clock.advance(Duration::from_secs(3600));
    }
    let failed = f.get("u1").await;
    assert_eq!(failed.status, UploadStatus::Failed);
    assert_eq!(failed.delivery_attempts, 3);
    assert_eq!(failed.next_delivery_at, None);
    assert!(failed
        .failure_reason
        .unwrap()
        .starts_with("delivery failed after 3 attempts"));
    assert_eq!(f.service.sweep().await.unwrap().run.attempted, 0);
    // The content is kept for a person.
    assert_eq!(f.download("u1").await.unwrap(), b"content");

    unblock(&dir);
    let flushed = f.service.flush_pending(vec!["u1".into()]).await.unwrap();
    assert_eq!(flushed.uploads[0].outcome, RetryOutcome::GaveUp);
    assert_eq!(flushed.run.attempted, 0);

    let retried = f.service.trigger_retry(vec!["u1".into()]).await.unwrap();
    assert_eq!(retried.run.source, RetrySource::Manual);
    assert_eq!(retried.uploads[0].outcome, RetryOutcome::Delivered);
    let delivered = f.get("u1").await;
    assert_eq!(delivered.status, UploadStatus::Delivered);
    assert_eq!(delivered.delivery_attempts, 1, "a fresh set of attempts");
}

pub async fn flushing_reports_each_named_upload(store: Arc<dyn Store>) {
    let f = fixture(store);
    let (_, url) = f.directory("flush");
    f.upload("kept", b"no destination", "").await;
    f.upload("sent", b"to deliver", &url).await;
    f.service
        .create_upload(declaration("partial", b"0123456789", &url))
        .await
        .unwrap();
    f.send("partial", 0, &[b"01234"]).await.unwrap();

    let ids = ["sent", "kept", "partial", "unknown", "sent"];
    let report = f
        .service
        .flush_pending(ids.iter().map(|id| id.to_string()).collect())
        .await
        .unwrap();
    let outcomes: Vec<(&str, RetryOutcome)> = report
        .uploads
        .iter()
        .map(|result| (result.upload_id.as_str(), result.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("sent", RetryOutcome::Delivered),
            ("kept", RetryOutcome::AlreadyDone),
            ("partial", RetryOutcome::Incomplete),
            ("unknown", RetryOutcome::NotFound),
        ]
    );
    assert_eq!(report.run.source, RetrySource::ClientFlush);
    assert_eq!((report.run.attempted, report.run.succeeded), (1, 1));

    let again = f.service.flush_pending(vec!["sent".into()]).await.unwrap();
    assert_eq!(again.uploads[0].outcome, RetryOutcome::AlreadyDone);
    for bad in [vec![], vec![String::new()]] {
        let refused = f.service.flush_pending(bad).await;
        assert!(
            matches!(refused, Err(Error::InvalidArgument { .. })),
            "{refused:?}"
        );
    }
}

pub async fn one_upload_is_never_delivered_by_two_runs_at_once(store: Arc<dyn Store>) {
    let f = fixture(store);
    let (_, url) = f.directory("race");
    for i in 0..20 {
        f.upload(&format!("u{i}"), format!("content {i}").as_bytes(), &url)
            .await;
    }
    let lease = T0.plus(Duration::from_secs(60));
    let claims = (0..8).map(|_| {
        let store = Arc::clone(&f.store);
        tokio::spawn(async move {
            store
                .claim_deliveries(&DeliverySelection::Waiting, 5, T0, lease)
                .await
                .unwrap()
        })
    });
    let mut claimed = Vec::new();
    for claim in claims {
        claimed.extend(claim.await.unwrap());
    }
    let mut ids: Vec<&str> = claimed
        .iter()
        .map(|l| l.upload.upload_id.as_str())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    assert_eq!(claimed.len(), 20);

    // A live lease is not taken over; an expired one is, and the old token is then stale.
    let first = claimed.into_iter().next().unwrap();
    let id = first.upload.upload_id.clone();
    let named = DeliverySelection::Named {
        upload_ids: vec![id.clone()],
        reset_failed: false,
    };
    let later = T0.plus(Duration::from_secs(30));
    assert!(f
        .store
        .claim_deliveries(&named, 1, later, later.plus(Duration::from_secs(60)))
        .await
        .unwrap()
        .is_empty());
    let expired = T0.plus(Duration::from_secs(61));
    let taken = f
        .store
        .claim_deliveries(&named, 1, expired, expired.plus(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].upload.delivery_attempts, 2);
    assert!(!f
        .store
        .extend_delivery(&id, &first.token, expired)
        .await
        .unwrap());
    let stale = f
        .store
        .finish_delivery(&id, &first.token, &DeliveryReport::Delivered, expired)
        .await
        .unwrap();
    assert_eq!(stale, None);
    assert_eq!(f.get(&id).await.status, UploadStatus::Delivering);
    let done = f
        .store
        .finish_delivery(&id, &taken[0].token, &DeliveryReport::Delivered, expired)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, UploadStatus::Delivered);
}

pub async fn retry_health_sums_each_source_over_its_window(store: Arc<dyn Store>) {
    let f = fixture(store);
    let day = Duration::from_secs(24 * 3600);
    let runs = [
        // (days before now, source, attempted, succeeded)
        (1, RetrySource::ClientFlush, 3, 2),
        (2, RetrySource::ClientFlush, 1, 1),
        (3, RetrySource::Scheduled, 4, 1),
        (3, RetrySource::Scheduled, 0, 0),
        (6, RetrySource::Manual, 2, 2),
        (8, RetrySource::Manual, 5, 0),
        (40, RetrySource::Scheduled, 9, 9),
    ];
    let now = T0.plus(day * 60);
    f.clock.set(now);
    for (days, source, attempted, succeeded) in runs {
        let started_at = now.minus(day * days);
        f.store
            .insert_retry_run(&NewRetryRun {
                source,
                attempted,
                succeeded,
                failed: attempted - succeeded,
                started_at,
                finished_at: started_at.plus(Duration::from_secs(1)),
            })
            .await
            .unwrap();
    }
    let health = f.service.retry_health(None).await.unwrap();
    assert_eq!(health.window_start, now.minus(day * 7));
    let by_source = |source: RetrySource| {
        health
            .sources
            .iter()
            .find(|s| s.source == Some(source))
            .unwrap()
            .clone()
    };
    let flush = by_source(RetrySource::ClientFlush);
    assert_eq!(
        (flush.runs, flush.attempted, flush.succeeded, flush.failed),
        (2, 4, 3, 1)
    );
    assert_eq!(flush.success_rate_percent(), Some(75.0));
    let scheduled = by_source(RetrySource::Scheduled);
    assert_eq!((scheduled.runs, scheduled.attempted), (2, 4));
    assert_eq!(scheduled.success_rate_percent(), Some(25.0));
    let manual = by_source(RetrySource::Manual);
    assert_eq!((manual.runs, manual.attempted), (1, 2));
    assert_eq!(health.total.attempted, 10);
    assert_eq!(health.total.success_rate_percent(), Some(60.0));

    // A window with no runs: every source present, zeros, no rate.
    let quiet = f
        .service
        .retry_health(Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(quiet.sources.len(), 3);
    assert!(quiet
        .sources
        .iter()
        .all(|s| s.runs == 0 && s.success_rate_percent().is_none()));
    assert_eq!(quiet.total.success_rate_percent(), None);

    // The log pages newest first and filters by source and start time.
    let filter = RetryRunFilter {
        source: Some(RetrySource::Scheduled),
        started_at_or_after: Some(now.minus(day * 30)),
        started_before: None,
    };
    let first = f
        .service
        .list_retry_runs(filter.clone(), 1, "")
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    let token = format!("after:{}", first.next_after.unwrap());
    let second = f.service.list_retry_runs(filter, 1, &token).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.next_after, None);
    assert!(second.items[0].id < first.items[0].id);
}

pub async fn pruning_removes_old_logs_and_delivered_content(store: Arc<dyn Store>) {
    let f = fixture(store);
    let (_, url) = f.directory("prune");
    f.upload("old", b"delivered long ago", &url).await;
    f.upload("kept", b"only stored", "").await;
    f.service.sweep().await.unwrap();
    assert_eq!(f.get("old").await.status, UploadStatus::Delivered);
    f.clock.advance(Duration::from_secs(20 * 24 * 3600));
    f.service.sweep().await.unwrap();

    f.clock.advance(Duration::from_secs(11 * 24 * 3600));
    let day = Duration::from_secs(24 * 3600);
    let (logs, contents) = f.service.prune(day * 30, day * 7).await.unwrap();
    assert_eq!((logs, contents), (1, 1));
    let old = f.get("old").await;
    assert!(old.content_pruned_at.is_some());
    assert!(matches!(
        f.download("old").await,
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(f.download("kept").await.unwrap(), b"only stored");
    assert_eq!(f.service.prune(day * 30, day * 7).await.unwrap(), (0, 0));
}

pub async fn uploads_list_by_owner_and_status_in_pages(store: Arc<dyn Store>) {
    let f = fixture(store);
    for i in 0..5 {
        let mut input = declaration(&format!("a{i}"), b"x", "");
        input.owner = if i % 2 == 0 { "alice" } else { "bob" }.into();
        f.service.create_upload(input).await.unwrap();
    }
    f.send("a0", 0, &[b"x"]).await.unwrap();
    let alice = UploadFilter {
        owner: Some("alice".into()),
        status: None,
    };
    let page = f.service.list_uploads(alice.clone(), 2, "").await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|u| u.upload_id.as_str()).collect();
    assert_eq!(ids, ["a4", "a2"]);
    let token = format!("after:{}", page.next_after.unwrap());
    let rest = f.service.list_uploads(alice, 2, &token).await.unwrap();
    assert_eq!(rest.items[0].upload_id, "a0");
    assert_eq!(rest.next_after, None);
    let stored = UploadFilter {
        owner: None,
        status: Some(UploadStatus::Stored),
    };
    let page = f.service.list_uploads(stored, 10, "").await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].upload_id, "a0");
}
