//! The broker connection: polls rumqttc's event loop, (re)subscribes on every connection, hands
//! device messages to the workers, reconnects with backoff when the broker is away, and keeps
//! the broker state up to date.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::watch;

use super::backoff::Backoff;
use super::dispatch::{Delivery, Workers};
use super::settings::MqttSettings;
use super::topics::{parse_inbound, shared_filters};
use crate::core::broker::BrokerState;
use crate::core::Clock;
use crate::grpc::until_shutdown;

/// How long a stopping adapter waits for the workers' current messages (and their acks).
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How long it waits for the DISCONNECT to reach the broker.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

pub(super) fn options(settings: &MqttSettings) -> MqttOptions {
    let mut options = settings.broker.mqtt_options(&settings.client_id);
    options
        .set_keep_alive(settings.keep_alive.max(Duration::from_secs(1)))
        // The broker keeps our subscriptions and unacked messages while we are away.
        .set_clean_session(false)
        // A message is acked only once the inbox has handled it (see dispatch.rs).
        .set_manual_acks(true)
        .set_max_packet_size(max_incoming_packet(settings), OUTGOING_PACKET_LIMIT);
    options
}

/// Commands carry at most 1 KiB of payload and acks a few bytes; a retry_image payload with 4096
/// missing indices is under 16 KiB.
const OUTGOING_PACKET_LIMIT: usize = 64 * 1024;

/// A packet over rumqttc's limit breaks the connection, and the broker would redeliver it after
/// every reconnect; so the limit sits well above the chunk limit, letting oversize chunks be
/// decoded, refused and acked. (The broker's own message size limit should stay below this.)
pub(super) fn max_incoming_packet(settings: &MqttSettings) -> usize {
    (settings.max_chunk_bytes.saturating_mul(4)).max(1024 * 1024)
}

pub(super) struct Connection {
    pub settings: MqttSettings,
    pub client: AsyncClient,
    pub eventloop: EventLoop,
    /// None once stopping.
    pub workers: Option<Workers>,
    pub state: watch::Sender<BrokerState>,
    pub clock: Arc<dyn Clock>,
    pub shutdown: watch::Receiver<bool>,
}

impl Connection {
    pub async fn run(mut self) {
        let filters: Vec<SubscribeFilter> = shared_filters(&self.settings.share_group)
            .into_iter()
            .map(|filter| SubscribeFilter::new(filter, QoS::AtLeastOnce))
            .collect();
        let mut backoff = Backoff::new(
            self.settings.reconnect_backoff_min,
            self.settings.reconnect_backoff_max,
        );
        let mut shutdown = self.shutdown.clone();
        // Whether the current outage has been logged: once per outage, not once per retry.
        let mut outage_logged = false;
        loop {
            let event = tokio::select! {
                event = self.eventloop.poll() => event,
                _ = until_shutdown(&mut shutdown) => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                    backoff.reset();
                    tracing::debug!(session_present = connack.session_present, "mqtt connected");
                    // Every time, even when the broker kept the session: subscribing again is
                    // harmless, and a broker that lost its state (restarted without persistence)
                    // would otherwise leave us connected but deaf.
                    if let Err(err) = self.client.try_subscribe_many(filters.clone()) {
                        tracing::error!(error = %err, "cannot queue the device subscriptions");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(suback))) => {
                    let refused = suback
                        .return_codes
                        .iter()
                        .any(|code| matches!(code, SubscribeReasonCode::Failure));
                    if refused {
                        let error = "the broker refused the device subscriptions".to_owned();
                        tracing::error!(url = %self.settings.broker.display_url(), "{error}");
                        self.set_down(error);
                    } else {
                        outage_logged = false;
                        self.set_up();
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let delivery = match parse_inbound(&publish.topic) {
                        Ok((mac, kind)) => Delivery { mac, kind, publish },
                        Err(err) => {
                            tracing::warn!(topic = publish.topic, error = %err,
                                "message outside the device contract, dropped");
                            let _ = self.client.try_ack(&publish);
                            continue;
                        }
                    };
                    let Some(workers) = &self.workers else { break };
                    if !workers.dispatch(delivery) {
                        break;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    self.connection_failed(&err, &mut outage_logged);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = until_shutdown(&mut shutdown) => break,
                    }
                }
            }
        }
        self.stop().await;
    }

    fn set_up(&self) {
        let now = self.clock.now();
        self.state.send_if_modified(|state| {
            if state.connected {
                return false;
            }
            tracing::info!(url = %state.url, down_for = ?now.since(state.since),
                "mqtt broker connected and subscribed");
            state.connected = true;
            state.since = now;
            state.last_error = None;
            true
        });
    }

    fn set_down(&self, error: String) {
        let now = self.clock.now();
        self.state.send_if_modified(|state| {
            let changed = state.connected || state.last_error.as_deref() != Some(&error);
            if state.connected {
                state.since = now;
            }
            state.connected = false;
            state.last_error = Some(error);
            changed
        });
    }

    /// Logged once per outage (the first failure after being connected and subscribed, or at
    /// start); the retries after it only at debug level, so a long outage does not flood the log.
    fn connection_failed(&self, err: &ConnectionError, outage_logged: &mut bool) {
        if !std::mem::replace(outage_logged, true) {
            tracing::warn!(url = %self.settings.broker.display_url(), error = %err,
                "mqtt broker unreachable; reconnecting with backoff");
        } else {
            tracing::debug!(error = %err, "mqtt reconnect failed");
        }
        self.set_down(err.to_string());
    }

    /// Stops taking messages, lets the workers finish their current one (their acks still need
    /// the event loop), then disconnects cleanly so the broker keeps our session without
    /// waiting for a keep-alive timeout.
    async fn stop(mut self) {
        let Some(workers) = self.workers.take() else {
            return;
        };
        let drained = workers.close();
        tokio::pin!(drained);
        let deadline = tokio::time::sleep(DRAIN_GRACE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut drained => break,
                _ = &mut deadline => {
                    tracing::warn!("mqtt workers still busy at shutdown; their messages stay with the broker");
                    break;
                }
                event = self.eventloop.poll() => if event.is_err() { break },
            }
        }
        if self.state.borrow().connected && self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
                loop {
                    match self.eventloop.poll().await {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
        self.set_down("the adapter stopped".to_owned());
        tracing::info!("mqtt adapter stopped");
    }
}
