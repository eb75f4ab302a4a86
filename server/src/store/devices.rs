//! DeviceImages' queries, written once for both engines.
//!
//! Storing a chunk first touches its image row (an UPDATE), which on Postgres takes the row lock
//! before the bitmap is read: two replicas storing two chunks of one image at once each see the
//! other's bit, so no chunk is lost from the bitmap. SQLite serializes writers anyway.

macro_rules! impl_device_store {
    ($store:ty, $conn:ty, $tx:ident) => {
        const _: () = {
            use std::collections::HashMap;

            use diesel::dsl::count_star;
            use diesel::{
                ExpressionMethods, NullableExpressionMethods, OptionalExtension, QueryDsl,
                SelectableHelper,
            };
            #[allow(unused_imports)]
            use diesel_async::AsyncConnection;
            use diesel_async::RunQueryDsl;

            use $crate::core::chunks::{Page, PageRequest};
            use $crate::core::devices::*;
            use $crate::core::{Error, Result, Timestamp};
            use $crate::store::device_rows::*;
            use $crate::store::error::TxError;
            use $crate::store::paging::keyset_page;
            use $crate::store::rows::to_i32;
            use $crate::store::schema::{
                device_alerts, device_commands, device_history, device_image_chunks, device_images,
                device_wake_sessions, devices,
            };

            const PENDING: &str = "pending";
            const RECEIVING: &str = "receiving";
            const FAILED: &str = "failed";
            const COMPLETE: &str = "complete";
            const PENDING_COMMAND: &str = "pending";

            fn not_found(kind: &'static str, id: impl Into<String>) -> TxError {
                TxError::Domain(Error::NotFound {
                    kind,
                    id: id.into(),
                })
            }

            impl $store {
                async fn device_row(conn: &mut $conn, mac: &str) -> Result<DeviceRow, TxError> {
                    devices::table
                        .filter(devices::mac.eq(mac))
                        .select(DeviceRow::as_select())
                        .first(conn)
                        .await
                        .optional()?
                        .ok_or_else(|| not_found("device", mac))
                }

                /// (pending or receiving, failed) image counts per device.
                async fn image_counts(
                    conn: &mut $conn,
                    device_ids: Vec<i64>,
                ) -> Result<HashMap<i64, (u32, u32)>, TxError> {
                    let rows: Vec<(i64, String, i64)> = device_images::table
                        .filter(device_images::device_id.eq_any(device_ids))
                        .group_by((device_images::device_id, device_images::status))
                        .select((
                            device_images::device_id,
                            device_images::status,
                            count_star(),
                        ))
                        .load(conn)
                        .await?;
                    let mut counts: HashMap<i64, (u32, u32)> = HashMap::new();
                    for (device_id, status, n) in rows {
                        let n = u32::try_from(n).unwrap_or(u32::MAX);
                        let entry = counts.entry(device_id).or_default();
                        match ImageStatus::parse(&status) {
                            Some(ImageStatus::Pending | ImageStatus::Receiving) => entry.0 += n,
                            Some(ImageStatus::Failed) => entry.1 += n,
                            _ => {}
                        }
                    }
                    Ok(counts)
                }

                async fn device_with_counts(
                    conn: &mut $conn,
                    row: DeviceRow,
                ) -> Result<Device, TxError> {
                    let (pending, failed) = Self::image_counts(conn, vec![row.id])
                        .await?
                        .remove(&row.id)
                        .unwrap_or_default();
                    Ok(row.into_device(pending, failed)?)
                }

                async fn image_row(
                    conn: &mut $conn,
                    device_id: i64,
                    image_name: &str,
                ) -> Result<Option<ImageRow>, TxError> {
                    Ok(device_images::table
                        .filter(device_images::device_id.eq(device_id))
                        .filter(device_images::image_name.eq(image_name))
                        .select(ImageRow::as_select())
                        .first(conn)
                        .await
                        .optional()?)
                }

                /// The image, or NotFound.
                async fn existing_image_row(
                    conn: &mut $conn,
                    device_id: i64,
                    image_name: &str,
                ) -> Result<ImageRow, TxError> {
                    Self::image_row(conn, device_id, image_name)
                        .await?
                        .ok_or_else(|| {
                            TxError::Domain(Error::NotFound {
                                kind: "image",
                                id: image_name.to_owned(),
                            })
                        })
                }

                /// Queues a command; a retry of an image replaces the image's older pending
                /// retries, so a device never gets two lists of missing chunks for one image.
                async fn insert_command(
                    conn: &mut $conn,
                    device_id: i64,
                    image_id: Option<i64>,
                    command: &NewCommand,
                    now: Timestamp,
                ) -> Result<CommandRow, TxError> {
                    if let Some(image_id) = image_id {
                        diesel::delete(
                            device_commands::table
                                .filter(device_commands::image_id.eq(image_id))
                                .filter(device_commands::status.eq(PENDING_COMMAND)),
                        )
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(diesel::insert_into(device_commands::table)
                        .values(NewCommandRow::new(device_id, image_id, command, now))
                        .returning(CommandRow::as_returning())
                        .get_result(conn)
                        .await?)
                }

                async fn insert_history(
                    conn: &mut $conn,
                    event: NewHistoryRow<'_>,
                ) -> Result<(), TxError> {
                    diesel::insert_into(device_history::table)
                        .values(event)
                        .execute(conn)
                        .await?;
                    Ok(())
                }

                async fn insert_alert(
                    conn: &mut $conn,
                    alert: NewAlertRow<'_>,
                ) -> Result<(), TxError> {
                    diesel::insert_into(device_alerts::table)
                        .values(alert)
                        .execute(conn)
                        .await?;
                    Ok(())
                }

                /// Applies the timeout rule to one image: found receiving past its device's
                /// wake, or failed with retries left and no retry waiting (its last one expired
                /// or was answered with nothing). A checksum mismatch fails the image the same
                /// way but first forgets its chunks: which one was bad is unknown. The UPDATE
                /// re-checks the status read, so a sweep racing another changes nothing twice.
                async fn fail_image(
                    conn: &mut $conn,
                    row: ImageRow,
                    mac: String,
                    next_wake_at: Timestamp,
                    now: Timestamp,
                    reason: &'static str,
                    outcome: &mut SweepOutcome,
                ) -> Result<(), TxError> {
                    let image_id = row.id;
                    let device_id = row.device_id;
                    let read_status = row.status.clone();
                    let mut image = row.into_image(mac)?;
                    let forget_chunks = reason == CHECKSUM_MISMATCH_REASON;
                    if forget_chunks {
                        image.chunks = ChunkBitmap::empty(image.chunks.total());
                        diesel::delete(
                            device_image_chunks::table
                                .filter(device_image_chunks::image_id.eq(image_id)),
                        )
                        .execute(&mut *conn)
                        .await?;
                    }
                    let decision = decide_timeout(
                        &ImageProgress {
                            image_name: image.image_name.clone(),
                            status: image.status,
                            retry_count: image.retry_count,
                            max_retries: image.max_retries,
                            chunks: image.chunks.clone(),
                        },
                        next_wake_at,
                    );
                    let updated = diesel::update(
                        device_images::table
                            .filter(device_images::id.eq(image_id))
                            .filter(device_images::status.eq(read_status)),
                    )
                    .set((
                        device_images::status.eq(FAILED),
                        device_images::failed_at.eq(Some(now.as_micros())),
                        device_images::timeout_reason.eq(Some(reason)),
                        device_images::retry_count.eq(to_i32(decision.retry_count)),
                        device_images::chunk_bitmap.eq(image.chunks.as_bytes().to_vec()),
                        device_images::chunks_received.eq(to_i32(image.chunks.received())),
                        device_images::updated_at.eq(now.as_micros()),
                    ))
                    .execute(&mut *conn)
                    .await?;
                    if updated == 0 {
                        return Ok(());
                    }
                    outcome.images_timed_out += 1;
                    let missing = image.chunks.missing();
                    let name = image.image_name.as_str();
                    let message = match &decision.retry {
                        Some(_) => format!(
                            "image {name} {reason}: {} of {} chunks missing; retry {} of {} \
                             queued",
                            missing.len(),
                            image.chunks.total(),
                            decision.retry_count,
                            image.max_retries
                        ),
                        None => format!(
                            "image {name} {reason}: {} of {} chunks missing; its {} retries \
                             are used up",
                            missing.len(),
                            image.chunks.total(),
                            image.max_retries
                        ),
                    };
                    Self::insert_history(
                        conn,
                        NewHistoryRow {
                            device_id,
                            event_type: if forget_chunks {
                                EVENT_CHECKSUM_MISMATCH
                            } else {
                                EVENT_IMAGE_TIMEOUT
                            },
                            message: message.clone(),
                            image_name: Some(name),
                            session_id: None,
                            created_at: now.as_micros(),
                        },
                    )
                    .await?;
                    match &decision.retry {
                        Some(retry) => {
                            Self::insert_command(conn, device_id, Some(image_id), retry, now)
                                .await?;
                            outcome.retries_queued += 1;
                        }
                        None => outcome.failed_to_queue += 1,
                    }
                    let alert = if decision.alert {
                        Some(ALERT_APPROACHING_MAX_RETRIES)
                    } else if decision.retry.is_none() {
                        Some(ALERT_RETRIES_EXHAUSTED)
                    } else {
                        None
                    };
                    if let Some(alert_type) = alert {
                        Self::insert_alert(
                            conn,
                            NewAlertRow {
                                device_id,
                                alert_type,
                                severity: SEVERITY_CRITICAL,
                                message,
                                image_name: Some(name),
                                created_at: now.as_micros(),
                            },
                        )
                        .await?;
                    }
                    Ok(())
                }

                /// The timeout rule for the devices whose wake time has come (one device, or
                /// all): images still pending or receiving with chunks missing. At a device's HELLO
                /// (`device` set) also its failed images with retries left and no retry
                /// waiting, which get a retry valid for this wake.
                async fn time_out_due_images(
                    conn: &mut $conn,
                    device: Option<i64>,
                    now: Timestamp,
                    outcome: &mut SweepOutcome,
                ) -> Result<(), TxError> {
                    // An image announced whose chunks were all lost is as unfinished as one
                    // with some: it is retried whole.
                    let mut query = device_images::table
                        .inner_join(devices::table)
                        .filter(device_images::status.eq_any([PENDING, RECEIVING]))
                        .filter(device_images::chunks_received.lt(device_images::total_chunks))
                        .filter(devices::next_wake_at.le(now.as_micros()))
                        .order(device_images::id.asc())
                        .select((ImageRow::as_select(), devices::mac, devices::next_wake_at))
                        .into_boxed();
                    if let Some(device) = device {
                        query = query.filter(devices::id.eq(device));
                    }
                    let stale: Vec<(ImageRow, String, Option<i64>)> = query.load(conn).await?;
                    for (row, mac, next_wake_at) in stale {
                        let Some(wake) = next_wake_at.map(Timestamp::from_micros) else {
                            continue;
                        };
                        Self::fail_image(conn, row, mac, wake, now, TIMEOUT_REASON, outcome)
                            .await?;
                    }
                    let Some(device) = device else {
                        return Ok(());
                    };
                    let waiting = device_commands::table
                        .filter(device_commands::image_id.eq(device_images::id.nullable()))
                        .filter(device_commands::status.eq(PENDING_COMMAND));
                    let unretried: Vec<(ImageRow, String)> = device_images::table
                        .inner_join(devices::table)
                        .filter(devices::id.eq(device))
                        .filter(device_images::status.eq(FAILED))
                        .filter(device_images::retry_count.lt(device_images::max_retries))
                        .filter(diesel::dsl::not(diesel::dsl::exists(waiting)))
                        .order(device_images::id.asc())
                        .select((ImageRow::as_select(), devices::mac))
                        .load(conn)
                        .await?;
                    for (row, mac) in unretried {
                        Self::fail_image(conn, row, mac, now, now, TIMEOUT_REASON, outcome).await?;
                    }
                    Ok(())
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::DeviceStore for $store {
                async fn register_device(
                    &self,
                    device: &NewDevice,
                    now: Timestamp,
                ) -> Result<Device> {
                    let mut conn = self.conn().await?;
                    let device = conn
                        .$tx(async |conn| {
                            let updated =
                                diesel::update(devices::table.filter(devices::mac.eq(&device.mac)))
                                    .set((
                                        devices::name.eq(&device.name),
                                        devices::wake_interval_seconds
                                            .eq(to_i32(device.wake_interval_seconds)),
                                        devices::updated_at.eq(now.as_micros()),
                                    ))
                                    .execute(&mut *conn)
                                    .await?;
                            if updated == 0 {
                                diesel::insert_into(devices::table)
                                    .values((
                                        devices::mac.eq(&device.mac),
                                        devices::name.eq(&device.name),
                                        devices::status.eq(DeviceStatus::Registered.as_str()),
                                        devices::wake_interval_seconds
                                            .eq(to_i32(device.wake_interval_seconds)),
                                        devices::created_at.eq(now.as_micros()),
                                        devices::updated_at.eq(now.as_micros()),
                                    ))
                                    .execute(&mut *conn)
                                    .await?;
                            }
                            if let Some(next_wake_at) = device.next_wake_at {
                                diesel::update(devices::table.filter(devices::mac.eq(&device.mac)))
                                    .set(devices::next_wake_at.eq(Some(next_wake_at.as_micros())))
                                    .execute(&mut *conn)
                                    .await?;
                            }
                            let row = Self::device_row(conn, &device.mac).await?;
                            Self::device_with_counts(conn, row).await
                        })
                        .await?;
                    Ok(device)
                }

                async fn get_device(&self, mac: &str) -> Result<Device> {
                    let mut conn = self.conn().await?;
                    let row = Self::device_row(&mut conn, mac).await?;
                    Ok(Self::device_with_counts(&mut conn, row).await?)
                }

                async fn list_devices(&self, page: PageRequest) -> Result<Page<Device>> {
                    let mut conn = self.conn().await?;
                    let mut query = devices::table
                        .select(DeviceRow::as_select())
                        .order(devices::id.asc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(after) = page.after {
                        query = query.filter(devices::id.gt(after));
                    }
                    let rows: Vec<DeviceRow> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    let ids = rows.iter().map(|row| row.id).collect();
                    let counts = Self::image_counts(&mut conn, ids).await?;
                    keyset_page(
                        rows,
                        page.size,
                        |row| row.id,
                        |row| {
                            let (pending, failed) =
                                counts.get(&row.id).copied().unwrap_or_default();
                            row.into_device(pending, failed)
                        },
                    )
                }

                async fn begin_image(
                    &self,
                    mac: &str,
                    image: &NewImage,
                    now: Timestamp,
                ) -> Result<Image> {
                    let mut conn = self.conn().await?;
                    let image = conn
                        .$tx(async |conn| {
                            let device = Self::device_row(conn, mac).await?;
                            if let Some(existing) =
                                Self::image_row(conn, device.id, &image.image_name).await?
                            {
                                let existing = existing.into_image(device.mac)?;
                                if existing.is_announced_as(image) {
                                    return Ok(existing);
                                }
                                return Err(TxError::Domain(Error::AlreadyExists {
                                    kind: "image",
                                    id: image.image_name.clone(),
                                }));
                            }
                            let row: ImageRow = diesel::insert_into(device_images::table)
                                .values((
                                    device_images::device_id.eq(device.id),
                                    device_images::image_name.eq(&image.image_name),
                                    device_images::status.eq(ImageStatus::Pending.as_str()),
                                    device_images::total_chunks.eq(to_i32(image.total_chunks)),
                                    device_images::size_bytes
                                        .eq(i64::try_from(image.size_bytes).unwrap_or(i64::MAX)),
                                    device_images::sha256.eq(&image.sha256),
                                    device_images::chunk_bitmap.eq(ChunkBitmap::empty(
                                        image.total_chunks,
                                    )
                                    .as_bytes()
                                    .to_vec()),
                                    device_images::max_retries.eq(to_i32(DEFAULT_MAX_RETRIES)),
                                    device_images::created_at.eq(now.as_micros()),
                                    device_images::updated_at.eq(now.as_micros()),
                                ))
                                .returning(ImageRow::as_returning())
                                .get_result(conn)
                                .await?;
                            Self::insert_history(
                                conn,
                                NewHistoryRow {
                                    device_id: device.id,
                                    event_type: EVENT_IMAGE_BEGIN,
                                    message: format!(
                                        "image {} announced: {} chunks, {} bytes",
                                        image.image_name, image.total_chunks, image.size_bytes
                                    ),
                                    image_name: Some(&image.image_name),
                                    session_id: None,
                                    created_at: now.as_micros(),
                                },
                            )
                            .await?;
                            Ok(row.into_image(device.mac)?)
                        })
                        .await?;
                    Ok(image)
                }

                async fn store_chunk(
                    &self,
                    mac: &str,
                    image_name: &str,
                    index: u32,
                    data: &[u8],
                    now: Timestamp,
                ) -> Result<ChunkReceipt> {
                    let mut conn = self.conn().await?;
                    let receipt = conn
                        .$tx(async |conn| {
                            let device = Self::device_row(conn, mac).await?;
                            // Touch first: takes the image's row lock before its bitmap is read.
                            let touched = diesel::update(
                                device_images::table
                                    .filter(device_images::device_id.eq(device.id))
                                    .filter(device_images::image_name.eq(image_name))
                                    .filter(device_images::status.ne(COMPLETE)),
                            )
                            .set(device_images::updated_at.eq(now.as_micros()))
                            .execute(&mut *conn)
                            .await?;
                            let row = Self::image_row(conn, device.id, image_name)
                                .await?
                                .ok_or_else(|| not_found("image", image_name))?;
                            let mut chunks = row.chunks();
                            if index >= chunks.total() {
                                return Err(TxError::Domain(Error::OutOfRange(format!(
                                    "chunk {index} is past image {image_name:?}'s {} chunks",
                                    chunks.total()
                                ))));
                            }
                            if touched == 0 || !chunks.insert(index)? {
                                // Complete, or the chunk is in: nothing changes (the touch
                                // rolls back with the transaction).
                                return Err(TxError::Domain(Error::AlreadyExists {
                                    kind: "chunk",
                                    id: index.to_string(),
                                }));
                            }
                            diesel::insert_into(device_image_chunks::table)
                                .values((
                                    device_image_chunks::image_id.eq(row.id),
                                    device_image_chunks::chunk_index.eq(to_i32(index)),
                                    device_image_chunks::data.eq(data),
                                ))
                                .execute(&mut *conn)
                                .await?;
                            // The chunk counts for the wake session it arrived in.
                            diesel::update(
                                device_wake_sessions::table
                                    .filter(device_wake_sessions::device_id.eq(device.id))
                                    .filter(
                                        device_wake_sessions::status
                                            .eq(WakeSessionStatus::InProgress.as_str()),
                                    ),
                            )
                            .set(
                                device_wake_sessions::chunks_sent
                                    .eq(device_wake_sessions::chunks_sent + 1),
                            )
                            .execute(&mut *conn)
                            .await?;
                            let updated: ImageRow = diesel::update(
                                device_images::table.filter(device_images::id.eq(row.id)),
                            )
                            .set((
                                device_images::chunk_bitmap.eq(chunks.as_bytes().to_vec()),
                                device_images::chunks_received.eq(to_i32(chunks.received())),
                                device_images::status.eq(RECEIVING),
                            ))
                            .returning(ImageRow::as_returning())
                            .get_result(conn)
                            .await?;
                            Ok(ChunkReceipt {
                                image: updated.into_image(device.mac)?,
                                newly_stored: true,
                            })
                        })
                        .await;
                    match receipt {
                        Err(TxError::Domain(Error::AlreadyExists { kind: "chunk", .. })) => {
                            Ok(ChunkReceipt {
                                image: self.get_image(mac, image_name).await?,
                                newly_stored: false,
                            })
                        }
                        other => Ok(other?),
                    }
                }

                async fn image_chunks(&self, mac: &str, image_name: &str) -> Result<Vec<Vec<u8>>> {
                    let mut conn = self.conn().await?;
                    let device = Self::device_row(&mut conn, mac).await?;
                    let row = Self::image_row(&mut conn, device.id, image_name)
                        .await?
                        .ok_or_else(|| not_found("image", image_name))?;
                    Ok(device_image_chunks::table
                        .filter(device_image_chunks::image_id.eq(row.id))
                        .order(device_image_chunks::chunk_index.asc())
                        .select(device_image_chunks::data)
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?)
                }

                async fn get_image(&self, mac: &str, image_name: &str) -> Result<Image> {
                    let mut conn = self.conn().await?;
                    let device = Self::device_row(&mut conn, mac).await?;
                    Ok(Self::existing_image_row(&mut conn, device.id, image_name)
                        .await?
                        .into_image(device.mac)?)
                }

                async fn list_images(
                    &self,
                    filter: &ImageFilter,
                    page: PageRequest,
                ) -> Result<Page<Image>> {
                    let mut conn = self.conn().await?;
                    let mut query = device_images::table
                        .inner_join(devices::table)
                        .select((ImageRow::as_select(), devices::mac))
                        .order(device_images::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(mac) = &filter.mac {
                        query = query.filter(devices::mac.eq(mac.clone()));
                    }
                    if let Some(status) = filter.status {
                        query = query.filter(device_images::status.eq(status.as_str()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(device_images::id.lt(after));
                    }
                    let rows: Vec<(ImageRow, String)> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    keyset_page(
                        rows,
                        page.size,
                        |(row, _)| row.id,
                        |(row, mac)| row.into_image(mac),
                    )
                }

                async fn queue_command(
                    &self,
                    mac: &str,
                    command: &NewCommand,
                    now: Timestamp,
                ) -> Result<Command> {
                    let mut conn = self.conn().await?;
                    let device = Self::device_row(&mut conn, mac).await?;
                    Self::insert_command(&mut conn, device.id, None, command, now)
                        .await?
                        .into_command(device.mac)
                }

                async fn due_commands(&self, mac: &str, now: Timestamp) -> Result<Vec<Command>> {
                    let mut conn = self.conn().await?;
                    let device = Self::device_row(&mut conn, mac).await?;
                    Self::due_command_rows(&mut conn, device.id, now)
                        .await?
                        .into_iter()
                        .map(|row| row.into_command(device.mac.clone()))
                        .collect()
                }

                async fn list_commands(
                    &self,
                    filter: &CommandFilter,
                    page: PageRequest,
                ) -> Result<Page<Command>> {
                    let mut conn = self.conn().await?;
                    let mut query = device_commands::table
                        .inner_join(devices::table)
                        .select((CommandRow::as_select(), devices::mac))
                        .order(device_commands::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(mac) = &filter.mac {
                        query = query.filter(devices::mac.eq(mac.clone()));
                    }
                    if let Some(status) = filter.status {
                        query = query.filter(device_commands::status.eq(status.as_str()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(device_commands::id.lt(after));
                    }
                    let rows: Vec<(CommandRow, String)> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    keyset_page(
                        rows,
                        page.size,
                        |(row, _)| row.id,
                        |(row, mac)| row.into_command(mac),
                    )
                }

                async fn run_timeout_sweep(&self, now: Timestamp) -> Result<SweepOutcome> {
                    let mut conn = self.conn().await?;
                    let outcome = conn
                        .$tx(async |conn| {
                            let mut outcome = SweepOutcome::default();
                            Self::time_out_due_images(conn, None, now, &mut outcome).await?;
                            let removed = diesel::delete(
                                device_commands::table
                                    .filter(device_commands::status.eq(PENDING_COMMAND))
                                    .filter(device_commands::expires_at.le(now.as_micros())),
                            )
                            .execute(&mut *conn)
                            .await?;
                            outcome.expired_commands_removed =
                                u32::try_from(removed).unwrap_or(u32::MAX);
                            Ok::<_, TxError>(outcome)
                        })
                        .await?;
                    Ok(outcome)
                }

                async fn retry_failed_images(
                    &self,
                    mac: &str,
                    now: Timestamp,
                ) -> Result<RetryReset> {
                    let mut conn = self.conn().await?;
                    let reset = conn
                        .$tx(async |conn| {
                            let device = Self::device_row(conn, mac).await?;
                            // A wake already past (or unknown) means the device may say hello
                            // any moment: the retry is due now.
                            let wake = device
                                .next_wake_at
                                .map(Timestamp::from_micros)
                                .filter(|wake| *wake > now)
                                .unwrap_or(now);
                            let failed: Vec<ImageRow> = diesel::update(
                                device_images::table
                                    .filter(device_images::device_id.eq(device.id))
                                    .filter(device_images::status.eq(FAILED)),
                            )
                            .set((
                                device_images::retry_count.eq(0),
                                device_images::updated_at.eq(now.as_micros()),
                            ))
                            .returning(ImageRow::as_returning())
                            .get_results(conn)
                            .await?;
                            let mut reset = RetryReset::default();
                            for row in failed {
                                reset.images_reset += 1;
                                let retry =
                                    retry_command(&row.image_name, row.chunks().missing(), wake);
                                Self::insert_command(conn, device.id, Some(row.id), &retry, now)
                                    .await?;
                                reset.retries_queued += 1;
                                Self::insert_history(
                                    conn,
                                    NewHistoryRow {
                                        device_id: device.id,
                                        event_type: EVENT_MANUAL_RETRY,
                                        message: format!(
                                            "image {}: retries reset by an operator; retry queued",
                                            row.image_name
                                        ),
                                        image_name: Some(&row.image_name),
                                        session_id: None,
                                        created_at: now.as_micros(),
                                    },
                                )
                                .await?;
                            }
                            Ok::<_, TxError>(reset)
                        })
                        .await?;
                    Ok(reset)
                }

                async fn list_alerts(
                    &self,
                    filter: &AlertFilter,
                    page: PageRequest,
                ) -> Result<Page<Alert>> {
                    let mut conn = self.conn().await?;
                    let mut query = device_alerts::table
                        .inner_join(devices::table)
                        .select((AlertRow::as_select(), devices::mac))
                        .order(device_alerts::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(mac) = &filter.mac {
                        query = query.filter(devices::mac.eq(mac.clone()));
                    }
                    if !filter.include_acknowledged {
                        query = query.filter(device_alerts::acknowledged_at.is_null());
                    }
                    if let Some(after) = page.after {
                        query = query.filter(device_alerts::id.lt(after));
                    }
                    let rows: Vec<(AlertRow, String)> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    keyset_page(
                        rows,
                        page.size,
                        |(row, _)| row.id,
                        |(row, mac)| Ok(row.into_alert(mac)),
                    )
                }

                async fn acknowledge_alert(&self, alert_id: i64, now: Timestamp) -> Result<Alert> {
                    let mut conn = self.conn().await?;
                    diesel::update(
                        device_alerts::table
                            .filter(device_alerts::id.eq(alert_id))
                            .filter(device_alerts::acknowledged_at.is_null()),
                    )
                    .set(device_alerts::acknowledged_at.eq(Some(now.as_micros())))
                    .execute(&mut *conn)
                    .await
                    .map_err(TxError::from)?;
                    let (row, mac): (AlertRow, String) = device_alerts::table
                        .inner_join(devices::table)
                        .filter(device_alerts::id.eq(alert_id))
                        .select((AlertRow::as_select(), devices::mac))
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(TxError::from)?
                        .ok_or_else(|| Error::NotFound {
                            kind: "alert",
                            id: alert_id.to_string(),
                        })?;
                    Ok(row.into_alert(mac))
                }

                async fn list_history(
                    &self,
                    mac: Option<&str>,
                    page: PageRequest,
                ) -> Result<Page<HistoryEvent>> {
                    let mut conn = self.conn().await?;
                    let mut query = device_history::table
                        .inner_join(devices::table)
                        .select((HistoryRow::as_select(), devices::mac))
                        .order(device_history::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(mac) = mac {
                        query = query.filter(devices::mac.eq(mac.to_owned()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(device_history::id.lt(after));
                    }
                    let rows: Vec<(HistoryRow, String)> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    keyset_page(
                        rows,
                        page.size,
                        |(row, _)| row.id,
                        |(row, mac)| Ok(row.into_event(mac)),
                    )
                }
            }
        };
    };
}

pub(crate) use impl_device_store;
