//! Cross-replica wake-ups: a dedicated connection LISTENs on `retryd_events`, where the triggers
//! of migration 2 announce claimable work per queue and changed jobs. A lost connection is
//! re-established with backoff, and everyone waiting is told to look again, so a missed
//! notification only delays work, never loses it.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;

use crate::store::ChangeSink;

pub const CHANNEL: &str = "retryd_events";

pub fn spawn(url: String, sink: Arc<dyn ChangeSink>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen(&url, sink.as_ref()).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(err) => tracing::debug!(error = %err, "change listener: cannot listen"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

/// Listens until the connection is lost.
async fn listen(url: &str, sink: &dyn ChangeSink) -> Result<(), String> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|err| err.to_string())?;
    conn.batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|err| err.to_string())?;
    // Whatever happened while we were not listening is unknown.
    sink.resync();
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        let notification = notification.map_err(|err| err.to_string())?;
        match notification.payload.split_once(':') {
            Some(("q", queue)) => sink.work_available(queue),
            Some(("j", job_id)) => sink.job_changed(job_id),
            _ => {
                tracing::debug!(payload = %notification.payload, "change listener: unknown payload")
            }
        }
    }
    tracing::warn!("change listener: connection lost; reconnecting");
    sink.resync();
    Ok(())
}
