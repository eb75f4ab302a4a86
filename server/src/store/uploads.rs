//! UploadRetry's queries, written once for both engines.
//!
//! Every write that moves an upload from one status to another re-checks the status it expects
//! in its own WHERE clause, so two replicas (or two calls) racing for one upload cannot both win,
//! under Postgres' READ COMMITTED as well as under SQLite's serialized writers.

macro_rules! impl_upload_store {
    ($store:ty, $conn:ty, $tx:ident) => {
        const _: () = {
            use diesel::dsl::{count_star, sum};
            use diesel::{
                BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl,
                SelectableHelper,
            };
            // AsyncConnection brings `transaction` for engines that begin writes with it.
            #[allow(unused_imports)]
            use diesel_async::AsyncConnection;
            use diesel_async::RunQueryDsl;

            use $crate::core::chunks::{Page, PageRequest};
            use $crate::core::uploads::*;
            use $crate::core::{Error, Result, Timestamp};
            use $crate::store::error::TxError;
            use $crate::store::schema::{upload_retry_runs, uploads};
            use $crate::store::upload_rows::*;

            const PENDING: &str = "pending";
            const RECEIVING: &str = "receiving";
            const STORED: &str = "stored";
            const DELIVERING: &str = "delivering";
            const DELIVERED: &str = "delivered";
            const FAILED: &str = "failed";
            /// Statuses in which an upload that has no stored content takes bytes.
            const TAKES_CONTENT: [&str; 3] = [PENDING, RECEIVING, FAILED];

            impl $store {
                async fn find_upload_row(
                    conn: &mut $conn,
                    upload_id: &str,
                ) -> Result<Option<UploadRow>, TxError> {
                    Ok(uploads::table
                        .filter(uploads::upload_id.eq(upload_id))
                        .select(UploadRow::as_select())
                        .first(conn)
                        .await
                        .optional()?)
                }

                async fn upload_row(
                    conn: &mut $conn,
                    upload_id: &str,
                ) -> Result<UploadRow, TxError> {
                    Self::find_upload_row(conn, upload_id)
                        .await?
                        .ok_or_else(|| {
                            TxError::Domain(Error::NotFound {
                                kind: "upload",
                                id: upload_id.to_owned(),
                            })
                        })
                }

                /// Leases the uploads `candidates` names that are still claimable under `guard`,
                /// one guarded UPDATE each, so an upload another run took in between is skipped.
                async fn lease_uploads(
                    conn: &mut $conn,
                    candidates: Vec<i64>,
                    now: Timestamp,
                    lease_until: Timestamp,
                ) -> Result<Vec<DeliveryLease>, TxError> {
                    let mut leases = Vec::with_capacity(candidates.len());
                    for id in candidates {
                        let token = uuid::Uuid::new_v4().simple().to_string();
                        let claimable = uploads::status.eq(STORED).or(uploads::status
                            .eq(DELIVERING)
                            .and(uploads::delivery_lease_until.le(now.as_micros())));
                        let row: Option<UploadRow> = diesel::update(
                            uploads::table
                                .filter(uploads::id.eq(id))
                                .filter(uploads::destination.is_not_null())
                                .filter(claimable),
                        )
                        .set((
                            uploads::status.eq(DELIVERING),
                            uploads::delivery_token.eq(Some(&token)),
                            uploads::delivery_lease_until.eq(Some(lease_until.as_micros())),
                            uploads::delivery_attempts.eq(uploads::delivery_attempts + 1),
                            uploads::next_delivery_at.eq(None::<i64>),
                            uploads::updated_at.eq(now.as_micros()),
                        ))
                        .returning(UploadRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional()?;
                        if let Some(row) = row {
                            leases.push(DeliveryLease {
                                upload: row.into_upload()?,
                                token,
                            });
                        }
                    }
                    Ok(leases)
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::UploadStore for $store {
                async fn create_upload(
                    &self,
                    upload: &NewUpload,
                    blob_key: String,
                    now: Timestamp,
                ) -> Result<Upload> {
                    let mut conn = self.conn().await?;
                    let row = conn
                        .$tx(async |conn| {
                            if let Some(existing) =
                                Self::find_upload_row(conn, &upload.upload_id).await?
                            {
                                let existing = existing.into_upload()?;
                                if existing.is_declared_as(upload) {
                                    return Ok(existing);
                                }
                                return Err(TxError::Domain(Error::AlreadyExists {
                                    kind: "upload",
                                    id: upload.upload_id.clone(),
                                }));
                            }
                            let row: UploadRow = diesel::insert_into(uploads::table)
                                .values(NewUploadRow::new(upload, blob_key, now))
                                .returning(UploadRow::as_returning())
                                .get_result(conn)
                                .await?;
                            Ok(row.into_upload()?)
                        })
                        .await?;
                    Ok(row)
                }

                async fn get_upload(&self, upload_id: &str) -> Result<Upload> {
                    let mut conn = self.conn().await?;
                    Self::upload_row(&mut conn, upload_id).await?.into_upload()
                }

                async fn find_uploads(&self, upload_ids: &[String]) -> Result<Vec<Upload>> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<UploadRow> = uploads::table
                        .filter(uploads::upload_id.eq_any(upload_ids))
                        .select(UploadRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    rows.into_iter().map(UploadRow::into_upload).collect()
                }

                async fn list_uploads(
                    &self,
                    filter: &UploadFilter,
                    page: PageRequest,
                ) -> Result<Page<Upload>> {
                    let mut conn = self.conn().await?;
                    let mut query = uploads::table
                        .select(UploadRow::as_select())
                        .order(uploads::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(owner) = &filter.owner {
                        query = query.filter(uploads::owner.eq(owner.clone()));
                    }
                    if let Some(status) = filter.status {
                        query = query.filter(uploads::status.eq(status.as_str()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(uploads::id.lt(after));
                    }
                    let rows: Vec<UploadRow> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    $crate::store::paging::keyset_page(
                        rows,
                        page.size,
                        |row| row.id,
                        UploadRow::into_upload,
                    )
                }

                async fn record_received(
                    &self,
                    upload_id: &str,
                    received_bytes: u64,
                    now: Timestamp,
                ) -> Result<Upload> {
                    let mut conn = self.conn().await?;
                    let received = to_i64(received_bytes);
                    // Progress only moves forward: a slower call that checkpoints late never
                    // takes back what a newer one recorded (both wrote the same bytes).
                    diesel::update(
                        uploads::table
                            .filter(uploads::upload_id.eq(upload_id))
                            .filter(uploads::received_bytes.lt(received))
                            .filter(uploads::stored_at.is_null())
                            .filter(uploads::status.eq_any(TAKES_CONTENT)),
                    )
                    .set((
                        uploads::received_bytes.eq(received),
                        uploads::status.eq(RECEIVING),
                        uploads::failure_reason.eq(None::<String>),
                        uploads::updated_at.eq(now.as_micros()),
                    ))
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    Self::upload_row(&mut conn, upload_id).await?.into_upload()
                }

                async fn mark_stored(
                    &self,
                    upload_id: &str,
                    deliver_at: Option<Timestamp>,
                    now: Timestamp,
                ) -> Result<Upload> {
                    let mut conn = self.conn().await?;
                    let row: Option<UploadRow> = diesel::update(
                        uploads::table
                            .filter(uploads::upload_id.eq(upload_id))
                            .filter(uploads::stored_at.is_null())
                            .filter(uploads::status.eq_any(TAKES_CONTENT)),
                    )
                    .set((
                        uploads::status.eq(STORED),
                        uploads::received_bytes.eq(uploads::size_bytes),
                        uploads::failure_reason.eq(None::<String>),
                        uploads::stored_at.eq(Some(now.as_micros())),
                        uploads::delivery_attempts.eq(0),
                        uploads::next_delivery_at.eq(deliver_at.map(Timestamp::as_micros)),
                        uploads::updated_at.eq(now.as_micros()),
                    ))
                    .returning(UploadRow::as_returning())
                    .get_result(&mut *conn)
                    .await
                    .optional()
                    .map_err(TxError::from)?;
                    match row {
                        Some(row) => row.into_upload(),
                        None => {
                            let upload = Self::upload_row(&mut conn, upload_id)
                                .await?
                                .into_upload()?;
                            Err(Error::FailedPrecondition(format!(
                                "upload {upload_id:?} is {} and takes no more content",
                                upload.status.as_str()
                            )))
                        }
                    }
                }

                async fn mark_content_rejected(
                    &self,
                    upload_id: &str,
                    reason: &str,
                    now: Timestamp,
                ) -> Result<Upload> {
                    let mut conn = self.conn().await?;
                    diesel::update(
                        uploads::table
                            .filter(uploads::upload_id.eq(upload_id))
                            .filter(uploads::stored_at.is_null())
                            .filter(uploads::status.eq_any(TAKES_CONTENT)),
                    )
                    .set((
                        uploads::status.eq(FAILED),
                        uploads::received_bytes.eq(0_i64),
                        uploads::failure_reason.eq(Some(reason)),
                        uploads::updated_at.eq(now.as_micros()),
                    ))
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    Self::upload_row(&mut conn, upload_id).await?.into_upload()
                }

                async fn claim_deliveries(
                    &self,
                    selection: &DeliverySelection,
                    limit: u32,
                    now: Timestamp,
                    lease_until: Timestamp,
                ) -> Result<Vec<DeliveryLease>> {
                    let mut conn = self.conn().await?;
                    let leases = conn
                        .$tx(async |conn| {
                            let expired_delivery = uploads::status
                                .eq(DELIVERING)
                                .and(uploads::delivery_lease_until.le(now.as_micros()));
                            let mut query = uploads::table
                                .select(uploads::id)
                                .filter(uploads::destination.is_not_null())
                                .order(uploads::id.asc())
                                .limit(i64::from(limit))
                                .into_boxed();
                            match selection {
                                DeliverySelection::Due => {
                                    let due = uploads::status
                                        .eq(STORED)
                                        .and(uploads::next_delivery_at.le(now.as_micros()));
                                    query = query.filter(due.or(expired_delivery));
                                }
                                DeliverySelection::Waiting => {
                                    query = query
                                        .filter(uploads::status.eq(STORED).or(expired_delivery));
                                }
                                DeliverySelection::Named {
                                    upload_ids,
                                    reset_failed,
                                } => {
                                    if *reset_failed {
                                        // An operator's word: uploads whose attempts ran out
                                        // start over, if their content is still there.
                                        diesel::update(
                                            uploads::table
                                                .filter(uploads::upload_id.eq_any(upload_ids))
                                                .filter(uploads::status.eq(FAILED))
                                                .filter(uploads::stored_at.is_not_null())
                                                .filter(uploads::content_pruned_at.is_null())
                                                .filter(uploads::destination.is_not_null()),
                                        )
                                        .set((
                                            uploads::status.eq(STORED),
                                            uploads::delivery_attempts.eq(0),
                                            uploads::updated_at.eq(now.as_micros()),
                                        ))
                                        .execute(conn)
                                        .await?;
                                    }
                                    query = query
                                        .filter(uploads::upload_id.eq_any(upload_ids))
                                        .filter(uploads::status.eq(STORED).or(expired_delivery));
                                }
                            }
                            let candidates: Vec<i64> = query.load(conn).await?;
                            Self::lease_uploads(conn, candidates, now, lease_until).await
                        })
                        .await?;
                    Ok(leases)
                }

                async fn extend_delivery(
                    &self,
                    upload_id: &str,
                    token: &str,
                    lease_until: Timestamp,
                ) -> Result<bool> {
                    let mut conn = self.conn().await?;
                    let updated = diesel::update(
                        uploads::table
                            .filter(uploads::upload_id.eq(upload_id))
                            .filter(uploads::status.eq(DELIVERING))
                            .filter(uploads::delivery_token.eq(token)),
                    )
                    .set(uploads::delivery_lease_until.eq(Some(lease_until.as_micros())))
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    Ok(updated == 1)
                }

                async fn finish_delivery(
                    &self,
                    upload_id: &str,
                    token: &str,
                    report: &DeliveryReport,
                    now: Timestamp,
                ) -> Result<Option<Upload>> {
                    let mut conn = self.conn().await?;
                    let (status, delivered_at, failure_reason, next_at) = match report {
                        DeliveryReport::Delivered => (DELIVERED, Some(now.as_micros()), None, None),
                        DeliveryReport::Failed {
                            error,
                            retry_at: Some(at),
                        } => (STORED, None, Some(error.clone()), Some(at.as_micros())),
                        DeliveryReport::Failed {
                            error,
                            retry_at: None,
                        } => (FAILED, None, Some(error.clone()), None),
                    };
                    let row: Option<UploadRow> = diesel::update(
                        uploads::table
                            .filter(uploads::upload_id.eq(upload_id))
                            .filter(uploads::status.eq(DELIVERING))
                            .filter(uploads::delivery_token.eq(token)),
                    )
                    .set((
                        uploads::status.eq(status),
                        uploads::delivered_at.eq(delivered_at),
                        uploads::failure_reason.eq(failure_reason),
                        uploads::next_delivery_at.eq(next_at),
                        uploads::delivery_token.eq(None::<String>),
                        uploads::delivery_lease_until.eq(None::<i64>),
                        uploads::updated_at.eq(now.as_micros()),
                    ))
                    .returning(UploadRow::as_returning())
                    .get_result(&mut *conn)
                    .await
                    .optional()
                    .map_err(TxError::from)?;
                    row.map(UploadRow::into_upload).transpose()
                }

                async fn insert_retry_run(&self, run: &NewRetryRun) -> Result<RetryRun> {
                    let mut conn = self.conn().await?;
                    let row: RetryRunRow = diesel::insert_into(upload_retry_runs::table)
                        .values(NewRetryRunRow::from(run))
                        .returning(RetryRunRow::as_returning())
                        .get_result(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    row.into_run()
                }

                async fn list_retry_runs(
                    &self,
                    filter: &RetryRunFilter,
                    page: PageRequest,
                ) -> Result<Page<RetryRun>> {
                    let mut conn = self.conn().await?;
                    let mut query = upload_retry_runs::table
                        .select(RetryRunRow::as_select())
                        .order(upload_retry_runs::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(source) = filter.source {
                        query = query.filter(upload_retry_runs::source.eq(source.as_str()));
                    }
                    if let Some(from) = filter.started_at_or_after {
                        query = query.filter(upload_retry_runs::started_at.ge(from.as_micros()));
                    }
                    if let Some(before) = filter.started_before {
                        query = query.filter(upload_retry_runs::started_at.lt(before.as_micros()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(upload_retry_runs::id.lt(after));
                    }
                    let rows: Vec<RetryRunRow> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    $crate::store::paging::keyset_page(
                        rows,
                        page.size,
                        |row| row.id,
                        RetryRunRow::into_run,
                    )
                }

                async fn retry_run_sums(
                    &self,
                    from: Timestamp,
                    until: Timestamp,
                ) -> Result<Vec<SourceHealth>> {
                    let mut conn = self.conn().await?;
                    let sums: Vec<(String, i64, Option<i64>, Option<i64>, Option<i64>)> =
                        upload_retry_runs::table
                            .filter(upload_retry_runs::started_at.ge(from.as_micros()))
                            .filter(upload_retry_runs::started_at.le(until.as_micros()))
                            .group_by(upload_retry_runs::source)
                            .select((
                                upload_retry_runs::source,
                                count_star(),
                                sum(upload_retry_runs::attempted),
                                sum(upload_retry_runs::succeeded),
                                sum(upload_retry_runs::failed),
                            ))
                            .load(&mut *conn)
                            .await
                            .map_err(TxError::from)?;
                    let total = |value: Option<i64>| u64::try_from(value.unwrap_or(0)).unwrap_or(0);
                    sums.into_iter()
                        .map(|(source, runs, attempted, succeeded, failed)| {
                            Ok(SourceHealth {
                                source: Some(retry_source(&source)?),
                                runs: u64::try_from(runs).unwrap_or(0),
                                attempted: total(attempted),
                                succeeded: total(succeeded),
                                failed: total(failed),
                            })
                        })
                        .collect()
                }

                async fn prune_retry_runs(&self, before: Timestamp) -> Result<u64> {
                    let mut conn = self.conn().await?;
                    let deleted = diesel::delete(
                        upload_retry_runs::table
                            .filter(upload_retry_runs::started_at.lt(before.as_micros())),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    Ok(deleted as u64)
                }

                async fn delivered_content_before(
                    &self,
                    before: Timestamp,
                    limit: u32,
                ) -> Result<Vec<Upload>> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<UploadRow> = uploads::table
                        .filter(uploads::status.eq(DELIVERED))
                        .filter(uploads::content_pruned_at.is_null())
                        .filter(uploads::delivered_at.lt(before.as_micros()))
                        .select(UploadRow::as_select())
                        .order(uploads::delivered_at.asc())
                        .limit(i64::from(limit))
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    rows.into_iter().map(UploadRow::into_upload).collect()
                }

                async fn mark_content_pruned(&self, upload_id: &str, now: Timestamp) -> Result<()> {
                    let mut conn = self.conn().await?;
                    diesel::update(uploads::table.filter(uploads::upload_id.eq(upload_id)))
                        .set((
                            uploads::content_pruned_at.eq(Some(now.as_micros())),
                            uploads::updated_at.eq(now.as_micros()),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_upload_store;
