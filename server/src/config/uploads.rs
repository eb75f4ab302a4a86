//! The `[uploads]` section: where content is kept and how deliveries are retried.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::retry::RetryPolicy;
use crate::core::uploads::UploadPolicy;
use crate::service::uploads::UploadSettings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    /// Where upload content is kept: a directory (a path, or file://path). Replicas sharing a
    /// database must share this directory too.
    pub blob_store: String,
    pub max_upload_bytes: u64,
    /// Largest part of an UploadContent call.
    pub max_part_bytes: usize,
    /// Delivery attempts before an upload is marked failed and left for a person.
    pub max_delivery_attempts: u32,
    pub delivery_backoff_initial_ms: u64,
    pub delivery_backoff_multiplier: f64,
    pub delivery_backoff_max_ms: u64,
    /// One delivery attempt, from connecting to the destination's answer.
    pub delivery_timeout_seconds: u64,
    /// A running attempt's lease (renewed while it runs): how long a delivery whose replica
    /// died waits before another run takes it over.
    pub delivery_lease_ms: u64,
    /// Delivery attempts one run makes at once.
    pub delivery_concurrency: usize,
    /// Most uploads one run takes (the sweep and TriggerRetry without ids).
    pub max_uploads_per_run: u32,
    /// Received bytes are made durable and recorded at least every this many bytes, and this
    /// often; at most this much is sent again after a crash.
    pub checkpoint_bytes: u64,
    pub checkpoint_interval_ms: u64,
    /// Start the first delivery as soon as an upload is stored; otherwise the sweep does.
    pub deliver_on_store: bool,
    /// Directories under which file:// destinations are allowed; none by default.
    pub file_destination_roots: Vec<PathBuf>,
    /// Retry logs older than this are pruned (the seed's 30 days).
    pub retry_log_retention_seconds: u64,
    /// Delivered content is removed from the blob store after this long.
    pub delivered_content_retention_seconds: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        let policy = UploadPolicy::default();
        let settings = UploadSettings::default();
        Self {
            blob_store: "retryd-data/blobs".to_owned(),
            max_upload_bytes: policy.max_upload_bytes,
            max_part_bytes: policy.max_part_bytes,
            max_delivery_attempts: policy.max_delivery_attempts,
            delivery_backoff_initial_ms: policy.delivery_backoff.initial_backoff.as_millis() as u64,
            delivery_backoff_multiplier: policy.delivery_backoff.multiplier,
            delivery_backoff_max_ms: policy.delivery_backoff.max_backoff.as_millis() as u64,
            delivery_timeout_seconds: 600,
            delivery_lease_ms: settings.delivery_lease.as_millis() as u64,
            delivery_concurrency: settings.delivery_concurrency,
            max_uploads_per_run: settings.max_uploads_per_run,
            checkpoint_bytes: settings.checkpoint_bytes,
            checkpoint_interval_ms: settings.checkpoint_interval.as_millis() as u64,
            deliver_on_store: settings.deliver_on_store,
            file_destination_roots: Vec::new(),
            retry_log_retention_seconds: 30 * 24 * 3600,
            delivered_content_retention_seconds: 7 * 24 * 3600,
        }
    }
}

impl UploadsConfig {
    pub fn settings(&self) -> Result<UploadSettings, String> {
        if !(self.delivery_backoff_multiplier.is_finite()
            && self.delivery_backoff_multiplier >= 1.0)
        {
            return Err("uploads.delivery_backoff_multiplier must be at least 1".to_owned());
        }
        if self.max_delivery_attempts == 0 {
            return Err("uploads.max_delivery_attempts must be at least 1".to_owned());
        }
        if let Some(root) = self
            .file_destination_roots
            .iter()
            .find(|root| !root.is_absolute())
        {
            return Err(format!(
                "uploads.file_destination_roots: {} is not an absolute path",
                root.display()
            ));
        }
        Ok(UploadSettings {
            policy: UploadPolicy {
                max_upload_bytes: self.max_upload_bytes,
                max_part_bytes: self.max_part_bytes,
                max_delivery_attempts: self.max_delivery_attempts,
                delivery_backoff: RetryPolicy {
                    initial_backoff: Duration::from_millis(self.delivery_backoff_initial_ms),
                    multiplier: self.delivery_backoff_multiplier,
                    max_backoff: Duration::from_millis(
                        self.delivery_backoff_max_ms
                            .max(self.delivery_backoff_initial_ms),
                    ),
                },
                file_destination_roots: self.file_destination_roots.clone(),
            },
            delivery_lease: Duration::from_millis(self.delivery_lease_ms.max(30)),
            delivery_concurrency: self.delivery_concurrency.max(1),
            max_uploads_per_run: self.max_uploads_per_run.max(1),
            checkpoint_bytes: self.checkpoint_bytes.max(1),
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms),
            deliver_on_store: self.deliver_on_store,
        })
    }

    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_secs(self.delivery_timeout_seconds.max(1))
    }
}
