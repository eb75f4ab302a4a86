//! Database reachability, checked in the background so health answers never wait on a dead
//! database, and published to whoever watches (the standard health service, WatchSystemHealth).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::core::broker::BrokerState;
use crate::core::chunks::QueueDepth;
use crate::core::sync::ConnectionHealth;
use crate::core::{Clock, Result, Timestamp};
use crate::scheduler::{Scheduler, TaskStatus};
use crate::store::Store;

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseState {
    pub engine: &'static str,
    pub reachable: bool,
    pub latency: Duration,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SystemHealth {
    pub database: DatabaseState,
    pub queues: Vec<QueueDepth>,
    pub tasks: Vec<TaskStatus>,
    pub replica_id: String,
    pub scheduler_leader: bool,
    pub checked_at: Timestamp,
    /// SyncRetry's connection health per data type.
    pub connections: Vec<ConnectionHealth>,
    /// DeviceImages' MQTT broker; None when MQTT is disabled.
    pub broker: Option<BrokerState>,
}

impl SystemHealth {
    /// The server as a whole: the broker only affects DeviceImages.
    pub fn serving(&self) -> bool {
        self.database.reachable
    }
}

pub struct HealthMonitor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    scheduler: Arc<Scheduler>,
    database: watch::Sender<DatabaseState>,
    broker: Option<watch::Receiver<BrokerState>>,
}

impl HealthMonitor {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, scheduler: Arc<Scheduler>) -> Self {
        let initial = DatabaseState {
            engine: store.engine(),
            reachable: false,
            latency: Duration::ZERO,
            error: Some("not checked yet".into()),
        };
        Self {
            store,
            clock,
            scheduler,
            database: watch::channel(initial).0,
            broker: None,
        }
    }

    /// Reports the MQTT adapter's broker state too.
    pub fn with_broker(mut self, broker: watch::Receiver<BrokerState>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// The broker state, when MQTT is enabled.
    pub fn broker(&self) -> Option<watch::Receiver<BrokerState>> {
        self.broker.clone()
    }

    /// Pings the database once and publishes the result if reachability changed (latency alone
    /// is not a change worth waking watchers for).
    pub async fn check_database(&self) -> DatabaseState {
        let started = Instant::now();
        let outcome = self.store.ping().await;
        let state = DatabaseState {
            engine: self.store.engine(),
            reachable: outcome.is_ok(),
            latency: started.elapsed(),
            error: outcome.err().map(|err| err.to_string()),
        };
        self.database.send_if_modified(|current| {
            let changed = current.reachable != state.reachable || current.error != state.error;
            *current = state.clone();
            changed
        });
        state
    }

    /// Checks the database every `interval` until the process ends.
    pub fn spawn_checks(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let monitor = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                monitor.check_database().await;
            }
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<DatabaseState> {
        self.database.subscribe()
    }

    /// The current picture: a fresh database check, and (if the database answers) queue depths
    /// and the scheduled tasks' last runs.
    pub async fn snapshot(&self) -> Result<SystemHealth> {
        let database = self.check_database().await;
        let (queues, tasks, connections) = if database.reachable {
            (
                self.store.queue_depths().await.unwrap_or_default(),
                self.scheduler.status().await.unwrap_or_default(),
                self.store.connection_health(None).await.unwrap_or_default(),
            )
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        Ok(SystemHealth {
            database,
            queues,
            tasks,
            replica_id: self.scheduler.replica_id().to_owned(),
            scheduler_leader: self.scheduler.is_leader(),
            checked_at: self.clock.now(),
            connections,
            broker: self.broker.as_ref().map(|broker| broker.borrow().clone()),
        })
    }
}
