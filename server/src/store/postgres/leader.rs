//! Leader election on Postgres: the leader is the replica whose dedicated connection holds a
//! session advisory lock. When the leader dies its connection closes and Postgres releases the
//! lock, so another replica takes it on its next try.

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Bool};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::Mutex;

use crate::store::LeaderElector;

/// The lock's key ("retryd" and a version); advisory locks are per database, so deployments in
/// other databases of the same server do not compete.
const SCHEDULER_LOCK: i64 = 0x7265_7472_7964_0001;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

struct Session {
    conn: AsyncPgConnection,
    holds_lock: bool,
}

pub struct AdvisoryLockElector {
    url: String,
    session: Mutex<Option<Session>>,
}

impl AdvisoryLockElector {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            session: Mutex::new(None),
        }
    }
}

#[async_trait]
impl LeaderElector for AdvisoryLockElector {
    async fn lead(&self) -> bool {
        let mut session = self.session.lock().await;
        if session.is_none() {
            match AsyncPgConnection::establish(&self.url).await {
                Ok(conn) => {
                    *session = Some(Session {
                        conn,
                        holds_lock: false,
                    })
                }
                Err(err) => {
                    tracing::debug!(error = %err, "leader election: cannot connect");
                    return false;
                }
            }
        }
        let Some(current) = session.as_mut() else {
            return false;
        };
        let outcome = if current.holds_lock {
            // Still the leader as long as the session that holds the lock is alive.
            diesel::sql_query("SELECT 1")
                .execute(&mut current.conn)
                .await
                .map(|_| true)
        } else {
            diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                .bind::<BigInt, _>(SCHEDULER_LOCK)
                .get_result::<Locked>(&mut current.conn)
                .await
                .map(|row| row.locked)
        };
        match outcome {
            Ok(leads) => {
                if leads && !current.holds_lock {
                    tracing::info!("this replica now runs the scheduled tasks");
                }
                current.holds_lock = leads;
                leads
            }
            Err(err) => {
                if current.holds_lock {
                    tracing::warn!(error = %err, "lost the scheduler lock's connection; no longer the leader");
                }
                // The lock (if held) went with the session; start over next time.
                *session = None;
                false
            }
        }
    }
}
