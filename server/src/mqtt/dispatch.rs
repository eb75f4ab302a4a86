//! Handling device messages: one device's messages in the order they arrived (a begin before its
//! chunks), different devices in parallel. Each device maps to one of N workers by its MAC; each
//! worker owns a bounded queue, so a slow database slows the reading from the broker instead of
//! growing memory.
//!
//! Acknowledgement rules (the adapter runs with manual acks, so the broker keeps a QoS 1 message
//! until we ack it and redelivers it to our session after a reconnect or restart):
//! - handled, or refused for good (bad payload, unknown device, a rule says no, an internal
//!   error): acked. Redelivering a message that can never succeed would only repeat the failure,
//!   and with MQTT 3.1.1 an unacked message is redelivered only on reconnect anyway, while it
//!   holds one of the broker's in-flight slots for us.
//! - the database is unavailable: the worker retries the same call with backoff, holding back the
//!   device's later messages so their order survives. The message stays unacked the whole time,
//!   so if the process dies or shuts down meanwhile the broker still has it and redelivers it.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::contract::{self, DeviceMessage};
use super::topics::{ack_topic, commands_topic, Inbound};
use crate::core::devices::Command;
use crate::core::Error;
use crate::grpc::until_shutdown;
use crate::service::device_inbox::DeviceInbox;

/// An inbound message whose topic has been parsed.
#[derive(Debug)]
pub(super) struct Delivery {
    pub mac: String,
    pub kind: Inbound,
    pub publish: Publish,
}

/// What becomes of a message after handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    Ack,
    /// The broker keeps it and redelivers it.
    LeaveUnacked,
}

pub(super) struct Handler {
    pub inbox: Arc<dyn DeviceInbox>,
    pub client: AsyncClient,
    pub max_chunk_bytes: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub shutdown: watch::Receiver<bool>,
}

/// The call gave up: the server is stopping (the message stays with the broker), or the inbox
/// refused it for good.
enum Failure {
    ShuttingDown,
    Refused(Error),
}

impl Handler {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        let (mac, topic) = (delivery.mac.as_str(), delivery.publish.topic.as_str());
        let message = match contract::decode(
            delivery.kind,
            &delivery.publish.payload,
            self.max_chunk_bytes,
        ) {
            Ok(message) => message,
            Err(err) => {
                tracing::warn!(mac, topic, error = %err, "bad device payload, dropped");
                return Disposition::Ack;
            }
        };
        match self.apply(mac, message).await {
            Ok(()) => Disposition::Ack,
            Err(Failure::ShuttingDown) => Disposition::LeaveUnacked,
            Err(Failure::Refused(err)) => {
                match &err {
                    Error::NotFound { .. } => {
                        tracing::info!(mac, topic, error = %err, "unknown device, ignored")
                    }
                    Error::Internal(_) => {
                        tracing::error!(mac, topic, error = %err, "device message failed, dropped")
                    }
                    _ => {
                        tracing::warn!(mac, topic, error = %err, "device message refused, dropped")
                    }
                }
                Disposition::Ack
            }
        }
    }

    async fn apply(&self, mac: &str, message: DeviceMessage) -> Result<(), Failure> {
        let inbox = &self.inbox;
        match message {
            DeviceMessage::Hello(hello) => {
                let commands = self
                    .retrying(mac, || inbox.hello(mac, hello.clone()))
                    .await?;
                let published = self.publish_commands(mac, &commands);
                if !published.is_empty() {
                    self.retrying(mac, || inbox.commands_published(mac, &published))
                        .await?;
                }
            }
            DeviceMessage::ImageBegin(image) => {
                self.retrying(mac, || inbox.begin_image(mac, image.clone()))
                    .await?;
            }
            DeviceMessage::ImageChunk(chunk) => {
                let ack = self
                    .retrying(mac, || {
                        inbox.chunk(mac, &chunk.image_name, chunk.index, chunk.data.clone())
                    })
                    .await?;
                // Acks are cumulative (chunks received so far), so one that cannot be queued is
                // made good by the next.
                if let Err(err) = self.client.try_publish(
                    ack_topic(mac),
                    QoS::AtLeastOnce,
                    false,
                    contract::encode_ack(&ack),
                ) {
                    tracing::warn!(mac, error = %err, "chunk ack not published");
                }
            }
            DeviceMessage::Sleep(sleep) => {
                self.retrying(mac, || inbox.sleep(mac, sleep.clone()))
                    .await?;
            }
        }
        Ok(())
    }

    /// Queues the commands for the broker in the given order and returns the ids queued. The
    /// non-blocking `try_publish` is deliberate: the connection task, which drains the client's
    /// queue, may itself be waiting for room in this worker's queue, so awaiting room here could
    /// deadlock. A command not queued stays pending and goes out at the device's next HELLO;
    /// the ones after it are held back too, so priority order holds.
    fn publish_commands(&self, mac: &str, commands: &[Command]) -> Vec<i64> {
        let topic = commands_topic(mac);
        let mut published = Vec::with_capacity(commands.len());
        for command in commands {
            let payload = contract::encode_command(command);
            if let Err(err) =
                self.client
                    .try_publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            {
                tracing::warn!(mac, command = command.id, error = %err,
                    "command not published; it stays pending for the next hello");
                break;
            }
            published.push(command.id);
        }
        published
    }

    /// Runs `call` until it succeeds or fails for a reason other than an unavailable database;
    /// while the database is unavailable it waits with backoff (giving up only at shutdown).
    async fn retrying<T, F, Fut>(&self, mac: &str, mut call: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = crate::core::Result<T>>,
    {
        let mut backoff = Backoff::new(self.retry_min, self.retry_max);
        let mut shutdown = self.shutdown.clone();
        let mut attempts = 0u32;
        loop {
            match call().await {
                Ok(value) => {
                    if attempts > 0 {
                        tracing::info!(mac, attempts, "device message handled after retries");
                    }
                    return Ok(value);
                }
                Err(Error::Unavailable(reason)) => {
                    if attempts == 0 {
                        tracing::warn!(mac, %reason, "database unavailable; retrying the device message");
                    }
                    attempts += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = until_shutdown(&mut shutdown) => return Err(Failure::ShuttingDown),
                    }
                }
                Err(err) => return Err(Failure::Refused(err)),
            }
        }
    }
}

/// The workers and the sending ends of their queues.
pub(super) struct Workers {
    queues: Vec<mpsc::UnboundedSender<Delivery>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// The queues are unbounded on purpose: messages are acknowledged only once handled, so
    /// the broker never has more than its in-flight window (Mosquitto's
    /// `max_inflight_messages`, 20) unacknowledged with us, and that bounds what waits here.
    /// A bounded queue would make the connection task wait for room — and while it waits it
    /// does not drive the client, so the acknowledgements that would make room never leave.
    pub fn spawn(count: usize, handler: Arc<Handler>) -> Self {
        let count = count.max(1);
        let (queues, tasks) = (0..count)
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                (sender, tokio::spawn(work(receiver, Arc::clone(&handler))))
            })
            .unzip();
        Self { queues, tasks }
    }

    /// Queues a message on its device's worker. False when the worker is gone.
    pub fn dispatch(&self, delivery: Delivery) -> bool {
        let worker = worker_for(&delivery.mac, self.queues.len());
        self.queues[worker].send(delivery).is_ok()
    }

    /// Closes the queues; the returned future ends when every worker has stopped.
    pub fn close(self) -> impl Future<Output = ()> {
        drop(self.queues);
        let tasks = self.tasks;
        async move {
            for task in tasks {
                let _ = task.await;
            }
        }
    }
}

/// Hands the message's acknowledgement to the client. A full client queue is waited out (the
/// connection task keeps draining it): an acknowledgement left out would hold one of the
/// broker's in-flight slots until the next reconnect, and with all of them held the broker
/// sends nothing more.
async fn acknowledge(handler: &Handler, delivery: &Delivery) {
    let mut wait = Duration::from_millis(1);
    loop {
        match handler.client.try_ack(&delivery.publish) {
            Ok(()) => return,
            Err(err) if *handler.shutdown.borrow() => {
                tracing::warn!(mac = delivery.mac, error = %err, "message ack not sent");
                return;
            }
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// The same device always lands on the same worker: that is what keeps its messages in order.
fn worker_for(mac: &str, workers: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    mac.hash(&mut hasher);
    (hasher.finish() % workers as u64) as usize
}

async fn work(mut queue: mpsc::UnboundedReceiver<Delivery>, handler: Arc<Handler>) {
    while let Some(delivery) = queue.recv().await {
        // Once stopping, queued messages are left to the broker: it redelivers them.
        if *handler.shutdown.borrow() {
            return;
        }
        if handler.handle(&delivery).await == Disposition::Ack {
            acknowledge(&handler, &delivery).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_always_maps_to_the_same_worker_and_devices_spread() {
        let macs: Vec<String> = (0..64).map(|i| format!("A4CF1234{i:04X}")).collect();
        let first: Vec<usize> = macs.iter().map(|mac| worker_for(mac, 8)).collect();
        let again: Vec<usize> = macs.iter().map(|mac| worker_for(mac, 8)).collect();
        assert_eq!(first, again);
        let used: std::collections::HashSet<_> = first.iter().collect();
        assert!(
            used.len() > 4,
            "64 devices used only {} of 8 workers",
            used.len()
        );
        assert!(first.iter().all(|worker| *worker < 8));
    }
}
