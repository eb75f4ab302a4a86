//! The SQLite engine, the zero-setup default: a file database in WAL mode, so readers never wait
//! for the writer. Write transactions start with `BEGIN IMMEDIATE`, taking the write lock up front
//! instead of failing with SQLITE_BUSY when a read turns into a write.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use diesel::sql_types::{BigInt, Text};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, SqliteConnection};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use futures_util::FutureExt;

use super::chunk_queue::impl_chunk_store;
use super::device_sessions::impl_device_session_store;
use super::devices::impl_device_store;
use super::error::pool_error;
use super::keys::impl_key_store;
use super::rows::{to_i32, ClaimedRow, NewChunkRow, NewJobRow};
use super::schema::{chunks, jobs};
use super::sync::impl_sync_store;
use super::sync_records::impl_sync_record_queries;
use super::task_runs::impl_task_run_store;
use super::uploads::impl_upload_store;
use super::{migrate, ChangeSink, LeaderElector, PoolSettings, SoleLeader};
use crate::core::chunks::{ClaimRequest, Completion, NewJob};
use crate::core::{Error, Result, Timestamp};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// Set on every connection. The busy timeout comes first: the pragmas after it may need a lock
/// that a writer holds, and a connection opened under load must wait for it rather than fail.
/// `synchronous = FULL` makes every commit durable, like Postgres with fsync on: an accepted job
/// survives a power cut, not only a crash.
const CONNECTION_SETUP: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";

pub struct SqliteStore {
    pool: Pool<SqliteConn>,
}

impl SqliteStore {
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<Self> {
        let path = database_path(url)?;
        if let Some(parent) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                Error::Unavailable(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        let path = path.to_string_lossy().into_owned();
        let connection = establish(&path)
            .await
            .map_err(|err| pool_error(format!("cannot open SQLite database {path}: {err}")))?;
        migrate::run_pending(connection, MIGRATIONS).await?;
        let mut config = ManagerConfig::default();
        config.custom_setup = Box::new(|path| establish(path).boxed());
        let manager = AsyncDieselConnectionManager::new_with_config(path, config);
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections)
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(pool_error)?;
        Ok(Self { pool })
    }

    /// One process owns the file, so it always leads.
    fn elector(&self) -> Arc<dyn LeaderElector> {
        Arc::new(SoleLeader)
    }

    /// Only this process changes the database: its own wake-ups are all there is.
    fn change_listener(&self, _sink: Arc<dyn ChangeSink>) -> Option<tokio::task::JoinHandle<()>> {
        None
    }

    /// Claims use the same connections: every SQLite commit is as durable as configured.
    async fn claim_conn(&self) -> Result<Object<SqliteConn>> {
        self.conn().await
    }

    async fn conn(&self) -> Result<Object<SqliteConn>> {
        self.pool.get().await.map_err(pool_error)
    }

    // The hot statements run on the connection's blocking thread in one go: a SyncConnection
    // hop per statement would cost more than SQLite itself.

    async fn insert_job(conn: &mut SqliteConn, job: &NewJob, now: Timestamp) -> QueryResult<bool> {
        // Sync diesel on the blocking thread (the async trait is not in scope here).
        use diesel::RunQueryDsl;
        let job = job.clone();
        conn.spawn_blocking(move |conn| {
            conn.immediate_transaction(|conn| {
                let taken: i64 = jobs::table
                    .filter(jobs::job_id.eq(&job.job_id))
                    .count()
                    .get_result(conn)?;
                if taken > 0 {
                    return Ok(false);
                }
                diesel::insert_into(jobs::table)
                    .values(NewJobRow::new(&job, now))
                    .execute(conn)?;
                let rows: Vec<NewChunkRow<'_>> = job
                    .payloads
                    .iter()
                    .enumerate()
                    .map(|(index, payload)| NewChunkRow {
                        job_id: &job.job_id,
                        chunk_index: index as i32,
                        queue: &job.queue,
                        priority: job.priority,
                        status: "pending",
                        payload,
                        attempts: 0,
                        max_attempts: to_i32(job.max_attempts),
                        run_at: now.as_micros(),
                        created_at: now.as_micros(),
                    })
                    .collect();
                diesel::insert_into(chunks::table)
                    .values(&rows)
                    .execute(conn)?;
                Ok(true)
            })
        })
        .await
    }

    async fn claim(
        conn: &mut SqliteConn,
        claim: &ClaimRequest,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> QueryResult<Vec<ClaimedRow>> {
        // Sync diesel on the blocking thread (the async trait is not in scope here).
        use diesel::RunQueryDsl;
        let claim = claim.clone();
        conn.spawn_blocking(move |conn| {
            conn.immediate_transaction(|conn| {
                // Writers are serialized by BEGIN IMMEDIATE, so the subquery's pick cannot be taken
                // by another claimer before the UPDATE.
                let rows: Vec<ClaimedRow> = diesel::sql_query(
                    "UPDATE chunks SET status = 'processing', attempts = attempts + 1, \
                   lease_token = ?, lease_expires_at = ?, worker_id = ?, started_at = ? \
                 WHERE id IN ( \
                   SELECT id FROM chunks \
                   WHERE queue = ? AND status = 'pending' AND run_at <= ? \
                   ORDER BY priority DESC, id \
                   LIMIT ?) \
                 RETURNING id, job_id, chunk_index, priority, payload, attempts, max_attempts, \
                   lease_expires_at",
                )
                .bind::<Text, _>(&claim.lease_token)
                .bind::<BigInt, _>(expires_at.as_micros())
                .bind::<Text, _>(&claim.worker_id)
                .bind::<BigInt, _>(now.as_micros())
                .bind::<Text, _>(&claim.queue)
                .bind::<BigInt, _>(now.as_micros())
                .bind::<BigInt, _>(i64::from(claim.max_chunks))
                .load(conn)?;
                let mut job_ids: Vec<&str> = rows.iter().map(|row| row.job_id.as_str()).collect();
                job_ids.sort_unstable();
                job_ids.dedup();
                if !job_ids.is_empty() {
                    diesel::update(
                        jobs::table
                            .filter(jobs::job_id.eq_any(&job_ids))
                            .filter(jobs::status.eq("pending")),
                    )
                    .set((
                        jobs::status.eq("processing"),
                        jobs::updated_at.eq(now.as_micros()),
                    ))
                    .execute(conn)?;
                }
                Ok(rows)
            })
        })
        .await
    }

    async fn complete_leased(
        conn: &mut SqliteConn,
        completions: &[Completion],
        now: Timestamp,
    ) -> QueryResult<Vec<(i64, String, String)>> {
        // Sync diesel on the blocking thread (the async trait is not in scope here).
        use diesel::RunQueryDsl;
        let completions = completions.to_vec();
        conn.spawn_blocking(move |conn| {
            let mut settled = Vec::with_capacity(completions.len());
            for completion in &completions {
                let row: Option<(String, String)> = diesel::update(
                    chunks::table
                        .filter(chunks::id.eq(completion.chunk_id))
                        .filter(chunks::lease_token.eq(&completion.lease_token))
                        .filter(chunks::status.eq("processing")),
                )
                .set((
                    chunks::status.eq("completed"),
                    chunks::result.eq(Some(&completion.result)),
                    chunks::completed_at.eq(Some(now.as_micros())),
                    chunks::lease_expires_at.eq(None::<i64>),
                ))
                .returning((chunks::job_id, chunks::queue))
                .get_result(conn)
                .optional()?;
                if let Some((job_id, queue)) = row {
                    settled.push((completion.chunk_id, job_id, queue));
                }
            }
            Ok(settled)
        })
        .await
    }
}

async fn establish(path: &str) -> diesel::ConnectionResult<SqliteConn> {
    let mut conn = SqliteConn::establish(path).await?;
    conn.batch_execute(CONNECTION_SETUP)
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// `sqlite://path`, `sqlite:path` or a plain path. In-memory databases are refused: each pooled
/// connection would see a different, empty database.
fn database_path(url: &str) -> Result<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains(":memory:") || path.starts_with("file::memory") {
        return Err(Error::invalid(
            "database_url",
            "needs a file path (in-memory SQLite databases are not supported)",
        ));
    }
    Ok(Path::new(path).to_path_buf())
}

impl_chunk_store!(SqliteStore, SqliteConn, immediate_transaction);
impl_key_store!(SqliteStore, "sqlite");
impl_task_run_store!(SqliteStore);
impl_upload_store!(SqliteStore, SqliteConn, immediate_transaction);
impl_device_store!(SqliteStore, SqliteConn, immediate_transaction);
impl_device_session_store!(SqliteStore, SqliteConn, immediate_transaction);
impl_sync_store!(SqliteStore, SqliteConn, immediate_transaction);
impl_sync_record_queries!(SqliteStore, SqliteConn);
