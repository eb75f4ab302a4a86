//! The MQTT device adapter: connects the broker to DeviceImages' device side
//! (`service::device_inbox::DeviceInbox`). Devices publish on `retryd/devices/{MAC}/…`
//! (topics.rs) protobuf payloads (contract.rs); the adapter holds shared subscriptions so several
//! replicas split the devices, acks a message to the broker only once the inbox has handled it
//! (dispatch.rs), and reconnects by itself when the broker is away (connection.rs), publishing
//! the broker's state for health.

use std::sync::Arc;

use rumqttc::AsyncClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod backoff;
mod connection;
pub mod contract;
mod dispatch;
pub mod settings;
pub mod topics;

pub use settings::{BrokerAddress, MqttSettings};

use crate::core::broker::BrokerState;
use crate::core::Clock;
use crate::service::device_inbox::DeviceInbox;
use connection::Connection;
use dispatch::{Handler, Workers};

/// A running adapter.
pub struct MqttAdapter {
    broker: watch::Receiver<BrokerState>,
    task: JoinHandle<()>,
}

impl MqttAdapter {
    /// The broker's state, for health.
    pub fn broker_state(&self) -> watch::Receiver<BrokerState> {
        self.broker.clone()
    }

    /// Ends once the adapter has stopped after `shutdown` turned true: the workers' current
    /// messages handled (or left to the broker) and the connection closed.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Starts the adapter: it connects (and keeps reconnecting) in the background until `shutdown`
/// turns true. Call within a tokio runtime.
pub fn spawn(
    settings: MqttSettings,
    inbox: Arc<dyn DeviceInbox>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> MqttAdapter {
    let (state, broker) = watch::channel(BrokerState::connecting(
        settings.broker.display_url(),
        clock.now(),
    ));
    // Room for every queued message's ack and replies, so a worker's non-blocking publish
    // (dispatch.rs) rarely finds the client's queue full.
    let capacity = (settings.workers * 1024).max(8192);
    let (client, eventloop) = AsyncClient::new(connection::options(&settings), capacity);
    let handler = Arc::new(Handler {
        inbox,
        client: client.clone(),
        max_chunk_bytes: settings.max_chunk_bytes,
        retry_min: settings.reconnect_backoff_min,
        retry_max: settings.reconnect_backoff_max,
        shutdown: shutdown.clone(),
    });
    let workers = Workers::spawn(settings.workers, handler);
    let connection = Connection {
        settings,
        client,
        eventloop,
        workers: Some(workers),
        state,
        clock,
        shutdown,
    };
    MqttAdapter {
        broker,
        task: tokio::spawn(connection.run()),
    }
}
