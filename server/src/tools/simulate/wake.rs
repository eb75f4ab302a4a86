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

#[cfg(test)]
mod tests {
    //! A real broker; the test reads what the device publishes and answers as the contract
    //! says the server would, to check the device's side of it.

    use std::time::Duration;

    use retryd_client::v1::{Hello, ImageBegin, ImageChunk, RetryImagePayload, Sleep};
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::tools::simulate::test_broker::Broker;

    const MAC: &str = "02AB00000001";

    fn options(broker: &Broker) -> FleetOptions {
        let mut options = FleetOptions::new(1, 0.0, &broker.url(), "http://127.0.0.1:1").unwrap();
        options.listen = Duration::from_millis(1_500);
        options.ack_idle = Duration::from_millis(300);
        options
    }

    async fn observer(broker: &Broker) -> Session {
        Session::open(
            &options(broker).broker,
            "observer",
            &[
                format!("retryd/devices/{MAC}/+"),
                format!("retryd/devices/{MAC}/image/+"),
            ],
        )
        .await
        .unwrap()
    }

    /// The device's messages until its sleep, as (leaf topic, payload).
    async fn until_sleep(session: &mut Session) -> Vec<(String, Vec<u8>)> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some((topic, payload)) = session.next_message(deadline).await.unwrap() {
            let leaf = topic
                .strip_prefix(&format!("retryd/devices/{MAC}/"))
                .unwrap()
                .to_owned();
            let done = leaf == "sleep";
            seen.push((leaf, payload));
            if done {
                return seen;
            }
        }
        panic!(
            "no sleep; saw {:?}",
            seen.iter().map(|s| &s.0).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_first_wake_announces_and_sends_the_whole_image_and_a_complete_ack_ends_it() {
        let broker = Broker::start();
        let options = options(&broker);
        let counters = Counters::default();
        let mut loss = Loss::new(0.0, 1);
        let mut watcher = observer(&broker).await;
        let answer = Session::open(&options.broker, "answer", &[]).await.unwrap();
        let mut device = SimDevice::new(MAC.into(), "img_a.jpg".into(), 7);
        device.capture(4, 100);
        let expected_sha = device.image().unwrap().sha256();

        let server_side = async {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            // Acks the image complete once all four chunks are in, as the server would.
            while let Some((topic, payload)) = watcher.next_message(deadline).await.unwrap() {
                seen.push((topic.clone(), payload));
                if seen
                    .iter()
                    .filter(|(t, _)| t.ends_with("image/chunk"))
                    .count()
                    == 4
                {
                    let ack = Ack {
                        image_name: "img_a.jpg".into(),
                        chunks_received: 4,
                        total_chunks: 4,
                        image_complete: true,
                    };
                    answer
                        .publish(format!("retryd/devices/{MAC}/ack"), ack.encode_to_vec())
                        .await
                        .unwrap();
                    break;
                }
            }
            seen.extend(until_sleep(&mut watcher).await);
            seen
        };
        let mut wake = Wake {
            options: &options,
            counters: &counters,
            loss: &mut loss,
        };
        let (result, seen) = tokio::join!(wake.run(&mut device, Sending::Whole), server_side);
        result.unwrap();

        // What the device published (the observer also hears the ack the test sent).
        let seen: Vec<(String, Vec<u8>)> = seen
            .into_iter()
            .map(|(topic, payload)| {
                // until_sleep already gives leaves; the first messages have whole topics.
                let leaf = match topic.rsplit_once(&format!("{MAC}/")) {
                    Some((_, leaf)) => leaf.to_owned(),
                    None => topic,
                };
                (leaf, payload)
            })
            .filter(|(leaf, _)| leaf != "ack")
            .collect();
        let leaves: Vec<&str> = seen.iter().map(|(leaf, _)| leaf.as_str()).collect();
        assert_eq!(
            leaves,
            [
                "hello",
                "image/begin",
                "image/chunk",
                "image/chunk",
                "image/chunk",
                "image/chunk",
                "sleep"
            ]
        );
        let hello = Hello::decode(seen[0].1.as_slice()).unwrap();
        assert_eq!(hello.firmware, "sim-1.0");
        assert_eq!(hello.pending_images, vec!["img_a.jpg"]);
        assert_eq!(hello.wake_interval_seconds, 5);
        let begin = ImageBegin::decode(seen[1].1.as_slice()).unwrap();
        assert_eq!(begin.total_chunks, 4);
        assert_eq!(begin.sha256, expected_sha.to_vec());
        let mut joined = Vec::new();
        for (index, (_, payload)) in seen[2..6].iter().enumerate() {
            let chunk = ImageChunk::decode(payload.as_slice()).unwrap();
            assert_eq!(chunk.index as usize, index);
            joined.extend(chunk.data);
        }
        assert_eq!(joined.len(), begin.size_bytes as usize);
        assert_eq!(<[u8; 32]>::from(Sha256::digest(&joined)), expected_sha);
        let sleep = Sleep::decode(seen[6].1.as_slice()).unwrap();
        assert!(sleep.next_wake_unix_seconds >= hello.next_wake_unix_seconds);
        assert_eq!(
            device.outcome(),
            Some(super::super::device::Outcome::Complete)
        );
        assert_eq!(Counters::get(&counters.chunks_published), 4);
        assert_eq!(Counters::get(&counters.acks_received), 1);
    }

    #[tokio::test]
    async fn a_retry_command_gets_exactly_its_chunks_and_its_repeat_is_skipped() {
        let broker = Broker::start();
        let options = options(&broker);
        let counters = Counters::default();
        let mut loss = Loss::new(0.0, 1);
        let mut watcher = observer(&broker).await;
        let answer = Session::open(&options.broker, "answer", &[]).await.unwrap();
        let mut device = SimDevice::new(MAC.into(), "img_a.jpg".into(), 7);
        device.capture(4, 100);

        let server_side = async {
            let (topic, _) = watcher
                .next_message(Instant::now() + Duration::from_secs(20))
                .await
                .unwrap()
                .expect("a hello");
            assert!(topic.ends_with("/hello"), "{topic}");
            let retry = Command {
                id: 41,
                r#type: "retry_image".into(),
                priority: 8,
                payload: RetryImagePayload {
                    image_name: "img_a.jpg".into(),
                    missing_chunks: vec![1, 3],
                }
                .encode_to_vec(),
            };
            // Delivered twice (as after a crash between publishing and recording it).
            for _ in 0..2 {
                answer
                    .publish(
                        format!("retryd/devices/{MAC}/commands"),
                        retry.encode_to_vec(),
                    )
                    .await
                    .unwrap();
            }
            until_sleep(&mut watcher).await
        };
        let mut wake = Wake {
            options: &options,
            counters: &counters,
            loss: &mut loss,
        };
        let (result, seen) = tokio::join!(wake.run(&mut device, Sending::Commanded), server_side);
        result.unwrap();

        let chunks: Vec<u32> = seen
            .iter()
            .filter(|(leaf, _)| leaf == "image/chunk")
            .map(|(_, payload)| ImageChunk::decode(payload.as_slice()).unwrap().index)
            .collect();
        assert_eq!(chunks, vec![1, 3]);
        assert!(seen.iter().all(|(leaf, _)| leaf != "image/begin"));
        assert_eq!(Counters::get(&counters.retry_commands_obeyed), 1);
        assert_eq!(Counters::get(&counters.duplicate_commands), 1);
        // No acks came: the device waited for the link to go quiet, then slept unfinished.
        assert_eq!(device.outcome(), None);
    }

    #[tokio::test]
    async fn a_wake_without_a_broker_fails_and_counts_nothing_sent() {
        let broker = Broker::start();
        let options = options(&broker);
        drop(broker);
        let counters = Counters::default();
        let mut loss = Loss::new(0.0, 1);
        let mut device = SimDevice::new(MAC.into(), "img_a.jpg".into(), 7);
        device.capture(4, 100);
        let mut wake = Wake {
            options: &options,
            counters: &counters,
            loss: &mut loss,
        };
        assert!(wake.run(&mut device, Sending::Whole).await.is_err());
        assert_eq!(Counters::get(&counters.chunks_published), 0);
    }
}
