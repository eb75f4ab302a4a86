//! SyncRetry's queries, written once for both engines (record sync's are in `sync_records`).
//!
//! Writes that depend on a row's state first take the row's lock with a guarded no-op UPDATE
//! (which also checks the guard, e.g. a current lease), so they are correct under Postgres'
//! READ COMMITTED as well as under SQLite's serialized writers, without engine-specific
//! `FOR UPDATE` syntax. A source's row is locked by every write that changes its health or
//! versions, so those never interleave.

/// Expired leases handled per run.
pub(crate) const EXPIRY_BATCH: i64 = 1_000;

macro_rules! impl_sync_store {
    ($store:ty, $conn:ty, $tx:ident) => {
        const _: () = {
            use std::collections::{HashMap, HashSet};

            use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
            // AsyncConnection brings `transaction` for engines that begin writes with it.
            #[allow(unused_imports)]
            use diesel_async::AsyncConnection;
            use diesel_async::RunQueryDsl;

            use $crate::core::chunks::{Page, PageRequest};
            use $crate::core::sync::records::*;
            use $crate::core::sync::snapshots::*;
            use $crate::core::sync::*;
            use $crate::core::{Error, Result, Timestamp};
            use $crate::store::error::TxError;
            use $crate::store::rows::{count, to_i32};
            use $crate::store::schema::{
                sync_failure_logs, sync_snapshot_parts, sync_snapshots, sync_sources, sync_tasks,
            };
            use $crate::store::sync::EXPIRY_BATCH;
            use $crate::store::sync_rows::*;

            const PENDING: &str = "pending";
            const PROCESSING: &str = "processing";
            const RETRY_SCHEDULED: &str = "retry_scheduled";
            const LEASE_EXPIRED: &str = "lease expired";

            fn open_statuses() -> Vec<&'static str> {
                SyncTaskStatus::OPEN.iter().map(|status| status.as_str()).collect()
            }

            impl $store {
                async fn source_row(conn: &mut $conn, data_type: &str) -> Result<SourceRow, TxError> {
                    sync_sources::table
                        .filter(sync_sources::data_type.eq(data_type))
                        .select(SourceRow::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or_else(|| TxError::Domain(Error::NotFound { kind: "source", id: data_type.to_owned() }))
                }

                /// Reads the source and holds its row lock until the transaction ends.
                async fn lock_source(conn: &mut $conn, data_type: &str) -> Result<SourceRow, TxError> {
                    diesel::update(sync_sources::table.filter(sync_sources::data_type.eq(data_type)))
                        .set(sync_sources::data_type.eq(sync_sources::data_type))
                        .returning(SourceRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional()?
                        .ok_or_else(|| TxError::Domain(Error::NotFound { kind: "source", id: data_type.to_owned() }))
                }

                async fn sync_task_row(conn: &mut $conn, task_id: i64) -> Result<SyncTaskRow, TxError> {
                    sync_tasks::table
                        .filter(sync_tasks::id.eq(task_id))
                        .select(SyncTaskRow::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or_else(|| TxError::Domain(Error::NotFound { kind: "sync task", id: task_id.to_string() }))
                }

                /// The task under a current lease, locked; otherwise NotFound or a stale lease.
                async fn leased_task(conn: &mut $conn, task_id: i64, lease_token: &str) -> Result<SyncTaskRow, TxError> {
                    let row = diesel::update(
                        sync_tasks::table
                            .filter(sync_tasks::id.eq(task_id))
                            .filter(sync_tasks::status.eq(PROCESSING))
                            .filter(sync_tasks::lease_token.eq(lease_token)),
                    )
                    .set(sync_tasks::id.eq(sync_tasks::id))
                    .returning(SyncTaskRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
                    match row {
                        Some(row) => Ok(row),
                        None => {
                            Self::sync_task_row(conn, task_id).await?;
                            Err(TxError::Domain(Error::FailedPrecondition(format!(
                                "lease token for sync task {task_id} is not current (the lease expired, \
                                 the task was settled or cancelled)"
                            ))))
                        }
                    }
                }

                /// Ends a task (completed or cancelled): its lease, if any, becomes stale.
                async fn finish_task(conn: &mut $conn, task_id: i64, status: SyncTaskStatus, now: Timestamp) -> Result<SyncTaskRow, TxError> {
                    Ok(diesel::update(sync_tasks::table.filter(sync_tasks::id.eq(task_id)))
                        .set((
                            sync_tasks::status.eq(status.as_str()),
                            sync_tasks::lease_token.eq(None::<String>),
                            sync_tasks::lease_expires_at.eq(None::<i64>),
                            sync_tasks::next_retry_at.eq(None::<i64>),
                            sync_tasks::updated_at.eq(now.as_micros()),
                            sync_tasks::finished_at.eq(Some(now.as_micros())),
                        ))
                        .returning(SyncTaskRow::as_returning())
                        .get_result(conn)
                        .await?)
                }

                /// The failure path of FailSync, rejected snapshots and expired leases: failure
                /// log, connection health, and the task's retry, exhaustion or wait for a person.
                async fn settle_failure(
                    conn: &mut $conn,
                    task: SyncTaskRow,
                    error: &str,
                    classification: &Classification,
                    rolled_back_to: Option<u64>,
                    now: Timestamp,
                ) -> Result<FailedSync, TxError> {
                    let source = Self::lock_source(conn, &task.data_type).await?;
                    let decision = AfterSyncFailure::decide(
                        count(task.retry_count),
                        count(task.max_retries),
                        classification.recoverable,
                        &source.retry_policy(),
                        now,
                    );
                    let mut health = source.health()?;
                    health.after_failure(error, matches!(decision, AfterSyncFailure::Retry { .. }), now);
                    diesel::insert_into(sync_failure_logs::table)
                        .values((
                            sync_failure_logs::task_id.eq(task.id),
                            sync_failure_logs::data_type.eq(&task.data_type),
                            sync_failure_logs::error_message.eq(error),
                            sync_failure_logs::recoverable.eq(classification.recoverable),
                            sync_failure_logs::matched_rule.eq(classification.matched_rule.as_deref().unwrap_or_default()),
                            sync_failure_logs::retry_count.eq(task.retry_count),
                            sync_failure_logs::rolled_back_to.eq(rolled_back_to.map(signed)),
                            sync_failure_logs::created_at.eq(now.as_micros()),
                        ))
                        .execute(conn)
                        .await?;
                    diesel::update(sync_sources::table.filter(sync_sources::data_type.eq(&task.data_type)))
                        .set(HealthChanges::of(&health))
                        .execute(conn)
                        .await?;
                    let (retry_count, next_retry_at, finished_at) = match decision {
                        AfterSyncFailure::Retry { retry, at } => (to_i32(retry), Some(at.as_micros()), None),
                        AfterSyncFailure::Exhausted => (task.retry_count, None, Some(now.as_micros())),
                        AfterSyncFailure::NeedsPerson => (task.retry_count, None, None),
                    };
                    let row: SyncTaskRow = diesel::update(sync_tasks::table.filter(sync_tasks::id.eq(task.id)))
                        .set((
                            sync_tasks::status.eq(decision.status().as_str()),
                            sync_tasks::retry_count.eq(retry_count),
                            sync_tasks::next_retry_at.eq(next_retry_at),
                            sync_tasks::lease_token.eq(None::<String>),
                            sync_tasks::lease_expires_at.eq(None::<i64>),
                            sync_tasks::last_error.eq(error),
                            sync_tasks::updated_at.eq(now.as_micros()),
                            sync_tasks::finished_at.eq(finished_at),
                        ))
                        .returning(SyncTaskRow::as_returning())
                        .get_result(conn)
                        .await?;
                    Ok(FailedSync { task: row.into_task()?, classification: classification.clone(), health })
                }

                /// Starts a task for each source among `data_types` (all when empty) whose
                /// interval has passed and that has no open task.
                async fn start_due_syncs(conn: &mut $conn, data_types: &[String], now: Timestamp) -> Result<(), TxError> {
                    let mut due = sync_sources::table
                        .filter(sync_sources::next_sync_at.le(now.as_micros()))
                        .select((sync_sources::data_type, sync_sources::retry_max_retries, sync_sources::sync_interval_us))
                        .into_boxed();
                    if !data_types.is_empty() {
                        due = due.filter(sync_sources::data_type.eq_any(data_types.to_vec()));
                    }
                    let due: Vec<(String, i32, i64)> = due.load(conn).await?;
                    if due.is_empty() {
                        return Ok(());
                    }
                    let names: Vec<&str> = due.iter().map(|(name, _, _)| name.as_str()).collect();
                    let open: HashSet<String> = sync_tasks::table
                        .filter(sync_tasks::status.eq_any(open_statuses()))
                        .filter(sync_tasks::data_type.eq_any(&names))
                        .select(sync_tasks::data_type)
                        .load::<String>(conn)
                        .await?
                        .into_iter()
                        .collect();
                    for (data_type, max_retries, interval_us) in due {
                        if open.contains(&data_type) {
                            continue;
                        }
                        // Guarded: a concurrent claimer that started this sync moved the time on.
                        let moved = diesel::update(
                            sync_sources::table
                                .filter(sync_sources::data_type.eq(&data_type))
                                .filter(sync_sources::next_sync_at.le(now.as_micros())),
                        )
                        .set(sync_sources::next_sync_at.eq(now.as_micros().saturating_add(interval_us)))
                        .execute(conn)
                        .await?;
                        if moved == 0 {
                            continue;
                        }
                        diesel::insert_into(sync_tasks::table)
                            .values((
                                sync_tasks::data_type.eq(&data_type),
                                sync_tasks::status.eq(PENDING),
                                sync_tasks::retry_count.eq(0),
                                sync_tasks::max_retries.eq(max_retries),
                                sync_tasks::created_at.eq(now.as_micros()),
                                sync_tasks::updated_at.eq(now.as_micros()),
                            ))
                            .on_conflict_do_nothing()
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                }

                async fn snapshot_row_by_version(conn: &mut $conn, data_type: &str, version: u64) -> Result<SnapshotRow, TxError> {
                    sync_snapshots::table
                        .filter(sync_snapshots::data_type.eq(data_type))
                        .filter(sync_snapshots::version.eq(signed(version)))
                        .select(SnapshotRow::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or_else(|| TxError::Domain(Error::NotFound { kind: "snapshot", id: format!("{data_type} version {version}") }))
                }

                /// Accepts a judged snapshot: the new current version, the older ones beyond the
                /// retention pruned, the source healthy and its next sync an interval away.
                async fn accept_snapshot(
                    conn: &mut $conn,
                    upload: &SnapshotUpload,
                    source: &SourceRow,
                    task: &SyncTaskRow,
                    now: Timestamp,
                ) -> Result<CompletedSync, TxError> {
                    let version = source.last_version + 1;
                    let snapshot: SnapshotRow = diesel::update(sync_snapshots::table.filter(sync_snapshots::id.eq(upload.snapshot_id)))
                        .set((
                            sync_snapshots::version.eq(Some(version)),
                            sync_snapshots::item_count.eq(signed(upload.item_count)),
                            sync_snapshots::byte_size.eq(signed(upload.byte_size)),
                            sync_snapshots::checksum.eq(&upload.checksum),
                            sync_snapshots::created_at.eq(now.as_micros()),
                        ))
                        .returning(SnapshotRow::as_returning())
                        .get_result(conn)
                        .await?;
                    let mut health = source.health()?;
                    health.after_success(upload.item_count, now);
                    diesel::update(sync_sources::table.filter(sync_sources::data_type.eq(&source.data_type)))
                        .set((
                            HealthChanges::of(&health),
                            sync_sources::current_version.eq(Some(version)),
                            sync_sources::last_version.eq(version),
                            sync_sources::next_sync_at.eq(now.as_micros().saturating_add(source.sync_interval_us)),
                        ))
                        .execute(conn)
                        .await?;
                    let keep = i64::from(upload.keep_versions.max(1));
                    diesel::delete(
                        sync_snapshots::table
                            .filter(sync_snapshots::data_type.eq(&source.data_type))
                            .filter(sync_snapshots::version.le(version - keep)),
                    )
                    .execute(conn)
                    .await?;
                    let task = Self::finish_task(conn, task.id, SyncTaskStatus::Completed, now).await?;
                    Ok(CompletedSync {
                        accepted: true,
                        snapshot: Some(snapshot.into_info(Some(version))),
                        reason: None,
                        task: task.into_task()?,
                        health,
                    })
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::SyncStore for $store {
                async fn register_source(&self, source: &NewSource, now: Timestamp) -> Result<Source> {
                    let mut conn = self.conn().await?;
                    let policy = &source.retry_policy;
                    let settings = (
                        sync_sources::sync_interval_us.eq(duration_micros(source.sync_interval)),
                        sync_sources::retry_base_delay_us.eq(duration_micros(policy.base_delay)),
                        sync_sources::retry_multiplier.eq(policy.multiplier),
                        sync_sources::retry_max_retries.eq(to_i32(policy.max_retries)),
                        sync_sources::retry_max_delay_us.eq(duration_micros(policy.max_delay)),
                        sync_sources::config.eq(&source.config),
                        sync_sources::updated_at.eq(now.as_micros()),
                    );
                    let row = conn
                        .$tx(async |conn| {
                            let updated = diesel::update(sync_sources::table.filter(sync_sources::data_type.eq(&source.data_type)))
                                .set(settings)
                                .returning(SourceRow::as_returning())
                                .get_result(conn)
                                .await
                                .optional()?;
                            if let Some(row) = updated {
                                return Ok::<_, TxError>(row);
                            }
                            Ok(diesel::insert_into(sync_sources::table)
                                .values((
                                    sync_sources::data_type.eq(&source.data_type),
                                    settings,
                                    sync_sources::next_sync_at.eq(now.as_micros()),
                                    sync_sources::created_at.eq(now.as_micros()),
                                ))
                                .returning(SourceRow::as_returning())
                                .get_result(conn)
                                .await?)
                        })
                        .await?;
                    row.into_source()
                }

                async fn list_sources(&self) -> Result<Vec<Source>> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<SourceRow> = sync_sources::table
                        .select(SourceRow::as_select())
                        .order(sync_sources::data_type.asc())
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    rows.into_iter().map(SourceRow::into_source).collect()
                }

                async fn claim_sync_tasks(&self, claim: &SyncClaim, now: Timestamp) -> Result<Vec<LeasedSyncTask>> {
                    let expires_at = now.plus(claim.lease);
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            Self::start_due_syncs(conn, &claim.data_types, now).await?;
                            let mut pick = sync_tasks::table
                                .filter(sync_tasks::status.eq(PENDING))
                                .order(sync_tasks::id.asc())
                                .limit(i64::from(claim.max))
                                .select(sync_tasks::id)
                                .into_boxed();
                            if !claim.data_types.is_empty() {
                                pick = pick.filter(sync_tasks::data_type.eq_any(claim.data_types.clone()));
                            }
                            let ids: Vec<i64> = pick.load(conn).await?;
                            if ids.is_empty() {
                                return Ok::<_, TxError>(Vec::new());
                            }
                            // The status guard is re-checked on the locked rows: a task another
                            // claimer leased meanwhile is skipped, never leased twice.
                            let mut leased: Vec<SyncTaskRow> = diesel::update(
                                sync_tasks::table
                                    .filter(sync_tasks::id.eq_any(&ids))
                                    .filter(sync_tasks::status.eq(PENDING)),
                            )
                            .set((
                                sync_tasks::status.eq(PROCESSING),
                                sync_tasks::lease_token.eq(Some(&claim.lease_token)),
                                sync_tasks::lease_expires_at.eq(Some(expires_at.as_micros())),
                                sync_tasks::worker_id.eq(Some(&claim.worker_id)),
                                sync_tasks::next_retry_at.eq(None::<i64>),
                                sync_tasks::updated_at.eq(now.as_micros()),
                            ))
                            .returning(SyncTaskRow::as_returning())
                            .get_results(conn)
                            .await?;
                            leased.sort_unstable_by_key(|row| row.id);
                            let types: Vec<&str> = leased.iter().map(|row| row.data_type.as_str()).collect();
                            let sources: HashMap<String, (String, Option<i64>)> = sync_sources::table
                                .filter(sync_sources::data_type.eq_any(&types))
                                .select((sync_sources::data_type, sync_sources::config, sync_sources::current_version))
                                .load::<(String, String, Option<i64>)>(conn)
                                .await?
                                .into_iter()
                                .map(|(data_type, config, version)| (data_type, (config, version)))
                                .collect();
                            Ok(leased
                                .into_iter()
                                .map(|row| {
                                    let (config, version) = sources.get(&row.data_type).cloned().unwrap_or_default();
                                    LeasedSyncTask {
                                        task_id: row.id,
                                        retry_count: count(row.retry_count),
                                        data_type: row.data_type,
                                        config,
                                        lease_token: claim.lease_token.clone(),
                                        lease_expires_at: expires_at,
                                        current_version: version.map(unsigned),
                                    }
                                })
                                .collect())
                        })
                        .await?)
                }

                async fn extend_sync_lease(&self, task_id: i64, lease_token: &str, expires_at: Timestamp) -> Result<Timestamp> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            Self::leased_task(conn, task_id, lease_token).await?;
                            diesel::update(sync_tasks::table.filter(sync_tasks::id.eq(task_id)))
                                .set(sync_tasks::lease_expires_at.eq(Some(expires_at.as_micros())))
                                .execute(conn)
                                .await?;
                            Ok::<_, TxError>(expires_at)
                        })
                        .await?)
                }

                async fn fail_sync(&self, failure: SyncFailure, now: Timestamp) -> Result<FailedSync> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            let task = Self::leased_task(conn, failure.task_id, &failure.lease_token).await?;
                            Self::settle_failure(conn, task, &failure.error_message, &failure.classification, None, now).await
                        })
                        .await?)
                }

                async fn begin_snapshot(&self, task_id: i64, lease_token: &str, content_type: &str, now: Timestamp) -> Result<i64> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            let task = Self::leased_task(conn, task_id, lease_token).await?;
                            Ok::<_, TxError>(diesel::insert_into(sync_snapshots::table)
                                .values((
                                    sync_snapshots::data_type.eq(&task.data_type),
                                    sync_snapshots::task_id.eq(task_id),
                                    sync_snapshots::content_type.eq(content_type),
                                    sync_snapshots::created_at.eq(now.as_micros()),
                                ))
                                .returning(sync_snapshots::id)
                                .get_result(conn)
                                .await?)
                        })
                        .await?)
                }

                async fn append_snapshot_part(&self, snapshot_id: i64, index: u32, data: &[u8]) -> Result<()> {
                    let mut conn = self.conn().await?;
                    diesel::insert_into(sync_snapshot_parts::table)
                        .values((
                            sync_snapshot_parts::snapshot_id.eq(snapshot_id),
                            sync_snapshot_parts::part_index.eq(to_i32(index)),
                            sync_snapshot_parts::data.eq(data),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(())
                }

                async fn finish_snapshot(&self, upload: SnapshotUpload, now: Timestamp) -> Result<CompletedSync> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            let task = Self::leased_task(conn, upload.task_id, &upload.lease_token).await?;
                            let staged: Option<i64> = sync_snapshots::table
                                .filter(sync_snapshots::id.eq(upload.snapshot_id))
                                .filter(sync_snapshots::task_id.eq(task.id))
                                .filter(sync_snapshots::version.is_null())
                                .select(sync_snapshots::id)
                                .first(conn)
                                .await
                                .optional()?;
                            if staged.is_none() {
                                return Err(TxError::Domain(Error::NotFound { kind: "staged snapshot", id: upload.snapshot_id.to_string() }));
                            }
                            let source = Self::lock_source(conn, &task.data_type).await?;
                            let current = source.current_version.map(|version| CurrentData {
                                version: unsigned(version),
                                item_count: unsigned(source.item_count),
                            });
                            let checksum_matches = upload
                                .expected_checksum
                                .as_deref()
                                .is_none_or(|expected| expected.eq_ignore_ascii_case(&upload.checksum));
                            match Verdict::judge(upload.item_count, checksum_matches, current) {
                                Verdict::Accept => Self::accept_snapshot(conn, &upload, &source, &task, now).await,
                                Verdict::Reject { error, rule, kept_version } => {
                                    diesel::delete(sync_snapshots::table.filter(sync_snapshots::id.eq(upload.snapshot_id)))
                                        .execute(conn)
                                        .await?;
                                    let failed = Self::settle_failure(
                                        conn,
                                        task,
                                        &error,
                                        &Classification::non_recoverable(rule),
                                        kept_version,
                                        now,
                                    )
                                    .await?;
                                    let kept = match source.current_version {
                                        Some(version) => Some(
                                            Self::snapshot_row_by_version(conn, &source.data_type, unsigned(version))
                                                .await?
                                                .into_info(Some(version)),
                                        ),
                                        None => None,
                                    };
                                    Ok(CompletedSync {
                                        accepted: false,
                                        snapshot: kept,
                                        reason: Some(error),
                                        task: failed.task,
                                        health: failed.health,
                                    })
                                }
                            }
                        })
                        .await?)
                }

                async fn discard_snapshot(&self, snapshot_id: i64) -> Result<()> {
                    let mut conn = self.conn().await?;
                    diesel::delete(
                        sync_snapshots::table
                            .filter(sync_snapshots::id.eq(snapshot_id))
                            .filter(sync_snapshots::version.is_null()),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    Ok(())
                }

                async fn list_snapshots(&self, data_type: &str) -> Result<Vec<SnapshotInfo>> {
                    let mut conn = self.conn().await?;
                    let source = Self::source_row(&mut conn, data_type).await?;
                    let rows: Vec<SnapshotRow> = sync_snapshots::table
                        .filter(sync_snapshots::data_type.eq(data_type))
                        .filter(sync_snapshots::version.is_not_null())
                        .order(sync_snapshots::version.desc())
                        .select(SnapshotRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(rows.into_iter().map(|row| row.into_info(source.current_version)).collect())
                }

                async fn find_snapshot(&self, data_type: &str, version: Option<u64>) -> Result<(SnapshotInfo, i64)> {
                    let mut conn = self.conn().await?;
                    let source = Self::source_row(&mut conn, data_type).await?;
                    let version = version.or(source.current_version.map(unsigned)).ok_or_else(|| Error::NotFound {
                        kind: "snapshot",
                        id: format!("{data_type} (no accepted sync yet)"),
                    })?;
                    let row = Self::snapshot_row_by_version(&mut conn, data_type, version).await?;
                    let id = row.id;
                    Ok((row.into_info(source.current_version), id))
                }

                async fn snapshot_part(&self, snapshot_id: i64, index: u32) -> Result<Option<Vec<u8>>> {
                    let mut conn = self.conn().await?;
                    Ok(sync_snapshot_parts::table
                        .filter(sync_snapshot_parts::snapshot_id.eq(snapshot_id))
                        .filter(sync_snapshot_parts::part_index.eq(to_i32(index)))
                        .select(sync_snapshot_parts::data)
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(TxError::from)?)
                }

                async fn rollback_to(&self, data_type: &str, version: u64, now: Timestamp) -> Result<SnapshotInfo> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            Self::lock_source(conn, data_type).await?;
                            let row = Self::snapshot_row_by_version(conn, data_type, version).await?;
                            diesel::update(sync_sources::table.filter(sync_sources::data_type.eq(data_type)))
                                .set((
                                    sync_sources::current_version.eq(Some(signed(version))),
                                    sync_sources::item_count.eq(row.item_count),
                                    sync_sources::updated_at.eq(now.as_micros()),
                                ))
                                .execute(conn)
                                .await?;
                            Ok::<_, TxError>(row.into_info(Some(signed(version))))
                        })
                        .await?)
                }

                async fn list_sync_tasks(&self, filter: SyncTaskFilter, page: PageRequest) -> Result<Page<SyncTask>> {
                    let mut conn = self.conn().await?;
                    let mut query = sync_tasks::table
                        .select(SyncTaskRow::as_select())
                        .order(sync_tasks::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(data_type) = filter.data_type {
                        query = query.filter(sync_tasks::data_type.eq(data_type));
                    }
                    if let Some(status) = filter.status {
                        query = query.filter(sync_tasks::status.eq(status.as_str()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(sync_tasks::id.lt(after));
                    }
                    let rows: Vec<SyncTaskRow> = query.load(&mut *conn).await.map_err(TxError::from)?;
                    $crate::store::paging::keyset_page(rows, page.size, |row| row.id, SyncTaskRow::into_task)
                }

                async fn retry_sync_now(&self, task_id: i64, now: Timestamp) -> Result<SyncTask> {
                    let mut conn = self.conn().await?;
                    let row = conn
                        .$tx(async |conn| {
                            let task = Self::sync_task_row(conn, task_id).await?;
                            let status = task.status()?;
                            let retry_count = match status {
                                SyncTaskStatus::RetryScheduled => task.retry_count,
                                SyncTaskStatus::Failed | SyncTaskStatus::Exhausted => 0,
                                other => {
                                    return Err(TxError::Domain(Error::FailedPrecondition(format!(
                                        "sync task {task_id} is {}; only failed, exhausted or scheduled retries can be retried now",
                                        other.as_str()
                                    ))))
                                }
                            };
                            let other_open: Option<i64> = sync_tasks::table
                                .filter(sync_tasks::data_type.eq(&task.data_type))
                                .filter(sync_tasks::status.eq_any(open_statuses()))
                                .filter(sync_tasks::id.ne(task_id))
                                .select(sync_tasks::id)
                                .first(conn)
                                .await
                                .optional()?;
                            if let Some(other) = other_open {
                                return Err(TxError::Domain(Error::FailedPrecondition(format!(
                                    "{} already has an open sync task ({other})",
                                    task.data_type
                                ))));
                            }
                            Ok(diesel::update(sync_tasks::table.filter(sync_tasks::id.eq(task_id)))
                                .set((
                                    sync_tasks::status.eq(PENDING),
                                    sync_tasks::retry_count.eq(retry_count),
                                    sync_tasks::next_retry_at.eq(None::<i64>),
                                    sync_tasks::finished_at.eq(None::<i64>),
                                    sync_tasks::updated_at.eq(now.as_micros()),
                                ))
                                .returning(SyncTaskRow::as_returning())
                                .get_result(conn)
                                .await?)
                        })
                        .await?;
                    row.into_task()
                }

                async fn cancel_sync_task(&self, task_id: i64, now: Timestamp) -> Result<SyncTask> {
                    let mut conn = self.conn().await?;
                    let row = conn
                        .$tx(async |conn| {
                            let task = Self::sync_task_row(conn, task_id).await?;
                            match task.status()? {
                                SyncTaskStatus::Cancelled => return Ok(task),
                                status if status.is_finished() => {
                                    return Err(TxError::Domain(Error::FailedPrecondition(format!(
                                        "sync task {task_id} is already {}",
                                        status.as_str()
                                    ))))
                                }
                                _ => {}
                            }
                            Self::finish_task(conn, task_id, SyncTaskStatus::Cancelled, now).await
                        })
                        .await?;
                    row.into_task()
                }

                async fn list_failure_logs(&self, data_type: Option<&str>, page: PageRequest) -> Result<Page<FailureLog>> {
                    let mut conn = self.conn().await?;
                    let mut query = sync_failure_logs::table
                        .select(FailureLogRow::as_select())
                        .order(sync_failure_logs::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(data_type) = data_type {
                        query = query.filter(sync_failure_logs::data_type.eq(data_type.to_owned()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(sync_failure_logs::id.lt(after));
                    }
                    let rows: Vec<FailureLogRow> = query.load(&mut *conn).await.map_err(TxError::from)?;
                    $crate::store::paging::keyset_page(rows, page.size, |row| row.id, |row| Ok(row.into_log()))
                }

                async fn connection_health(&self, data_type: Option<&str>) -> Result<Vec<ConnectionHealth>> {
                    let mut conn = self.conn().await?;
                    if let Some(data_type) = data_type {
                        return Ok(vec![Self::source_row(&mut conn, data_type).await?.health()?]);
                    }
                    let rows: Vec<SourceRow> = sync_sources::table
                        .select(SourceRow::as_select())
                        .order(sync_sources::data_type.asc())
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    rows.iter().map(SourceRow::health).collect()
                }

                async fn release_due_retries(&self, now: Timestamp, limit: u32) -> Result<u32> {
                    let mut conn = self.conn().await?;
                    let ids: Vec<i64> = sync_tasks::table
                        .filter(sync_tasks::status.eq(RETRY_SCHEDULED))
                        .filter(sync_tasks::next_retry_at.le(now.as_micros()))
                        .order((sync_tasks::next_retry_at.asc(), sync_tasks::id.asc()))
                        .limit(i64::from(limit))
                        .select(sync_tasks::id)
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    if ids.is_empty() {
                        return Ok(0);
                    }
                    let released = diesel::update(
                        sync_tasks::table
                            .filter(sync_tasks::id.eq_any(&ids))
                            .filter(sync_tasks::status.eq(RETRY_SCHEDULED)),
                    )
                    .set((sync_tasks::status.eq(PENDING), sync_tasks::updated_at.eq(now.as_micros())))
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    Ok(released as u32)
                }

                async fn expire_sync_leases(&self, now: Timestamp) -> Result<u32> {
                    let mut conn = self.conn().await?;
                    Ok(conn
                        .$tx(async |conn| {
                            let ids: Vec<i64> = sync_tasks::table
                                .filter(sync_tasks::status.eq(PROCESSING))
                                .filter(sync_tasks::lease_expires_at.lt(now.as_micros()))
                                .select(sync_tasks::id)
                                .limit(EXPIRY_BATCH)
                                .load(conn)
                                .await?;
                            let classification = Classification { recoverable: true, matched_rule: Some(LEASE_EXPIRED.to_owned()) };
                            let mut expired = 0;
                            for id in ids {
                                // Re-checked under the row lock: a lease renewed or settled
                                // meanwhile is left alone.
                                let task: Option<SyncTaskRow> = diesel::update(
                                    sync_tasks::table
                                        .filter(sync_tasks::id.eq(id))
                                        .filter(sync_tasks::status.eq(PROCESSING))
                                        .filter(sync_tasks::lease_expires_at.lt(now.as_micros())),
                                )
                                .set(sync_tasks::id.eq(sync_tasks::id))
                                .returning(SyncTaskRow::as_returning())
                                .get_result(conn)
                                .await
                                .optional()?;
                                if let Some(task) = task {
                                    let error = "lease expired: the worker did not report in time";
                                    Self::settle_failure(conn, task, error, &classification, None, now).await?;
                                    expired += 1;
                                }
                            }
                            Ok::<_, TxError>(expired)
                        })
                        .await?)
                }

                async fn prune_sync_history(&self, before: Timestamp) -> Result<u64> {
                    let mut conn = self.conn().await?;
                    let tasks = diesel::delete(sync_tasks::table.filter(sync_tasks::finished_at.lt(before.as_micros())))
                        .execute(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    let logs = diesel::delete(sync_failure_logs::table.filter(sync_failure_logs::created_at.lt(before.as_micros())))
                        .execute(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    let staged = diesel::delete(
                        sync_snapshots::table
                            .filter(sync_snapshots::version.is_null())
                            .filter(sync_snapshots::created_at.lt(before.as_micros())),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    Ok((tasks + logs + staged) as u64)
                }

                async fn push_changes(&self, push: &Push, now: Timestamp) -> Result<Vec<ChangeResult>> {
                    let mut conn = self.conn().await?;
                    Ok(conn.$tx(async |conn| Self::push_in_tx(conn, push, now).await).await?)
                }

                async fn pull_changes(&self, collection: &str, since: u64, limit: u32) -> Result<PulledChanges> {
                    let mut conn = self.conn().await?;
                    Ok(Self::pull(&mut conn, collection, since, limit).await?)
                }

                async fn list_conflicts(&self, filter: ConflictFilter, page: PageRequest) -> Result<Page<Conflict>> {
                    let mut conn = self.conn().await?;
                    let rows = Self::conflict_rows(&mut conn, filter, page).await?;
                    $crate::store::paging::keyset_page(rows, page.size, |row| row.id, ConflictRow::into_conflict)
                }

                async fn resolve_conflict(&self, conflict_id: i64, resolution: Resolution, now: Timestamp) -> Result<Conflict> {
                    let mut conn = self.conn().await?;
                    let row = conn
                        .$tx(async |conn| Self::resolve_in_tx(conn, conflict_id, &resolution, now).await)
                        .await?;
                    row.into_conflict()
                }
            }
        };
    };
}

pub(crate) use impl_sync_store;
