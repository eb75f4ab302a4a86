//! DeviceImages' rows and their conversion to and from domain types.

use diesel::prelude::*;

use super::rows::{count, to_i32};
use super::schema::{
    device_alerts, device_commands, device_history, device_images, device_wake_sessions, devices,
};
use crate::core::devices::{
    split_numbers, Alert, ChunkBitmap, Command, CommandStatus, Device, DeviceStatus, HistoryEvent,
    Image, ImageStatus, NewCommand, WakeSession, WakeSessionStatus,
};
use crate::core::{Error, Result, Timestamp};

fn parse_word<T>(kind: &str, text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| Error::Internal(format!("unknown {kind} {text:?}")))
}

fn time(micros: Option<i64>) -> Option<Timestamp> {
    micros.map(Timestamp::from_micros)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = devices)]
pub struct DeviceRow {
    pub id: i64,
    pub mac: String,
    pub name: String,
    pub status: String,
    pub wake_interval_seconds: i32,
    pub next_wake_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub firmware: String,
    pub battery_percent: i32,
    pub created_at: i64,
}

impl DeviceRow {
    /// The device with its image counts (pending or receiving, failed).
    pub fn into_device(self, pending_images: u32, failed_images: u32) -> Result<Device> {
        Ok(Device {
            status: parse_word("device status", &self.status, DeviceStatus::parse)?,
            mac: self.mac,
            name: self.name,
            wake_interval_seconds: count(self.wake_interval_seconds),
            next_wake_at: time(self.next_wake_at),
            last_seen_at: time(self.last_seen_at),
            firmware: self.firmware,
            battery_percent: count(self.battery_percent),
            pending_images,
            failed_images,
            created_at: Timestamp::from_micros(self.created_at),
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = device_images)]
pub struct ImageRow {
    pub id: i64,
    pub device_id: i64,
    pub image_name: String,
    pub status: String,
    pub total_chunks: i32,
    pub size_bytes: i64,
    pub sha256: String,
    pub chunk_bitmap: Vec<u8>,
    pub retry_count: i32,
    pub max_retries: i32,
    pub failed_at: Option<i64>,
    pub timeout_reason: Option<String>,
    pub blob_key: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

impl ImageRow {
    pub fn status(&self) -> Result<ImageStatus> {
        parse_word("image status", &self.status, ImageStatus::parse)
    }

    pub fn chunks(&self) -> ChunkBitmap {
        ChunkBitmap::from_bytes(count(self.total_chunks), &self.chunk_bitmap)
    }

    pub fn into_image(self, mac: String) -> Result<Image> {
        Ok(Image {
            status: self.status()?,
            chunks: self.chunks(),
            mac,
            image_name: self.image_name,
            size_bytes: u64::try_from(self.size_bytes).unwrap_or(0),
            sha256: self.sha256,
            retry_count: count(self.retry_count),
            max_retries: count(self.max_retries),
            failed_at: time(self.failed_at),
            timeout_reason: self.timeout_reason,
            blob_key: self.blob_key,
            created_at: Timestamp::from_micros(self.created_at),
            completed_at: time(self.completed_at),
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = device_commands)]
pub struct CommandRow {
    pub id: i64,
    pub command_type: String,
    pub payload: Vec<u8>,
    pub priority: i32,
    pub scheduled_for: i64,
    pub expires_at: Option<i64>,
    pub status: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl CommandRow {
    pub fn into_command(self, mac: String) -> Result<Command> {
        Ok(Command {
            id: self.id,
            mac,
            status: parse_word("command status", &self.status, CommandStatus::parse)?,
            command_type: self.command_type,
            payload: self.payload,
            priority: count(self.priority),
            scheduled_for: Timestamp::from_micros(self.scheduled_for),
            expires_at: time(self.expires_at),
            created_at: Timestamp::from_micros(self.created_at),
            sent_at: time(self.sent_at),
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = device_commands)]
pub struct NewCommandRow<'a> {
    pub device_id: i64,
    pub image_id: Option<i64>,
    pub command_type: &'a str,
    pub payload: &'a [u8],
    pub priority: i32,
    pub scheduled_for: i64,
    pub expires_at: Option<i64>,
    pub status: &'static str,
    pub created_at: i64,
}

impl<'a> NewCommandRow<'a> {
    pub fn new(
        device_id: i64,
        image_id: Option<i64>,
        command: &'a NewCommand,
        now: Timestamp,
    ) -> Self {
        Self {
            device_id,
            image_id,
            command_type: &command.command_type,
            payload: &command.payload,
            priority: to_i32(command.priority),
            scheduled_for: command.scheduled_for.as_micros(),
            expires_at: command.expires_at.map(Timestamp::as_micros),
            status: CommandStatus::Pending.as_str(),
            created_at: now.as_micros(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = device_alerts)]
pub struct AlertRow {
    pub id: i64,
    pub alert_type: String,
    pub severity: String,
    pub message: String,
    pub image_name: Option<String>,
    pub created_at: i64,
    pub acknowledged_at: Option<i64>,
}

impl AlertRow {
    pub fn into_alert(self, mac: String) -> Alert {
        Alert {
            id: self.id,
            mac,
            alert_type: self.alert_type,
            severity: self.severity,
            message: self.message,
            image_name: self.image_name,
            created_at: Timestamp::from_micros(self.created_at),
            acknowledged_at: time(self.acknowledged_at),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = device_alerts)]
pub struct NewAlertRow<'a> {
    pub device_id: i64,
    pub alert_type: &'static str,
    pub severity: &'static str,
    pub message: String,
    pub image_name: Option<&'a str>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = device_history)]
pub struct HistoryRow {
    pub id: i64,
    pub event_type: String,
    pub message: String,
    pub image_name: Option<String>,
    pub session_id: Option<i64>,
    pub created_at: i64,
}

impl HistoryRow {
    pub fn into_event(self, mac: String) -> HistoryEvent {
        HistoryEvent {
            id: self.id,
            mac,
            event_type: self.event_type,
            message: self.message,
            image_name: self.image_name,
            session_id: self.session_id,
            created_at: Timestamp::from_micros(self.created_at),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = device_history)]
pub struct NewHistoryRow<'a> {
    pub device_id: i64,
    pub event_type: &'static str,
    pub message: String,
    pub image_name: Option<&'a str>,
    pub session_id: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = device_wake_sessions)]
pub struct WakeSessionRow {
    pub id: i64,
    pub status: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub chunks_sent: i32,
    pub chunks_total: i32,
    pub chunks_missing: String,
    pub firmware: String,
    pub battery_percent: i32,
    pub battery_millivolts: i32,
    pub wifi_retries: i32,
    pub rssi_dbm: i32,
    pub error_codes: String,
}

impl WakeSessionRow {
    pub fn into_session(self, mac: String) -> Result<WakeSession> {
        Ok(WakeSession {
            id: self.id,
            mac,
            status: parse_word(
                "wake session status",
                &self.status,
                WakeSessionStatus::parse,
            )?,
            started_at: Timestamp::from_micros(self.started_at),
            ended_at: time(self.ended_at),
            chunks_sent: count(self.chunks_sent),
            chunks_total: count(self.chunks_total),
            chunks_missing: split_numbers(&self.chunks_missing),
            firmware: self.firmware,
            battery_percent: count(self.battery_percent),
            battery_millivolts: count(self.battery_millivolts),
            wifi_retries: count(self.wifi_retries),
            rssi_dbm: self.rssi_dbm,
            error_codes: split_numbers(&self.error_codes),
        })
    }
}
