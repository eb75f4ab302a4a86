//! The `[mqtt]` section: the broker the device adapter connects to, and how it works.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mqtt::contract::DEFAULT_MAX_CHUNK_BYTES;
use crate::mqtt::topics::validate_share_group;
use crate::mqtt::{BrokerAddress, MqttSettings};

pub const DEFAULT_MQTT_URL: &str = "mqtt://127.0.0.1:1883";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// false: no broker; DeviceImages is served over gRPC only and devices cannot report.
    pub enabled: bool,
    /// `mqtt://[user[:password]@]host[:port]`; plain TCP only (no mqtts://).
    pub url: String,
    /// The MQTT client id, which the broker keeps this replica's session under; it must stay the
    /// same across restarts and differ between replicas. Empty: `retryd-<host name>`.
    pub client_id: String,
    /// The shared-subscription group: replicas in one group split the devices' messages.
    pub share_group: String,
    pub keep_alive_seconds: u64,
    /// Device messages are handled by this many workers (one device's in order).
    pub workers: usize,
    /// Largest image chunk accepted; bigger ones are logged and dropped.
    pub max_chunk_bytes: usize,
    /// Register a device the first time it says hello instead of ignoring it (DeviceImages
    /// applies this; the adapter only carries messages).
    pub auto_register: bool,
    /// Reconnecting to the broker (and retrying a message while the database is unavailable):
    /// the first wait, doubled up to the maximum.
    pub reconnect_backoff_min_ms: u64,
    pub reconnect_backoff_max_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: DEFAULT_MQTT_URL.to_owned(),
            client_id: String::new(),
            share_group: "retryd".to_owned(),
            keep_alive_seconds: 30,
            workers: 8,
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
            auto_register: false,
            reconnect_backoff_min_ms: 100,
            reconnect_backoff_max_ms: 5_000,
        }
    }
}

impl MqttConfig {
    /// The adapter's settings, or None when MQTT is disabled; Err names the bad setting.
    pub fn settings(&self) -> Result<Option<MqttSettings>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let broker = BrokerAddress::parse(&self.url)?;
        let client_id = match self.client_id.as_str() {
            "" => default_client_id(),
            id if id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                return Err(format!(
                    "mqtt.client_id {id:?} must be 1 to 128 characters without spaces"
                ))
            }
            id => id.to_owned(),
        };
        validate_share_group(&self.share_group)
            .map_err(|err| format!("mqtt.share_group: {err}"))?;
        if !(1..=65_535).contains(&self.keep_alive_seconds) {
            return Err("mqtt.keep_alive_seconds must be 1 to 65535".to_owned());
        }
        if !(1..=1024).contains(&self.workers) {
            return Err("mqtt.workers must be 1 to 1024".to_owned());
        }
        if !(1..=16 * 1024 * 1024).contains(&self.max_chunk_bytes) {
            return Err("mqtt.max_chunk_bytes must be 1 to 16 MiB".to_owned());
        }
        if self.reconnect_backoff_min_ms == 0
            || self.reconnect_backoff_max_ms < self.reconnect_backoff_min_ms
        {
            return Err(
                "mqtt.reconnect_backoff_min_ms must be at least 1 and at most reconnect_backoff_max_ms"
                    .to_owned(),
            );
        }
        Ok(Some(MqttSettings {
            broker,
            client_id,
            share_group: self.share_group.clone(),
            keep_alive: Duration::from_secs(self.keep_alive_seconds),
            workers: self.workers,
            max_chunk_bytes: self.max_chunk_bytes,
            reconnect_backoff_min: Duration::from_millis(self.reconnect_backoff_min_ms),
            reconnect_backoff_max: Duration::from_millis(self.reconnect_backoff_max_ms),
        }))
    }
}

/// `retryd-<host name>`: the same after a restart, so the broker hands back this replica's
/// session. Replicas sharing a host name must set `client_id` themselves.
fn default_client_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("retryd-{host}")
}
