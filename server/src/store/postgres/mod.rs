//! The Postgres engine: a deadpool of diesel_async connections; claims use
//! `FOR UPDATE SKIP LOCKED` so concurrent claimers skip each other's rows instead of waiting.

use std::sync::Arc;

use diesel::sql_types::{Array, BigInt, Binary, Double, Integer, Text};
use diesel::QueryResult;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use futures_util::FutureExt;

use super::chunk_queue::impl_chunk_store;
use super::device_sessions::impl_device_session_store;
use super::devices::impl_device_store;
use super::error::pool_error;
use super::keys::impl_key_store;
use super::rows::{ClaimedRow, NewJobRow, SettledRow};
use super::sync::impl_sync_store;
use super::sync_records::impl_sync_record_queries;
use super::task_runs::impl_task_run_store;
use super::uploads::impl_upload_store;
use super::{migrate, ChangeSink, LeaderElector, PoolSettings};
use crate::core::chunks::{ClaimRequest, Completion, NewJob};
use crate::core::{Result, Timestamp};

mod leader;
mod listener;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Set on every pooled connection: a runaway statement cannot hold a connection forever, and
/// the connections are easy to find in pg_stat_activity.
const CONNECTION_SETUP: &str = "SET statement_timeout = '60s'; SET application_name = 'retryd'";

/// Claims do not wait for their commit to reach the disk. If Postgres crashed right after a
/// claim, the lease would be lost and the chunk handed out again: the same at-least-once
/// outcome as a lease that expires, and a completion for the lost lease is refused as stale.
/// Creating jobs and settling chunks stay fully durable. This takes one disk flush off the
/// path from enqueue to worker and off every claim.
const LEASE_CONNECTION_SETUP: &str = "SET statement_timeout = '60s'; \
     SET application_name = 'retryd-leases'; SET synchronous_commit = off";
const LEASE_POOL_SIZE: usize = 4;

fn build_pool(
    url: &str,
    settings: &PoolSettings,
    size: usize,
    setup: &'static str,
) -> Result<Pool<AsyncPgConnection>> {
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |url| {
        async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.batch_execute(setup)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(settings.acquire_timeout))
        .create_timeout(Some(settings.acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(pool_error)
}

pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    /// Claims commit on these without waiting for the WAL flush (see LEASE_CONNECTION_SETUP).
    lease_pool: Pool<AsyncPgConnection>,
    url: String,
    elector: Arc<leader::AdvisoryLockElector>,
}

impl PgStore {
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<Self> {
        let connection = AsyncPgConnection::establish(url)
            .await
            .map_err(|err| pool_error(format!("cannot connect to Postgres: {err}")))?;
        migrate::run_pending(connection, MIGRATIONS).await?;
        let pool = build_pool(url, settings, settings.max_connections, CONNECTION_SETUP)?;
        let lease_pool = build_pool(url, settings, LEASE_POOL_SIZE, LEASE_CONNECTION_SETUP)?;
        Ok(Self {
            pool,
            lease_pool,
            url: url.to_owned(),
            elector: Arc::new(leader::AdvisoryLockElector::new(url)),
        })
    }

    fn elector(&self) -> Arc<dyn LeaderElector> {
        Arc::clone(&self.elector) as Arc<dyn LeaderElector>
    }

    fn change_listener(&self, sink: Arc<dyn ChangeSink>) -> Option<tokio::task::JoinHandle<()>> {
        Some(listener::spawn(self.url.clone(), sink))
    }

    async fn claim_conn(&self) -> Result<Object<AsyncPgConnection>> {
        self.lease_pool.get().await.map_err(pool_error)
    }

    async fn conn(&self) -> Result<Object<AsyncPgConnection>> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The job and all its chunks in one statement (the payloads travel as one array), so one
    /// round trip and one commit. Returns false, inserting nothing, when the id is taken.
    async fn insert_job(
        conn: &mut AsyncPgConnection,
        job: &NewJob,
        now: Timestamp,
    ) -> QueryResult<bool> {
        let row = NewJobRow::new(job, now);
        let inserted = diesel::sql_query(
            "WITH new_job AS ( \
               INSERT INTO jobs (job_id, queue, status, priority, max_attempts, backoff_initial_us, \
                 backoff_multiplier, backoff_max_us, total_chunks, completed_chunks, failed_chunks, \
                 content_hash, created_at, updated_at) \
               VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, 0, 0, $9, $10, $10) \
               ON CONFLICT (job_id) DO NOTHING \
               RETURNING job_id) \
             INSERT INTO chunks (job_id, chunk_index, queue, priority, status, payload, attempts, \
               max_attempts, run_at, created_at) \
             SELECT new_job.job_id, (t.ordinality - 1)::int, $2, $3, 'pending', t.payload, 0, $4, \
               $10, $10 \
             FROM new_job, unnest($11::bytea[]) WITH ORDINALITY AS t(payload, ordinality)",
        )
        .bind::<Text, _>(row.job_id)
        .bind::<Text, _>(row.queue)
        .bind::<Integer, _>(row.priority)
        .bind::<Integer, _>(row.max_attempts)
        .bind::<BigInt, _>(row.backoff_initial_us)
        .bind::<Double, _>(row.backoff_multiplier)
        .bind::<BigInt, _>(row.backoff_max_us)
        .bind::<Integer, _>(row.total_chunks)
        .bind::<Text, _>(&row.content_hash)
        .bind::<BigInt, _>(now.as_micros())
        .bind::<Array<Binary>, _>(&job.payloads)
        .execute(conn)
        .await?;
        Ok(inserted > 0)
    }

    /// Picks, leases and marks the jobs started in one statement. `SKIP LOCKED` lets concurrent
    /// claimers pass each other's rows instead of waiting, for chunks and for the jobs they
    /// mark started: two claims marking the same two new jobs in different orders would
    /// otherwise deadlock (a job another claim is marking ends up started either way).
    async fn claim(
        conn: &mut AsyncPgConnection,
        claim: &ClaimRequest,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> QueryResult<Vec<ClaimedRow>> {
        diesel::sql_query(
            "WITH picked AS ( \
               SELECT id FROM chunks \
               WHERE queue = $1 AND status = 'pending' AND run_at <= $2 \
               ORDER BY priority DESC, id \
               LIMIT $3 \
               FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE chunks SET status = 'processing', attempts = chunks.attempts + 1, \
                 lease_token = $4, lease_expires_at = $5, worker_id = $6, started_at = $2 \
               FROM picked WHERE chunks.id = picked.id \
               RETURNING chunks.id, chunks.job_id, chunks.chunk_index, chunks.priority, \
                 chunks.payload, chunks.attempts, chunks.max_attempts, chunks.lease_expires_at), \
             starting AS ( \
               SELECT job_id FROM jobs \
               WHERE status = 'pending' AND job_id IN (SELECT job_id FROM claimed) \
               FOR UPDATE SKIP LOCKED), \
             started AS ( \
               UPDATE jobs SET status = 'processing', updated_at = $2 \
               FROM starting WHERE jobs.job_id = starting.job_id) \
             SELECT * FROM claimed",
        )
        .bind::<Text, _>(&claim.queue)
        .bind::<BigInt, _>(now.as_micros())
        .bind::<BigInt, _>(i64::from(claim.max_chunks))
        .bind::<Text, _>(&claim.lease_token)
        .bind::<BigInt, _>(expires_at.as_micros())
        .bind::<Text, _>(&claim.worker_id)
        .load(conn)
        .await
    }

    /// Completes every chunk of the batch whose lease is current, in one statement; returns
    /// (chunk, job, queue) of those it completed.
    async fn complete_leased(
        conn: &mut AsyncPgConnection,
        completions: &[Completion],
        now: Timestamp,
    ) -> QueryResult<Vec<(i64, String, String)>> {
        let ids: Vec<i64> = completions.iter().map(|c| c.chunk_id).collect();
        let tokens: Vec<&str> = completions.iter().map(|c| c.lease_token.as_str()).collect();
        let results: Vec<&[u8]> = completions.iter().map(|c| c.result.as_slice()).collect();
        let rows: Vec<SettledRow> = diesel::sql_query(
            "UPDATE chunks SET status = 'completed', result = v.result, completed_at = $4, \
               lease_expires_at = NULL \
             FROM unnest($1::bigint[], $2::text[], $3::bytea[]) AS v(id, token, result) \
             WHERE chunks.id = v.id AND chunks.lease_token = v.token \
               AND chunks.status = 'processing' \
             RETURNING chunks.id, chunks.job_id, chunks.queue",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Text>, _>(&tokens)
        .bind::<Array<Binary>, _>(&results)
        .bind::<BigInt, _>(now.as_micros())
        .load(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.id, row.job_id, row.queue))
            .collect())
    }
}

impl_chunk_store!(PgStore, AsyncPgConnection, transaction);
impl_key_store!(PgStore, "postgres");
impl_task_run_store!(PgStore);
impl_upload_store!(PgStore, AsyncPgConnection, transaction);
impl_device_store!(PgStore, AsyncPgConnection, transaction);
impl_device_session_store!(PgStore, AsyncPgConnection, transaction);
impl_sync_store!(PgStore, AsyncPgConnection, transaction);
impl_sync_record_queries!(PgStore, AsyncPgConnection);
