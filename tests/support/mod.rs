//! Shared by the integration tests: a fresh database per test, on a real Postgres or in a
//! temporary SQLite file, so tests run in parallel without seeing each other's data.

#![allow(dead_code)]

use std::sync::Arc;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use retryd::store::{self, PoolSettings, Store};

/// The Postgres server tests use (trust auth); override with RETRYD_TEST_POSTGRES.
pub fn postgres_server() -> String {
    std::env::var("RETRYD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

/// A database that exists only for one test and is removed afterwards.
pub struct TestDb {
    pub url: String,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Postgres => Self::postgres().await,
            Engine::Sqlite => Self::sqlite(),
        }
    }

    pub async fn postgres() -> Self {
        let name = format!("retryd_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&format!("{}/postgres", postgres_server()))
            .await
            .expect("Postgres must be running on 127.0.0.1:5432 (see README)");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        Self {
            url: format!("{}/{name}", postgres_server()),
            postgres_name: Some(name),
            _dir: None,
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self {
            url: format!("sqlite://{}", dir.path().join("retryd.db").display()),
            postgres_name: None,
            _dir: Some(dir),
        }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        store::open(&self.url, &PoolSettings::default())
            .await
            .expect("open test store")
    }

    /// Blocks new connections to this Postgres database and ends the open ones: to the server,
    /// the database is gone.
    pub async fn take_postgres_offline(&self) {
        let name = self
            .postgres_name
            .as_deref()
            .expect("a Postgres test database");
        let mut admin = admin_connection().await;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
            ))
            .await
            .expect("take database offline");
    }

    pub async fn bring_postgres_online(&self) {
        let name = self
            .postgres_name
            .as_deref()
            .expect("a Postgres test database");
        let mut admin = admin_connection().await;
        admin
            .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .await
            .expect("bring database online");
    }
}

async fn admin_connection() -> AsyncPgConnection {
    AsyncPgConnection::establish(&format!("{}/postgres", postgres_server()))
        .await
        .expect("connect to Postgres")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs outside async context; a short-lived runtime on its own thread does the work.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin =
                    AsyncPgConnection::establish(&format!("{}/postgres", postgres_server()))
                        .await
                        .ok()?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

pub mod broker;
pub mod device;
pub mod http_sink;
pub mod server;
pub mod workers;

/// Opens a Work stream on `queue` (one message each, not batched) with `credits` granted;
/// returns the sender for further requests and the server's responses.
pub async fn open_work_stream(
    client: &mut retryd_client::v1::chunk_queue_client::ChunkQueueClient<
        retryd_client::tonic::transport::Channel,
    >,
    queue: &str,
    worker_id: &str,
    credits: u32,
) -> (
    tokio::sync::mpsc::Sender<retryd_client::v1::WorkRequest>,
    retryd_client::tonic::Streaming<retryd_client::v1::WorkResponse>,
) {
    use retryd_client::v1::work_request::Kind;
    use retryd_client::v1::{WorkCredit, WorkRequest, WorkStart};
    let (requests, outbox) = tokio::sync::mpsc::channel(16);
    let start = WorkStart {
        queue: queue.into(),
        worker_id: worker_id.into(),
        lease_seconds: 0,
        batch: false,
    };
    for kind in [
        Kind::Start(start),
        Kind::Credit(WorkCredit { count: credits }),
    ] {
        requests
            .send(WorkRequest { kind: Some(kind) })
            .await
            .unwrap();
    }
    let responses = client
        .work(tokio_stream::wrappers::ReceiverStream::new(outbox))
        .await
        .unwrap()
        .into_inner();
    (requests, responses)
}
