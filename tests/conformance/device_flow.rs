//! DeviceImages end to end inside the process, on every engine: the device side (HELLO, chunks,
//! sleep) and the operator side of the service over the store under test and a real blob
//! directory, with a manual clock standing in for the hours between wakes.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use retryd::blobs::LocalDirectory;
use retryd::core::chunks::PageRequest;
use retryd::core::device_messages::{HelloReport, SleepReport};
use retryd::core::devices::*;
use retryd::core::limits::Limits;
use retryd::core::{Clock, Error, ManualClock, Timestamp};
use retryd::service::device_inbox::DeviceInbox;
use retryd::service::devices::{
    DeviceService, DeviceSettings, QueueCommandInput, RegisterDeviceInput,
};
use retryd::store::Store;
use retryd_client::v1::RetryImagePayload;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const T0: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);
const HOUR: Duration = Duration::from_secs(3600);
const MAC: &str = "A4CF12345678";
const IMAGE: &str = "image_1762625082788.jpg";
const CHUNK: usize = 5;

struct Fixture {
    service: Arc<DeviceService>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    content: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(store: Arc<dyn Store>, settings: DeviceSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_at(T0));
        let service = Arc::new(DeviceService::new(
            Arc::clone(&store),
            clock.clone(),
            Arc::new(LocalDirectory::open(dir.path().join("blobs")).unwrap()),
            Limits::default(),
            settings,
        ));
        Self {
            service,
            store,
            clock,
            // Four chunks, the last one shorter.
            content: b"0123456789abcdefXYZ".to_vec(),
            _dir: dir,
        }
    }

    async fn registered(store: Arc<dyn Store>) -> Self {
        let fixture = Self::new(store, DeviceSettings::default());
        fixture
            .service
            .register_device(RegisterDeviceInput {
                mac: "a4:cf:12:34:56:78".into(),
                name: "Test Device 002 - Missing Chunks".into(),
                wake_interval_seconds: 3600,
                next_wake_at: None,
            })
            .await
            .unwrap();
        fixture
    }

    fn chunk(&self, index: u32) -> Vec<u8> {
        self.content
            .chunks(CHUNK)
            .nth(index as usize)
            .unwrap()
            .to_vec()
    }

    /// HELLO naming the next wake an hour after this one; returns the commands to publish,
    /// which the adapter then reports published.
    async fn wake(&self) -> Vec<Command> {
        let hello = HelloReport {
            firmware: "1.4.2".into(),
            battery_percent: 81,
            wifi_retries: 2,
            next_wake_at: Some(self.clock.now().plus(HOUR)),
            ..HelloReport::default()
        };
        let commands = self.service.hello(MAC, hello).await.unwrap();
        let ids: Vec<i64> = commands.iter().map(|command| command.id).collect();
        self.service.commands_published(MAC, &ids).await.unwrap();
        commands
    }

    async fn begin(&self, sha256: String) {
        self.service
            .begin_image(
                MAC,
                NewImage {
                    image_name: IMAGE.into(),
                    total_chunks: 4,
                    size_bytes: self.content.len() as u64,
                    sha256,
                },
            )
            .await
            .unwrap();
    }

    async fn send(&self, indices: &[u32]) -> Option<retryd::core::device_messages::ChunkAck> {
        let mut last = None;
        for index in indices {
            last = Some(
                self.service
                    .chunk(MAC, IMAGE, *index, self.chunk(*index))
                    .await
                    .unwrap(),
            );
        }
        last
    }

    /// Sleeps until the wake time the last HELLO named, and lets the clock get there.
    async fn sleep_until_next_wake(&self) {
        self.service
            .sleep(MAC, SleepReport::default())
            .await
            .unwrap();
        let device = self.service.get_device(MAC).await.unwrap();
        self.clock.set(device.next_wake_at.unwrap());
    }

    async fn image(&self) -> Image {
        self.service.get_image(MAC, IMAGE).await.unwrap()
    }

    fn sha(&self) -> String {
        hex::encode(Sha256::digest(&self.content))
    }

    async fn downloaded(&self) -> Vec<u8> {
        let (_, mut reader) = self.service.download_image(MAC, IMAGE).await.unwrap();
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await.unwrap();
        bytes
    }
}

fn page() -> PageRequest {
    PageRequest {
        size: 100,
        after: None,
    }
}

fn retry_payload(command: &Command) -> RetryImagePayload {
    assert_eq!(command.command_type, RETRY_IMAGE);
    RetryImagePayload::decode(&command.payload[..]).unwrap()
}

async fn history_types(store: &Arc<dyn Store>) -> Vec<String> {
    let mut events = store.list_history(Some(MAC), page()).await.unwrap().items;
    events.reverse();
    events.into_iter().map(|event| event.event_type).collect()
}

pub async fn a_wake_cut_short_is_finished_at_the_next_wake(store: Arc<dyn Store>) {
    let f = Fixture::registered(store).await;
    assert!(f.wake().await.is_empty());
    f.begin(f.sha()).await;
    let ack = f.send(&[0, 1, 3]).await.unwrap();
    assert_eq!(
        (ack.chunks_received, ack.total_chunks, ack.image_complete),
        (3, 4, false)
    );
    f.sleep_until_next_wake().await;

    // The next HELLO fails the image before anything else and hands out the retry at once.
    let commands = f.wake().await;
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].priority, RETRY_PRIORITY);
    assert_eq!(retry_payload(&commands[0]).missing_chunks, vec![2]);
    let image = f.image().await;
    assert_eq!(image.status, ImageStatus::Failed);
    assert_eq!(image.retry_count, 1);
    assert_eq!(image.timeout_reason.as_deref(), Some(TIMEOUT_REASON));
    assert_eq!(image.chunks.missing(), vec![2]);

    let ack = f.send(&[2]).await.unwrap();
    assert!(ack.image_complete);
    let image = f.image().await;
    assert_eq!(image.status, ImageStatus::Complete);
    assert_eq!(f.downloaded().await, f.content);
    // Once in the blob store, the chunk rows are gone.
    assert!(f.store.image_chunks(MAC, IMAGE).await.unwrap().is_empty());
    f.service.sleep(MAC, SleepReport::default()).await.unwrap();

    let sessions = f
        .service
        .list_wake_sessions(MAC, 0, "")
        .await
        .unwrap()
        .items;
    assert_eq!(sessions.len(), 2);
    let (second, first) = (&sessions[0], &sessions[1]);
    assert_eq!(first.status, WakeSessionStatus::Completed);
    assert_eq!((first.chunks_sent, first.chunks_total), (3, 4));
    assert_eq!(first.chunks_missing, vec![2]);
    assert_eq!(
        (first.firmware.as_str(), first.battery_percent),
        ("1.4.2", 81)
    );
    assert_eq!(second.chunks_sent, 1);
    assert!(second.chunks_missing.is_empty());
    assert_eq!(
        history_types(&f.store).await,
        [
            EVENT_HELLO,
            EVENT_IMAGE_BEGIN,
            EVENT_SLEEP,
            EVENT_IMAGE_TIMEOUT,
            EVENT_HELLO,
            EVENT_COMMAND_SENT,
            EVENT_IMAGE_COMPLETE,
            EVENT_SLEEP,
        ]
    );
    let device = f.service.get_device(MAC).await.unwrap();
    assert_eq!((device.pending_images, device.failed_images), (0, 0));
    assert_eq!(device.status, DeviceStatus::Asleep);
}

pub async fn retries_run_out_with_an_alert_and_an_operator_resets_them(store: Arc<dyn Store>) {
    let f = Fixture::registered(store).await;
    f.wake().await;
    f.begin(f.sha()).await;
    f.send(&[0, 1, 3]).await;
    // Every retry is lost on the way: each wake uses one up.
    for retry in 1..=DEFAULT_MAX_RETRIES {
        f.sleep_until_next_wake().await;
        let commands = f.wake().await;
        assert_eq!(commands.len(), 1, "retry {retry} is delivered");
        assert_eq!(retry_payload(&commands[0]).missing_chunks, vec![2]);
        assert_eq!(f.image().await.retry_count, retry);
        let alerts = f
            .service
            .list_alerts(MAC, false, 0, "")
            .await
            .unwrap()
            .items;
        let expected = if retry >= DEFAULT_MAX_RETRIES - 1 {
            1
        } else {
            0
        };
        assert_eq!(alerts.len(), expected, "alerts after retry {retry}");
    }
    let alert = &f
        .service
        .list_alerts(MAC, false, 0, "")
        .await
        .unwrap()
        .items[0];
    assert_eq!(alert.alert_type, ALERT_APPROACHING_MAX_RETRIES);
    assert_eq!(alert.image_name.as_deref(), Some(IMAGE));

    // Retries used up: later wakes get nothing, the image waits for a person.
    f.sleep_until_next_wake().await;
    assert!(f.wake().await.is_empty());
    assert_eq!(f.image().await.status, ImageStatus::Failed);
    assert_eq!(f.service.get_device(MAC).await.unwrap().failed_images, 1);

    let reset = f.service.retry_failed_images(MAC).await.unwrap();
    assert_eq!((reset.images_reset, reset.retries_queued), (1, 1));
    assert_eq!(f.image().await.retry_count, 0);
    f.sleep_until_next_wake().await;
    let commands = f.wake().await;
    assert_eq!(commands.len(), 1);
    assert_eq!(retry_payload(&commands[0]).missing_chunks, vec![2]);
    assert!(f.send(&[2]).await.unwrap().image_complete);
    assert_eq!(f.downloaded().await, f.content);
    // Acknowledged alerts leave the default list.
    f.service.acknowledge_alert(alert.id).await.unwrap();
    assert!(f
        .service
        .list_alerts(MAC, false, 0, "")
        .await
        .unwrap()
        .items
        .is_empty());
}

pub async fn duplicated_and_out_of_order_chunks_change_nothing(store: Arc<dyn Store>) {
    let f = Fixture::registered(store).await;
    f.wake().await;
    f.begin(f.sha()).await;
    // The same announcement again is harmless; a different one is refused.
    f.begin(f.sha()).await;
    let other = NewImage {
        image_name: IMAGE.into(),
        total_chunks: 5,
        size_bytes: f.content.len() as u64,
        sha256: f.sha(),
    };
    assert!(matches!(
        f.service.begin_image(MAC, other).await,
        Err(Error::AlreadyExists { .. })
    ));
    let ack = f.send(&[3, 1, 1, 3, 0]).await.unwrap();
    assert_eq!(ack.chunks_received, 3);
    let before = f.image().await;
    let history = history_types(&f.store).await;
    // A repeat with other bytes does not replace what is stored.
    let ack = f
        .service
        .chunk(MAC, IMAGE, 1, b"ZZZZZ".to_vec())
        .await
        .unwrap();
    assert_eq!(ack.chunks_received, 3);
    assert_eq!(f.image().await, before);
    assert_eq!(history_types(&f.store).await, history);

    // Unknown images and indices past the end are refused and change nothing.
    assert!(matches!(
        f.service.chunk(MAC, "other.jpg", 0, b"x".to_vec()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        f.service.chunk(MAC, IMAGE, 4, b"x".to_vec()).await,
        Err(Error::OutOfRange(_))
    ));
    assert_eq!(f.image().await, before);

    assert!(f.send(&[2]).await.unwrap().image_complete);
    let complete = f.image().await;
    // A late chunk after completion changes nothing either.
    f.clock.advance(Duration::from_secs(5));
    let ack = f.send(&[2]).await.unwrap();
    assert!(ack.image_complete);
    assert_eq!(f.image().await, complete);
    assert_eq!(f.downloaded().await, f.content);
}

pub async fn an_expired_command_is_never_delivered(store: Arc<dyn Store>) {
    let f = Fixture::registered(store).await;
    let queue = |priority, expires_in: Duration| QueueCommandInput {
        mac: MAC.into(),
        command_type: "capture".into(),
        payload: vec![1],
        priority,
        scheduled_for: None,
        expires_at: Some(f.clock.now().plus(expires_in)),
    };
    let short = f.service.queue_command(queue(9, HOUR)).await.unwrap();
    let long = f.service.queue_command(queue(1, HOUR * 3)).await.unwrap();
    f.clock.advance(HOUR);
    // The short one expired at this very instant: only the long one goes out.
    let delivered = f.wake().await;
    assert_eq!(
        delivered.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![long.id]
    );
    let sweep = f.service.run_timeout_sweep().await.unwrap();
    assert_eq!(sweep.expired_commands_removed, 1);
    let left = f
        .service
        .list_commands(MAC, None, 0, "")
        .await
        .unwrap()
        .items;
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].id, left[0].status), (long.id, CommandStatus::Sent));
    assert!(left.iter().all(|command| command.id != short.id));
}

pub async fn a_checksum_mismatch_asks_for_every_chunk_again(store: Arc<dyn Store>) {
    let f = Fixture::registered(store).await;
    f.wake().await;
    f.begin("ab".repeat(32)).await;
    let ack = f.send(&[0, 1, 2, 3]).await.unwrap();
    assert!(!ack.image_complete);
    let image = f.image().await;
    assert_eq!(image.status, ImageStatus::Failed);
    assert_eq!(image.chunks.received(), 0);
    assert_eq!(
        image.timeout_reason.as_deref(),
        Some(CHECKSUM_MISMATCH_REASON)
    );
    assert!(f.store.image_chunks(MAC, IMAGE).await.unwrap().is_empty());
    assert!(matches!(
        f.service.download_image(MAC, IMAGE).await,
        Err(Error::FailedPrecondition(_))
    ));
    f.sleep_until_next_wake().await;
    let commands = f.wake().await;
    assert_eq!(retry_payload(&commands[0]).missing_chunks, vec![0, 1, 2, 3]);
    assert!(history_types(&f.store)
        .await
        .contains(&EVENT_CHECKSUM_MISMATCH.to_owned()));
}

pub async fn an_interrupted_assembly_is_finished_by_the_sweep(store: Arc<dyn Store>) {
    let f = Fixture::registered(store).await;
    f.wake().await;
    f.begin(f.sha()).await;
    // The chunks reach the database but the process dies before putting the image together.
    for index in 0..4 {
        f.store
            .store_chunk(MAC, IMAGE, index, &f.chunk(index), f.clock.now())
            .await
            .unwrap();
    }
    f.sleep_until_next_wake().await;
    let sweep = f.service.run_timeout_sweep().await.unwrap();
    assert_eq!(sweep.images_timed_out, 0);
    assert_eq!(f.image().await.status, ImageStatus::Complete);
    assert_eq!(f.downloaded().await, f.content);
}

pub async fn a_newer_retry_replaces_the_waiting_one(store: Arc<dyn Store>) {
    let f = Fixture::registered(store).await;
    f.wake().await;
    f.begin(f.sha()).await;
    f.send(&[0, 3]).await;
    f.sleep_until_next_wake().await;
    let sweep = f.service.run_timeout_sweep().await.unwrap();
    assert_eq!((sweep.images_timed_out, sweep.retries_queued), (1, 1));
    f.service.retry_failed_images(MAC).await.unwrap();
    let pending = f
        .service
        .list_commands(MAC, Some(CommandStatus::Pending), 0, "")
        .await
        .unwrap()
        .items;
    assert_eq!(pending.len(), 1);
    assert_eq!(retry_payload(&pending[0]).missing_chunks, vec![1, 2]);
    // A sweep before the device wakes again queues nothing more.
    let sweep = f.service.run_timeout_sweep().await.unwrap();
    assert_eq!(sweep.retries_queued, 0);
}

pub async fn unknown_devices_are_ignored_unless_registered_automatically(store: Arc<dyn Store>) {
    let f = Fixture::new(Arc::clone(&store), DeviceSettings::default());
    assert!(matches!(
        f.service.hello(MAC, HelloReport::default()).await,
        Err(Error::NotFound { kind: "device", .. })
    ));
    assert!(matches!(
        f.service.get_device(MAC).await,
        Err(Error::NotFound { .. })
    ));
    let auto = Fixture::new(
        store,
        DeviceSettings {
            auto_register: true,
            ..DeviceSettings::default()
        },
    );
    let hello = HelloReport {
        wake_interval_seconds: 600,
        ..HelloReport::default()
    };
    auto.service.hello(MAC, hello).await.unwrap();
    let device = auto.service.get_device(MAC).await.unwrap();
    assert_eq!(
        (device.name.as_str(), device.status),
        (MAC, DeviceStatus::Awake)
    );
    assert_eq!(device.wake_interval_seconds, 600);
    assert_eq!(device.next_wake_at, Some(T0.plus(Duration::from_secs(600))));
}

pub async fn an_image_whose_chunks_were_all_lost_is_retried_whole(store: Arc<dyn Store>) {
    let f = Fixture::registered(store).await;
    f.wake().await;
    f.begin(f.sha()).await;
    f.sleep_until_next_wake().await;
    let commands = f.wake().await;
    assert_eq!(retry_payload(&commands[0]).missing_chunks, vec![0, 1, 2, 3]);
    assert_eq!(f.image().await.status, ImageStatus::Failed);
    assert!(f.send(&[0, 1, 2, 3]).await.unwrap().image_complete);
    assert_eq!(f.downloaded().await, f.content);
}
