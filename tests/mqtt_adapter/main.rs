//! The MQTT device adapter against a real Mosquitto of its own (one per test, on a free port):
//! decoding and per-device order, replies on the device's topics, broker loss and return, and
//! messages published while the adapter's network was cut.
//!
//! The inbox here records calls and stands in only for the DeviceImages service, so these tests
//! look at the adapter's connection behaviour; end-to-end tests with the real service live with
//! the service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prost::Message;
use retryd::core::broker::BrokerState;
use retryd::core::device_messages::{ChunkAck, HelloReport, SleepReport};
use retryd::core::devices::{Command, CommandStatus, NewImage};
use retryd::core::{Error, Result, SystemClock, Timestamp};
use retryd::mqtt::topics::{inbound_topic, Inbound};
use retryd::mqtt::{self, BrokerAddress, MqttAdapter, MqttSettings};
use retryd::service::device_inbox::DeviceInbox;
use retryd_client::v1 as pb;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};

#[path = "../support/broker.rs"]
mod broker;

use broker::Broker;

const WAIT: Duration = Duration::from_secs(10);

/// Polls `condition` until it holds, for at most WAIT.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Hello(HelloReport),
    Published(Vec<i64>),
    Begin(NewImage),
    Chunk {
        image: String,
        index: u32,
        len: usize,
    },
    Sleep(SleepReport),
}

/// Records every call per device; answers hello with the commands set for the device, chunks
/// with a count of chunks seen, and NotFound for devices it does not know.
#[derive(Default)]
struct RecordingInbox {
    known: Mutex<HashMap<String, Vec<Command>>>,
    calls: Mutex<HashMap<String, Vec<Call>>>,
    /// While set, every call fails as a database outage would.
    database_down: AtomicBool,
    attempts_while_down: std::sync::atomic::AtomicU32,
}

impl RecordingInbox {
    fn register(&self, mac: &str, commands: Vec<Command>) {
        self.known.lock().unwrap().insert(mac.to_owned(), commands);
    }

    fn calls(&self, mac: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .get(mac)
            .cloned()
            .unwrap_or_default()
    }

    fn record(&self, mac: &str, call: Call) -> Result<()> {
        if self.database_down.load(Ordering::SeqCst) {
            self.attempts_while_down.fetch_add(1, Ordering::SeqCst);
            return Err(Error::Unavailable("database is down".into()));
        }
        if !self.known.lock().unwrap().contains_key(mac) {
            return Err(Error::NotFound {
                kind: "device",
                id: mac.to_owned(),
            });
        }
        self.calls
            .lock()
            .unwrap()
            .entry(mac.to_owned())
            .or_default()
            .push(call);
        Ok(())
    }
}

#[async_trait]
impl DeviceInbox for RecordingInbox {
    async fn hello(&self, mac: &str, hello: HelloReport) -> Result<Vec<Command>> {
        self.record(mac, Call::Hello(hello))?;
        Ok(self.known.lock().unwrap()[mac].clone())
    }

    async fn commands_published(&self, mac: &str, command_ids: &[i64]) -> Result<()> {
        self.record(mac, Call::Published(command_ids.to_vec()))
    }

    async fn begin_image(&self, mac: &str, image: NewImage) -> Result<()> {
        self.record(mac, Call::Begin(image))
    }

    async fn chunk(&self, mac: &str, image: &str, index: u32, data: Vec<u8>) -> Result<ChunkAck> {
        self.record(
            mac,
            Call::Chunk {
                image: image.to_owned(),
                index,
                len: data.len(),
            },
        )?;
        let received = self
            .calls(mac)
            .iter()
            .filter(|call| matches!(call, Call::Chunk { .. }))
            .count() as u32;
        Ok(ChunkAck {
            image_name: image.to_owned(),
            chunks_received: received,
            total_chunks: 100,
            image_complete: false,
        })
    }

    async fn sleep(&self, mac: &str, sleep: SleepReport) -> Result<()> {
        self.record(mac, Call::Sleep(sleep))
    }
}

fn command(id: i64, mac: &str, command_type: &str, priority: u32) -> Command {
    Command {
        id,
        mac: mac.to_owned(),
        command_type: command_type.to_owned(),
        payload: vec![id as u8],
        priority,
        scheduled_for: Timestamp::from_micros(0),
        expires_at: None,
        status: CommandStatus::Pending,
        created_at: Timestamp::from_micros(0),
        sent_at: None,
    }
}

fn settings(port: u16, client_id: &str) -> MqttSettings {
    let mut settings = MqttSettings::new(
        BrokerAddress::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap(),
        client_id,
    );
    settings.workers = 4;
    settings.keep_alive = Duration::from_secs(5);
    settings.reconnect_backoff_min = Duration::from_millis(50);
    settings.reconnect_backoff_max = Duration::from_millis(500);
    settings
}

struct Running {
    adapter: MqttAdapter,
    broker: watch::Receiver<BrokerState>,
    stop: watch::Sender<bool>,
}

impl Running {
    fn start(settings: MqttSettings, inbox: Arc<RecordingInbox>) -> Self {
        let (stop, shutdown) = watch::channel(false);
        let adapter = mqtt::spawn(settings, inbox, Arc::new(SystemClock), shutdown);
        let broker = adapter.broker_state();
        Self {
            adapter,
            broker,
            stop,
        }
    }

    async fn wait_connected(&self, connected: bool) {
        let broker = self.broker.clone();
        wait_until(&format!("broker connected = {connected}"), || {
            broker.borrow().connected == connected
        })
        .await;
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(WAIT, self.adapter.stopped())
            .await
            .expect("the adapter stops");
    }
}

/// Every message a test client received: topic and payload.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A test client standing in for devices: publishes at QoS 1 and collects what it receives.
struct Device {
    client: AsyncClient,
    received: Received,
}

impl Device {
    async fn connect(port: u16, subscribe: &[&str]) -> Self {
        let id = format!("device-{}", uuid::Uuid::new_v4().simple());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let received: Received = Arc::default();
        let (suback_tx, mut suback_rx) = mpsc::channel(16);
        let sink = Arc::clone(&received);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => sink
                        .lock()
                        .unwrap()
                        .push((publish.topic.clone(), publish.payload.to_vec())),
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = suback_tx.send(()).await;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        for filter in subscribe {
            client.subscribe(*filter, QoS::AtLeastOnce).await.unwrap();
            tokio::time::timeout(WAIT, suback_rx.recv())
                .await
                .expect("suback");
        }
        Self { client, received }
    }

    async fn publish(&self, mac: &str, kind: Inbound, payload: Vec<u8>) {
        self.publish_raw(&inbound_topic(mac, kind), payload).await;
    }

    async fn publish_raw(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    fn received_on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, payload)| payload.clone())
            .collect()
    }
}

fn hello(firmware: &str) -> Vec<u8> {
    pb::Hello {
        firmware: firmware.into(),
        battery_percent: 80,
        next_wake_unix_seconds: 1_800_000_000,
        ..Default::default()
    }
    .encode_to_vec()
}

fn begin(image: &str, total: u32) -> Vec<u8> {
    pb::ImageBegin {
        image_name: image.into(),
        total_chunks: total,
        size_bytes: total * 10,
        sha256: vec![0x5A; 32],
    }
    .encode_to_vec()
}

fn chunk(image: &str, index: u32) -> Vec<u8> {
    pb::ImageChunk {
        image_name: image.into(),
        index,
        data: vec![index as u8; 10],
    }
    .encode_to_vec()
}

fn sleep() -> Vec<u8> {
    pb::Sleep {
        reason: "done".into(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_messages_reach_the_inbox_in_order_and_replies_reach_the_device() {
    let broker = Broker::start();
    let inbox = Arc::new(RecordingInbox::default());
    let macs = ["A4CF00000001", "A4CF00000002", "A4CF00000003"];
    inbox.register(
        macs[0],
        vec![
            command(7, macs[0], "retry_image", 8),
            command(3, macs[0], "capture", 2),
        ],
    );
    inbox.register(macs[1], Vec::new());
    inbox.register(macs[2], Vec::new());
    let running = Running::start(settings(broker.port, "adapter-order"), Arc::clone(&inbox));
    running.wait_connected(true).await;

    let device = Device::connect(
        broker.port,
        &["retryd/devices/+/commands", "retryd/devices/+/ack"],
    )
    .await;
    const CHUNKS: u32 = 30;
    // Interleaved across devices, as a broker would see a fleet; bad messages mixed in.
    device
        .publish_raw("retryd/devices/a4cf00000001/hello", hello("x"))
        .await;
    device
        .publish_raw("retryd/devices/A4CF00000001/reboot", Vec::new())
        .await;
    device
        .publish(macs[0], Inbound::ImageBegin, vec![0x0a, 0xff])
        .await;
    device
        .publish(macs[1], Inbound::ImageChunk, chunk("img.jpg", 1))
        .await;
    device
        .publish("A4CF0000FFFF", Inbound::Hello, hello("unknown"))
        .await;
    for mac in macs {
        device.publish(mac, Inbound::Hello, hello(mac)).await;
    }
    for mac in macs {
        device
            .publish(mac, Inbound::ImageBegin, begin("img.jpg", CHUNKS))
            .await;
    }
    for index in 0..CHUNKS {
        for mac in macs {
            device
                .publish(mac, Inbound::ImageChunk, chunk("img.jpg", index))
                .await;
        }
    }
    let oversize = pb::ImageChunk {
        image_name: "img.jpg".into(),
        index: 0,
        data: vec![1; 64 * 1024 + 1],
    }
    .encode_to_vec();
    device.publish(macs[2], Inbound::ImageChunk, oversize).await;
    for mac in macs {
        device.publish(mac, Inbound::Sleep, sleep()).await;
    }

    for mac in macs {
        let ended = || {
            inbox
                .calls(mac)
                .iter()
                .any(|call| matches!(call, Call::Sleep(_)))
        };
        wait_until(&format!("{mac}'s sleep"), ended).await;
    }
    for mac in macs {
        let mut expected = vec![Call::Hello(HelloReport {
            firmware: mac.to_owned(),
            battery_percent: 80,
            next_wake_at: Some(Timestamp::from_micros(1_800_000_000_000_000)),
            ..Default::default()
        })];
        if mac == macs[0] {
            expected.push(Call::Published(vec![7, 3]));
        }
        // The chunk published before this device's hello came first, in order.
        if mac == macs[1] {
            expected.insert(
                0,
                Call::Chunk {
                    image: "img.jpg".into(),
                    index: 1,
                    len: 10,
                },
            );
        }
        expected.push(Call::Begin(NewImage {
            image_name: "img.jpg".into(),
            total_chunks: CHUNKS,
            size_bytes: u64::from(CHUNKS * 10),
            sha256: "5a".repeat(32),
        }));
        expected.extend((0..CHUNKS).map(|index| Call::Chunk {
            image: "img.jpg".into(),
            index,
            len: 10,
        }));
        expected.push(Call::Sleep(SleepReport {
            next_wake_at: None,
            reason: "done".into(),
            error_codes: Vec::new(),
        }));
        assert_eq!(
            inbox.calls(mac),
            expected,
            "{mac}: decoded, in order, bad ones dropped"
        );
    }
    assert!(inbox.calls("A4CF0000FFFF").is_empty());

    // The commands, in the inbox's order, on the device's commands topic; an ack per chunk.
    let commands_topic = "retryd/devices/A4CF00000001/commands";
    wait_until("two commands", || {
        device.received_on(commands_topic).len() == 2
    })
    .await;
    let commands: Vec<pb::Command> = device
        .received_on(commands_topic)
        .iter()
        .map(|payload| pb::Command::decode(payload.as_slice()).unwrap())
        .collect();
    assert_eq!(
        commands,
        vec![
            pb::Command {
                id: 7,
                r#type: "retry_image".into(),
                priority: 8,
                payload: vec![7],
            },
            pb::Command {
                id: 3,
                r#type: "capture".into(),
                priority: 2,
                payload: vec![3],
            },
        ]
    );
    let ack_topic = "retryd/devices/A4CF00000003/ack";
    wait_until("an ack per chunk", || {
        device.received_on(ack_topic).len() == CHUNKS as usize
    })
    .await;
    let last = pb::Ack::decode(device.received_on(ack_topic).last().unwrap().as_slice()).unwrap();
    assert_eq!(last.image_name, "img.jpg");
    assert_eq!(last.chunks_received, CHUNKS);
    assert!(device
        .received_on("retryd/devices/A4CF00000002/commands")
        .is_empty());

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_follows_the_broker_down_and_back_up_by_itself() {
    let mut broker = Broker::start();
    let inbox = Arc::new(RecordingInbox::default());
    let mac = "A4CF00000010";
    inbox.register(mac, Vec::new());
    let running = Running::start(settings(broker.port, "adapter-restart"), Arc::clone(&inbox));
    running.wait_connected(true).await;
    let since_up = running.broker.borrow().since;

    broker.stop();
    running.wait_connected(false).await;
    let down = running.broker.borrow().clone();
    assert!(down.last_error.is_some(), "{down:?}");
    assert!(down.since >= since_up);
    assert_eq!(down.url, broker.url());

    // A new broker process knows nothing of our session: only resubscribing makes messages flow.
    broker.resume();
    running.wait_connected(true).await;
    assert_eq!(running.broker.borrow().last_error, None);
    let device = Device::connect(broker.port, &[]).await;
    device
        .publish(mac, Inbound::Hello, hello("after-restart"))
        .await;
    wait_until("the hello after the restart", || {
        inbox
            .calls(mac)
            .iter()
            .any(|call| matches!(call, Call::Hello(h) if h.firmware == "after-restart"))
    })
    .await;

    let state = running.broker.clone();
    running.stop().await;
    assert!(
        !state.borrow().connected,
        "a stopped adapter is not connected"
    );
}

/// A TCP relay in front of the broker whose connections can be cut, to take the adapter's network
/// away without stopping the broker (which keeps sessions in memory only).
struct Relay {
    port: u16,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Relay {
    async fn start(broker: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = watch::channel(0u64);
        let accepting = Arc::clone(&open);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let address = SocketAddr::from(([127, 0, 0, 1], broker));
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(address).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { port, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|cuts| *cuts += 1);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_the_adapter_was_cut_off_arrive_after_it_reconnects() {
    let broker = Broker::start();
    let relay = Relay::start(broker.port).await;
    let inbox = Arc::new(RecordingInbox::default());
    let mac = "A4CF00000020";
    inbox.register(mac, Vec::new());
    let running = Running::start(settings(relay.port, "adapter-away"), Arc::clone(&inbox));
    running.wait_connected(true).await;
    let device = Device::connect(broker.port, &[]).await;
    device.publish(mac, Inbound::Hello, hello("before")).await;
    wait_until("the first hello", || inbox.calls(mac).len() == 1).await;

    relay.cut();
    running.wait_connected(false).await;
    // Mosquitto notices the cut connection only when its socket closes: the relay closed both
    // ends, so the session is offline (persistent, clean_session=false) and queues for it.
    device
        .publish(mac, Inbound::ImageBegin, begin("away.jpg", 2))
        .await;
    device
        .publish(mac, Inbound::ImageChunk, chunk("away.jpg", 0))
        .await;
    device
        .publish(mac, Inbound::ImageChunk, chunk("away.jpg", 1))
        .await;
    relay.restore();
    running.wait_connected(true).await;
    wait_until("the messages sent while away", || {
        inbox.calls(mac).len() == 4
    })
    .await;
    let calls = inbox.calls(mac);
    assert!(matches!(&calls[1], Call::Begin(image) if image.image_name == "away.jpg"));
    assert_eq!(
        calls[2..],
        [
            Call::Chunk {
                image: "away.jpg".into(),
                index: 0,
                len: 10
            },
            Call::Chunk {
                image: "away.jpg".into(),
                index: 1,
                len: 10
            },
        ]
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_failed_on_an_unavailable_database_is_left_to_the_broker_not_lost() {
    let broker = Broker::start();
    let inbox = Arc::new(RecordingInbox::default());
    let mac = "A4CF00000030";
    inbox.register(mac, Vec::new());
    inbox.database_down.store(true, Ordering::SeqCst);
    let running = Running::start(settings(broker.port, "adapter-unacked"), Arc::clone(&inbox));
    running.wait_connected(true).await;
    let device = Device::connect(broker.port, &[]).await;
    device
        .publish(mac, Inbound::ImageBegin, begin("kept.jpg", 1))
        .await;
    wait_until("retries while the database is down", || {
        inbox.attempts_while_down.load(Ordering::SeqCst) >= 2
    })
    .await;
    // Stopping mid-retry: the message was never acked, so the broker keeps it in the session.
    running.stop().await;
    assert!(inbox.calls(mac).is_empty());

    inbox.database_down.store(false, Ordering::SeqCst);
    let restarted = Running::start(settings(broker.port, "adapter-unacked"), Arc::clone(&inbox));
    wait_until("the redelivered begin", || !inbox.calls(mac).is_empty()).await;
    assert!(matches!(&inbox.calls(mac)[0], Call::Begin(image) if image.image_name == "kept.jpg"));
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_images_health_follows_the_broker_and_the_other_services_do_not() {
    use retryd::grpc::health::{spawn_standard_health_updates, DEVICE_IMAGES_SERVICE};
    use retryd::scheduler::Scheduler;
    use retryd::service::health::HealthMonitor;
    use retryd::store::{PoolSettings, SoleLeader};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("retryd.db").display());
    let store = retryd::store::open(&url, &PoolSettings::default())
        .await
        .unwrap();
    let clock = Arc::new(SystemClock);
    let scheduler = Arc::new(Scheduler::new(
        Vec::new(),
        Arc::clone(&store),
        clock.clone(),
        Arc::new(SoleLeader),
        "replica".into(),
    ));
    let running = Running::start(
        settings(broker.port, "adapter-health"),
        Arc::new(RecordingInbox::default()),
    );
    let monitor = HealthMonitor::new(store, clock, scheduler).with_broker(running.broker.clone());
    monitor.check_database().await;
    let (reporter, service) = tonic_health::server::health_reporter();
    spawn_standard_health_updates(&monitor, reporter, monitor.broker());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = HealthClient::new(channel);
    let mut statuses = || {
        let client = client.clone();
        async move {
            let status = |service: &str| {
                let mut client = client.clone();
                let service = service.to_owned();
                async move {
                    client
                        .check(HealthCheckRequest { service })
                        .await
                        .unwrap()
                        .into_inner()
                        .status()
                }
            };
            (
                status(DEVICE_IMAGES_SERVICE).await,
                status("retryd.v1.ChunkQueue").await,
                status("").await,
            )
        }
    };
    let serving = (
        ServingStatus::Serving,
        ServingStatus::Serving,
        ServingStatus::Serving,
    );
    let broker_down = (
        ServingStatus::NotServing,
        ServingStatus::Serving,
        ServingStatus::Serving,
    );

    running.wait_connected(true).await;
    wait_for_statuses(&mut statuses, serving).await;
    let health = monitor.snapshot().await.unwrap();
    let reported = health.broker.expect("the broker is reported");
    assert!(reported.connected);
    assert_eq!(reported.url, broker.url());

    broker.stop();
    wait_for_statuses(&mut statuses, broker_down).await;
    let reported = monitor.snapshot().await.unwrap().broker.unwrap();
    assert!(!reported.connected && reported.last_error.is_some());

    broker.resume();
    wait_for_statuses(&mut statuses, serving).await;
    running.stop().await;
}

async fn wait_for_statuses<F, Fut, T>(statuses: &mut F, expected: T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let current = statuses().await;
        if current == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {current:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
