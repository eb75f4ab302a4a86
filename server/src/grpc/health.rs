//! `retryd.v1.Health`, and the standard `grpc.health.v1.Health` status kept in step with the
//! database's reachability (and, for DeviceImages, the MQTT broker's).

use std::sync::Arc;
use std::time::Duration;

use retryd_client::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::chunk_queue::ResponseStream;
use super::generated::health_server::Health;
use super::{authorize, convert, error::status};
use crate::core::auth::Permission;
use crate::core::broker::BrokerState;
use crate::service::auth::Authenticator;
use crate::service::health::HealthMonitor;

/// The names under which the standard health service reports; "" is the whole server.
pub const SERVICE_NAMES: &[&str] = &[
    "",
    "retryd.v1.ChunkQueue",
    "retryd.v1.DeviceImages",
    "retryd.v1.Health",
    "retryd.v1.Scheduler",
    "retryd.v1.SyncRetry",
];

/// Needs the database and, when MQTT is enabled, the broker: devices cannot report without it.
pub const DEVICE_IMAGES_SERVICE: &str = "retryd.v1.DeviceImages";

pub struct HealthApi {
    monitor: Arc<HealthMonitor>,
    auth: Arc<Authenticator>,
    shutdown: watch::Receiver<bool>,
}

impl HealthApi {
    pub fn new(
        monitor: Arc<HealthMonitor>,
        auth: Arc<Authenticator>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            monitor,
            auth,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl Health for HealthApi {
    async fn get_system_health(
        &self,
        request: Request<pb::GetSystemHealthRequest>,
    ) -> Result<Response<pb::SystemHealth>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let health = self.monitor.snapshot().await.map_err(status)?;
        Ok(Response::new(convert::system_health(health)))
    }

    type WatchSystemHealthStream = ResponseStream<pb::SystemHealth>;

    async fn watch_system_health(
        &self,
        request: Request<pb::WatchSystemHealthRequest>,
    ) -> Result<Response<Self::WatchSystemHealthStream>, Status> {
        authorize(&self.auth, &request, Permission::Watch).await?;
        let interval = match request.into_inner().interval_seconds {
            0 => Duration::from_secs(10),
            seconds => Duration::from_secs(u64::from(seconds.min(3600))),
        };
        let (sender, receiver) = mpsc::channel(4);
        let monitor = Arc::clone(&self.monitor);
        let mut changes = monitor.subscribe();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let health = match monitor.snapshot().await {
                    Ok(health) => Ok(convert::system_health(health)),
                    Err(err) => Err(status(err)),
                };
                if sender.send(health).await.is_err() {
                    return;
                }
                changes.borrow_and_update();
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(interval) => {}
                    _ = sender.closed() => return,
                    _ = super::until_shutdown(&mut shutdown) => {
                        let _ = sender.send(Err(Status::unavailable("server is shutting down"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Keeps the standard health service's statuses in step with the database's reachability;
/// DeviceImages also with the broker's when `broker` is given (MQTT enabled).
pub fn spawn_standard_health_updates(
    monitor: &HealthMonitor,
    reporter: HealthReporter,
    broker: Option<watch::Receiver<BrokerState>>,
) -> tokio::task::JoinHandle<()> {
    let mut database = monitor.subscribe();
    let mut broker = broker;
    // After the adapter stops its last state (disconnected) stands; no more changes will come.
    let mut broker_open = broker.is_some();
    tokio::spawn(async move {
        loop {
            let database_up = database.borrow_and_update().reachable;
            let broker_up = broker
                .as_mut()
                .is_none_or(|broker| broker.borrow_and_update().connected);
            for name in SERVICE_NAMES {
                reporter
                    .set_service_status(*name, serving_status(database_up))
                    .await;
            }
            reporter
                .set_service_status(
                    DEVICE_IMAGES_SERVICE,
                    serving_status(database_up && broker_up),
                )
                .await;
            let broker_changed = async {
                match broker.as_mut() {
                    Some(broker) if broker_open => broker.changed().await,
                    // Without MQTT only the database matters.
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = database.changed() => if changed.is_err() { return },
                changed = broker_changed => broker_open = changed.is_ok(),
            }
        }
    })
}

fn serving_status(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}
