//! The Postgres engine: a deadpool of diesel_async connections; claims use
//! `FOR UPDATE SKIP LOCKED` so concurrent claimers skip each other's rows instead of waiting.

use std::sync::Arc;

use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Text};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use futures_util::FutureExt;

use super::chunk_queue::impl_chunk_store;
use super::error::pool_error;
use super::keys::impl_key_store;
use super::rows::NewChunkRow;
use super::schema::chunks;
use super::task_runs::impl_task_run_store;
use super::{migrate, ChangeSink, LeaderElector, PoolSettings};
use crate::core::chunks::ClaimRequest;
use crate::core::{Result, Timestamp};

mod leader;
mod listener;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Set on every pooled connection: a runaway statement cannot hold a connection forever, and
/// the connections are easy to find in pg_stat_activity.
const CONNECTION_SETUP: &str = "SET statement_timeout = '60s'; SET application_name = 'retryd'";

pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    url: String,
    elector: Arc<leader::AdvisoryLockElector>,
}

impl PgStore {
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<Self> {
        let connection = AsyncPgConnection::establish(url)
            .await
            .map_err(|err| pool_error(format!("cannot connect to Postgres: {err}")))?;
        migrate::run_pending(connection, MIGRATIONS).await?;
        let mut config = ManagerConfig::default();
        config.custom_setup = Box::new(|url| {
            async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                conn.batch_execute(CONNECTION_SETUP)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
            .boxed()
        });
        let manager = AsyncDieselConnectionManager::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections)
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(pool_error)?;
        Ok(Self {
            pool,
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

    async fn conn(&self) -> Result<Object<AsyncPgConnection>> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Many rows per INSERT: one round trip per thousand chunks, well under Postgres' limit of
    /// 65,535 bind parameters.
    async fn insert_chunks(
        conn: &mut AsyncPgConnection,
        rows: &[NewChunkRow<'_>],
    ) -> diesel::QueryResult<()> {
        for batch in rows.chunks(1_000) {
            diesel::insert_into(chunks::table)
                .values(batch)
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    fn claim_statement(
        claim: &ClaimRequest,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
        diesel::sql_query(
            "WITH picked AS ( \
               SELECT id FROM chunks \
               WHERE queue = $1 AND status = 'pending' AND run_at <= $2 \
               ORDER BY priority DESC, id \
               LIMIT $3 \
               FOR UPDATE SKIP LOCKED) \
             UPDATE chunks SET status = 'processing', attempts = chunks.attempts + 1, \
               lease_token = $4, lease_expires_at = $5, worker_id = $6, started_at = $2 \
             FROM picked WHERE chunks.id = picked.id \
             RETURNING chunks.id, chunks.job_id, chunks.chunk_index, chunks.priority, \
               chunks.payload, chunks.attempts, chunks.max_attempts, chunks.lease_expires_at",
        )
        .into_boxed()
        .bind::<Text, _>(claim.queue.clone())
        .bind::<BigInt, _>(now.as_micros())
        .bind::<BigInt, _>(i64::from(claim.max_chunks))
        .bind::<Text, _>(claim.lease_token.clone())
        .bind::<BigInt, _>(expires_at.as_micros())
        .bind::<Text, _>(claim.worker_id.clone())
    }
}

impl_chunk_store!(PgStore, AsyncPgConnection, transaction);
impl_key_store!(PgStore, "postgres");
impl_task_run_store!(PgStore);
