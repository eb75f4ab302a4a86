//! A device for tests: speaks the device contract over a real MQTT connection, the way an ESP32
//! camera would, and collects what the server sends back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use retryd_client::v1::{Ack, Command, Hello, ImageBegin, ImageChunk, Sleep};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

pub struct TestDevice {
    pub mac: String,
    client: AsyncClient,
    commands: mpsc::UnboundedReceiver<Command>,
    acks: mpsc::UnboundedReceiver<Ack>,
    _events: tokio::task::JoinHandle<()>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

impl TestDevice {
    /// Connects and subscribes to the device's commands and acks before returning, so nothing
    /// the server sends after this is missed.
    pub async fn connect(port: u16, mac: &str) -> Self {
        let mut options = MqttOptions::new(format!("test-device-{mac}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut events) = AsyncClient::new(options, 64);
        let (command_sender, commands) = mpsc::unbounded_channel();
        let (ack_sender, acks) = mpsc::unbounded_channel();
        let (subscribed_sender, mut subscribed) = mpsc::unbounded_channel();
        let commands_topic = format!("retryd/devices/{mac}/commands");
        let ack_topic = format!("retryd/devices/{mac}/ack");
        client
            .subscribe(&commands_topic, QoS::AtLeastOnce)
            .await
            .expect("subscribe commands");
        client
            .subscribe(&ack_topic, QoS::AtLeastOnce)
            .await
            .expect("subscribe acks");
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_sender.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if publish.topic == commands_topic {
                            if let Ok(command) = Command::decode(publish.payload) {
                                let _ = command_sender.send(command);
                            }
                        } else if publish.topic == ack_topic {
                            if let Ok(ack) = Ack::decode(publish.payload) {
                                let _ = ack_sender.send(ack);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        for _ in 0..2 {
            tokio::time::timeout(WAIT, subscribed.recv())
                .await
                .expect("subscribed in time");
        }
        Self {
            mac: mac.to_owned(),
            client,
            commands,
            acks,
            _events: task,
        }
    }

    async fn publish(&self, kind: &str, payload: Vec<u8>) {
        self.client
            .publish(
                format!("retryd/devices/{}/{kind}", self.mac),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("publish");
    }

    /// Publishes raw bytes on one of the device's topics (bad payloads in tests).
    pub async fn publish_raw(&self, kind: &str, payload: Vec<u8>) {
        self.publish(kind, payload).await;
    }

    pub async fn hello(&self, next_wake_unix_seconds: u64) {
        let hello = Hello {
            firmware: "1.4.2".into(),
            battery_percent: 77,
            battery_millivolts: 3900,
            wifi_retries: 1,
            rssi_dbm: -61,
            next_wake_unix_seconds,
            wake_interval_seconds: 0,
            pending_images: vec![],
        };
        self.publish("hello", hello.encode_to_vec()).await;
    }

    pub async fn begin(&self, image_name: &str, total_chunks: u32, content: &[u8]) {
        use sha2::Digest;
        let begin = ImageBegin {
            image_name: image_name.into(),
            total_chunks,
            size_bytes: content.len() as u32,
            sha256: sha2::Sha256::digest(content).to_vec(),
        };
        self.publish("image/begin", begin.encode_to_vec()).await;
    }

    pub async fn chunk(&self, image_name: &str, index: u32, data: &[u8]) {
        let chunk = ImageChunk {
            image_name: image_name.into(),
            index,
            data: data.to_vec(),
        };
        self.publish("image/chunk", chunk.encode_to_vec()).await;
    }

    pub async fn sleep(&self, next_wake_unix_seconds: u64) {
        let sleep = Sleep {
            next_wake_unix_seconds,
            reason: String::new(),
            error_codes: vec![],
        };
        self.publish("sleep", sleep.encode_to_vec()).await;
    }

    pub async fn next_ack(&mut self) -> Ack {
        tokio::time::timeout(WAIT, self.acks.recv())
            .await
            .expect("an ack in time")
            .expect("ack channel open")
    }

    pub async fn next_command(&mut self) -> Command {
        tokio::time::timeout(WAIT, self.commands.recv())
            .await
            .expect("a command in time")
            .expect("command channel open")
    }

    /// Commands received so far and not taken yet.
    pub fn received_commands(&mut self) -> Vec<Command> {
        let mut received = Vec::new();
        while let Ok(command) = self.commands.try_recv() {
            received.push(command);
        }
        received
    }
}
