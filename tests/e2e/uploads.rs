//! UploadRetry against the real binary: resumable uploads over dropped connections, bad parts
//! and checksums, deliveries to a local HTTP server that fails, and SIGKILL mid-upload and
//! mid-delivery.

use std::path::Path;
use std::time::Duration;

use retryd_client::tonic::transport::Channel;
use retryd_client::tonic::{Code, Status};
use retryd_client::v1::scheduler_client::SchedulerClient;
use retryd_client::v1::upload_retry_client::UploadRetryClient;
use retryd_client::v1::*;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::http_sink::{Behaviour, HttpSink};
use crate::support::server::{write_config, ServerProcess};
use crate::support::{Engine, TestDb};

const MIB: usize = 1024 * 1024;

fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn sha(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// A server whose uploads are checkpointed every MiB, deliveries back off for a millisecond and
/// give up after 3 attempts, and whose sweep runs only when a test asks (RunTask).
struct Setup {
    db: TestDb,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Setup {
    async fn new(engine: Engine) -> Self {
        let db = TestDb::new(engine).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            &format!(
                "[uploads]\nblob_store = \"{}\"\ncheckpoint_bytes = {MIB}\n\
                 max_delivery_attempts = 3\ndelivery_backoff_initial_ms = 1\n\
                 delivery_backoff_max_ms = 1\ndelivery_lease_ms = 1500\n\
                 [scheduler.upload_sweep]\nenabled = false\n",
                dir.path().join("blobs").display()
            ),
        );
        Self { db, dir, config }
    }

    fn start(&self) -> ServerProcess {
        ServerProcess::start(&self.db.url, &["--config", self.config.to_str().unwrap()])
    }

    fn blobs(&self) -> &Path {
        self.dir.path()
    }
}

async fn uploads(server: &ServerProcess) -> UploadRetryClient<Channel> {
    UploadRetryClient::new(server.channel().await)
}

async fn declare(
    client: &mut UploadRetryClient<Channel>,
    upload_id: &str,
    content: &[u8],
    destination: &str,
) -> Upload {
    client
        .create_upload(CreateUploadRequest {
            upload_id: upload_id.into(),
            owner: "device-7".into(),
            file_name: format!("{upload_id}.bin"),
            content_type: "image/jpeg".into(),
            size_bytes: content.len() as u64,
            sha256: sha(content),
            destination: destination.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn get(client: &mut UploadRetryClient<Channel>, upload_id: &str) -> Upload {
    client
        .get_upload(GetUploadRequest {
            upload_id: upload_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn part(upload_id: &str, offset: usize, data: &[u8]) -> UploadContentRequest {
    UploadContentRequest {
        upload_id: upload_id.into(),
        offset: offset as u64,
        data: data.to_vec(),
    }
}

/// One UploadContent call with the given parts.
async fn send(
    client: &mut UploadRetryClient<Channel>,
    parts: Vec<UploadContentRequest>,
) -> Result<Upload, Status> {
    client
        .upload_content(tokio_stream::iter(parts))
        .await
        .map(|response| response.into_inner())
}

/// Resumes an upload the way a client does: asks where to continue, sends the rest in 1 MiB
/// parts on a connection of its own, and asks again when the server says the upload moved on
/// meanwhile (a cut call's last bytes are recorded as the server notices the cut). With
/// `cut_after`, the connection is cut once the server has recorded that many bytes; returns
/// where the upload stands after the call.
async fn resume(
    server: &ServerProcess,
    upload_id: &str,
    content: &[u8],
    cut_after: Option<usize>,
) -> Upload {
    let mut observer = uploads(server).await;
    for _ in 0..5 {
        let from = get(&mut observer, upload_id).await.received_bytes as usize;
        let mut own_connection = UploadRetryClient::new(server.channel().await);
        let (parts, receiver) = mpsc::channel(4);
        let mut call = tokio::spawn(async move {
            own_connection
                .upload_content(ReceiverStream::new(receiver))
                .await
        });
        let id = upload_id.to_owned();
        let data = content.to_vec();
        let feeder = tokio::spawn(async move {
            for offset in (from..data.len()).step_by(MIB) {
                let end = (offset + MIB).min(data.len());
                if parts
                    .send(part(&id, offset, &data[offset..end]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if cut_after.is_some() {
                // Never end the call: the test cuts it.
                std::future::pending::<()>().await;
            }
        });
        let finished = match cut_after {
            None => Some((&mut call).await.unwrap()),
            Some(cut_after) => loop {
                if call.is_finished() {
                    break Some((&mut call).await.unwrap());
                }
                if get(&mut observer, upload_id).await.received_bytes >= cut_after as u64 {
                    // The client goes away mid-stream: its call and connection are dropped.
                    call.abort();
                    let _ = call.await;
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            },
        };
        feeder.abort();
        match finished {
            Some(Err(status)) if status.code() == Code::FailedPrecondition => continue,
            Some(outcome) => return outcome.unwrap().into_inner(),
            None => return get(&mut observer, upload_id).await,
        }
    }
    panic!("upload {upload_id} refused every resume");
}

async fn download(client: &mut UploadRetryClient<Channel>, upload_id: &str) -> Vec<u8> {
    let mut stream = client
        .download_upload(DownloadUploadRequest {
            upload_id: upload_id.into(),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut content = Vec::new();
    while let Some(part) = stream.message().await.unwrap() {
        assert_eq!(part.offset as usize, content.len());
        content.extend_from_slice(&part.data);
    }
    content
}

async fn sweep(server: &ServerProcess) -> TaskRun {
    SchedulerClient::new(server.channel().await)
        .run_task(RunTaskRequest {
            name: "upload_sweep".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_for(
    client: &mut UploadRetryClient<Channel>,
    upload_id: &str,
    done: impl Fn(&Upload) -> bool,
) -> Upload {
    for _ in 0..3000 {
        let upload = get(client, upload_id).await;
        if done(&upload) {
            return upload;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("upload {upload_id} never reached the expected state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_50_mib_upload_resumes_after_two_dropped_connections() {
    let setup = Setup::new(Engine::Postgres).await;
    let server = setup.start();
    let mut client = uploads(&server).await;
    let file = content(50 * MIB, 1);
    declare(&mut client, "big", &file, "").await;

    let first = resume(&server, "big", &file, Some(12 * MIB)).await;
    assert!(first.received_bytes >= 12 * MIB as u64, "progress is kept");
    assert_eq!(first.status(), UploadStatus::Receiving);
    let second = resume(&server, "big", &file, Some(30 * MIB)).await;
    assert!(second.received_bytes >= 30 * MIB as u64);

    let stored = resume(&server, "big", &file, None).await;
    assert_eq!(stored.status(), UploadStatus::Stored);
    assert_eq!(stored.received_bytes, file.len() as u64);
    assert_eq!(stored.sha256, sha(&file));
    assert_eq!(sha(&download(&mut client, "big").await), sha(&file));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_offsets_and_wrong_checksums_change_nothing_stored() {
    let setup = Setup::new(Engine::Sqlite).await;
    let server = setup.start();
    let mut client = uploads(&server).await;
    let file = content(3 * MIB, 2);
    declare(&mut client, "a", &file, "").await;
    let partial = send(&mut client, vec![part("a", 0, &file[..MIB])])
        .await
        .unwrap();
    assert_eq!(partial.received_bytes, MIB as u64);

    for offset in [0, 2 * MIB] {
        let refused = send(
            &mut client,
            vec![part("a", offset, &file[offset..offset + 10])],
        )
        .await
        .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::FailedPrecondition,
            "{}",
            refused.message()
        );
        assert!(refused.message().contains("continues at offset 1048576"));
    }
    let past_end = send(&mut client, vec![part("a", MIB, &vec![0; 2 * MIB + 1])])
        .await
        .unwrap_err();
    assert_eq!(past_end.code(), Code::OutOfRange);
    assert_eq!(get(&mut client, "a").await, partial, "nothing changed");

    // A checksum mismatch fails that upload only.
    let other = content(1000, 3);
    declare(&mut client, "b", &other, "").await;
    let mut corrupted = other.clone();
    corrupted[500] ^= 1;
    let mismatch = send(&mut client, vec![part("b", 0, &corrupted)])
        .await
        .unwrap_err();
    assert_eq!(mismatch.code(), Code::DataLoss);
    let failed = get(&mut client, "b").await;
    assert_eq!(failed.status(), UploadStatus::Failed);
    assert_eq!(failed.received_bytes, 0);
    assert!(failed.failure_reason.contains("sha256 mismatch"));

    let stored = send(&mut client, vec![part("a", MIB, &file[MIB..])])
        .await
        .unwrap();
    assert_eq!(stored.status(), UploadStatus::Stored);
    // Stored content takes nothing more, and stays what it was.
    let refused = send(&mut client, vec![part("a", 0, &corrupted)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(sha(&download(&mut client, "a").await), sha(&file));
    let again = send(&mut client, vec![part("b", 0, &other)]).await.unwrap();
    assert_eq!(again.status(), UploadStatus::Stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_destination_gets_the_file_on_a_later_sweep() {
    let setup = Setup::new(Engine::Postgres).await;
    let server = setup.start();
    let sink = HttpSink::start(Behaviour::FailFirst {
        count: 2,
        status: 503,
    })
    .await;
    let mut client = uploads(&server).await;
    let file = content(2 * MIB + 17, 4);
    let destination = sink.url("/bucket/photo.jpg?X-Amz-Signature=secret");
    declare(&mut client, "p", &file, &destination).await;
    send(&mut client, vec![part("p", 0, &file)]).await.unwrap();

    // The first delivery starts by itself as soon as the upload is stored, and fails.
    let after_first = wait_for(&mut client, "p", |u| {
        u.delivery_attempts == 1 && u.status() == UploadStatus::Stored
    })
    .await;
    assert!(after_first.failure_reason.contains("503"));
    assert!(
        !after_first.failure_reason.contains("secret"),
        "credentials stay hidden"
    );

    let second = sweep(&server).await;
    assert_eq!(
        get(&mut client, "p").await.delivery_attempts,
        2,
        "{second:?}"
    );
    sweep(&server).await;
    let delivered = get(&mut client, "p").await;
    assert_eq!(delivered.status(), UploadStatus::Delivered);
    let (body, content_type) = sink
        .accepted("/bucket/photo.jpg?X-Amz-Signature=secret")
        .unwrap();
    assert_eq!(sha(&body), sha(&file));
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(sink.requests(), 3);

    let runs = client
        .list_retry_runs(ListRetryRunsRequest {
            source: "scheduled".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    let counts: Vec<(u32, u32, u32)> = runs
        .iter()
        .map(|run| (run.attempted, run.succeeded, run.failed))
        .collect();
    assert_eq!(counts, [(1, 1, 0), (1, 0, 1)], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_destination_that_always_fails_ends_failed_after_the_attempts() {
    let setup = Setup::new(Engine::Sqlite).await;
    let server = setup.start();
    let sink = HttpSink::start(Behaviour::AlwaysFail { status: 500 }).await;
    let mut client = uploads(&server).await;
    let file = content(4096, 5);
    declare(&mut client, "x", &file, &sink.url("/x")).await;
    send(&mut client, vec![part("x", 0, &file)]).await.unwrap();
    wait_for(&mut client, "x", |u| {
        u.delivery_attempts == 1 && u.status() == UploadStatus::Stored
    })
    .await;
    sweep(&server).await;
    sweep(&server).await;
    let failed = get(&mut client, "x").await;
    assert_eq!(failed.status(), UploadStatus::Failed);
    assert_eq!(failed.delivery_attempts, 3);
    assert!(
        failed
            .failure_reason
            .starts_with("delivery failed after 3 attempts"),
        "{}",
        failed.failure_reason
    );
    sweep(&server).await;
    assert_eq!(sink.requests(), 3, "no attempt after the last");
    // Kept for a person: the content is still there.
    assert_eq!(sha(&download(&mut client, "x").await), sha(&file));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_an_upload_loses_nothing() {
    let setup = Setup::new(Engine::Sqlite).await;
    let mut server = setup.start();
    let mut client = uploads(&server).await;
    let file = content(20 * MIB, 6);
    declare(&mut client, "k", &file, "").await;

    let (parts, receiver) = mpsc::channel(4);
    let mut sender_client = uploads(&server).await;
    let call = tokio::spawn(async move {
        sender_client
            .upload_content(ReceiverStream::new(receiver))
            .await
    });
    let data = file.clone();
    tokio::spawn(async move {
        for offset in (0..data.len()).step_by(MIB) {
            let end = (offset + MIB).min(data.len());
            if parts
                .send(part("k", offset, &data[offset..end]))
                .await
                .is_err()
            {
                return;
            }
            if offset >= 12 * MIB {
                std::future::pending::<()>().await;
            }
        }
    });
    wait_for(&mut client, "k", |u| u.received_bytes >= 8 * MIB as u64).await;
    server.signal("KILL");
    server.wait_for_exit(Duration::from_secs(10));
    assert!(call.await.unwrap().is_err());

    let server = setup.start();
    let mut client = uploads(&server).await;
    let resumed = get(&mut client, "k").await;
    assert!(resumed.received_bytes >= 8 * MIB as u64);
    assert_eq!(resumed.status(), UploadStatus::Receiving);
    let from = resumed.received_bytes as usize;
    let rest: Vec<UploadContentRequest> = (from..file.len())
        .step_by(MIB)
        .map(|offset| part("k", offset, &file[offset..(offset + MIB).min(file.len())]))
        .collect();
    let stored = send(&mut client, rest).await.unwrap();
    assert_eq!(stored.status(), UploadStatus::Stored);
    assert_eq!(sha(&download(&mut client, "k").await), sha(&file));
    assert!(
        setup
            .blobs()
            .join("blobs/sealed")
            .read_dir()
            .unwrap()
            .count()
            == 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_delivery_loses_nothing() {
    let setup = Setup::new(Engine::Postgres).await;
    let mut server = setup.start();
    let sink = HttpSink::start(Behaviour::StallFirst {
        after_bytes: 1024 * 1024,
    })
    .await;
    let mut client = uploads(&server).await;
    let file = content(6 * MIB, 7);
    declare(&mut client, "d", &file, &sink.url("/d")).await;
    send(
        &mut client,
        vec![
            part("d", 0, &file[..3 * MIB]),
            part("d", 3 * MIB, &file[3 * MIB..]),
        ],
    )
    .await
    .unwrap();
    // The first delivery is under way and stuck mid-body when the server dies.
    sink.stalled().await;
    assert_eq!(
        get(&mut client, "d").await.status(),
        UploadStatus::Delivering
    );
    server.signal("KILL");
    server.wait_for_exit(Duration::from_secs(10));

    let server = setup.start();
    let mut client = uploads(&server).await;
    // The dead replica's lease runs out (1.5 s here); then a sweep takes the delivery over.
    let delivered = loop {
        sweep(&server).await;
        let upload = get(&mut client, "d").await;
        if upload.status() == UploadStatus::Delivered {
            break upload;
        }
        assert_eq!(upload.status(), UploadStatus::Delivering);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(delivered.delivery_attempts, 2);
    let (body, _) = sink.accepted("/d").unwrap();
    assert_eq!(body.len(), file.len());
    assert_eq!(sha(&body), sha(&file));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_health_matches_the_runs_of_every_source() {
    let setup = Setup::new(Engine::Sqlite).await;
    let server = setup.start();
    let good = HttpSink::start(Behaviour::FailFirst {
        count: 1,
        status: 502,
    })
    .await;
    let bad = HttpSink::start(Behaviour::AlwaysFail { status: 500 }).await;
    let mut client = uploads(&server).await;
    let attempts_are = |n: u32| {
        move |u: &Upload| u.delivery_attempts == n && u.status() != UploadStatus::Delivering
    };

    for (id, sink) in [("ok", &good), ("bad", &bad)] {
        let file = content(1000, 8);
        declare(&mut client, id, &file, &sink.url(&format!("/{id}"))).await;
        send(&mut client, vec![part(id, 0, &file)]).await.unwrap();
        // The first delivery happens at once and fails; it is not a retry run.
        wait_for(&mut client, id, attempts_are(1)).await;
    }
    let flushed = client
        .flush_pending(FlushPendingRequest {
            upload_ids: vec!["bad".into(), "missing".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<RetryOutcome> = flushed.uploads.iter().map(|u| u.outcome()).collect();
    assert_eq!(
        outcomes,
        [RetryOutcome::RetryScheduled, RetryOutcome::NotFound]
    );
    let manual = client
        .trigger_retry(TriggerRetryRequest {
            upload_ids: vec!["bad".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(manual.uploads[0].outcome(), RetryOutcome::Failed);
    sweep(&server).await;
    sweep(&server).await;
    assert_eq!(
        get(&mut client, "ok").await.status(),
        UploadStatus::Delivered
    );

    let health = client
        .get_retry_health(GetRetryHealthRequest { window_seconds: 0 })
        .await
        .unwrap()
        .into_inner();
    let row = |source: &str| {
        let s = health.sources.iter().find(|s| s.source == source).unwrap();
        (
            s.runs,
            s.attempted,
            s.succeeded,
            s.failed,
            s.success_rate_percent,
        )
    };
    assert_eq!(row("client-flush"), (1, 1, 0, 1, Some(0.0)));
    assert_eq!(row("manual"), (1, 1, 0, 1, Some(0.0)));
    assert_eq!(row("scheduled"), (2, 1, 1, 0, Some(100.0)));
    let total = health.total.unwrap();
    assert_eq!((total.runs, total.attempted), (4, 3));
    assert_eq!(total.success_rate_percent, Some(33.33));
    let window = health.window_end.unwrap().seconds - health.window_start.unwrap().seconds;
    assert_eq!(window, 7 * 24 * 3600);

    // The same numbers, summed by hand from the retry log.
    let runs = client
        .list_retry_runs(ListRetryRunsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 4);
    assert_eq!(runs.iter().map(|r| r.attempted).sum::<u32>(), 3);
    assert_eq!(runs.iter().map(|r| r.succeeded).sum::<u32>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_declarations_are_refused_by_field_and_store_nothing() {
    let setup = Setup::new(Engine::Sqlite).await;
    let server = setup.start();
    let mut client = uploads(&server).await;
    let good = CreateUploadRequest {
        upload_id: "u".into(),
        owner: "o".into(),
        file_name: "f.txt".into(),
        size_bytes: 3,
        sha256: sha(b"abc"),
        ..Default::default()
    };
    let cases: Vec<(CreateUploadRequest, Code, &str)> = vec![
        (
            CreateUploadRequest {
                upload_id: String::new(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "upload_id",
        ),
        (
            CreateUploadRequest {
                owner: String::new(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "owner",
        ),
        (
            CreateUploadRequest {
                file_name: "../x".into(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "file_name",
        ),
        (
            CreateUploadRequest {
                sha256: "xyz".into(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "sha256",
        ),
        (
            CreateUploadRequest {
                destination: "ftp://h/x".into(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "destination",
        ),
        (
            CreateUploadRequest {
                destination: "file:///tmp".into(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "destination",
        ),
        (
            CreateUploadRequest {
                size_bytes: u64::MAX,
                ..good.clone()
            },
            Code::ResourceExhausted,
            "size_bytes",
        ),
    ];
    for (request, code, field) in cases {
        let refused = client.create_upload(request).await.unwrap_err();
        assert_eq!(refused.code(), code, "{field}: {}", refused.message());
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    let listed = client
        .list_uploads(ListUploadsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.uploads.is_empty());
    client.create_upload(good.clone()).await.unwrap();
    let conflict = client
        .create_upload(CreateUploadRequest {
            size_bytes: 4,
            ..good
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    let unknown = client
        .get_upload(GetUploadRequest {
            upload_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let empty_call = send(&mut client, vec![]).await.unwrap_err();
    assert_eq!(empty_call.code(), Code::InvalidArgument);
}
