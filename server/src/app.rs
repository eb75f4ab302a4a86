//! Wiring: the one place that sees every part. Opens the store, builds the services and the gRPC
//! server, and runs it until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_web::GrpcWebLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::blobs;
use crate::config::Config;
use crate::core::auth::{NewApiKey, Role};
use crate::core::{Clock, SystemClock};
use crate::delivery::Deliveries;
use crate::events::Events;
use crate::grpc::chunk_queue::ChunkQueueApi;
use crate::grpc::device_images::DeviceImagesApi;
use crate::grpc::generated::chunk_queue_server::ChunkQueueServer;
use crate::grpc::generated::device_images_server::DeviceImagesServer;
use crate::grpc::generated::health_server::HealthServer;
use crate::grpc::generated::scheduler_server::SchedulerServer;
use crate::grpc::generated::sync_retry_server::SyncRetryServer;
use crate::grpc::generated::upload_retry_server::UploadRetryServer;
use crate::grpc::generated::DESCRIPTOR_SET;
use crate::grpc::health::{spawn_standard_health_updates, HealthApi};
use crate::grpc::scheduler::SchedulerApi;
use crate::grpc::sync_retry::SyncRetryApi;
use crate::grpc::upload_retry::UploadRetryApi;
use crate::mqtt;
use crate::scheduler::tasks::{DeviceTimeoutSweep, ProcessSyncRetries, PruneSyncRetries};
use crate::scheduler::tasks::{PruneFinishedJobs, PruneUploads, RecoverStuckChunks, UploadSweep};
use crate::scheduler::{ScheduledTask, Scheduler};
use crate::service::auth::Authenticator;
use crate::service::chunk_queue::ChunkQueueService;
use crate::service::device_inbox::DeviceInbox;
use crate::service::devices::{DeviceService, DeviceSettings};
use crate::service::health::HealthMonitor;
use crate::service::sync_retry::SyncRetryService;
use crate::service::uploads::UploadService;
use crate::store::{self, ChangeSink, Store};

pub type AppResult<T> = Result<T, String>;

async fn open_store(config: &Config) -> AppResult<Arc<dyn Store>> {
    store::open(&config.database_url, &config.pool_settings())
        .await
        .map_err(|err| format!("cannot open the database: {err}"))
}

/// `retryd migrate`: opening the store applies pending migrations.
pub async fn migrate(config: Config) -> AppResult<()> {
    let store = open_store(&config).await?;
    eprintln!("database is up to date ({})", store.engine());
    Ok(())
}

/// `retryd keys create`: prints the new key once; only its hash is stored.
pub async fn create_key(config: Config, role: Role) -> AppResult<()> {
    let store = open_store(&config).await?;
    let key = NewApiKey::generate(role);
    store
        .insert_api_key(&key.record, SystemClock.now())
        .await
        .map_err(|err| format!("cannot store the key: {err}"))?;
    println!("{}", key.plaintext);
    eprintln!(
        "created a {} key (id {}); it is shown only now, store it safely",
        role.as_str(),
        key.record.key_id
    );
    Ok(())
}

/// `retryd serve`.
pub async fn serve(config: Config) -> AppResult<()> {
    let store = open_store(&config).await?;
    guard_unauthenticated_exposure(&config, store.as_ref()).await?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let events = Arc::new(Events::default());
    let (shutdown_sender, shutdown) = watch::channel(false);
    let auth = Arc::new(Authenticator::new(Arc::clone(&store)));
    let chunk_queue = Arc::new(ChunkQueueService::new(
        Arc::clone(&store),
        Arc::clone(&clock),
        Arc::clone(&events),
        config.limits.clone(),
        Duration::from_millis(config.claim_fallback_poll_ms.max(10)),
    ));
    let uploads = Arc::new(build_upload_service(&config, &store, &clock)?);
    let devices = Arc::new(build_device_service(&config, &store, &clock)?);
    let sync_retry = Arc::new(
        SyncRetryService::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            config.limits.clone(),
            &config.sync,
        )
        .map_err(|err| format!("invalid [sync] settings: {err}"))?,
    );
    // Changes other replicas make reach this one's waiting claimers and watchers.
    store.listen_for_changes(Arc::clone(&events) as Arc<dyn ChangeSink>);
    let mut scheduler = build_scheduler(&config, &store, &clock, &chunk_queue, &uploads);
    scheduler.add_tasks(sync_retry_tasks(&config, &sync_retry));
    scheduler.add_tasks(vec![device_timeout_sweep(&config, &devices)]);
    let scheduler = Arc::new(scheduler);
    scheduler.spawn(Duration::from_millis(config.scheduler.tick_ms.max(10)));
    // Devices reach DeviceImages through the broker; without one it is served over gRPC only.
    let mqtt = config.mqtt.settings()?.map(|settings| {
        mqtt::spawn(
            settings,
            Arc::clone(&devices) as Arc<dyn DeviceInbox>,
            Arc::clone(&clock),
            shutdown.clone(),
        )
    });
    let mut monitor = HealthMonitor::new(
        Arc::clone(&store),
        Arc::clone(&clock),
        Arc::clone(&scheduler),
    );
    if let Some(adapter) = &mqtt {
        monitor = monitor.with_broker(adapter.broker_state());
    }
    let monitor = Arc::new(monitor);
    monitor.check_database().await;
    monitor.spawn_checks(Duration::from_millis(
        config.health_check_interval_ms.max(10),
    ));

    let (reporter, standard_health) = tonic_health::server::health_reporter();
    spawn_standard_health_updates(&monitor, reporter, monitor.broker());
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| format!("reflection: {err}"))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|err| format!("reflection: {err}"))?;

    let max_message = config.limits.max_message_bytes;
    let chunk_queue_api = ChunkQueueApi::new(
        Arc::clone(&chunk_queue),
        Arc::clone(&auth),
        shutdown.clone(),
        Duration::from_millis(config.watch_fallback_poll_ms.max(10)),
    );
    let health_api = HealthApi::new(Arc::clone(&monitor), Arc::clone(&auth), shutdown.clone());
    let scheduler_api = SchedulerApi::new(scheduler, Arc::clone(&auth), config.limits.clone());
    let upload_retry_api = UploadRetryApi::new(uploads, Arc::clone(&auth), shutdown.clone());
    let sync_retry_api = SyncRetryApi::new(sync_retry, Arc::clone(&auth));
    let device_images_api = DeviceImagesApi::new(
        Arc::clone(&devices),
        Arc::clone(&auth),
        shutdown.clone(),
        Duration::from_millis(config.watch_fallback_poll_ms.max(10)),
    );

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    let local = listener.local_addr().map_err(|err| err.to_string())?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("retryd listening on {local}");
    tracing::info!(address = %local, engine = store.engine(), "serving gRPC and gRPC-Web");

    let server = Server::builder()
        .accept_http1(true)
        // Every call gets a request id (the client's x-request-id, or a new one), carried by
        // every log line of the call and returned in the response metadata.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(call_tracing())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(grpc_web_cors())
        .layer(GrpcWebLayer::new())
        .add_service(standard_health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ChunkQueueServer::new(chunk_queue_api).max_decoding_message_size(max_message))
        .add_service(HealthServer::new(health_api).max_decoding_message_size(max_message))
        .add_service(SchedulerServer::new(scheduler_api).max_decoding_message_size(max_message))
        .add_service(
            UploadRetryServer::new(upload_retry_api).max_decoding_message_size(max_message),
        )
        .add_service(SyncRetryServer::new(sync_retry_api).max_decoding_message_size(max_message))
        .add_service(
            DeviceImagesServer::new(device_images_api).max_decoding_message_size(max_message),
        )
        .serve_with_incoming_shutdown(no_delay(TcpListenerStream::new(listener)), async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new calls; streams are told to end");
            let _ = shutdown_sender.send(true);
        });
    tokio::pin!(server);
    let mut stopping = shutdown.clone();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    tokio::select! {
        outcome = &mut server => outcome.map_err(|err| format!("server failed: {err}"))?,
        _ = async {
            let _ = stopping.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(?grace, "calls still running after the grace period are cut off"),
    }
    // The shutdown signal has gone out by now: the adapter finishes the messages in hand.
    if let Some(adapter) = mqtt {
        adapter.stopped().await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn build_upload_service(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> AppResult<UploadService> {
    let settings = config.uploads.settings()?;
    let blobs = blobs::open(&config.uploads.blob_store)?;
    let deliveries = Deliveries::new(config.uploads.delivery_timeout())?;
    Ok(UploadService::new(
        Arc::clone(store),
        Arc::new(blobs),
        Arc::new(deliveries),
        Arc::clone(clock),
        config.limits.clone(),
        settings,
    ))
}

/// DeviceImages keeps complete images in the same blob store as uploads: one place to back up.
fn build_device_service(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> AppResult<DeviceService> {
    let blobs = blobs::open(&config.uploads.blob_store)?;
    Ok(DeviceService::new(
        Arc::clone(store),
        Arc::clone(clock),
        Arc::new(blobs),
        config.limits.clone(),
        DeviceSettings {
            auto_register: config.mqtt.auto_register,
            max_chunk_bytes: config.mqtt.max_chunk_bytes,
            ..DeviceSettings::default()
        },
    ))
}

fn device_timeout_sweep(config: &Config, devices: &Arc<DeviceService>) -> ScheduledTask {
    let settings = &config.scheduler.device_timeout_sweep;
    ScheduledTask {
        task: Arc::new(DeviceTimeoutSweep {
            devices: Arc::clone(devices),
        }),
        interval: settings.interval(),
        enabled: settings.enabled,
    }
}

fn build_scheduler(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    chunk_queue: &Arc<ChunkQueueService>,
    uploads: &Arc<UploadService>,
) -> Scheduler {
    let settings = &config.scheduler;
    let tasks = vec![
        ScheduledTask {
            task: Arc::new(RecoverStuckChunks {
                chunk_queue: Arc::clone(chunk_queue),
            }),
            interval: settings.recover_stuck_chunks.interval(),
            enabled: settings.recover_stuck_chunks.enabled,
        },
        ScheduledTask {
            task: Arc::new(PruneFinishedJobs {
                store: Arc::clone(store),
                clock: Arc::clone(clock),
                retention: Duration::from_secs(settings.finished_job_retention_seconds),
            }),
            interval: settings.prune_finished_jobs.interval(),
            enabled: settings.prune_finished_jobs.enabled,
        },
        ScheduledTask {
            task: Arc::new(UploadSweep {
                uploads: Arc::clone(uploads),
            }),
            interval: settings.upload_sweep.interval(),
            enabled: settings.upload_sweep.enabled,
        },
        ScheduledTask {
            task: Arc::new(PruneUploads {
                uploads: Arc::clone(uploads),
                retry_log_retention: Duration::from_secs(
                    config.uploads.retry_log_retention_seconds,
                ),
                delivered_content_retention: Duration::from_secs(
                    config.uploads.delivered_content_retention_seconds,
                ),
            }),
            interval: settings.prune_uploads.interval(),
            enabled: settings.prune_uploads.enabled,
        },
    ];
    let replica_id = if settings.replica_id.is_empty() {
        default_replica_id()
    } else {
        settings.replica_id.clone()
    };
    Scheduler::new(
        tasks,
        Arc::clone(store),
        Arc::clone(clock),
        store.leader_elector(),
        replica_id,
    )
}

/// SyncRetry's scheduled tasks: the retry processor and the pruning of finished retries.
fn sync_retry_tasks(config: &Config, sync_retry: &Arc<SyncRetryService>) -> Vec<ScheduledTask> {
    let settings = &config.scheduler;
    vec![
        ScheduledTask {
            task: Arc::new(ProcessSyncRetries {
                sync: Arc::clone(sync_retry),
                batch: settings.sync_retry_batch.max(1),
            }),
            interval: settings.process_sync_retries.interval(),
            enabled: settings.process_sync_retries.enabled,
        },
        ScheduledTask {
            task: Arc::new(PruneSyncRetries {
                sync: Arc::clone(sync_retry),
                retention: Duration::from_secs(settings.sync_retry_retention_seconds),
            }),
            interval: settings.prune_sync_retries.interval(),
            enabled: settings.prune_sync_retries.enabled,
        },
    ]
}

/// Host, process and a random suffix: unique among replicas, readable in run records.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "retryd".to_owned());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{host}-{}-{suffix}", std::process::id())
}

/// Accepted connections send each frame at once: with Nagle's algorithm a response's trailing
/// frame waited for the client's delayed ACK, adding up to 40 ms to some calls.
fn no_delay(
    incoming: TcpListenerStream,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures_util::StreamExt;
    incoming.map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Without keys anyone who can reach the port may do anything: allow that on loopback only,
/// unless the operator says otherwise.
async fn guard_unauthenticated_exposure(config: &Config, store: &dyn Store) -> AppResult<()> {
    let keys = store
        .count_api_keys()
        .await
        .map_err(|err| format!("cannot read API keys: {err}"))?;
    if keys > 0 {
        return Ok(());
    }
    if is_loopback(config.listen) {
        tracing::warn!("no API key exists: every call is allowed; create one with `retryd keys create --role admin`");
        return Ok(());
    }
    if config.insecure_no_auth {
        tracing::warn!(address = %config.listen, "no API key exists and --insecure-no-auth is set: anyone who reaches this address may do anything");
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {} without an API key: create one with `retryd keys create --role admin`, \
         listen on a loopback address, or pass --insecure-no-auth",
        config.listen
    ))
}

fn is_loopback(address: SocketAddr) -> bool {
    address.ip().is_loopback()
}

/// A span per call naming the method and the request id. Refused calls (bad input, missing
/// keys) are the client's business and logged at debug; internal errors are logged where they
/// happen, inside this span.
fn call_tracing() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::GrpcErrorsAsFailures>,
    impl Fn(&http::Request<tonic::body::Body>) -> tracing::Span + Clone,
> {
    TraceLayer::new_for_grpc()
        .make_span_with(|request: &http::Request<tonic::body::Body>| {
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("call", method = %request.uri().path(), request_id = %request_id)
        })
        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG))
}

/// Browsers call through gRPC-Web from other origins; they need these headers to read statuses.
fn grpc_web_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_credentials(true)
        .allow_methods([http::Method::POST, http::Method::OPTIONS])
        .allow_headers([
            HeaderName::from_static("content-type"),
            HeaderName::from_static("authorization"),
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(24 * 3600))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
