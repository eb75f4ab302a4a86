//! ChunkQueue's queries, written once for both engines.
//!
//! `impl_chunk_store!` expands the same query code against each engine's connection type; an
//! engine supplies only what differs: how a write transaction begins (`$tx`), and the three hot
//! steps, each in as few round trips as the engine allows: inserting a job with its chunks
//! (`insert_job`), claiming (`claim`) and completing a batch (`complete_leased`). Writes that check and then change a row re-check their guard in
//! the UPDATE itself, so they stay correct under Postgres' READ COMMITTED as well as under
//! SQLite's serialized writers.

/// Expired leases handled per recovery run, so one run never holds a huge transaction.
pub(crate) const RECOVERY_BATCH: i64 = 10_000;

macro_rules! impl_chunk_store {
    ($store:ty, $conn:ty, $tx:ident) => {
        const _: () = {
            use std::collections::BTreeMap;

            use diesel::dsl::{count_star, min};
            use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
            use diesel::TextExpressionMethods;
            // AsyncConnection brings `transaction` for engines that begin writes with it.
            #[allow(unused_imports)]
            use diesel_async::AsyncConnection;
            use diesel_async::RunQueryDsl;

            use $crate::core::chunks::*;
            use $crate::core::{Error, Result, Timestamp};
            use $crate::store::chunk_queue::RECOVERY_BATCH;
            use $crate::store::error::TxError;
            use $crate::store::rows::*;
            use $crate::store::schema::{chunks, jobs};

            diesel::define_sql_function!(fn length(x: diesel::sql_types::Binary) -> diesel::sql_types::Integer);

            const PENDING: &str = "pending";
            const PROCESSING: &str = "processing";

            impl $store {
                async fn find_job_row(conn: &mut $conn, job_id: &str) -> Result<Option<JobRow>, TxError> {
                    Ok(jobs::table
                        .filter(jobs::job_id.eq(job_id))
                        .select(JobRow::as_select())
                        .first(conn)
                        .await
                        .optional()?)
                }

                async fn job_row(conn: &mut $conn, job_id: &str) -> Result<JobRow, TxError> {
                    Self::find_job_row(conn, job_id).await?.ok_or_else(|| {
                        TxError::Domain(Error::NotFound { kind: "job", id: job_id.to_owned() })
                    })
                }

                /// Adds newly final chunks to the job's counters and finishes the job when every
                /// chunk is final. The counter UPDATE locks the job row, so two transactions
                /// finishing the last chunks cannot both miss the end.
                async fn settle_job(
                    conn: &mut $conn,
                    job_id: &str,
                    completed: u32,
                    failed: u32,
                    now: Timestamp,
                ) -> Result<JobStatus, TxError> {
                    let (total, done, failures, status): (i32, i32, i32, String) =
                        diesel::update(jobs::table.filter(jobs::job_id.eq(job_id)))
                            .set((
                                jobs::completed_chunks.eq(jobs::completed_chunks + to_i32(completed)),
                                jobs::failed_chunks.eq(jobs::failed_chunks + to_i32(failed)),
                                jobs::updated_at.eq(now.as_micros()),
                            ))
                            .returning((
                                jobs::total_chunks,
                                jobs::completed_chunks,
                                jobs::failed_chunks,
                                jobs::status,
                            ))
                            .get_result(conn)
                            .await?;
                    let status = job_status(&status)?;
                    if status.is_final() {
                        return Ok(status);
                    }
                    match JobStatus::when_all_chunks_final(count(total), count(done), count(failures)) {
                        Some(finished) => {
                            diesel::update(jobs::table.filter(jobs::job_id.eq(job_id)))
                                .set((
                                    jobs::status.eq(finished.as_str()),
                                    jobs::finished_at.eq(Some(now.as_micros())),
                                ))
                                .execute(conn)
                                .await?;
                            Ok(finished)
                        }
                        None => Ok(status),
                    }
                }

                /// Why a lease-guarded update matched nothing: the chunk does not exist, or the
                /// token is not (or no longer) its current lease.
                async fn lease_error(conn: &mut $conn, chunk_id: i64) -> Result<Error, TxError> {
                    let exists: i64 = chunks::table
                        .filter(chunks::id.eq(chunk_id))
                        .count()
                        .get_result(conn)
                        .await?;
                    Ok(if exists == 0 {
                        Error::NotFound { kind: "chunk", id: chunk_id.to_string() }
                    } else {
                        Error::stale_lease(chunk_id)
                    })
                }

                /// Puts leased chunks back: to pending when attempts are left, else to failed.
                /// The UPDATEs repeat the selection's guards (still leased under a token with
                /// this prefix, lease ended before `expired_before`) so a lease renewed or
                /// settled meanwhile is left alone.
                async fn requeue_leased(
                    conn: &mut $conn,
                    ids: &[i64],
                    token_prefix: &str,
                    expired_before: i64,
                    reason: &str,
                    now: Timestamp,
                ) -> Result<RecoverOutcome, TxError> {
                    if ids.is_empty() {
                        return Ok(RecoverOutcome::default());
                    }
                    let pattern = format!("{token_prefix}%");
                    let requeued = diesel::update(
                        chunks::table
                            .filter(chunks::id.eq_any(ids))
                            .filter(chunks::status.eq(PROCESSING))
                            .filter(chunks::lease_token.like(&pattern))
                            .filter(chunks::lease_expires_at.lt(expired_before))
                            .filter(chunks::attempts.lt(chunks::max_attempts)),
                    )
                    .set((
                        chunks::status.eq(PENDING),
                        chunks::run_at.eq(now.as_micros()),
                        chunks::lease_token.eq(None::<String>),
                        chunks::lease_expires_at.eq(None::<i64>),
                        chunks::last_error.eq(reason),
                    ))
                    .execute(conn)
                    .await?;
                    let failed_jobs: Vec<String> = diesel::update(
                        chunks::table
                            .filter(chunks::id.eq_any(ids))
                            .filter(chunks::status.eq(PROCESSING))
                            .filter(chunks::lease_token.like(&pattern))
                            .filter(chunks::lease_expires_at.lt(expired_before))
                            .filter(chunks::attempts.ge(chunks::max_attempts)),
                    )
                    .set((
                        chunks::status.eq(ChunkStatus::Failed.as_str()),
                        chunks::completed_at.eq(Some(now.as_micros())),
                        chunks::lease_expires_at.eq(None::<i64>),
                        chunks::last_error.eq(format!("{reason} on the last attempt")),
                    ))
                    .returning(chunks::job_id)
                    .get_results(conn)
                    .await?;
                    let failed = failed_jobs.len() as u32;
                    for (job_id, failed_in_job) in tally(failed_jobs) {
                        Self::settle_job(conn, &job_id, 0, failed_in_job, now).await?;
                    }
                    Ok(RecoverOutcome { recovered: requeued as u32, failed })
                }
            }

            fn tally(job_ids: Vec<String>) -> BTreeMap<String, u32> {
                let mut counts = BTreeMap::new();
                for job_id in job_ids {
                    *counts.entry(job_id).or_insert(0) += 1;
                }
                counts
            }

            fn job_from_new(job: &NewJob, now: Timestamp) -> Job {
                Job {
                    job_id: job.job_id.clone(),
                    queue: job.queue.clone(),
                    status: JobStatus::Pending,
                    priority: job.priority,
                    max_attempts: job.max_attempts,
                    retry_policy: job.retry_policy,
                    total_chunks: job.payloads.len() as u32,
                    completed_chunks: 0,
                    failed_chunks: 0,
                    created_at: now,
                    updated_at: now,
                    finished_at: None,
                }
            }

            fn same_content(existing: JobRow, job: &NewJob) -> Result<CreatedJob> {
                if existing.content_hash != job.content_hash() {
                    return Err(Error::AlreadyExists { kind: "job", id: job.job_id.clone() });
                }
                Ok(CreatedJob { job: existing.into_job()?, created: false })
            }

            #[async_trait::async_trait]
            impl $crate::store::ChunkStore for $store {
                async fn create_job(&self, job: NewJob, now: Timestamp) -> Result<CreatedJob> {
                    let mut conn = self.conn().await?;
                    // The engine inserts the job and its chunks atomically, or nothing when the
                    // id is taken (also by a concurrent call).
                    if Self::insert_job(&mut conn, &job, now).await.map_err(TxError::from)? {
                        return Ok(CreatedJob { job: job_from_new(&job, now), created: true });
                    }
                    let existing = Self::job_row(&mut conn, &job.job_id).await?;
                    same_content(existing, &job)
                }

                async fn get_job(&self, job_id: &str) -> Result<Job> {
                    let mut conn = self.conn().await?;
                    Self::job_row(&mut conn, job_id).await?.into_job()
                }

                async fn list_jobs(&self, filter: JobFilter, page: PageRequest) -> Result<Page<Job>> {
                    let mut conn = self.conn().await?;
                    let mut query = jobs::table
                        .select(JobRow::as_select())
                        .order(jobs::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(queue) = filter.queue {
                        query = query.filter(jobs::queue.eq(queue));
                    }
                    if let Some(status) = filter.status {
                        query = query.filter(jobs::status.eq(status.as_str()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(jobs::id.lt(after));
                    }
                    let rows: Vec<JobRow> = query.load(&mut *conn).await.map_err(TxError::from)?;
                    $crate::store::paging::keyset_page(rows, page.size, |row| row.id, JobRow::into_job)
                }

                async fn cancel_job(&self, job_id: &str, now: Timestamp) -> Result<Job> {
                    let mut conn = self.conn().await?;
                    let row = conn
                        .$tx(async |conn| {
                            let row = Self::job_row(conn, job_id).await?;
                            let status = job_status(&row.status)?;
                            if status == JobStatus::Cancelled {
                                return Ok(row);
                            }
                            if status.is_final() {
                                return Err(TxError::Domain(Error::FailedPrecondition(format!(
                                    "job {job_id:?} is already {}",
                                    status.as_str()
                                ))));
                            }
                            diesel::update(
                                chunks::table
                                    .filter(chunks::job_id.eq(job_id))
                                    .filter(chunks::status.eq_any([PENDING, PROCESSING])),
                            )
                            .set((
                                chunks::status.eq(ChunkStatus::Cancelled.as_str()),
                                chunks::lease_expires_at.eq(None::<i64>),
                                chunks::completed_at.eq(Some(now.as_micros())),
                            ))
                            .execute(conn)
                            .await?;
                            Ok(diesel::update(jobs::table.filter(jobs::job_id.eq(job_id)))
                                .set((
                                    jobs::status.eq(JobStatus::Cancelled.as_str()),
                                    jobs::finished_at.eq(Some(now.as_micros())),
                                    jobs::updated_at.eq(now.as_micros()),
                                ))
                                .returning(JobRow::as_returning())
                                .get_result(conn)
                                .await?)
                        })
                        .await?;
                    row.into_job()
                }

                async fn claim_chunks(&self, claim: &ClaimRequest, now: Timestamp) -> Result<Vec<LeasedChunk>> {
                    let expires_at = now.plus(claim.lease);
                    let mut conn = self.claim_conn().await?;
                    // One statement on Postgres; the engine wraps what needs a transaction.
                    let mut rows: Vec<ClaimedRow> = Self::claim(&mut conn, claim, now, expires_at)
                        .await
                        .map_err(TxError::from)?;
                    // RETURNING gives no order guarantee; hand chunks out in claim order.
                    rows.sort_unstable_by_key(|row| (std::cmp::Reverse(row.priority), row.id));
                    Ok(rows.into_iter().map(|row| row.into_leased(&claim.lease_token)).collect())
                }

                async fn complete_chunks(
                    &self,
                    completions: Vec<Completion>,
                    now: Timestamp,
                ) -> Result<Vec<Result<ChunkSettled>>> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            // Per completion: the (job, queue) it settled, or why not.
                            let mut outcomes: Vec<Result<(String, String)>> = Vec::with_capacity(completions.len());
                            let mut newly_completed: Vec<String> = Vec::new();
                            // One statement for the whole batch where the engine can; what it did
                            // not settle is looked at one by one.
                            let settled: std::collections::HashMap<i64, (String, String)> =
                                Self::complete_leased(conn, &completions, now)
                                    .await?
                                    .into_iter()
                                    .map(|(id, job_id, queue)| (id, (job_id, queue)))
                                    .collect();
                            let mut counted = std::collections::HashSet::new();
                            for completion in &completions {
                                match settled.get(&completion.chunk_id) {
                                    // A chunk listed twice in one batch is settled (and counted) once.
                                    Some(settled) if counted.insert(completion.chunk_id) => {
                                        newly_completed.push(settled.0.clone());
                                        outcomes.push(Ok(settled.clone()));
                                    }
                                    _ => outcomes.push(Self::repeated_completion(conn, completion).await?),
                                }
                            }
                            let mut job_statuses = BTreeMap::new();
                            for (job_id, completed) in tally(newly_completed) {
                                let status = Self::settle_job(conn, &job_id, completed, 0, now).await?;
                                job_statuses.insert(job_id, status);
                            }
                            let mut results = Vec::with_capacity(outcomes.len());
                            for outcome in outcomes {
                                results.push(match outcome {
                                    Ok((job_id, queue)) => {
                                        let job_status = match job_statuses.get(&job_id) {
                                            Some(status) => *status,
                                            None => job_status(&Self::job_row(conn, &job_id).await?.status)?,
                                        };
                                        Ok(ChunkSettled { job_id, queue, job_status })
                                    }
                                    Err(err) => Err(err),
                                });
                            }
                            Ok::<_, TxError>(results)
                        })
                        .await?)
                }

                async fn fail_chunk(&self, failure: Failure, now: Timestamp) -> Result<FailOutcome> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            let chunk: Option<(String, String, Option<String>, i32, i32)> = chunks::table
                                .filter(chunks::id.eq(failure.chunk_id))
                                .select((
                                    chunks::job_id,
                                    chunks::status,
                                    chunks::lease_token,
                                    chunks::attempts,
                                    chunks::max_attempts,
                                ))
                                .first(conn)
                                .await
                                .optional()?;
                            let Some((job_id, status, token, attempts, max_attempts)) = chunk else {
                                return Err(TxError::Domain(Self::lease_error(conn, failure.chunk_id).await?));
                            };
                            if status != PROCESSING || token.as_deref() != Some(failure.lease_token.as_str()) {
                                return Err(TxError::Domain(Error::stale_lease(failure.chunk_id)));
                            }
                            let job = Self::job_row(conn, &job_id).await?;
                            let attempts = count(attempts);
                            let decision = AfterFailure::decide(
                                attempts,
                                count(max_attempts),
                                failure.retryable,
                                &job.retry_policy(),
                                failure.jitter,
                                now,
                            );
                            let guard = chunks::table
                                .filter(chunks::id.eq(failure.chunk_id))
                                .filter(chunks::lease_token.eq(&failure.lease_token))
                                .filter(chunks::status.eq(PROCESSING));
                            let (chunk_status, retry_at, updated) = match decision {
                                AfterFailure::RetryAt(at) => {
                                    let updated = diesel::update(guard)
                                        .set((
                                            chunks::status.eq(PENDING),
                                            chunks::run_at.eq(at.as_micros()),
                                            chunks::last_error.eq(&failure.error_message),
                                            chunks::lease_token.eq(None::<String>),
                                            chunks::lease_expires_at.eq(None::<i64>),
                                        ))
                                        .execute(conn)
                                        .await?;
                                    (ChunkStatus::Pending, Some(at), updated)
                                }
                                AfterFailure::Fail => {
                                    let updated = diesel::update(guard)
                                        .set((
                                            chunks::status.eq(ChunkStatus::Failed.as_str()),
                                            chunks::last_error.eq(&failure.error_message),
                                            chunks::completed_at.eq(Some(now.as_micros())),
                                            chunks::lease_expires_at.eq(None::<i64>),
                                        ))
                                        .execute(conn)
                                        .await?;
                                    (ChunkStatus::Failed, None, updated)
                                }
                            };
                            if updated == 0 {
                                return Err(TxError::Domain(Error::stale_lease(failure.chunk_id)));
                            }
                            let job_status = if chunk_status == ChunkStatus::Failed {
                                Self::settle_job(conn, &job_id, 0, 1, now).await?
                            } else {
                                job_status(&job.status)?
                            };
                            Ok(FailOutcome {
                                settled: ChunkSettled { job_id, queue: job.queue, job_status },
                                chunk_status,
                                attempts,
                                retry_at,
                            })
                        })
                        .await?)
                }

                async fn extend_lease(&self, chunk_id: i64, lease_token: &str, expires_at: Timestamp) -> Result<Timestamp> {
                    let mut conn = self.conn().await?;
                    let updated = diesel::update(
                        chunks::table
                            .filter(chunks::id.eq(chunk_id))
                            .filter(chunks::lease_token.eq(lease_token))
                            .filter(chunks::status.eq(PROCESSING)),
                    )
                    .set(chunks::lease_expires_at.eq(Some(expires_at.as_micros())))
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    if updated == 0 {
                        return Err(Self::lease_error(&mut conn, chunk_id).await?);
                    }
                    Ok(expires_at)
                }

                async fn release_leases(&self, token_prefix: &str, now: Timestamp) -> Result<RecoverOutcome> {
                    let mut conn = self.conn().await?;
                    let pattern = format!("{token_prefix}%");
                    Ok(conn
                        .$tx(async |conn| {
                            let ids: Vec<i64> = chunks::table
                                .filter(chunks::status.eq(PROCESSING))
                                .filter(chunks::lease_token.like(&pattern))
                                .select(chunks::id)
                                .load(conn)
                                .await?;
                            Self::requeue_leased(conn, &ids, token_prefix, i64::MAX, "released by a disconnected worker", now).await
                        })
                        .await?)
                }

                async fn recover_stuck_chunks(&self, now: Timestamp) -> Result<RecoverOutcome> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            let ids: Vec<i64> = chunks::table
                                .filter(chunks::status.eq(PROCESSING))
                                .filter(chunks::lease_expires_at.lt(now.as_micros()))
                                .select(chunks::id)
                                .limit(RECOVERY_BATCH)
                                .load(conn)
                                .await?;
                            Self::requeue_leased(conn, &ids, "", now.as_micros(), "lease expired", now).await
                        })
                        .await?)
                }

                async fn retry_failed_chunks(&self, job_id: &str, now: Timestamp) -> Result<(u32, JobStatus)> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            let job = Self::job_row(conn, job_id).await?;
                            let status = job_status(&job.status)?;
                            if status == JobStatus::Cancelled {
                                return Err(TxError::Domain(Error::FailedPrecondition(format!(
                                    "job {job_id:?} is cancelled"
                                ))));
                            }
                            let reset = diesel::update(
                                chunks::table
                                    .filter(chunks::job_id.eq(job_id))
                                    .filter(chunks::status.eq(ChunkStatus::Failed.as_str())),
                            )
                            .set((
                                chunks::status.eq(PENDING),
                                chunks::attempts.eq(0),
                                chunks::run_at.eq(now.as_micros()),
                                chunks::lease_token.eq(None::<String>),
                                chunks::lease_expires_at.eq(None::<i64>),
                                chunks::completed_at.eq(None::<i64>),
                            ))
                            .execute(conn)
                            .await?;
                            if reset == 0 {
                                return Ok((0, status));
                            }
                            diesel::update(jobs::table.filter(jobs::job_id.eq(job_id)))
                                .set((
                                    jobs::failed_chunks.eq(jobs::failed_chunks - reset as i32),
                                    jobs::status.eq(JobStatus::Processing.as_str()),
                                    jobs::finished_at.eq(None::<i64>),
                                    jobs::updated_at.eq(now.as_micros()),
                                ))
                                .execute(conn)
                                .await?;
                            Ok((reset as u32, JobStatus::Processing))
                        })
                        .await?)
                }

                async fn job_progress(&self, job_id: &str) -> Result<JobProgress> {
                    let mut conn = self.conn().await?;
                    let job = Self::job_row(&mut conn, job_id).await?;
                    let counts: Vec<(String, i64)> = chunks::table
                        .filter(chunks::job_id.eq(job_id))
                        .group_by(chunks::status)
                        .select((chunks::status, count_star()))
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    let mut progress = JobProgress {
                        job_id: job.job_id.clone(),
                        status: job_status(&job.status)?,
                        total: count(job.total_chunks),
                        pending: 0,
                        processing: 0,
                        completed: 0,
                        failed: 0,
                        cancelled: 0,
                    };
                    for (status, n) in counts {
                        let n = u32::try_from(n).unwrap_or(u32::MAX);
                        match chunk_status(&status)? {
                            ChunkStatus::Pending => progress.pending = n,
                            ChunkStatus::Processing => progress.processing = n,
                            ChunkStatus::Completed => progress.completed = n,
                            ChunkStatus::Failed => progress.failed = n,
                            ChunkStatus::Cancelled => progress.cancelled = n,
                        }
                    }
                    Ok(progress)
                }

                async fn list_chunks(
                    &self,
                    job_id: &str,
                    status: Option<ChunkStatus>,
                    page: PageRequest,
                ) -> Result<Page<ChunkInfo>> {
                    let mut conn = self.conn().await?;
                    Self::job_row(&mut conn, job_id).await?;
                    let mut query = chunks::table
                        .filter(chunks::job_id.eq(job_id))
                        .select((ChunkRow::as_select(), length(chunks::payload)))
                        .order(chunks::chunk_index.asc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(status) = status {
                        query = query.filter(chunks::status.eq(status.as_str()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(chunks::chunk_index.gt(after as i32));
                    }
                    let rows: Vec<(ChunkRow, i32)> = query.load(&mut *conn).await.map_err(TxError::from)?;
                    $crate::store::paging::keyset_page(
                        rows,
                        page.size,
                        |(row, _)| i64::from(row.chunk_index),
                        |(row, size)| row.into_info(size),
                    )
                }

                async fn queue_depths(&self) -> Result<Vec<QueueDepth>> {
                    let mut conn = self.conn().await?;
                    let counts: Vec<(String, String, i64)> = chunks::table
                        .group_by((chunks::queue, chunks::status))
                        .select((chunks::queue, chunks::status, count_star()))
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    let mut depths: BTreeMap<String, QueueDepth> = BTreeMap::new();
                    for (queue, status, n) in counts {
                        let status = chunk_status(&status)?;
                        depths
                            .entry(queue.clone())
                            .or_insert_with(|| QueueDepth { queue, ..QueueDepth::default() })
                            .add(status, u64::try_from(n).unwrap_or(0));
                    }
                    Ok(depths.into_values().collect())
                }

                async fn prune_finished_jobs(&self, before: Timestamp, limit: u32) -> Result<u64> {
                    let mut conn = self.conn().await?;
                    let doomed: Vec<i64> = jobs::table
                        .filter(jobs::finished_at.lt(before.as_micros()))
                        .select(jobs::id)
                        .order(jobs::finished_at.asc())
                        .limit(i64::from(limit))
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    if doomed.is_empty() {
                        return Ok(0);
                    }
                    // Chunks go with their job (ON DELETE CASCADE).
                    let deleted = diesel::delete(jobs::table.filter(jobs::id.eq_any(&doomed)))
                        .execute(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(deleted as u64)
                }

                async fn earliest_pending_run_at(&self, queue: &str) -> Result<Option<Timestamp>> {
                    let mut conn = self.conn().await?;
                    let earliest: Option<i64> = chunks::table
                        .filter(chunks::queue.eq(queue))
                        .filter(chunks::status.eq(PENDING))
                        .select(min(chunks::run_at))
                        .first(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(earliest.map(Timestamp::from_micros))
                }
            }

            impl $store {
                /// A completion that matched no leased chunk: harmless if it repeats one that was
                /// accepted with the same token, otherwise stale or unknown.
                async fn repeated_completion(
                    conn: &mut $conn,
                    completion: &Completion,
                ) -> Result<Result<(String, String)>, TxError> {
                    let chunk: Option<(String, String, String, Option<String>)> = chunks::table
                        .filter(chunks::id.eq(completion.chunk_id))
                        .select((chunks::job_id, chunks::queue, chunks::status, chunks::lease_token))
                        .first(conn)
                        .await
                        .optional()?;
                    Ok(match chunk {
                        None => Err(Error::NotFound { kind: "chunk", id: completion.chunk_id.to_string() }),
                        Some((job_id, queue, status, token))
                            if status == ChunkStatus::Completed.as_str()
                                && token.as_deref() == Some(completion.lease_token.as_str()) =>
                        {
                            Ok((job_id, queue))
                        }
                        Some(_) => Err(Error::stale_lease(completion.chunk_id)),
                    })
                }
            }
        };
    };
}

pub(crate) use impl_chunk_store;
