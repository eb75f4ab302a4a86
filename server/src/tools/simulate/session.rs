//! One MQTT connection of the simulator (a device's wake, or a side of the broker baseline):
//! rumqttc's event loop is polled by a task of its own, which hands the events that matter to
//! the owner of the session in order.

use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Outgoing, Packet, QoS, SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::mqtt::BrokerAddress;

/// How long connecting and subscribing may take before the wake counts as failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a clean disconnect may take before the connection is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Larger than any message of the contract (a 4 KiB chunk plus its name and framing).
const MAX_PACKET_BYTES: usize = 64 * 1024;

enum SessionEvent {
    Connected,
    Subscribed { granted: bool },
    Message { topic: String, payload: Vec<u8> },
    Closed(String),
}

pub struct Session {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    poller: JoinHandle<()>,
}

impl Session {
    /// Connects with a clean session and subscribes to `topics` (QoS 1), returning once the
    /// broker has acknowledged both, so nothing published to them afterwards is missed.
    pub async fn open(
        broker: &BrokerAddress,
        client_id: &str,
        topics: &[String],
    ) -> Result<Self, String> {
        let mut options = broker.mqtt_options(client_id);
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            // Room for a burst of chunks while the event loop writes.
            .set_request_channel_capacity(256);
        let (client, eventloop) = AsyncClient::new(options, 256);
        let (sender, events) = mpsc::unbounded_channel();
        let poller = tokio::spawn(poll(eventloop, sender));
        let mut session = Self {
            client,
            events,
            poller,
        };
        tokio::time::timeout(OPEN_TIMEOUT, session.handshake(topics))
            .await
            .map_err(|_| format!("no answer from the broker within {OPEN_TIMEOUT:?}"))??;
        Ok(session)
    }

    async fn handshake(&mut self, topics: &[String]) -> Result<(), String> {
        match self.events.recv().await {
            Some(SessionEvent::Connected) => {}
            Some(SessionEvent::Closed(reason)) => return Err(reason),
            _ => return Err("the connection closed before it was accepted".into()),
        }
        if topics.is_empty() {
            return Ok(());
        }
        let filters = topics
            .iter()
            .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtLeastOnce));
        self.client
            .subscribe_many(filters)
            .await
            .map_err(|err| err.to_string())?;
        loop {
            match self.events.recv().await {
                Some(SessionEvent::Subscribed { granted: true }) => return Ok(()),
                Some(SessionEvent::Subscribed { granted: false }) => {
                    return Err("the broker refused the subscription".into())
                }
                Some(SessionEvent::Closed(reason)) => return Err(reason),
                None => return Err("the connection closed while subscribing".into()),
                // Nothing is published to a fresh clean session before it subscribes.
                Some(_) => {}
            }
        }
    }

    /// Queues a QoS 1 publication; it fails only when the connection is gone.
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|err| format!("publish: {err}"))
    }

    /// The next message on a subscribed topic; None once `deadline` passes without one; an
    /// error when the connection dropped.
    pub async fn next_message(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<(String, Vec<u8>)>, String> {
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Ok(None),
                Ok(Some(SessionEvent::Message { topic, payload })) => {
                    return Ok(Some((topic, payload)))
                }
                Ok(Some(SessionEvent::Closed(reason))) => return Err(reason),
                Ok(None) => return Err("the connection closed".into()),
                Ok(Some(_)) => {}
            }
        }
    }

    /// Disconnects after everything queued before has been written.
    pub async fn close(mut self) {
        if self.client.disconnect().await.is_ok() {
            // The poller ends when the broker closes the connection after DISCONNECT.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                while let Some(event) = self.events.recv().await {
                    if matches!(event, SessionEvent::Closed(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// Drives the connection until it ends; rumqttc would reconnect on the next poll, but a wake
/// whose link dropped is over (the device sleeps and tries again), so the first error ends it.
async fn poll(mut eventloop: EventLoop, sender: mpsc::UnboundedSender<SessionEvent>) {
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => SessionEvent::Connected,
            Ok(Event::Incoming(Packet::SubAck(suback))) => SessionEvent::Subscribed {
                granted: suback
                    .return_codes
                    .iter()
                    .all(|code| !matches!(code, SubscribeReasonCode::Failure)),
            },
            Ok(Event::Incoming(Packet::Publish(publish))) => SessionEvent::Message {
                topic: publish.topic,
                payload: publish.payload.to_vec(),
            },
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                SessionEvent::Closed("disconnected".into())
            }
            Ok(_) => continue,
            Err(err) => {
                let _ = sender.send(SessionEvent::Closed(err.to_string()));
                return;
            }
        };
        let closed = matches!(event, SessionEvent::Closed(_));
        if sender.send(event).is_err() || closed {
            // After DISCONNECT, one more poll flushes it; then the broker closes the socket.
            if closed {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, eventloop.poll()).await;
            }
            return;
        }
    }
}
