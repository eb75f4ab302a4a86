//! The MQTT broker's reachability as the rest of the server sees it: the device adapter publishes
//! it, health reports it. A plain value so health does not depend on the adapter.

use super::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerState {
    /// The broker's address, without credentials.
    pub url: String,
    /// Connected and subscribed to the device topics.
    pub connected: bool,
    /// When `connected` last changed (or the adapter started).
    pub since: Timestamp,
    /// Why the last connection attempt or connection failed; None once connected.
    pub last_error: Option<String>,
}

impl BrokerState {
    /// Before the first connection attempt has an outcome.
    pub fn connecting(url: impl Into<String>, now: Timestamp) -> Self {
        Self {
            url: url.into(),
            connected: false,
            since: now,
            last_error: Some("not connected yet".to_owned()),
        }
    }
}
