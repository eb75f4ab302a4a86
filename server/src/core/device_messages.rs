//! What devices say over the device contract, as domain types: the MQTT adapter decodes the
//! contract's protobuf payloads into these and the DeviceImages service acts on them, so the
//! rules never see a wire format.

use super::Timestamp;

/// A device's HELLO: its telemetry and when it wakes next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelloReport {
    pub firmware: String,
    pub battery_percent: u32,
    pub battery_millivolts: u32,
    pub wifi_retries: u32,
    pub rssi_dbm: i32,
    /// The wake after this one, when the device names it.
    pub next_wake_at: Option<Timestamp>,
    /// Used when next_wake_at is unset: the next wake is this long after the sleep.
    pub wake_interval_seconds: u32,
    /// Images the device still holds and has not seen completed.
    pub pending_images: Vec<String>,
}

/// A device's `sleep`: the wake session ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SleepReport {
    /// None: now + the device's wake interval.
    pub next_wake_at: Option<Timestamp>,
    pub reason: String,
    pub error_codes: Vec<u32>,
}

/// What the server holds of an image after a chunk: published back to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkAck {
    pub image_name: String,
    pub chunks_received: u32,
    pub total_chunks: u32,
    /// Every chunk in and the checksum matched: the device may delete the image.
    pub image_complete: bool,
}
