//! The behaviours every store engine must show. Time is passed in explicitly: no case sleeps.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use retryd::core::auth::{NewApiKey, Role};
use retryd::core::chunks::*;
use retryd::core::retry::RetryPolicy;
use retryd::core::{Error, Timestamp};
use retryd::store::Store;

const T0: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);

fn at(seconds: u64) -> Timestamp {
    T0.plus(Duration::from_secs(seconds))
}

fn new_job(job_id: &str, queue: &str, chunks: usize) -> NewJob {
    NewJob {
        job_id: job_id.into(),
        queue: queue.into(),
        priority: 0,
        max_attempts: 3,
        retry_policy: RetryPolicy::default(),
        payloads: (0..chunks)
            .map(|i| format!("{job_id}/{i}").into_bytes())
            .collect(),
    }
}

fn claim(queue: &str, max_chunks: u32, token: &str) -> ClaimRequest {
    ClaimRequest {
        queue: queue.into(),
        worker_id: "worker-1".into(),
        max_chunks,
        lease: Duration::from_secs(60),
        lease_token: token.into(),
    }
}

fn completion(chunk: &LeasedChunk) -> Completion {
    Completion {
        chunk_id: chunk.chunk_id,
        lease_token: chunk.lease_token.clone(),
        result: b"done".to_vec(),
    }
}

fn failure(chunk: &LeasedChunk, retryable: bool) -> Failure {
    Failure {
        chunk_id: chunk.chunk_id,
        lease_token: chunk.lease_token.clone(),
        error_message: "boom".into(),
        retryable,
        jitter: 0.0,
    }
}

async fn complete_one(
    store: &Arc<dyn Store>,
    chunk: &LeasedChunk,
    now: Timestamp,
) -> Result<ChunkSettled, Error> {
    store
        .complete_chunks(vec![completion(chunk)], now)
        .await
        .unwrap()
        .remove(0)
}

pub async fn create_is_idempotent_and_conflicts_on_other_content(store: Arc<dyn Store>) {
    let first = store
        .create_job(new_job("job-a", "q", 3), at(0))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.job.status, JobStatus::Pending);
    assert_eq!(first.job.total_chunks, 3);

    let again = store
        .create_job(new_job("job-a", "q", 3), at(5))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.job.created_at, at(0));

    let mut other = new_job("job-a", "q", 3);
    other.payloads[2] = b"different".to_vec();
    let err = store.create_job(other, at(6)).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");

    let progress = store.job_progress("job-a").await.unwrap();
    assert_eq!(
        (progress.total, progress.pending),
        (3, 3),
        "nothing was added twice"
    );
}

pub async fn concurrent_creates_of_one_id_make_one_job(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create_job(new_job("race", "q", 50), at(0)).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store.job_progress("race").await.unwrap().pending, 50);
}

pub async fn claims_take_higher_priority_first_then_oldest(store: Arc<dyn Store>) {
    store
        .create_job(new_job("old-low", "q", 2), at(0))
        .await
        .unwrap();
    let mut urgent = new_job("new-high", "q", 2);
    urgent.priority = 10;
    store.create_job(urgent, at(1)).await.unwrap();
    store
        .create_job(new_job("other-queue", "elsewhere", 2), at(0))
        .await
        .unwrap();

    let first = store
        .claim_chunks(&claim("q", 3, "t1"), at(2))
        .await
        .unwrap();
    let order: Vec<(String, u32)> = first.iter().map(|c| (c.job_id.clone(), c.index)).collect();
    assert_eq!(
        order,
        vec![
            ("new-high".into(), 0),
            ("new-high".into(), 1),
            ("old-low".into(), 0)
        ]
    );
    assert!(first
        .iter()
        .all(|c| c.attempt == 1 && c.lease_token == "t1"));
    assert_eq!(first[0].lease_expires_at, at(62));
    assert_eq!(first[0].payload, b"new-high/0");

    let rest = store
        .claim_chunks(&claim("q", 10, "t2"), at(2))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].job_id.as_str(), rest[0].index), ("old-low", 1));
    assert!(store
        .claim_chunks(&claim("q", 10, "t3"), at(2))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.get_job("old-low").await.unwrap().status,
        JobStatus::Processing
    );
}

pub async fn claims_skip_chunks_whose_backoff_has_not_ended(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 2), at(0)).await.unwrap();
    let leased = store
        .claim_chunks(&claim("q", 1, "t1"), at(0))
        .await
        .unwrap();
    let outcome = store
        .fail_chunk(failure(&leased[0], true), at(10))
        .await
        .unwrap();
    assert_eq!(outcome.retry_at, Some(at(11)));
    assert_eq!(
        store.earliest_pending_run_at("q").await.unwrap(),
        Some(at(0))
    );

    let next = store
        .claim_chunks(&claim("q", 5, "t2"), at(10))
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![1],
        "chunk 0 is backing off"
    );
    assert_eq!(
        store.earliest_pending_run_at("q").await.unwrap(),
        Some(at(11))
    );
    let retried = store
        .claim_chunks(&claim("q", 5, "t3"), at(11))
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].index, retried[0].attempt), (0, 2));
    assert_eq!(store.earliest_pending_run_at("q").await.unwrap(), None);
}

pub async fn concurrent_claimers_never_get_the_same_chunk(store: Arc<dyn Store>) {
    // Many small jobs, so concurrent claims also race to mark the same new jobs started (a
    // race that once deadlocked on Postgres).
    const CHUNKS: usize = 600;
    for job in 0..60 {
        let id = format!("job-{job}");
        store
            .create_job(new_job(&id, "q", CHUNKS / 60), at(0))
            .await
            .unwrap();
    }
    let claimers: Vec<_> = (0..12)
        .map(|worker| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let token = format!("w{worker}-{}", mine.len());
                    let batch = store
                        .claim_chunks(&claim("q", 25, &token), at(1))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.chunk_id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for claimer in claimers {
        for chunk_id in claimer.await.unwrap() {
            total += 1;
            assert!(seen.insert(chunk_id), "chunk {chunk_id} was leased twice");
        }
    }
    assert_eq!(total, CHUNKS);
}

pub async fn stale_lease_tokens_change_nothing(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 1), at(0)).await.unwrap();
    let first = store
        .claim_chunks(&claim("q", 1, "old"), at(0))
        .await
        .unwrap()
        .remove(0);
    // The lease expires and the chunk is given to someone else.
    store.recover_stuck_chunks(at(61)).await.unwrap();
    let second = store
        .claim_chunks(&claim("q", 1, "new"), at(62))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.chunk_id, first.chunk_id);

    let stale = |err: Error| matches!(err, Error::FailedPrecondition(_));
    assert!(stale(
        complete_one(&store, &first, at(63)).await.unwrap_err()
    ));
    assert!(stale(
        store
            .fail_chunk(failure(&first, false), at(63))
            .await
            .unwrap_err()
    ));
    assert!(stale(
        store
            .extend_lease(first.chunk_id, "old", at(500))
            .await
            .unwrap_err()
    ));
    let missing = store
        .extend_lease(999_999, "old", at(500))
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");

    let progress = store.job_progress("j").await.unwrap();
    assert_eq!(
        (progress.processing, progress.completed, progress.failed),
        (1, 0, 0)
    );
    let info = store
        .list_chunks(
            "j",
            None,
            PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        info.items[0].lease_expires_at,
        Some(at(122)),
        "the new lease is untouched"
    );

    complete_one(&store, &second, at(64)).await.unwrap();
    assert_eq!(
        store.get_job("j").await.unwrap().status,
        JobStatus::Completed
    );
}

pub async fn a_repeated_completion_is_harmless(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 2), at(0)).await.unwrap();
    let leased = store
        .claim_chunks(&claim("q", 2, "t"), at(0))
        .await
        .unwrap();
    complete_one(&store, &leased[0], at(1)).await.unwrap();
    let again = complete_one(&store, &leased[0], at(2)).await.unwrap();
    assert_eq!(again.job_status, JobStatus::Processing);
    let job = store.get_job("j").await.unwrap();
    assert_eq!(job.completed_chunks, 1, "counted once");
    let results = store
        .complete_chunks(vec![completion(&leased[1]), completion(&leased[1])], at(3))
        .await
        .unwrap();
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap().job_status == JobStatus::Completed));
    assert_eq!(store.get_job("j").await.unwrap().completed_chunks, 2);
}

pub async fn retryable_failures_back_off_until_attempts_run_out(store: Arc<dyn Store>) {
    let mut job = new_job("j", "q", 1);
    job.retry_policy = RetryPolicy {
        initial_backoff: Duration::from_secs(10),
        multiplier: 3.0,
        max_backoff: Duration::from_secs(60),
    };
    store.create_job(job, at(0)).await.unwrap();

    let attempt1 = store
        .claim_chunks(&claim("q", 1, "a1"), at(0))
        .await
        .unwrap()
        .remove(0);
    let outcome = store
        .fail_chunk(failure(&attempt1, true), at(100))
        .await
        .unwrap();
    assert_eq!(
        (outcome.chunk_status, outcome.attempts, outcome.retry_at),
        (ChunkStatus::Pending, 1, Some(at(110)))
    );

    let attempt2 = store
        .claim_chunks(&claim("q", 1, "a2"), at(110))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(attempt2.attempt, 2);
    let outcome = store
        .fail_chunk(failure(&attempt2, true), at(200))
        .await
        .unwrap();
    assert_eq!(outcome.retry_at, Some(at(230)), "10 s × 3");

    let attempt3 = store
        .claim_chunks(&claim("q", 1, "a3"), at(230))
        .await
        .unwrap()
        .remove(0);
    let outcome = store
        .fail_chunk(failure(&attempt3, true), at(300))
        .await
        .unwrap();
    assert_eq!(
        (outcome.chunk_status, outcome.retry_at),
        (ChunkStatus::Failed, None)
    );
    assert_eq!(outcome.settled.job_status, JobStatus::Failed);
    let info = store
        .list_chunks(
            "j",
            None,
            PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(info.items[0].last_error.as_deref(), Some("boom"));
    assert_eq!(info.items[0].attempts, 3);
    assert!(store
        .claim_chunks(&claim("q", 1, "a4"), at(10_000))
        .await
        .unwrap()
        .is_empty());
}

pub async fn non_retryable_failure_fails_at_once(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 1), at(0)).await.unwrap();
    let leased = store
        .claim_chunks(&claim("q", 1, "t"), at(0))
        .await
        .unwrap()
        .remove(0);
    let outcome = store
        .fail_chunk(failure(&leased, false), at(1))
        .await
        .unwrap();
    assert_eq!(
        (outcome.chunk_status, outcome.attempts),
        (ChunkStatus::Failed, 1)
    );
    let job = store.get_job("j").await.unwrap();
    assert_eq!(
        (job.status, job.failed_chunks, job.finished_at),
        (JobStatus::Failed, 1, Some(at(1)))
    );
}

pub async fn a_failed_chunk_does_not_block_the_others(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 3), at(0)).await.unwrap();
    let first = store
        .claim_chunks(&claim("q", 1, "t1"), at(0))
        .await
        .unwrap()
        .remove(0);
    store
        .fail_chunk(failure(&first, false), at(1))
        .await
        .unwrap();
    let rest = store
        .claim_chunks(&claim("q", 5, "t2"), at(2))
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|c| c.index).collect::<Vec<_>>(), vec![1, 2]);
    for chunk in &rest {
        complete_one(&store, chunk, at(3)).await.unwrap();
    }
    let progress = store.job_progress("j").await.unwrap();
    assert_eq!((progress.completed, progress.failed), (2, 1));
    assert_eq!(progress.status, JobStatus::PartialFailure);
}

pub async fn expired_leases_are_recovered_or_failed(store: Arc<dyn Store>) {
    let mut job = new_job("j", "q", 2);
    job.max_attempts = 1;
    store.create_job(job, at(0)).await.unwrap();
    store.create_job(new_job("k", "q", 1), at(0)).await.unwrap();
    let leased = store
        .claim_chunks(&claim("q", 3, "t"), at(0))
        .await
        .unwrap();
    assert_eq!(leased.len(), 3);

    assert_eq!(
        store.recover_stuck_chunks(at(59)).await.unwrap(),
        RecoverOutcome::default()
    );
    let outcome = store.recover_stuck_chunks(at(61)).await.unwrap();
    assert_eq!(
        outcome,
        RecoverOutcome {
            recovered: 1,
            failed: 2
        },
        "j has one attempt, k three"
    );
    assert_eq!(store.get_job("j").await.unwrap().status, JobStatus::Failed);
    let k = store.job_progress("k").await.unwrap();
    assert_eq!((k.pending, k.processing), (1, 0));
    let info = store
        .list_chunks(
            "k",
            None,
            PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(info.items[0].last_error.as_deref(), Some("lease expired"));
}

pub async fn extended_leases_are_not_recovered(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 1), at(0)).await.unwrap();
    let leased = store
        .claim_chunks(&claim("q", 1, "t"), at(0))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store
            .extend_lease(leased.chunk_id, "t", at(120))
            .await
            .unwrap(),
        at(120)
    );
    assert_eq!(
        store.recover_stuck_chunks(at(100)).await.unwrap().recovered,
        0
    );
    complete_one(&store, &leased, at(101)).await.unwrap();
}

pub async fn released_leases_go_back_to_pending(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 4), at(0)).await.unwrap();
    let stream_a = store
        .claim_chunks(&claim("q", 2, "streamA-1"), at(0))
        .await
        .unwrap();
    let stream_b = store
        .claim_chunks(&claim("q", 1, "streamB-1"), at(0))
        .await
        .unwrap();
    complete_one(&store, &stream_a[0], at(1)).await.unwrap();

    let outcome = store.release_leases("streamA-", at(2)).await.unwrap();
    assert_eq!(
        outcome,
        RecoverOutcome {
            recovered: 1,
            failed: 0
        }
    );
    let progress = store.job_progress("j").await.unwrap();
    assert_eq!(
        (progress.pending, progress.processing, progress.completed),
        (2, 1, 1)
    );
    complete_one(&store, &stream_b[0], at(3)).await.unwrap();
    assert!(matches!(
        complete_one(&store, &stream_a[1], at(3)).await,
        Err(Error::FailedPrecondition(_))
    ));
}

pub async fn cancel_stops_pending_and_leased_chunks(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 3), at(0)).await.unwrap();
    let leased = store
        .claim_chunks(&claim("q", 1, "t"), at(0))
        .await
        .unwrap()
        .remove(0);
    let job = store.cancel_job("j", at(1)).await.unwrap();
    assert_eq!(
        (job.status, job.finished_at),
        (JobStatus::Cancelled, Some(at(1)))
    );
    assert!(matches!(
        complete_one(&store, &leased, at(2)).await,
        Err(Error::FailedPrecondition(_))
    ));
    assert!(store
        .claim_chunks(&claim("q", 5, "t2"), at(2))
        .await
        .unwrap()
        .is_empty());
    let progress = store.job_progress("j").await.unwrap();
    assert_eq!(
        (progress.cancelled, progress.status),
        (3, JobStatus::Cancelled)
    );
    assert_eq!(progress.percentage(), 100.0);
    assert_eq!(
        store.cancel_job("j", at(3)).await.unwrap().finished_at,
        Some(at(1)),
        "idempotent"
    );

    store
        .create_job(new_job("done", "q", 1), at(0))
        .await
        .unwrap();
    let chunk = store
        .claim_chunks(&claim("q", 1, "t3"), at(0))
        .await
        .unwrap()
        .remove(0);
    complete_one(&store, &chunk, at(1)).await.unwrap();
    assert!(matches!(
        store.cancel_job("done", at(2)).await,
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        store.cancel_job("nope", at(2)).await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn progress_counts_and_status_transitions(store: Arc<dyn Store>) {
    store.create_job(new_job("j", "q", 4), at(0)).await.unwrap();
    let progress = store.job_progress("j").await.unwrap();
    assert_eq!(
        (progress.status, progress.pending, progress.percentage()),
        (JobStatus::Pending, 4, 0.0)
    );

    let leased = store
        .claim_chunks(&claim("q", 3, "t"), at(1))
        .await
        .unwrap();
    let progress = store.job_progress("j").await.unwrap();
    assert_eq!(
        (progress.status, progress.pending, progress.processing),
        (JobStatus::Processing, 1, 3)
    );

    complete_one(&store, &leased[0], at(2)).await.unwrap();
    store
        .fail_chunk(failure(&leased[1], false), at(2))
        .await
        .unwrap();
    let progress = store.job_progress("j").await.unwrap();
    assert_eq!(
        (progress.completed, progress.failed, progress.processing),
        (1, 1, 1)
    );
    assert_eq!(progress.percentage(), 50.0);

    complete_one(&store, &leased[2], at(3)).await.unwrap();
    let last = store
        .claim_chunks(&claim("q", 1, "t2"), at(3))
        .await
        .unwrap()
        .remove(0);
    let settled = complete_one(&store, &last, at(4)).await.unwrap();
    assert_eq!(settled.job_status, JobStatus::PartialFailure);
    let job = store.get_job("j").await.unwrap();
    assert_eq!(
        (job.completed_chunks, job.failed_chunks, job.finished_at),
        (3, 1, Some(at(4)))
    );
    assert!(matches!(
        store.job_progress("nope").await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn retry_failed_chunks_resets_attempts(store: Arc<dyn Store>) {
    let mut job = new_job("j", "q", 2);
    job.max_attempts = 1;
    store.create_job(job, at(0)).await.unwrap();
    for chunk in store
        .claim_chunks(&claim("q", 2, "t"), at(0))
        .await
        .unwrap()
    {
        store
            .fail_chunk(failure(&chunk, true), at(1))
            .await
            .unwrap();
    }
    assert_eq!(store.get_job("j").await.unwrap().status, JobStatus::Failed);

    let (reset, status) = store.retry_failed_chunks("j", at(2)).await.unwrap();
    assert_eq!((reset, status), (2, JobStatus::Processing));
    let job = store.get_job("j").await.unwrap();
    assert_eq!((job.failed_chunks, job.finished_at), (0, None));
    let again = store
        .claim_chunks(&claim("q", 2, "t2"), at(2))
        .await
        .unwrap();
    assert!(again.iter().all(|c| c.attempt == 1), "attempts start over");
    for chunk in &again {
        complete_one(&store, chunk, at(3)).await.unwrap();
    }
    assert_eq!(
        store.get_job("j").await.unwrap().status,
        JobStatus::Completed
    );
    assert_eq!(store.retry_failed_chunks("j", at(4)).await.unwrap().0, 0);
    assert!(matches!(
        store.retry_failed_chunks("nope", at(4)).await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn jobs_and_chunks_list_in_pages(store: Arc<dyn Store>) {
    for i in 0..5 {
        let queue = if i % 2 == 0 { "even" } else { "odd" };
        store
            .create_job(new_job(&format!("job-{i}"), queue, 3), at(i))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_jobs(JobFilter::default(), PageRequest { size: 2, after })
            .await
            .unwrap();
        seen.extend(page.items.into_iter().map(|job| job.job_id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec!["job-4", "job-3", "job-2", "job-1", "job-0"],
        "newest first"
    );

    let even = JobFilter {
        queue: Some("even".into()),
        status: None,
    };
    let page = store
        .list_jobs(
            even,
            PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.next_after, None);
    let completed = JobFilter {
        queue: None,
        status: Some(JobStatus::Completed),
    };
    assert!(store
        .list_jobs(
            completed,
            PageRequest {
                size: 10,
                after: None
            }
        )
        .await
        .unwrap()
        .items
        .is_empty());

    let first = store
        .list_chunks(
            "job-1",
            None,
            PageRequest {
                size: 2,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(first.items[0].payload_size, "job-1/0".len() as u32);
    let second = store
        .list_chunks(
            "job-1",
            None,
            PageRequest {
                size: 2,
                after: first.next_after,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        second.items.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![2]
    );
    assert!(matches!(
        store
            .list_chunks(
                "nope",
                None,
                PageRequest {
                    size: 2,
                    after: None
                }
            )
            .await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn queue_depths_count_by_queue_and_status(store: Arc<dyn Store>) {
    store
        .create_job(new_job("a", "alpha", 3), at(0))
        .await
        .unwrap();
    store
        .create_job(new_job("b", "beta", 2), at(0))
        .await
        .unwrap();
    let leased = store
        .claim_chunks(&claim("alpha", 2, "t"), at(0))
        .await
        .unwrap();
    complete_one(&store, &leased[0], at(1)).await.unwrap();
    let depths = store.queue_depths().await.unwrap();
    assert_eq!(
        depths,
        vec![
            QueueDepth {
                queue: "alpha".into(),
                pending: 1,
                processing: 1,
                completed: 1,
                ..Default::default()
            },
            QueueDepth {
                queue: "beta".into(),
                pending: 2,
                ..Default::default()
            },
        ]
    );
}

pub async fn api_keys_are_stored_by_hash(store: Arc<dyn Store>) {
    assert_eq!(store.count_api_keys().await.unwrap(), 0);
    let key = NewApiKey::generate(Role::Worker);
    store.insert_api_key(&key.record, at(0)).await.unwrap();
    assert_eq!(store.count_api_keys().await.unwrap(), 1);
    let found = store
        .find_api_key(&key.record.key_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, key.record);
    assert!(!found.secret_hash.is_empty() && !key.plaintext.contains(&found.secret_hash));
    assert_eq!(store.find_api_key("missing").await.unwrap(), None);
    store.ping().await.unwrap();
}

fn scheduled(
    task: &str,
    slot: i64,
    replica: &str,
    seconds: u64,
) -> retryd::core::tasks::NewTaskRun {
    retryd::core::tasks::NewTaskRun {
        task: task.into(),
        slot: Some(slot),
        replica_id: replica.into(),
        kind: retryd::core::tasks::RunKind::Schedule,
        started_at: at(seconds),
    }
}

pub async fn each_task_slot_is_taken_once(store: Arc<dyn Store>) {
    use retryd::core::tasks::{RunKind, RunOutcome};
    let first = store
        .start_task_run(&scheduled("sweep", 7, "a", 0))
        .await
        .unwrap();
    assert!(first.is_some());
    assert_eq!(
        store
            .start_task_run(&scheduled("sweep", 7, "b", 1))
            .await
            .unwrap(),
        None,
        "slot 7 is taken"
    );
    assert!(store
        .start_task_run(&scheduled("other", 7, "b", 1))
        .await
        .unwrap()
        .is_some());
    let mut manual = scheduled("sweep", 0, "b", 2);
    manual.slot = None;
    manual.kind = RunKind::Manual;
    assert!(store.start_task_run(&manual).await.unwrap().is_some());
    assert!(
        store.start_task_run(&manual).await.unwrap().is_some(),
        "manual runs have no slot"
    );

    let counts = vec![("recovered".to_owned(), 4)];
    store
        .finish_task_run(first.unwrap(), at(3), RunOutcome::Ok, &counts, None)
        .await
        .unwrap();
    let latest = store.latest_task_runs().await.unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|run| run.task.as_str())
            .collect::<Vec<_>>(),
        vec!["other", "sweep"]
    );
    let sweep = &latest[1];
    assert_eq!(
        (sweep.kind, sweep.slot, sweep.outcome),
        (RunKind::Manual, None, None),
        "the newest run"
    );

    let all = store
        .list_task_runs(
            Some("sweep"),
            PageRequest {
                size: 2,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    let rest = store
        .list_task_runs(
            Some("sweep"),
            PageRequest {
                size: 2,
                after: all.next_after,
            },
        )
        .await
        .unwrap();
    let oldest = &rest.items[0];
    assert_eq!(
        (oldest.slot, oldest.outcome, &oldest.counts),
        (Some(7), Some(RunOutcome::Ok), &counts)
    );
    assert_eq!(oldest.finished_at, Some(at(3)));
    assert_eq!(rest.next_after, None);

    assert_eq!(
        store.prune_task_runs(at(1)).await.unwrap(),
        1,
        "only the run started before"
    );
}

pub async fn pruning_deletes_only_old_finished_jobs(store: Arc<dyn Store>) {
    for job_id in ["old-done", "old-open", "new-done"] {
        store
            .create_job(new_job(job_id, "q", 2), at(0))
            .await
            .unwrap();
    }
    store.cancel_job("old-done", at(10)).await.unwrap();
    store.cancel_job("new-done", at(1000)).await.unwrap();
    assert_eq!(store.prune_finished_jobs(at(500), 100).await.unwrap(), 1);
    assert!(matches!(
        store.get_job("old-done").await,
        Err(Error::NotFound { .. })
    ));
    store.get_job("old-open").await.unwrap();
    store.get_job("new-done").await.unwrap();
    let depths = store.queue_depths().await.unwrap();
    assert_eq!(
        depths[0].pending + depths[0].cancelled,
        4,
        "the pruned job's chunks went with it"
    );
}

pub async fn a_completion_batch_settles_each_item_on_its_own(store: Arc<dyn Store>) {
    store.create_job(new_job("a", "q", 2), at(0)).await.unwrap();
    store.create_job(new_job("b", "q", 1), at(0)).await.unwrap();
    let leased = store
        .claim_chunks(&claim("q", 3, "t"), at(0))
        .await
        .unwrap();
    let mut stale = completion(&leased[1]);
    stale.lease_token = "other".into();
    let unknown = Completion {
        chunk_id: 987_654,
        lease_token: "t".into(),
        result: vec![],
    };
    let batch = vec![
        completion(&leased[0]),
        stale,
        unknown,
        completion(&leased[2]),
    ];
    let results = store.complete_chunks(batch, at(1)).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap().job_id, "a");
    assert!(matches!(results[1], Err(Error::FailedPrecondition(_))));
    assert!(matches!(results[2], Err(Error::NotFound { .. })));
    assert_eq!(
        results[3].as_ref().unwrap().job_status,
        JobStatus::Completed,
        "b's only chunk"
    );
    let a = store.get_job("a").await.unwrap();
    assert_eq!((a.completed_chunks, a.status), (1, JobStatus::Processing));
    let info = store
        .list_chunks(
            "a",
            None,
            PageRequest {
                size: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(info.items[0].result.as_deref(), Some(&b"done"[..]));
    assert_eq!(
        info.items[1].status,
        ChunkStatus::Processing,
        "the stale completion changed nothing"
    );
}

// SyncRetry's cases live in their own file.
pub use super::sync_cases::*;
