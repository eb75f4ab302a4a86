//! DeviceImages' store on every engine, with explicit times (no case sleeps to prove a timeout).

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use retryd::core::chunks::PageRequest;
use retryd::core::devices::*;
use retryd::core::{Error, Timestamp};
use retryd::store::Store;
use retryd_client::v1::RetryImagePayload;

const T0: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);
const MINUTE: Duration = Duration::from_secs(60);
const MAC: &str = "A4CF12345678";
const IMAGE: &str = "image_1762625082788.jpg";

fn page() -> PageRequest {
    PageRequest {
        size: 100,
        after: None,
    }
}

fn at(minutes: u64) -> Timestamp {
    T0.plus(MINUTE * minutes as u32)
}

/// A device that wakes next at T0 + `wake_minutes`, with a 4-chunk image announced.
async fn device_with_image(store: &Arc<dyn Store>, mac: &str, wake_minutes: u64) {
    store
        .register_device(
            &NewDevice {
                mac: mac.into(),
                name: "Test Device 002 - Missing Chunks".into(),
                wake_interval_seconds: 3600,
                next_wake_at: Some(at(wake_minutes)),
            },
            T0,
        )
        .await
        .unwrap();
    store
        .begin_image(
            mac,
            &NewImage {
                image_name: IMAGE.into(),
                total_chunks: 4,
                size_bytes: 16,
                sha256: "ab".repeat(32),
            },
            T0,
        )
        .await
        .unwrap();
}

async fn send(store: &Arc<dyn Store>, indices: &[u32]) {
    for index in indices {
        store
            .store_chunk(MAC, IMAGE, *index, &[*index as u8; 4], T0)
            .await
            .unwrap();
    }
}

fn command(priority: u32, scheduled_for: Timestamp, expires_at: Option<Timestamp>) -> NewCommand {
    NewCommand {
        image_name: None,
        command_type: "capture".into(),
        payload: vec![priority as u8],
        priority,
        scheduled_for,
        expires_at,
    }
}

pub async fn chunks_are_stored_once_in_any_order(store: Arc<dyn Store>) {
    device_with_image(&store, MAC, 60).await;
    let first = store.store_chunk(MAC, IMAGE, 3, b"dddd", T0).await.unwrap();
    assert!(first.newly_stored);
    assert_eq!(first.image.status, ImageStatus::Receiving);
    store.store_chunk(MAC, IMAGE, 0, b"aaaa", T0).await.unwrap();
    // A repeat, even with other bytes and later, changes nothing.
    let repeat = store
        .store_chunk(MAC, IMAGE, 3, b"XXXX", at(1))
        .await
        .unwrap();
    assert!(!repeat.newly_stored);
    assert_eq!(repeat.image.chunks.received(), 2);
    assert_eq!(repeat.image.chunks.missing(), vec![1, 2]);

    let out_of_range = store.store_chunk(MAC, IMAGE, 4, b"eeee", T0).await;
    assert!(matches!(out_of_range, Err(Error::OutOfRange(_))));
    let unknown_image = store.store_chunk(MAC, "other.jpg", 0, b"a", T0).await;
    assert!(matches!(
        unknown_image,
        Err(Error::NotFound { kind: "image", .. })
    ));
    let unknown_device = store.store_chunk("000000000000", IMAGE, 0, b"a", T0).await;
    assert!(matches!(
        unknown_device,
        Err(Error::NotFound { kind: "device", .. })
    ));

    store.store_chunk(MAC, IMAGE, 2, b"cccc", T0).await.unwrap();
    let last = store.store_chunk(MAC, IMAGE, 1, b"bbbb", T0).await.unwrap();
    assert!(last.image.chunks.is_complete());
    let chunks = store.image_chunks(MAC, IMAGE).await.unwrap();
    assert_eq!(chunks.concat(), b"aaaabbbbccccdddd");
}

pub async fn images_are_announced_once(store: Arc<dyn Store>) {
    device_with_image(&store, MAC, 60).await;
    let again = NewImage {
        image_name: IMAGE.into(),
        total_chunks: 4,
        size_bytes: 16,
        sha256: "ab".repeat(32),
    };
    let image = store.begin_image(MAC, &again, at(1)).await.unwrap();
    assert_eq!(image.created_at, T0);
    let other = NewImage {
        total_chunks: 5,
        ..again
    };
    let conflict = store.begin_image(MAC, &other, at(1)).await;
    assert!(matches!(
        conflict,
        Err(Error::AlreadyExists { kind: "image", .. })
    ));
    let unknown = store.begin_image("000000000000", &other, T0).await;
    assert!(matches!(
        unknown,
        Err(Error::NotFound { kind: "device", .. })
    ));
}

pub async fn an_image_receiving_at_the_next_wake_times_out_with_a_retry(store: Arc<dyn Store>) {
    device_with_image(&store, MAC, 60).await;
    send(&store, &[0, 1, 3]).await;

    // Before the wake time nothing times out.
    let early = store.run_timeout_sweep(at(59)).await.unwrap();
    assert_eq!(early.images_timed_out, 0);
    assert_eq!(
        store.get_image(MAC, IMAGE).await.unwrap().status,
        ImageStatus::Receiving
    );

    let sweep = store.run_timeout_sweep(at(60)).await.unwrap();
    assert_eq!(
        (
            sweep.images_timed_out,
            sweep.retries_queued,
            sweep.failed_to_queue
        ),
        (1, 1, 0)
    );
    let image = store.get_image(MAC, IMAGE).await.unwrap();
    assert_eq!(image.status, ImageStatus::Failed);
    assert_eq!(image.retry_count, 1);
    assert_eq!(image.failed_at, Some(at(60)));
    assert_eq!(image.timeout_reason.as_deref(), Some(TIMEOUT_REASON));

    // The retry is due from 5 minutes before the wake until an hour after it.
    let due = store.due_commands(MAC, at(60)).await.unwrap();
    assert_eq!(due.len(), 1);
    let retry = &due[0];
    assert_eq!(retry.command_type, RETRY_IMAGE);
    assert_eq!(retry.priority, 8);
    assert_eq!(retry.scheduled_for, at(55));
    assert_eq!(retry.expires_at, Some(at(120)));
    let payload = RetryImagePayload::decode(&retry.payload[..]).unwrap();
    assert_eq!(payload.image_name, IMAGE);
    assert_eq!(payload.missing_chunks, vec![2]);

    let history = store.list_history(Some(MAC), page()).await.unwrap().items;
    // Newest first: the announcement, then the timeout.
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].event_type, EVENT_IMAGE_BEGIN);
    assert_eq!(history[0].event_type, EVENT_IMAGE_TIMEOUT);
    assert_eq!(history[0].image_name.as_deref(), Some(IMAGE));
    // One retry used of three: no alert yet.
    let alerts = store
        .list_alerts(&AlertFilter::default(), page())
        .await
        .unwrap();
    assert!(alerts.items.is_empty());

    // A second sweep finds nothing receiving; the missing chunk completes the image.
    assert_eq!(
        store
            .run_timeout_sweep(at(61))
            .await
            .unwrap()
            .images_timed_out,
        0
    );
    let receipt = store
        .store_chunk(MAC, IMAGE, 2, b"cccc", at(62))
        .await
        .unwrap();
    assert!(receipt.image.chunks.is_complete());
}

/// Moves the device's wake time on and lets the image time out again after one more chunk.
async fn wake_and_time_out(store: &Arc<dyn Store>, wake_minutes: u64) -> SweepOutcome {
    store
        .register_device(
            &NewDevice {
                mac: MAC.into(),
                name: "Test Device 002 - Missing Chunks".into(),
                wake_interval_seconds: 3600,
                next_wake_at: Some(at(wake_minutes)),
            },
            at(wake_minutes - 1),
        )
        .await
        .unwrap();
    // The device sends one more of the missing chunks: the failed image receives again.
    let image = store.get_image(MAC, IMAGE).await.unwrap();
    let next = image.chunks.missing()[0];
    store
        .store_chunk(MAC, IMAGE, next, b"zzzz", at(wake_minutes - 1))
        .await
        .unwrap();
    store.run_timeout_sweep(at(wake_minutes)).await.unwrap()
}

pub async fn retries_raise_an_alert_and_stop_at_max_retries(store: Arc<dyn Store>) {
    store
        .register_device(
            &NewDevice {
                mac: MAC.into(),
                name: "many retries".into(),
                wake_interval_seconds: 3600,
                next_wake_at: Some(at(60)),
            },
            T0,
        )
        .await
        .unwrap();
    store
        .begin_image(
            MAC,
            &NewImage {
                image_name: IMAGE.into(),
                total_chunks: 8,
                size_bytes: 32,
                sha256: "cd".repeat(32),
            },
            T0,
        )
        .await
        .unwrap();
    store.store_chunk(MAC, IMAGE, 0, b"aaaa", T0).await.unwrap();
    assert_eq!(
        store
            .run_timeout_sweep(at(60))
            .await
            .unwrap()
            .retries_queued,
        1
    );
    let no_alert = store
        .list_alerts(&AlertFilter::default(), page())
        .await
        .unwrap();
    assert!(no_alert.items.is_empty());

    // retry_count 2 = max_retries − 1: the alert.
    let second = wake_and_time_out(&store, 120).await;
    assert_eq!((second.images_timed_out, second.retries_queued), (1, 1));
    let alerts = store
        .list_alerts(&AlertFilter::default(), page())
        .await
        .unwrap()
        .items;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].alert_type, ALERT_APPROACHING_MAX_RETRIES);
    assert_eq!(alerts[0].severity, SEVERITY_CRITICAL);
    assert_eq!(alerts[0].mac, MAC);

    let third = wake_and_time_out(&store, 180).await;
    assert_eq!(third.retries_queued, 1);
    assert_eq!(store.get_image(MAC, IMAGE).await.unwrap().retry_count, 3);

    // Retries used up: failed, nothing queued, an alert says so.
    let fourth = wake_and_time_out(&store, 240).await;
    assert_eq!(
        (
            fourth.images_timed_out,
            fourth.retries_queued,
            fourth.failed_to_queue
        ),
        (1, 0, 1)
    );
    let image = store.get_image(MAC, IMAGE).await.unwrap();
    assert_eq!((image.status, image.retry_count), (ImageStatus::Failed, 3));
    let alerts = store
        .list_alerts(&AlertFilter::default(), page())
        .await
        .unwrap()
        .items;
    assert_eq!(alerts[0].alert_type, ALERT_RETRIES_EXHAUSTED);

    // Acknowledged alerts leave the default list; acknowledging again keeps the first time.
    let acked = store
        .acknowledge_alert(alerts[0].id, at(241))
        .await
        .unwrap();
    assert_eq!(acked.acknowledged_at, Some(at(241)));
    let again = store
        .acknowledge_alert(alerts[0].id, at(242))
        .await
        .unwrap();
    assert_eq!(again.acknowledged_at, Some(at(241)));
    let open = store
        .list_alerts(&AlertFilter::default(), page())
        .await
        .unwrap()
        .items;
    assert_eq!(open.len(), 1);
    let all = AlertFilter {
        include_acknowledged: true,
        ..AlertFilter::default()
    };
    assert_eq!(
        store.list_alerts(&all, page()).await.unwrap().items.len(),
        2
    );
    assert!(matches!(
        store.acknowledge_alert(9_999, at(242)).await,
        Err(Error::NotFound { kind: "alert", .. })
    ));

    // The operator's retry resets the counter and queues a retry of what is missing.
    let reset = store.retry_failed_images(MAC, at(250)).await.unwrap();
    assert_eq!((reset.images_reset, reset.retries_queued), (1, 1));
    let image = store.get_image(MAC, IMAGE).await.unwrap();
    assert_eq!(image.retry_count, 0);
    let due = store.due_commands(MAC, at(250)).await.unwrap();
    let newest = due.iter().max_by_key(|command| command.id).unwrap();
    let payload = RetryImagePayload::decode(&newest.payload[..]).unwrap();
    assert_eq!(payload.missing_chunks, image.chunks.missing());
    assert!(matches!(
        store.retry_failed_images("000000000000", at(250)).await,
        Err(Error::NotFound { kind: "device", .. })
    ));
}

pub async fn due_commands_come_highest_priority_first_and_never_expired(store: Arc<dyn Store>) {
    device_with_image(&store, MAC, 60).await;
    let low = store
        .queue_command(MAC, &command(2, T0, None), T0)
        .await
        .unwrap();
    let high = store
        .queue_command(MAC, &command(9, at(1), Some(at(30))), T0)
        .await
        .unwrap();
    let later = store
        .queue_command(MAC, &command(10, at(20), None), T0)
        .await
        .unwrap();
    let expired = store
        .queue_command(MAC, &command(10, T0, Some(at(5))), T0)
        .await
        .unwrap();

    let ids = |commands: Vec<Command>| commands.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.due_commands(MAC, at(1)).await.unwrap()),
        vec![expired.id, high.id, low.id]
    );
    // At its expiry a command is no longer delivered, and the sweep deletes it.
    assert_eq!(
        ids(store.due_commands(MAC, at(5)).await.unwrap()),
        vec![high.id, low.id]
    );
    assert_eq!(
        ids(store.due_commands(MAC, at(20)).await.unwrap()),
        vec![later.id, high.id, low.id]
    );
    let sweep = store.run_timeout_sweep(at(30)).await.unwrap();
    assert_eq!(sweep.expired_commands_removed, 2);
    let listed = store
        .list_commands(&CommandFilter::default(), page())
        .await
        .unwrap()
        .items;
    assert_eq!(ids(listed), vec![later.id, low.id]);
    assert!(matches!(
        store
            .queue_command("000000000000", &command(1, T0, None), T0)
            .await,
        Err(Error::NotFound { kind: "device", .. })
    ));
}

pub async fn devices_list_with_pending_and_failed_counts(store: Arc<dyn Store>) {
    device_with_image(&store, MAC, 60).await;
    device_with_image(&store, "A4CF00000002", 600).await;
    send(&store, &[0]).await;
    store.run_timeout_sweep(at(60)).await.unwrap();
    // Announced after the wake came: pending until the next one.
    store
        .begin_image(
            MAC,
            &NewImage {
                image_name: "second.jpg".into(),
                total_chunks: 1,
                size_bytes: 1,
                sha256: "ef".repeat(32),
            },
            at(61),
        )
        .await
        .unwrap();

    let devices = store.list_devices(page()).await.unwrap().items;
    let counts: Vec<(String, u32, u32)> = devices
        .iter()
        .map(|d| (d.mac.clone(), d.pending_images, d.failed_images))
        .collect();
    assert_eq!(
        counts,
        vec![(MAC.to_owned(), 1, 1), ("A4CF00000002".to_owned(), 1, 0)]
    );
    let device = store.get_device(MAC).await.unwrap();
    assert_eq!((device.pending_images, device.failed_images), (1, 1));
    assert_eq!(device.status, DeviceStatus::Registered);

    // Registering again updates the name and keeps the device.
    let renamed = store
        .register_device(
            &NewDevice {
                mac: MAC.into(),
                name: "renamed".into(),
                wake_interval_seconds: 600,
                next_wake_at: None,
            },
            at(61),
        )
        .await
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.created_at), ("renamed", T0));
    assert_eq!(renamed.next_wake_at, Some(at(60)));

    let failed = ImageFilter {
        mac: None,
        status: Some(ImageStatus::Failed),
    };
    let images = store.list_images(&failed, page()).await.unwrap().items;
    assert_eq!(images.len(), 1);
    assert_eq!(
        (images[0].mac.as_str(), images[0].image_name.as_str()),
        (MAC, IMAGE)
    );
    let two_per_page = PageRequest {
        size: 1,
        after: None,
    };
    let first = store.list_devices(two_per_page).await.unwrap();
    assert_eq!(first.items.len(), 1);
    let rest = store
        .list_devices(PageRequest {
            size: 1,
            after: first.next_after,
        })
        .await
        .unwrap();
    assert_eq!(rest.items[0].mac, "A4CF00000002");
    assert!(matches!(
        store.get_device("000000000000").await,
        Err(Error::NotFound { kind: "device", .. })
    ));
}
