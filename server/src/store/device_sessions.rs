//! DeviceImages' device-side queries (wake sessions, HELLO and sleep, commands going out,
//! images completing), written once for both engines. The operator's queries and the timeout
//! rule are in `devices.rs`.

macro_rules! impl_device_session_store {
    ($store:ty, $conn:ty, $tx:ident) => {
        const _: () = {
            use diesel::{
                BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl,
                SelectableHelper,
            };
            #[allow(unused_imports)]
            use diesel_async::AsyncConnection;
            use diesel_async::RunQueryDsl;

            use $crate::core::chunks::{Page, PageRequest};
            use $crate::core::device_messages::{HelloReport, SleepReport};
            use $crate::core::devices::*;
            use $crate::core::{Error, Result, Timestamp};
            use $crate::store::device_rows::*;
            use $crate::store::error::TxError;
            use $crate::store::paging::keyset_page;
            use $crate::store::rows::to_i32;
            use $crate::store::schema::{
                device_commands, device_history, device_image_chunks, device_images,
                device_wake_sessions, devices,
            };

            const IN_PROGRESS: &str = "in_progress";

            impl $store {
                /// The session the device left open, if any.
                async fn open_session(
                    conn: &mut $conn,
                    device_id: i64,
                ) -> Result<Option<WakeSessionRow>, TxError> {
                    Ok(device_wake_sessions::table
                        .filter(device_wake_sessions::device_id.eq(device_id))
                        .filter(device_wake_sessions::status.eq(IN_PROGRESS))
                        .order(device_wake_sessions::id.desc())
                        .select(WakeSessionRow::as_select())
                        .first(conn)
                        .await
                        .optional()?)
                }

                /// Ends the device's open session with `status`, recording what is still
                /// missing of the images it worked on (those touched since it started).
                async fn close_session(
                    conn: &mut $conn,
                    device_id: i64,
                    status: WakeSessionStatus,
                    error_codes: &[u32],
                    now: Timestamp,
                ) -> Result<(), TxError> {
                    let Some(session) = Self::open_session(conn, device_id).await? else {
                        return Ok(());
                    };
                    let touched: Vec<ImageRow> = device_images::table
                        .filter(device_images::device_id.eq(device_id))
                        .filter(device_images::updated_at.ge(session.started_at))
                        .order(device_images::updated_at.desc())
                        .select(ImageRow::as_select())
                        .load(conn)
                        .await?;
                    let chunks_total: u32 = touched.iter().map(|row| row.chunks().total()).sum();
                    let missing = touched
                        .iter()
                        .find(|row| row.status != ImageStatus::Complete.as_str())
                        .map(|row| row.chunks().missing())
                        .unwrap_or_default();
                    diesel::update(
                        device_wake_sessions::table.filter(device_wake_sessions::id.eq(session.id)),
                    )
                    .set((
                        device_wake_sessions::status.eq(status.as_str()),
                        device_wake_sessions::ended_at.eq(Some(now.as_micros())),
                        device_wake_sessions::chunks_total.eq(to_i32(chunks_total)),
                        device_wake_sessions::chunks_missing.eq(join_numbers(&missing)),
                        device_wake_sessions::error_codes.eq(join_numbers(error_codes)),
                    ))
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                }

                async fn due_command_rows(
                    conn: &mut $conn,
                    device_id: i64,
                    now: Timestamp,
                ) -> Result<Vec<CommandRow>, TxError> {
                    Ok(device_commands::table
                        .filter(device_commands::device_id.eq(device_id))
                        .filter(device_commands::status.eq(CommandStatus::Pending.as_str()))
                        .filter(device_commands::scheduled_for.le(now.as_micros()))
                        .filter(
                            device_commands::expires_at
                                .is_null()
                                .or(device_commands::expires_at.gt(now.as_micros())),
                        )
                        .order((
                            device_commands::priority.desc(),
                            device_commands::scheduled_for.asc(),
                            device_commands::id.asc(),
                        ))
                        .select(CommandRow::as_select())
                        .load(conn)
                        .await?)
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::DeviceSessionStore for $store {
                async fn device_hello(
                    &self,
                    mac: &str,
                    hello: &HelloReport,
                    now: Timestamp,
                ) -> Result<HelloOutcome> {
                    let mut conn = self.conn().await?;
                    let outcome = conn
                        .$tx(async |conn| {
                            let device = Self::device_row(conn, mac).await?;
                            Self::close_session(
                                conn,
                                device.id,
                                WakeSessionStatus::Timeout,
                                &[],
                                now,
                            )
                            .await?;
                            // The device's own timeout check runs against the wake time it
                            // had, before this HELLO moves it.
                            let mut timeouts = SweepOutcome::default();
                            Self::time_out_due_images(conn, Some(device.id), now, &mut timeouts)
                                .await?;
                            let interval = if hello.wake_interval_seconds > 0 {
                                hello.wake_interval_seconds
                            } else {
                                $crate::store::rows::count(device.wake_interval_seconds)
                            };
                            let next = next_wake(hello.next_wake_at, interval, now)
                                .map(Timestamp::as_micros)
                                .or(device.next_wake_at);
                            diesel::update(devices::table.filter(devices::id.eq(device.id)))
                                .set((
                                    devices::status.eq(DeviceStatus::Awake.as_str()),
                                    devices::last_seen_at.eq(Some(now.as_micros())),
                                    devices::firmware.eq(&hello.firmware),
                                    devices::battery_percent.eq(to_i32(hello.battery_percent)),
                                    devices::wake_interval_seconds.eq(to_i32(interval)),
                                    devices::next_wake_at.eq(next),
                                    devices::updated_at.eq(now.as_micros()),
                                ))
                                .execute(&mut *conn)
                                .await?;
                            let session_id: i64 = diesel::insert_into(device_wake_sessions::table)
                                .values((
                                    device_wake_sessions::device_id.eq(device.id),
                                    device_wake_sessions::status.eq(IN_PROGRESS),
                                    device_wake_sessions::started_at.eq(now.as_micros()),
                                    device_wake_sessions::firmware.eq(&hello.firmware),
                                    device_wake_sessions::battery_percent
                                        .eq(to_i32(hello.battery_percent)),
                                    device_wake_sessions::battery_millivolts
                                        .eq(to_i32(hello.battery_millivolts)),
                                    device_wake_sessions::wifi_retries
                                        .eq(to_i32(hello.wifi_retries)),
                                    device_wake_sessions::rssi_dbm.eq(hello.rssi_dbm),
                                ))
                                .returning(device_wake_sessions::id)
                                .get_result(conn)
                                .await?;
                            Self::insert_history(
                                conn,
                                NewHistoryRow {
                                    device_id: device.id,
                                    event_type: EVENT_HELLO,
                                    message: format!(
                                        "awake: firmware {:?}, battery {}%, {} Wi-Fi retries, \
                                         {} images held",
                                        hello.firmware,
                                        hello.battery_percent,
                                        hello.wifi_retries,
                                        hello.pending_images.len()
                                    ),
                                    image_name: None,
                                    session_id: Some(session_id),
                                    created_at: now.as_micros(),
                                },
                            )
                            .await?;
                            let commands = Self::due_command_rows(conn, device.id, now)
                                .await?
                                .into_iter()
                                .map(|row| row.into_command(device.mac.clone()))
                                .collect::<Result<Vec<_>>>()?;
                            Ok::<_, TxError>(HelloOutcome {
                                session_id,
                                timeouts,
                                commands,
                            })
                        })
                        .await?;
                    Ok(outcome)
                }

                async fn mark_commands_sent(
                    &self,
                    mac: &str,
                    command_ids: &[i64],
                    now: Timestamp,
                ) -> Result<u32> {
                    let mut conn = self.conn().await?;
                    let sent = conn
                        .$tx(async |conn| {
                            let device = Self::device_row(conn, mac).await?;
                            let sent: Vec<CommandRow> = diesel::update(
                                device_commands::table
                                    .filter(device_commands::device_id.eq(device.id))
                                    .filter(device_commands::id.eq_any(command_ids))
                                    .filter(
                                        device_commands::status.eq(CommandStatus::Pending.as_str()),
                                    ),
                            )
                            .set((
                                device_commands::status.eq(CommandStatus::Sent.as_str()),
                                device_commands::sent_at.eq(Some(now.as_micros())),
                            ))
                            .returning(CommandRow::as_returning())
                            .get_results(conn)
                            .await?;
                            let session = Self::open_session(conn, device.id).await?;
                            for command in &sent {
                                Self::insert_history(
                                    conn,
                                    NewHistoryRow {
                                        device_id: device.id,
                                        event_type: EVENT_COMMAND_SENT,
                                        message: format!(
                                            "command {} ({}, priority {}) sent",
                                            command.id, command.command_type, command.priority
                                        ),
                                        image_name: None,
                                        session_id: session.as_ref().map(|s| s.id),
                                        created_at: now.as_micros(),
                                    },
                                )
                                .await?;
                            }
                            Ok::<_, TxError>(u32::try_from(sent.len()).unwrap_or(u32::MAX))
                        })
                        .await?;
                    Ok(sent)
                }

                async fn device_sleep(
                    &self,
                    mac: &str,
                    sleep: &SleepReport,
                    now: Timestamp,
                ) -> Result<()> {
                    let mut conn = self.conn().await?;
                    conn.$tx(async |conn| {
                        let device = Self::device_row(conn, mac).await?;
                        let status = if sleep.error_codes.is_empty() {
                            WakeSessionStatus::Completed
                        } else {
                            WakeSessionStatus::Error
                        };
                        let session = Self::open_session(conn, device.id).await?;
                        Self::close_session(conn, device.id, status, &sleep.error_codes, now)
                            .await?;
                        let next = next_wake(
                            sleep.next_wake_at,
                            $crate::store::rows::count(device.wake_interval_seconds),
                            now,
                        )
                        .map(Timestamp::as_micros)
                        .or(device.next_wake_at);
                        diesel::update(devices::table.filter(devices::id.eq(device.id)))
                            .set((
                                devices::status.eq(DeviceStatus::Asleep.as_str()),
                                devices::last_seen_at.eq(Some(now.as_micros())),
                                devices::next_wake_at.eq(next),
                                devices::updated_at.eq(now.as_micros()),
                            ))
                            .execute(&mut *conn)
                            .await?;
                        let until = next
                            .map(|at| format!("{} (Unix seconds)", at.div_euclid(1_000_000)))
                            .unwrap_or_else(|| "an unknown time".to_owned());
                        let reason = if sleep.reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", sleep.reason)
                        };
                        Self::insert_history(
                            conn,
                            NewHistoryRow {
                                device_id: device.id,
                                event_type: EVENT_SLEEP,
                                message: format!("asleep until {until}{reason}"),
                                image_name: None,
                                session_id: session.map(|s| s.id),
                                created_at: now.as_micros(),
                            },
                        )
                        .await?;
                        Ok::<_, TxError>(())
                    })
                    .await?;
                    Ok(())
                }

                async fn complete_image(
                    &self,
                    mac: &str,
                    image_name: &str,
                    blob_key: &str,
                    now: Timestamp,
                ) -> Result<Image> {
                    let mut conn = self.conn().await?;
                    let image = conn
                        .$tx(async |conn| {
                            let device = Self::device_row(conn, mac).await?;
                            let row = Self::existing_image_row(conn, device.id, image_name).await?;
                            if row.status == ImageStatus::Complete.as_str() {
                                return Ok(row.into_image(device.mac)?);
                            }
                            if !row.chunks().is_complete() {
                                return Err(TxError::Domain(Error::FailedPrecondition(format!(
                                    "image {image_name:?} still misses chunks"
                                ))));
                            }
                            let updated: ImageRow = diesel::update(
                                device_images::table.filter(device_images::id.eq(row.id)),
                            )
                            .set((
                                device_images::status.eq(ImageStatus::Complete.as_str()),
                                device_images::blob_key.eq(Some(blob_key)),
                                device_images::completed_at.eq(Some(now.as_micros())),
                                device_images::updated_at.eq(now.as_micros()),
                            ))
                            .returning(ImageRow::as_returning())
                            .get_result(conn)
                            .await?;
                            // The blob store has the image now: its chunks, and any retry still
                            // waiting for it, are not needed any more.
                            diesel::delete(
                                device_image_chunks::table
                                    .filter(device_image_chunks::image_id.eq(row.id)),
                            )
                            .execute(&mut *conn)
                            .await?;
                            diesel::delete(
                                device_commands::table
                                    .filter(device_commands::image_id.eq(row.id))
                                    .filter(
                                        device_commands::status.eq(CommandStatus::Pending.as_str()),
                                    ),
                            )
                            .execute(&mut *conn)
                            .await?;
                            let session = Self::open_session(conn, device.id).await?;
                            Self::insert_history(
                                conn,
                                NewHistoryRow {
                                    device_id: device.id,
                                    event_type: EVENT_IMAGE_COMPLETE,
                                    message: format!(
                                        "image {image_name} complete: {} chunks, {} bytes, \
                                         checksum good",
                                        row.total_chunks, row.size_bytes
                                    ),
                                    image_name: Some(image_name),
                                    session_id: session.map(|s| s.id),
                                    created_at: now.as_micros(),
                                },
                            )
                            .await?;
                            Ok(updated.into_image(device.mac)?)
                        })
                        .await?;
                    Ok(image)
                }

                async fn reject_image_checksum(
                    &self,
                    mac: &str,
                    image_name: &str,
                    now: Timestamp,
                ) -> Result<Image> {
                    let mut conn = self.conn().await?;
                    conn.$tx(async |conn| {
                        let device = Self::device_row(conn, mac).await?;
                        let row = Self::existing_image_row(conn, device.id, image_name).await?;
                        if row.status != ImageStatus::Complete.as_str() {
                            // Every chunk is needed again, at the device's next wake (or the
                            // next HELLO, when that time is unknown or past).
                            let wake = device
                                .next_wake_at
                                .map(Timestamp::from_micros)
                                .filter(|wake| *wake > now)
                                .unwrap_or(now);
                            let mut outcome = SweepOutcome::default();
                            Self::fail_image(
                                conn,
                                row,
                                device.mac.clone(),
                                wake,
                                now,
                                CHECKSUM_MISMATCH_REASON,
                                &mut outcome,
                            )
                            .await?;
                        }
                        Ok::<_, TxError>(())
                    })
                    .await?;
                    $crate::store::DeviceStore::get_image(self, mac, image_name).await
                }

                async fn images_awaiting_assembly(
                    &self,
                    limit: u32,
                ) -> Result<Vec<(String, String)>> {
                    let mut conn = self.conn().await?;
                    Ok(device_images::table
                        .inner_join(devices::table)
                        .filter(device_images::status.ne(ImageStatus::Complete.as_str()))
                        .filter(device_images::chunks_received.eq(device_images::total_chunks))
                        .order(device_images::id.asc())
                        .limit(i64::from(limit))
                        .select((devices::mac, device_images::image_name))
                        .load(&mut *conn)
                        .await
                        .map_err(TxError::from)?)
                }

                async fn list_wake_sessions(
                    &self,
                    mac: Option<&str>,
                    page: PageRequest,
                ) -> Result<Page<WakeSession>> {
                    let mut conn = self.conn().await?;
                    let mut query = device_wake_sessions::table
                        .inner_join(devices::table)
                        .select((WakeSessionRow::as_select(), devices::mac))
                        .order(device_wake_sessions::id.desc())
                        .limit(i64::from(page.size) + 1)
                        .into_boxed();
                    if let Some(mac) = mac {
                        query = query.filter(devices::mac.eq(mac.to_owned()));
                    }
                    if let Some(after) = page.after {
                        query = query.filter(device_wake_sessions::id.lt(after));
                    }
                    let rows: Vec<(WakeSessionRow, String)> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    keyset_page(
                        rows,
                        page.size,
                        |(row, _)| row.id,
                        |(row, mac)| row.into_session(mac),
                    )
                }

                async fn history_after(
                    &self,
                    mac: Option<&str>,
                    after_id: i64,
                    limit: u32,
                ) -> Result<Vec<HistoryEvent>> {
                    let mut conn = self.conn().await?;
                    let mut query = device_history::table
                        .inner_join(devices::table)
                        .filter(device_history::id.gt(after_id))
                        .select((HistoryRow::as_select(), devices::mac))
                        .order(device_history::id.asc())
                        .limit(i64::from(limit))
                        .into_boxed();
                    if let Some(mac) = mac {
                        query = query.filter(devices::mac.eq(mac.to_owned()));
                    }
                    let rows: Vec<(HistoryRow, String)> =
                        query.load(&mut *conn).await.map_err(TxError::from)?;
                    Ok(rows
                        .into_iter()
                        .map(|(row, mac)| row.into_event(mac))
                        .collect())
                }

                async fn last_history_id(&self) -> Result<i64> {
                    let mut conn = self.conn().await?;
                    let last: Option<i64> = device_history::table
                        .select(diesel::dsl::max(device_history::id))
                        .first(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(last.unwrap_or(0))
                }
            }
        };
    };
}

pub(crate) use impl_device_session_store;
