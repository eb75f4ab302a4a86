//! Record sync's queries, written once for both engines; `impl_sync_store!` calls them.
//!
//! Every push and resolution first locks its collection's counter row, so writes to one
//! collection are serialized: decisions see the latest record, and cursors are handed out in
//! commit order (a puller that has read up to cursor n never misses a change committed later
//! with a smaller one).

macro_rules! impl_sync_record_queries {
    ($store:ty, $conn:ty) => {
        const _: () = {
            use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
            use diesel_async::RunQueryDsl;

            use $crate::core::chunks::PageRequest;
            use $crate::core::sync::records::*;
            use $crate::core::{Error, Result, Timestamp};
            use $crate::store::error::TxError;
            use $crate::store::schema::{
                sync_collections, sync_conflicts, sync_pushes, sync_records,
            };
            use $crate::store::sync_rows::{signed, unsigned, ConflictRow, RecordRow};

            /// A push log entry: what a change led to the first time.
            type Logged = (String, String, i64, Option<i64>, String);

            impl $store {
                async fn lock_collection(
                    conn: &mut $conn,
                    collection: &str,
                ) -> Result<(), TxError> {
                    diesel::insert_into(sync_collections::table)
                        .values((
                            sync_collections::collection.eq(collection),
                            sync_collections::last_seq.eq(0),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    diesel::update(
                        sync_collections::table.filter(sync_collections::collection.eq(collection)),
                    )
                    .set(sync_collections::last_seq.eq(sync_collections::last_seq))
                    .execute(conn)
                    .await?;
                    Ok(())
                }

                async fn find_record(
                    conn: &mut $conn,
                    collection: &str,
                    record_id: &str,
                ) -> Result<Option<Record>, TxError> {
                    Ok(sync_records::table
                        .filter(sync_records::collection.eq(collection))
                        .filter(sync_records::record_id.eq(record_id))
                        .select(RecordRow::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .map(RecordRow::into_record))
                }

                /// Writes the record's next version with the collection's next cursor.
                #[allow(clippy::too_many_arguments)]
                async fn write_record(
                    conn: &mut $conn,
                    collection: &str,
                    record_id: &str,
                    payload: &[u8],
                    deleted: bool,
                    updated_at: Timestamp,
                    changed_by: &str,
                    existing: Option<&Record>,
                ) -> Result<Record, TxError> {
                    let seq: i64 = diesel::update(
                        sync_collections::table.filter(sync_collections::collection.eq(collection)),
                    )
                    .set(sync_collections::last_seq.eq(sync_collections::last_seq + 1))
                    .returning(sync_collections::last_seq)
                    .get_result(conn)
                    .await?;
                    let row = RecordRow {
                        collection: collection.to_owned(),
                        record_id: record_id.to_owned(),
                        version: existing.map_or(1, |record| signed(record.version) + 1),
                        payload: payload.to_vec(),
                        deleted,
                        updated_at: updated_at.as_micros(),
                        changed_by: changed_by.to_owned(),
                        seq,
                    };
                    if existing.is_some() {
                        diesel::update(
                            sync_records::table
                                .filter(sync_records::collection.eq(collection))
                                .filter(sync_records::record_id.eq(record_id)),
                        )
                        .set((
                            sync_records::version.eq(row.version),
                            sync_records::payload.eq(&row.payload),
                            sync_records::deleted.eq(row.deleted),
                            sync_records::updated_at.eq(row.updated_at),
                            sync_records::changed_by.eq(&row.changed_by),
                            sync_records::seq.eq(row.seq),
                        ))
                        .execute(conn)
                        .await?;
                    } else {
                        diesel::insert_into(sync_records::table)
                            .values(&row)
                            .execute(conn)
                            .await?;
                    }
                    Ok(row.into_record())
                }

                /// A change seen before: its first outcome again (a conflict with the record as
                /// it is now), or AlreadyExists when the id now carries other content.
                async fn replay(
                    conn: &mut $conn,
                    push: &Push,
                    change: &RecordChange,
                    logged: Logged,
                ) -> Result<ChangeResult, TxError> {
                    let (hash, status, version, conflict_id, message) = logged;
                    let mut result = ChangeResult {
                        change_id: change.change_id.clone(),
                        record_id: change.record_id.clone(),
                        status: ChangeStatus::Rejected,
                        version: unsigned(version),
                        server_record: None,
                        conflict_id,
                        rejection: None,
                    };
                    if hash != change.content_hash() {
                        result.rejection = Some(Error::AlreadyExists {
                            kind: "change",
                            id: change.change_id.clone(),
                        });
                        return Ok(result);
                    }
                    result.status = ChangeStatus::parse(&status).ok_or_else(|| {
                        Error::Internal(format!("unknown change status {status:?}"))
                    })?;
                    match result.status {
                        ChangeStatus::Conflict => {
                            result.server_record =
                                Self::find_record(conn, &push.collection, &change.record_id)
                                    .await?;
                        }
                        ChangeStatus::Rejected => {
                            result.rejection = Some(Error::FailedPrecondition(message))
                        }
                        ChangeStatus::Applied => {}
                    }
                    Ok(result)
                }

                async fn open_conflict(
                    conn: &mut $conn,
                    push: &Push,
                    change: &RecordChange,
                    server: &Record,
                    now: Timestamp,
                ) -> Result<i64, TxError> {
                    Ok(diesel::insert_into(sync_conflicts::table)
                        .values((
                            sync_conflicts::collection.eq(&push.collection),
                            sync_conflicts::record_id.eq(&change.record_id),
                            sync_conflicts::client_id.eq(&push.client_id),
                            sync_conflicts::change_id.eq(&change.change_id),
                            sync_conflicts::base_version.eq(signed(change.base_version)),
                            sync_conflicts::local_payload.eq(&change.payload),
                            sync_conflicts::local_deleted.eq(change.deleted),
                            sync_conflicts::local_updated_at.eq(change.updated_at.as_micros()),
                            sync_conflicts::server_version.eq(signed(server.version)),
                            sync_conflicts::server_payload.eq(&server.payload),
                            sync_conflicts::server_deleted.eq(server.deleted),
                            sync_conflicts::server_updated_at.eq(server.updated_at.as_micros()),
                            sync_conflicts::status.eq(ConflictStatus::Open.as_str()),
                            sync_conflicts::created_at.eq(now.as_micros()),
                        ))
                        .returning(sync_conflicts::id)
                        .get_result(conn)
                        .await?)
                }

                async fn push_in_tx(
                    conn: &mut $conn,
                    push: &Push,
                    now: Timestamp,
                ) -> Result<Vec<ChangeResult>, TxError> {
                    Self::lock_collection(conn, &push.collection).await?;
                    let mut results = Vec::with_capacity(push.changes.len());
                    for change in &push.changes {
                        let logged: Option<Logged> = sync_pushes::table
                            .filter(sync_pushes::collection.eq(&push.collection))
                            .filter(sync_pushes::client_id.eq(&push.client_id))
                            .filter(sync_pushes::change_id.eq(&change.change_id))
                            .select((
                                sync_pushes::content_hash,
                                sync_pushes::status,
                                sync_pushes::version,
                                sync_pushes::conflict_id,
                                sync_pushes::message,
                            ))
                            .first(conn)
                            .await
                            .optional()?;
                        if let Some(logged) = logged {
                            results.push(Self::replay(conn, push, change, logged).await?);
                            continue;
                        }
                        let server =
                            Self::find_record(conn, &push.collection, &change.record_id).await?;
                        let mut result = ChangeResult {
                            change_id: change.change_id.clone(),
                            record_id: change.record_id.clone(),
                            status: ChangeStatus::Conflict,
                            version: server.as_ref().map_or(0, |record| record.version),
                            server_record: None,
                            conflict_id: None,
                            rejection: None,
                        };
                        let mut message = String::new();
                        match ChangeDecision::decide(change, server.as_ref(), push.strategy) {
                            ChangeDecision::Apply => {
                                let record = Self::write_record(
                                    conn,
                                    &push.collection,
                                    &change.record_id,
                                    &change.payload,
                                    change.deleted,
                                    change.updated_at,
                                    &push.client_id,
                                    server.as_ref(),
                                )
                                .await?;
                                result.status = ChangeStatus::Applied;
                                result.version = record.version;
                            }
                            ChangeDecision::KeepServer => result.server_record = server,
                            ChangeDecision::OpenConflict => {
                                let server = server.ok_or_else(|| {
                                    Error::Internal("a conflict without a record".into())
                                })?;
                                result.conflict_id = Some(
                                    Self::open_conflict(conn, push, change, &server, now).await?,
                                );
                                result.server_record = Some(server);
                            }
                            ChangeDecision::Reject(reason) => {
                                result.status = ChangeStatus::Rejected;
                                result.rejection = Some(Error::FailedPrecondition(reason.clone()));
                                message = reason;
                            }
                        }
                        diesel::insert_into(sync_pushes::table)
                            .values((
                                sync_pushes::collection.eq(&push.collection),
                                sync_pushes::client_id.eq(&push.client_id),
                                sync_pushes::change_id.eq(&change.change_id),
                                sync_pushes::content_hash.eq(change.content_hash()),
                                sync_pushes::status.eq(result.status.as_str()),
                                sync_pushes::version.eq(signed(result.version)),
                                sync_pushes::conflict_id.eq(result.conflict_id),
                                sync_pushes::message.eq(&message),
                                sync_pushes::created_at.eq(now.as_micros()),
                            ))
                            .execute(conn)
                            .await?;
                        results.push(result);
                    }
                    Ok(results)
                }

                async fn pull(
                    conn: &mut $conn,
                    collection: &str,
                    since: u64,
                    limit: u32,
                ) -> Result<PulledChanges, TxError> {
                    let mut rows: Vec<RecordRow> = sync_records::table
                        .filter(sync_records::collection.eq(collection))
                        .filter(sync_records::seq.gt(signed(since)))
                        .order(sync_records::seq.asc())
                        .limit(i64::from(limit) + 1)
                        .select(RecordRow::as_select())
                        .load(conn)
                        .await?;
                    let has_more = rows.len() > limit as usize;
                    rows.truncate(limit as usize);
                    let next_cursor = rows.last().map_or(since, |row| unsigned(row.seq));
                    Ok(PulledChanges {
                        records: rows.into_iter().map(RecordRow::into_record).collect(),
                        next_cursor,
                        has_more,
                    })
                }

                async fn conflict_rows(
                    conn: &mut $conn,
                    filter: ConflictFilter,
                    page: PageRequest,
                ) -> Result<Vec<ConflictRow>, TxError> {
                    let mut query = sync_conflicts::table
                        .select(ConflictRow::as_select())
                        .order(sync_conflicts::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(collection) = filter.collection {
                        query = query.filter(sync_conflicts::collection.eq(collection));
                    }
                    if let Some(status) = filter.status {
                        query = query.filter(sync_conflicts::status.eq(status.as_str()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(sync_conflicts::id.lt(after));
                    }
                    Ok(query.load(conn).await?)
                }

                async fn resolve_in_tx(
                    conn: &mut $conn,
                    conflict_id: i64,
                    resolution: &Resolution,
                    now: Timestamp,
                ) -> Result<ConflictRow, TxError> {
                    let conflict: ConflictRow = sync_conflicts::table
                        .filter(sync_conflicts::id.eq(conflict_id))
                        .select(ConflictRow::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or_else(|| {
                            TxError::Domain(Error::NotFound {
                                kind: "conflict",
                                id: conflict_id.to_string(),
                            })
                        })?;
                    if conflict.status != ConflictStatus::Open.as_str() {
                        return Err(TxError::Domain(Error::FailedPrecondition(format!(
                            "conflict {conflict_id} is already resolved"
                        ))));
                    }
                    Self::lock_collection(conn, &conflict.collection).await?;
                    let server =
                        Self::find_record(conn, &conflict.collection, &conflict.record_id).await?;
                    let chosen = match resolution {
                        Resolution::Local => Some((
                            conflict.local_payload.clone(),
                            conflict.local_deleted,
                            conflict.client_id.clone(),
                        )),
                        Resolution::Merged { payload, deleted } => {
                            Some((payload.clone(), *deleted, format!("conflict:{conflict_id}")))
                        }
                        Resolution::Remote => None,
                    };
                    let version = match chosen {
                        Some((payload, deleted, changed_by)) => {
                            Self::write_record(
                                conn,
                                &conflict.collection,
                                &conflict.record_id,
                                &payload,
                                deleted,
                                now,
                                &changed_by,
                                server.as_ref(),
                            )
                            .await?
                            .version
                        }
                        None => server.map_or(0, |record| record.version),
                    };
                    // Guarded: of two resolutions racing, one wins and the other is refused.
                    diesel::update(
                        sync_conflicts::table
                            .filter(sync_conflicts::id.eq(conflict_id))
                            .filter(sync_conflicts::status.eq(ConflictStatus::Open.as_str())),
                    )
                    .set((
                        sync_conflicts::status.eq(ConflictStatus::Resolved.as_str()),
                        sync_conflicts::resolution.eq(Some(resolution.kind().as_str())),
                        sync_conflicts::resolved_version.eq(Some(signed(version))),
                        sync_conflicts::resolved_at.eq(Some(now.as_micros())),
                    ))
                    .returning(ConflictRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?
                    .ok_or_else(|| {
                        TxError::Domain(Error::FailedPrecondition(format!(
                            "conflict {conflict_id} is already resolved"
                        )))
                    })
                }
            }
        };
    };
}

pub(crate) use impl_sync_record_queries;
