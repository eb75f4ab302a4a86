//! DeviceImages through a real Mosquitto and the real binary: devices speak the MQTT contract,
//! operators the gRPC API. Wake times are the ones the test devices report (a device that says
//! it wakes "now" is due at once), so no test waits for a wake window to pass.

use std::time::{Duration, Instant};

use retryd_client::tonic::transport::Channel;
use retryd_client::tonic::Code;
use retryd_client::v1::device_images_client::DeviceImagesClient;
use retryd_client::v1::*;
use sha2::{Digest, Sha256};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::broker::Broker;
use crate::support::device::{unix_now, TestDevice};
use crate::support::server::ServerProcess;
use crate::support::{Engine, TestDb};

const MAC: &str = "A4CF12345678";
const IMAGE: &str = "image_1762625082788.jpg";
const CHUNK: usize = 256;
const HOUR: u64 = 3600;
/// An image no test completes by accident: its one chunk is repeated to learn that every
/// message the device sent before it was handled (the server handles one device's messages in
/// order and answers each chunk with an ack).
const BARRIER: &str = "barrier.bin";

pub struct DeviceSetup {
    pub broker: Broker,
    pub server: ServerProcess,
    pub api: DeviceImagesClient<Channel>,
    pub channel: Channel,
    _db: TestDb,
}

impl DeviceSetup {
    pub async fn new(engine: Engine) -> Self {
        let broker = Broker::start();
        let db = TestDb::new(engine).await;
        let server = ServerProcess::start(&db.url, &["--mqtt-url", &broker.url()]);
        let channel = server.channel().await;
        let setup = Self {
            api: DeviceImagesClient::new(channel.clone()),
            channel,
            broker,
            server,
            _db: db,
        };
        setup.wait_for_device_images(ServingStatus::Serving).await;
        setup
    }

    /// Waits until the standard health service reports DeviceImages in `status`.
    pub async fn wait_for_device_images(&self, status: ServingStatus) {
        let mut health = HealthClient::new(self.channel.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reported = health
                .check(HealthCheckRequest {
                    service: "retryd.v1.DeviceImages".into(),
                })
                .await
                .map(|response| response.into_inner().status)
                .map_err(|status| status.code());
            if reported == Ok(status as i32) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "DeviceImages never became {status:?} (last: {reported:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn register(&mut self, mac: &str) {
        self.api
            .register_device(RegisterDeviceRequest {
                mac: mac.into(),
                name: format!("camera {mac}"),
                wake_interval_seconds: HOUR as u32,
                next_wake_at: None,
            })
            .await
            .unwrap();
    }

    async fn image(&mut self) -> Image {
        self.api
            .get_image(GetImageRequest {
                mac: MAC.into(),
                image_name: IMAGE.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn download(&mut self) -> Vec<u8> {
        let mut stream = self
            .api
            .download_image(DownloadImageRequest {
                mac: MAC.into(),
                image_name: IMAGE.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(part) = stream.message().await.unwrap() {
            assert_eq!(part.offset, bytes.len() as u64);
            bytes.extend_from_slice(&part.data);
        }
        bytes
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingStatus {
    Serving = 1,
    NotServing = 2,
}

fn content() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    // Four chunks, the last one shorter.
    (0..CHUNK * 3 + 100).map(|_| rng.u8(..)).collect()
}

fn chunk(content: &[u8], index: u32) -> &[u8] {
    content.chunks(CHUNK).nth(index as usize).unwrap()
}

fn retry_chunks(command: &Command) -> Vec<u32> {
    use prost::Message;
    assert_eq!(command.r#type, "retry_image");
    let payload = RetryImagePayload::decode(&command.payload[..]).unwrap();
    assert_eq!(payload.image_name, IMAGE);
    payload.missing_chunks
}

/// Sends the barrier chunk and waits for its ack: everything sent before has been handled.
async fn barrier(device: &mut TestDevice) {
    device.chunk(BARRIER, 0, b"b").await;
    loop {
        if device.next_ack().await.image_name == BARRIER {
            return;
        }
    }
}

async fn wake_now_and_say_hello(device: &TestDevice) {
    // The device slept "until now": its wake time has come as soon as it says hello.
    device.sleep(unix_now()).await;
    device.hello(unix_now() + HOUR).await;
}

async fn a_cut_short_image_is_finished_after_the_next_hello(engine: Engine) {
    let mut setup = DeviceSetup::new(engine).await;
    setup.register(MAC).await;
    let mut events = setup
        .api
        .watch_device_events(WatchDeviceEventsRequest { mac: MAC.into() })
        .await
        .unwrap()
        .into_inner();
    let mut device = TestDevice::connect(setup.broker.port, MAC).await;
    let content = content();

    device.hello(unix_now() + HOUR).await;
    device.begin(IMAGE, 4, &content).await;
    // Out of order and repeated: 3 of 4 distinct chunks, each counted once.
    for index in [3, 1, 1, 0] {
        device.chunk(IMAGE, index, chunk(&content, index)).await;
    }
    let mut received = Vec::new();
    for _ in 0..4 {
        let ack = device.next_ack().await;
        assert_eq!((ack.image_name.as_str(), ack.total_chunks), (IMAGE, 4));
        assert!(!ack.image_complete);
        received.push(ack.chunks_received);
    }
    assert_eq!(received, vec![1, 2, 2, 3]);
    let image = setup.image().await;
    assert_eq!(image.status, ImageStatus::Receiving as i32);
    assert_eq!(image.missing_chunks, vec![2]);

    // The device sleeps before chunk 2 and wakes: its HELLO fails the image and gets the retry.
    wake_now_and_say_hello(&device).await;
    let command = device.next_command().await;
    assert_eq!(command.priority, 8);
    assert_eq!(retry_chunks(&command), vec![2]);
    let image = setup.image().await;
    assert_eq!(image.status, ImageStatus::Failed as i32);
    assert_eq!(image.retry_count, 1);
    assert_eq!(image.timeout_reason, "not completed before wake window");

    device.chunk(IMAGE, 2, chunk(&content, 2)).await;
    let ack = device.next_ack().await;
    assert!(ack.image_complete);
    assert_eq!(ack.chunks_received, 4);
    let downloaded = setup.download().await;
    assert_eq!(Sha256::digest(&downloaded), Sha256::digest(&content));
    assert_eq!(setup.image().await.status, ImageStatus::Complete as i32);

    // The operator saw it happen.
    let mut seen = Vec::new();
    while !seen.contains(&"image_complete".to_owned()) {
        let event = tokio::time::timeout(Duration::from_secs(15), events.message())
            .await
            .expect("events in time")
            .unwrap()
            .expect("stream open");
        assert_eq!(event.mac, MAC);
        seen.push(event.event_type);
    }
    assert_eq!(
        seen,
        [
            "hello",
            "image_begin",
            "sleep",
            "image_timeout",
            "hello",
            "command_sent",
            "image_complete"
        ]
    );
    let sessions = setup
        .api
        .list_wake_sessions(ListWakeSessionsRequest {
            mac: MAC.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[1].chunks_sent, 3);
    assert_eq!(sessions[1].chunks_missing, vec![2]);
    assert_eq!(sessions[1].firmware, "1.4.2");
}

async fn retries_run_out_then_an_operator_resets_them(engine: Engine) {
    let mut setup = DeviceSetup::new(engine).await;
    setup.register(MAC).await;
    let mut device = TestDevice::connect(setup.broker.port, MAC).await;
    let content = content();
    device.hello(unix_now() + HOUR).await;
    device.begin(BARRIER, 1, b"b").await;
    device.begin(IMAGE, 4, &content).await;
    for index in [0, 1, 3] {
        device.chunk(IMAGE, index, chunk(&content, index)).await;
    }
    barrier(&mut device).await;

    // Each wake uses a retry whose chunk never arrives.
    for retry in 1..=3 {
        wake_now_and_say_hello(&device).await;
        let command = device.next_command().await;
        assert_eq!(retry_chunks(&command), vec![2], "retry {retry}");
        assert_eq!(setup.image().await.retry_count, retry);
    }
    let alerts = setup
        .api
        .list_alerts(ListAlertsRequest {
            mac: MAC.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].alert_type, "image_transmission_failed");
    assert_eq!(alerts[0].image_name, IMAGE);

    // Retries used up: the next wake brings no retry. An expired command is not sent either,
    // while one still valid is.
    let now = prost_types::Timestamp {
        seconds: unix_now() as i64,
        nanos: 0,
    };
    let hours_ago = |hours: i64| prost_types::Timestamp {
        seconds: now.seconds - hours * 3600,
        nanos: 0,
    };
    let expired = setup
        .api
        .queue_command(QueueCommandRequest {
            mac: MAC.into(),
            r#type: "capture".into(),
            payload: vec![1],
            priority: 10,
            scheduled_for: Some(hours_ago(2)),
            expires_at: Some(hours_ago(1)),
        })
        .await
        .unwrap()
        .into_inner();
    let valid = setup
        .api
        .queue_command(QueueCommandRequest {
            mac: MAC.into(),
            r#type: "set_wake_interval".into(),
            payload: vec![2],
            priority: 3,
            scheduled_for: None,
            expires_at: None,
        })
        .await
        .unwrap()
        .into_inner();
    wake_now_and_say_hello(&device).await;
    barrier(&mut device).await;
    let delivered: Vec<i64> = device.received_commands().iter().map(|c| c.id).collect();
    assert_eq!(delivered, vec![valid.id]);
    assert_ne!(expired.id, valid.id);
    let image = setup.image().await;
    assert_eq!(
        (image.status, image.retry_count),
        (ImageStatus::Failed as i32, 3)
    );
    let sweep = setup
        .api
        .run_timeout_sweep(RunTimeoutSweepRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sweep.expired_commands_removed, 1);

    // The device goes to sleep, saying it wakes right away; meanwhile an operator resets the
    // counter: the wake brings the retry, and the image completes.
    device.sleep(unix_now()).await;
    barrier(&mut device).await;
    let reset = setup
        .api
        .retry_failed_images(RetryFailedImagesRequest { mac: MAC.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reset.images_reset, reset.retries_queued), (1, 1));
    assert_eq!(setup.image().await.retry_count, 0);
    device.hello(unix_now() + HOUR).await;
    assert_eq!(retry_chunks(&device.next_command().await), vec![2]);
    device.chunk(IMAGE, 2, chunk(&content, 2)).await;
    loop {
        let ack = device.next_ack().await;
        if ack.image_name == IMAGE {
            assert!(ack.image_complete);
            break;
        }
    }
    assert_eq!(setup.download().await, content);
}

async fn bad_device_messages_are_dropped_and_change_nothing(engine: Engine) {
    let mut setup = DeviceSetup::new(engine).await;
    setup.register(MAC).await;
    let mut device = TestDevice::connect(setup.broker.port, MAC).await;
    let content = content();
    device.hello(unix_now() + HOUR).await;
    device.begin(BARRIER, 1, b"b").await;
    // Garbage payloads, a chunk of an image never begun, an index past the end, a bad begin.
    device.publish_raw("hello", vec![0xff, 0xff, 0xff]).await;
    device.publish_raw("image/chunk", vec![0x0a, 0xff]).await;
    device.chunk("never-begun.jpg", 0, b"x").await;
    device.begin(IMAGE, 4, &content).await;
    device.chunk(IMAGE, 4, b"past the end").await;
    device.begin("../escape", 4, &content).await;
    barrier(&mut device).await;
    let image = setup.image().await;
    assert_eq!(
        (image.status, image.chunks_received),
        (ImageStatus::Pending as i32, 0)
    );
    let images = setup
        .api
        .list_images(ListImagesRequest {
            mac: MAC.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    let mut names: Vec<String> = images.into_iter().map(|image| image.image_name).collect();
    names.sort();
    assert_eq!(names, vec![BARRIER.to_owned(), IMAGE.to_owned()]);
    // A device nobody registered is ignored.
    let mut stranger = TestDevice::connect(setup.broker.port, "0011223344AA").await;
    stranger.hello(unix_now() + HOUR).await;
    stranger.begin(IMAGE, 1, b"x").await;
    barrier(&mut device).await;
    let unknown = setup
        .api
        .get_device(GetDeviceRequest {
            mac: "0011223344AA".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(stranger.received_commands().is_empty());
}

on_both_engines!(
    a_cut_short_image_is_finished_after_the_next_hello,
    retries_run_out_then_an_operator_resets_them,
    bad_device_messages_are_dropped_and_change_nothing,
);
