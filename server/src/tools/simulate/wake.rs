//! One wake of one device over MQTT: connect, subscribe, hello, listen for commands, send the
//! image or the chunks asked for (each one lost with the run's probability), wait for the acks,
//! say sleep, disconnect.

use std::time::SystemTime;

use prost::Message;
use retryd_client::v1::{Ack, Command};
use tokio::time::Instant;

use super::counters::Counters;
use super::device::{CommandAction, SimDevice};
use super::loss::Loss;
use super::options::FleetOptions;
use super::session::Session;

/// What to send this wake besides what commands ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// Announce the image, then every chunk.
    Whole,
    /// Only the chunks retry commands name.
    Commanded,
}

pub struct Wake<'a> {
    pub options: &'a FleetOptions,
    pub counters: &'a Counters,
    pub loss: &'a mut Loss,
}

impl Wake<'_> {
    /// Errors when the broker cannot be reached or the link drops; the device sleeps and tries
    /// again at its next wake.
    pub async fn run(&mut self, device: &mut SimDevice, sending: Sending) -> Result<(), String> {
        let commands_topic = device.topic("commands");
        let ack_topic = device.topic("ack");
        let client_id = format!("retryd-sim-{}", device.mac);
        let mut session = Session::open(
            &self.options.broker,
            &client_id,
            &[commands_topic.clone(), ack_topic.clone()],
        )
        .await?;
        let wake_seconds = self.options.wake_interval.as_secs() as u32;
        let hello = device.hello(unix_seconds(), wake_seconds);
        session
            .publish(device.topic("hello"), hello.encode_to_vec())
            .await?;

        // Commands come right after the hello; retries are sent once the window closes, so
        // that several commands for the same chunks are all seen (and deduplicated) first.
        let mut to_send = Vec::new();
        let listen_until = Instant::now() + self.options.listen;
        while let Some((topic, payload)) = session.next_message(listen_until).await? {
            to_send.extend(self.on_message(device, &topic, &payload, &commands_topic));
        }

        let mut expected_acks = 0u64;
        if sending == Sending::Whole {
            let Some(image) = device.image() else {
                return Err("no image to send".into());
            };
            session
                .publish(
                    device.topic("image/begin"),
                    image.begin_message().encode_to_vec(),
                )
                .await?;
            to_send.splice(0..0, 0..image.total_chunks());
        }
        expected_acks += self.send_chunks(&session, device, &to_send).await?;

        // Acks tell when the server has stored the chunks; the device waits for them (or for
        // the link to go quiet) before it sleeps.
        let mut acks = 0u64;
        while acks < expected_acks && device.outcome().is_none() {
            let quiet_until = Instant::now() + self.options.ack_idle;
            let Some((topic, payload)) = session.next_message(quiet_until).await? else {
                break;
            };
            if topic == ack_topic {
                acks += 1;
            }
            let late = self.on_message(device, &topic, &payload, &commands_topic);
            expected_acks += self.send_chunks(&session, device, &late).await?;
        }

        let sleep = device.sleep(unix_seconds(), wake_seconds);
        session
            .publish(device.topic("sleep"), sleep.encode_to_vec())
            .await?;
        session.close().await;
        Ok(())
    }

    /// Returns the chunks a command asks for.
    fn on_message(
        &mut self,
        device: &mut SimDevice,
        topic: &str,
        payload: &[u8],
        commands_topic: &str,
    ) -> Vec<u32> {
        if topic == commands_topic {
            let command = match Command::decode(payload) {
                Ok(command) => command,
                Err(err) => {
                    tracing::warn!(mac = %device.mac, %err, "simulate: undecodable command dropped");
                    return Vec::new();
                }
            };
            return match device.on_command(&command) {
                CommandAction::Resend(indices) => {
                    Counters::add(&self.counters.retry_commands_obeyed, 1);
                    tracing::debug!(mac = %device.mac, id = command.id, ?indices, "simulate: retry");
                    indices
                }
                CommandAction::Duplicate => {
                    Counters::add(&self.counters.duplicate_commands, 1);
                    Vec::new()
                }
                CommandAction::Ignored(why) => {
                    Counters::add(&self.counters.commands_ignored, 1);
                    tracing::info!(mac = %device.mac, id = command.id, %why, "simulate: command ignored");
                    Vec::new()
                }
            };
        }
        match Ack::decode(payload) {
            Ok(ack) => {
                self.counters.ack_received(std::time::Instant::now());
                device.on_ack(&ack);
            }
            Err(err) => {
                tracing::warn!(mac = %device.mac, %err, "simulate: undecodable ack dropped")
            }
        }
        Vec::new()
    }

    /// Publishes these chunks, each lost with the run's probability; returns how many went out.
    async fn send_chunks(
        &mut self,
        session: &Session,
        device: &SimDevice,
        indices: &[u32],
    ) -> Result<u64, String> {
        let Some(image) = device.image() else {
            return Ok(0);
        };
        let topic = device.topic("image/chunk");
        let mut published = 0;
        for index in indices {
            if self.loss.drops() {
                Counters::add(&self.counters.chunks_dropped, 1);
                continue;
            }
            let Some(chunk) = image.chunk_message(*index) else {
                continue;
            };
            self.counters.chunk_published(std::time::Instant::now());
            session
                .publish(topic.clone(), chunk.encode_to_vec())
                .await?;
            published += 1;
        }
        Ok(published)
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default()
}
