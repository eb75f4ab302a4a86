//! DeviceImages against the real binary: registration and commands round trip, bad input gets
//! its precise status naming the field and changes nothing, and a device's image, received by
//! another replica (an in-process DeviceService on the same database and blob store, as a
//! second server running the MQTT adapter would), is watched, timed out, retried and downloaded
//! over gRPC.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use retryd::core::device_messages::{HelloReport, SleepReport};
use retryd::core::devices::NewImage;
use retryd::core::limits::Limits;
use retryd::core::{Clock, SystemClock};
use retryd::service::device_inbox::DeviceInbox;
use retryd::service::devices::{DeviceService, DeviceSettings};
use retryd_client::tonic::metadata::MetadataValue;
use retryd_client::tonic::transport::Channel;
use retryd_client::tonic::{Code, Request, Status, Streaming};
use retryd_client::v1::device_images_client::DeviceImagesClient;
use retryd_client::v1::scheduler_client::SchedulerClient;
use retryd_client::v1::*;
use sha2::{Digest, Sha256};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::server::{create_key, write_config, ServerProcess};
use crate::support::{Engine, TestDb};

const MAC: &str = "AABBCCDDEE01";
const WEEK_SECONDS: u32 = 7 * 24 * 3600;
/// A safety limit for reading a watch, so a broken watch fails the test instead of hanging it.
const WATCH_LIMIT: Duration = Duration::from_secs(30);

on_both_engines!(
    devices_and_commands_round_trip_and_bad_input_changes_nothing,
    an_image_from_another_replica_is_watched_timed_out_retried_and_downloaded,
);

/// A server with its blob store in a temporary directory, the timeout sweep left to the test,
/// and watchers polling often (history another replica writes is found by the poll).
struct Setup {
    db: TestDb,
    dir: tempfile::TempDir,
    server: ServerProcess,
}

impl Setup {
    async fn new(engine: Engine) -> Self {
        let db = TestDb::new(engine).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            &format!(
                "watch_fallback_poll_ms = 50\n[uploads]\nblob_store = \"{}\"\n\
                 [scheduler.device_timeout_sweep]\nenabled = false\n",
                dir.path().join("blobs").display()
            ),
        );
        let server = ServerProcess::start(&db.url, &["--config", config.to_str().unwrap()]);
        Self { db, dir, server }
    }

    async fn client(&self) -> DeviceImagesClient<Channel> {
        DeviceImagesClient::new(self.server.channel().await)
    }

    /// Another replica's device side: the same database and blob store.
    async fn other_replica(&self) -> DeviceService {
        let blobs = retryd::blobs::open(self.dir.path().join("blobs").to_str().unwrap()).unwrap();
        DeviceService::new(
            self.db.open().await,
            Arc::new(SystemClock),
            Arc::new(blobs),
            Limits::default(),
            DeviceSettings::default(),
        )
    }
}

fn register(mac: &str, name: &str) -> RegisterDeviceRequest {
    RegisterDeviceRequest {
        mac: mac.into(),
        name: name.into(),
        wake_interval_seconds: 3600,
        next_wake_at: None,
    }
}

fn command(command_type: &str) -> QueueCommandRequest {
    QueueCommandRequest {
        mac: MAC.into(),
        r#type: command_type.into(),
        payload: b"{\"interval\": 600}".to_vec(),
        priority: 5,
        ..Default::default()
    }
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// Asserts a refusal's code and that its message names the field.
fn assert_refused<T: std::fmt::Debug>(outcome: Result<T, Status>, code: Code, field: &str) {
    let refused = outcome.expect_err(field);
    assert_eq!(refused.code(), code, "{field}: {}", refused.message());
    assert!(
        refused.message().contains(field),
        "{field}: {}",
        refused.message()
    );
}

async fn download(
    client: &mut DeviceImagesClient<Channel>,
    image_name: &str,
) -> Result<Vec<DownloadImageResponse>, Status> {
    let mut parts = client
        .download_image(DownloadImageRequest {
            mac: MAC.into(),
            image_name: image_name.into(),
        })
        .await?
        .into_inner();
    let mut received = Vec::new();
    while let Some(part) = parts.message().await? {
        received.push(part);
    }
    Ok(received)
}

pub async fn devices_and_commands_round_trip_and_bad_input_changes_nothing(engine: Engine) {
    let setup = Setup::new(engine).await;
    let channel = setup.server.channel().await;
    let mut client = DeviceImagesClient::new(channel.clone());

    let serving = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "retryd.v1.DeviceImages".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status, 1, "SERVING");

    let registered = client
        .register_device(register("aa:bb:cc:dd:ee:01", "yard camera"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.mac, MAC, "kept as 12 uppercase digits");
    assert_eq!(registered.name, "yard camera");
    assert_eq!(registered.status(), DeviceStatus::Registered);
    assert_eq!(registered.wake_interval_seconds, 3600);
    assert_eq!(
        (registered.pending_images, registered.failed_images),
        (0, 0)
    );
    assert!(registered.created_at.is_some());
    let got = client
        .get_device(GetDeviceRequest {
            mac: "aa-bb-cc-dd-ee-01".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, registered);

    // Bad registrations, also of the registered MAC: none of them changes it.
    let bad_registrations = [
        (register("AABBCCDDEE0", "short"), "mac"),
        (register("AABBCCDDEEZZ", "not hex"), "mac"),
        (register(MAC, ""), "name"),
        (register(MAC, &"n".repeat(129)), "name"),
        (
            RegisterDeviceRequest {
                wake_interval_seconds: WEEK_SECONDS + 1,
                ..register(MAC, "renamed")
            },
            "wake_interval_seconds",
        ),
        (
            RegisterDeviceRequest {
                next_wake_at: Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -1,
                }),
                ..register(MAC, "renamed")
            },
            "next_wake_at",
        ),
    ];
    for (request, field) in bad_registrations {
        assert_refused(
            client.register_device(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    let devices = client
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(devices.devices, vec![registered.clone()], "nothing changed");
    assert_eq!(devices.next_page_token, "");
    assert_refused(
        client
            .list_devices(ListDevicesRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_refused(
        client
            .get_device(GetDeviceRequest {
                mac: "001122334455".into(),
            })
            .await,
        Code::NotFound,
        "001122334455",
    );
    assert_refused(
        client
            .get_device(GetDeviceRequest { mac: "x".into() })
            .await,
        Code::InvalidArgument,
        "mac",
    );

    // Commands: each bad field refused, then one queued and listed as pending.
    let bad_commands = [
        (command("Bad Type"), Code::InvalidArgument, "type"),
        (command(""), Code::InvalidArgument, "type"),
        (
            QueueCommandRequest {
                priority: 11,
                ..command("set_interval")
            },
            Code::InvalidArgument,
            "priority",
        ),
        (
            QueueCommandRequest {
                payload: vec![0; 1025],
                ..command("set_interval")
            },
            Code::ResourceExhausted,
            "payload",
        ),
        (
            QueueCommandRequest {
                scheduled_for: at(2_000_000_000),
                expires_at: at(2_000_000_000),
                ..command("set_interval")
            },
            Code::InvalidArgument,
            "expires_at",
        ),
        (
            QueueCommandRequest {
                scheduled_for: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 1_000_000_000,
                }),
                ..command("set_interval")
            },
            Code::InvalidArgument,
            "scheduled_for",
        ),
        (
            QueueCommandRequest {
                mac: "001122334455".into(),
                ..command("set_interval")
            },
            Code::NotFound,
            "001122334455",
        ),
    ];
    for (request, code, field) in bad_commands {
        assert_refused(client.queue_command(request).await, code, field);
    }
    let no_commands = client
        .list_commands(ListCommandsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(no_commands.commands.is_empty(), "nothing was queued");

    let queued = client
        .queue_command(QueueCommandRequest {
            payload: vec![7; 1024],
            priority: 10,
            scheduled_for: at(2_000_000_000),
            expires_at: at(2_000_000_001),
            ..command("set_interval")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(queued.id > 0);
    assert_eq!(queued.mac, MAC);
    assert_eq!(queued.r#type, "set_interval");
    assert_eq!(queued.payload, vec![7; 1024], "1024 bytes is the limit");
    assert_eq!(queued.priority, 10);
    assert_eq!(queued.status(), CommandStatus::Pending);
    assert_eq!(queued.scheduled_for, at(2_000_000_000));
    assert_eq!(queued.expires_at, at(2_000_000_001));
    assert_eq!(queued.sent_at, None);
    let pending = client
        .list_commands(ListCommandsRequest {
            mac: MAC.into(),
            status: CommandStatus::Pending.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.commands, vec![queued.clone()]);
    let sent = client
        .list_commands(ListCommandsRequest {
            status: CommandStatus::Sent.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(sent.commands.is_empty());
    assert_refused(
        client
            .list_commands(ListCommandsRequest {
                status: 99,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "status",
    );

    // Images and alerts that do not exist, and filters that make no sense.
    assert_refused(
        client
            .get_image(GetImageRequest {
                mac: MAC.into(),
                image_name: "img_001.jpg".into(),
            })
            .await,
        Code::NotFound,
        "img_001.jpg",
    );
    assert_refused(
        client
            .get_image(GetImageRequest {
                mac: MAC.into(),
                image_name: "../etc".into(),
            })
            .await,
        Code::InvalidArgument,
        "image_name",
    );
    assert_refused(
        download(&mut client, "img_001.jpg").await,
        Code::NotFound,
        "img_001.jpg",
    );
    assert_refused(
        client
            .list_images(ListImagesRequest {
                status: 99,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "status",
    );
    assert_refused(
        client
            .list_images(ListImagesRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_refused(
        client
            .list_images(ListImagesRequest {
                mac: "nope".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "mac",
    );
    assert_refused(
        client
            .acknowledge_alert(AcknowledgeAlertRequest { alert_id: 0 })
            .await,
        Code::InvalidArgument,
        "alert_id",
    );
    assert_refused(
        client
            .acknowledge_alert(AcknowledgeAlertRequest { alert_id: 12_345 })
            .await,
        Code::NotFound,
        "12345",
    );
    assert_refused(
        client
            .retry_failed_images(RetryFailedImagesRequest {
                mac: "001122334455".into(),
            })
            .await,
        Code::NotFound,
        "001122334455",
    );
    assert_refused(
        client
            .watch_device_events(WatchDeviceEventsRequest {
                mac: "001122334455".into(),
            })
            .await,
        Code::NotFound,
        "001122334455",
    );
    assert_refused(
        client
            .watch_device_events(WatchDeviceEventsRequest { mac: "x".into() })
            .await,
        Code::InvalidArgument,
        "mac",
    );

    // With nothing received, the operator actions have nothing to do.
    let reset = client
        .retry_failed_images(RetryFailedImagesRequest { mac: MAC.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reset.images_reset, reset.retries_queued), (0, 0));
    let swept = client
        .run_timeout_sweep(RunTimeoutSweepRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(swept, RunTimeoutSweepResponse::default(), "all zeros");
    // The scheduler's task runs the same sweep (every 5 minutes unless configured otherwise;
    // this server has it switched off) and reports the same counts.
    let mut scheduler = SchedulerClient::new(setup.server.channel().await);
    let tasks = scheduler
        .list_tasks(ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let task = tasks
        .iter()
        .find(|task| task.name == "device_timeout_sweep")
        .expect("the sweep is a scheduled task");
    assert_eq!((task.enabled, task.interval_seconds), (false, 300));
    let run = scheduler
        .run_task(RunTaskRequest {
            name: "device_timeout_sweep".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(run.outcome(), TaskRunOutcome::Ok, "{}", run.error);
    let mut counts: Vec<(&str, u64)> = run.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("expired_commands_removed", 0),
            ("failed_to_queue", 0),
            ("images_timed_out", 0),
            ("retries_queued", 0),
        ]
    );
    let images = client
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(images.images.is_empty());
    let alerts = client
        .list_alerts(ListAlertsRequest {
            include_acknowledged: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(alerts.alerts.is_empty());
    let sessions = client
        .list_wake_sessions(ListWakeSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(sessions.sessions.is_empty());
    let history = client
        .list_history(ListHistoryRequest {
            mac: MAC.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(history.events.is_empty(), "{:?}", history.events);
    // The queued command is still there: nothing above touched it.
    let all = client
        .list_commands(ListCommandsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.commands, vec![queued]);
}

/// Reads a watch until an event of `until` arrives; returns what arrived, that one included.
async fn watch_until(events: &mut Streaming<HistoryEvent>, until: &str) -> Vec<HistoryEvent> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(WATCH_LIMIT, events.message())
            .await
            .unwrap_or_else(|_| panic!("no {until:?} event; saw {seen:?}"))
            .unwrap()
            .expect("the watch stays open");
        let done = event.event_type == until;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn types(events: &[HistoryEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

pub async fn an_image_from_another_replica_is_watched_timed_out_retried_and_downloaded(
    engine: Engine,
) {
    let setup = Setup::new(engine).await;
    let mut client = setup.client().await;
    let replica = setup.other_replica().await;
    client
        .register_device(register(MAC, "yard camera"))
        .await
        .unwrap();
    let mut device_events = client
        .watch_device_events(WatchDeviceEventsRequest { mac: MAC.into() })
        .await
        .unwrap()
        .into_inner();
    let mut every_event = client
        .watch_device_events(WatchDeviceEventsRequest::default())
        .await
        .unwrap()
        .into_inner();

    // Four chunks of 50 000 bytes: more than one 64 KiB download part.
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let parts: Vec<&[u8]> = content.chunks(50_000).collect();
    let image_name = "img_0001.jpg";

    // The device wakes, announces the image, gets two chunks through and sleeps, saying it
    // wakes again a minute ago: the image will not be finished before its wake window.
    replica
        .hello(
            MAC,
            HelloReport {
                firmware: "1.4.2".into(),
                battery_percent: 81,
                wake_interval_seconds: 3600,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    replica
        .begin_image(
            MAC,
            NewImage {
                image_name: image_name.into(),
                total_chunks: 4,
                size_bytes: content.len() as u64,
                sha256: hex::encode(Sha256::digest(&content)),
            },
        )
        .await
        .unwrap();
    for index in [0, 1] {
        replica
            .chunk(MAC, image_name, index, parts[index as usize].to_vec())
            .await
            .unwrap();
    }
    let past_wake = SystemClock.now().minus(Duration::from_secs(60));
    replica
        .sleep(
            MAC,
            SleepReport {
                next_wake_at: Some(past_wake),
                reason: "battery".into(),
                error_codes: vec![],
            },
        )
        .await
        .unwrap();
    let first = watch_until(&mut device_events, "sleep").await;
    assert_eq!(types(&first), ["hello", "image_begin", "sleep"]);
    assert!(first.iter().all(|event| event.mac == MAC));
    assert!(first.windows(2).all(|pair| pair[0].id < pair[1].id));

    let receiving = client
        .get_image(GetImageRequest {
            mac: MAC.into(),
            image_name: image_name.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(receiving.status(), ImageStatus::Receiving);
    assert_eq!((receiving.chunks_received, receiving.total_chunks), (2, 4));
    assert_eq!(receiving.missing_chunks, [2, 3]);
    let listed = client
        .list_images(ListImagesRequest {
            mac: MAC.into(),
            status: ImageStatus::Receiving.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.images.len(), 1);
    assert!(
        listed.images[0].missing_chunks.is_empty(),
        "lists leave it out"
    );
    let device = client
        .get_device(GetDeviceRequest { mac: MAC.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(device.status(), DeviceStatus::Asleep);
    assert_eq!((device.pending_images, device.failed_images), (1, 0));
    assert_eq!(
        (device.firmware.as_str(), device.battery_percent),
        ("1.4.2", 81)
    );
    assert_refused(
        download(&mut client, image_name).await,
        Code::FailedPrecondition,
        image_name,
    );

    // The sweep, on demand: the image failed, its retry queued for the next wake.
    let swept = client
        .run_timeout_sweep(RunTimeoutSweepRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        swept,
        RunTimeoutSweepResponse {
            images_timed_out: 1,
            retries_queued: 1,
            failed_to_queue: 0,
            expired_commands_removed: 0,
        }
    );
    let timed_out = watch_until(&mut device_events, "image_timeout").await;
    assert_eq!(timed_out.last().unwrap().image_name, image_name);
    let failed = client
        .get_image(GetImageRequest {
            mac: MAC.into(),
            image_name: image_name.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.status(), ImageStatus::Failed);
    assert_eq!((failed.retry_count, failed.max_retries), (1, 3));
    assert_eq!(failed.timeout_reason, "not completed before wake window");
    assert!(failed.failed_at.is_some());
    assert_eq!(failed.missing_chunks, [2, 3]);
    let retries = client
        .list_commands(ListCommandsRequest {
            mac: MAC.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retries.commands.len(), 1);
    let retry = &retries.commands[0];
    assert_eq!((retry.r#type.as_str(), retry.priority), ("retry_image", 8));
    assert_eq!(retry.status(), CommandStatus::Pending);
    let payload = RetryImagePayload::decode(retry.payload.as_slice()).unwrap();
    assert_eq!(payload.image_name, image_name);
    assert_eq!(payload.missing_chunks, [2, 3]);

    // An operator resets the retries; the device wakes, gets the retry and sends the rest.
    let reset = client
        .retry_failed_images(RetryFailedImagesRequest { mac: MAC.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reset.images_reset, reset.retries_queued), (1, 1));
    watch_until(&mut device_events, "manual_retry").await;
    let commands = replica.hello(MAC, HelloReport::default()).await.unwrap();
    assert_eq!(commands.len(), 1, "one retry: the newer replaces the older");
    assert_eq!(commands[0].command_type, "retry_image");
    let ids: Vec<i64> = commands.iter().map(|command| command.id).collect();
    replica.commands_published(MAC, &ids).await.unwrap();
    for index in [2, 3] {
        replica
            .chunk(MAC, image_name, index, parts[index as usize].to_vec())
            .await
            .unwrap();
    }
    let rest = watch_until(&mut device_events, "image_complete").await;
    assert!(types(&rest).contains(&"command_sent"), "{:?}", types(&rest));

    let complete = client
        .get_image(GetImageRequest {
            mac: MAC.into(),
            image_name: image_name.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(complete.status(), ImageStatus::Complete);
    assert!(complete.missing_chunks.is_empty());
    assert!(complete.completed_at.is_some());
    let downloaded = download(&mut client, image_name).await.unwrap();
    assert!(downloaded.len() > 1, "sent in parts");
    let mut bytes = Vec::new();
    for part in &downloaded {
        assert_eq!(part.offset, bytes.len() as u64, "parts in order");
        assert!(part.data.len() <= 64 * 1024);
        bytes.extend_from_slice(&part.data);
    }
    assert!(bytes == content, "the image's bytes, unchanged");
    let device = client
        .get_device(GetDeviceRequest { mac: MAC.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((device.pending_images, device.failed_images), (0, 0));

    // The all-devices watch saw the same events; the history lists them newest first.
    let every = watch_until(&mut every_event, "image_complete").await;
    let device_ids: Vec<i64> = first
        .iter()
        .chain(&timed_out)
        .map(|event| event.id)
        .collect();
    assert!(
        device_ids
            .iter()
            .all(|id| every.iter().any(|event| event.id == *id)),
        "{every:?}"
    );
    let history = client
        .list_history(ListHistoryRequest {
            mac: MAC.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.events.len(), every.len());
    assert_eq!(history.events.first(), every.last());
    let sessions = client
        .list_wake_sessions(ListWakeSessionsRequest {
            mac: MAC.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sessions.sessions.len(), 2);

    // Shutting down ends the watch with UNAVAILABLE rather than cutting it off.
    setup.server.signal("TERM");
    let ended = tokio::time::timeout(WATCH_LIMIT, device_events.message())
        .await
        .expect("the watch ends")
        .expect_err("with a status");
    assert_eq!(ended.code(), Code::Unavailable, "{}", ended.message());
    assert!(ended.message().contains("shutting down"));
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = MetadataValue::try_from(format!("Bearer {key}")).unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// Readers read and watch; services also register, queue and acknowledge; the operator's
/// recovery actions (the sweep, resetting failed images) need an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_gate_device_calls() {
    let db = TestDb::sqlite();
    let admin = create_key(&db.url, "admin");
    let service = create_key(&db.url, "service");
    let reader = create_key(&db.url, "reader");
    let server = ServerProcess::start(&db.url, &[]);
    let mut client = DeviceImagesClient::new(server.channel().await);

    let refused = client
        .register_device(with_key(register(MAC, "cam"), &reader))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    client
        .register_device(with_key(register(MAC, "cam"), &service))
        .await
        .unwrap();
    client
        .queue_command(with_key(command("set_interval"), &service))
        .await
        .unwrap();
    let devices = client
        .list_devices(with_key(ListDevicesRequest::default(), &reader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(devices.devices.len(), 1);
    client
        .watch_device_events(with_key(
            WatchDeviceEventsRequest { mac: MAC.into() },
            &reader,
        ))
        .await
        .unwrap();
    for key in [&reader, &service] {
        let refused = client
            .run_timeout_sweep(with_key(RunTimeoutSweepRequest {}, key))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        let refused = client
            .retry_failed_images(with_key(RetryFailedImagesRequest { mac: MAC.into() }, key))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
    let refused = client
        .acknowledge_alert(with_key(AcknowledgeAlertRequest { alert_id: 1 }, &reader))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    client
        .run_timeout_sweep(with_key(RunTimeoutSweepRequest {}, &admin))
        .await
        .unwrap();
    client
        .retry_failed_images(with_key(
            RetryFailedImagesRequest { mac: MAC.into() },
            &admin,
        ))
        .await
        .unwrap();
    let unauthenticated = client
        .get_device(GetDeviceRequest { mac: MAC.into() })
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
}
