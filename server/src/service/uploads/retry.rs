//! Retry runs: hand waiting uploads to delivery attempts, record what happened, and keep the
//! retry log the health report is built from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};

use super::UploadService;
use crate::core::chunks::Page;
use crate::core::uploads::{
    outcome_without_attempt, DeliveryLease, DeliveryReport, DeliverySelection, NewRetryRun,
    RetryHealth, RetryOutcome, RetryRun, RetryRunFilter, RetrySource, UploadRetryResult,
    UploadStatus, DEFAULT_HEALTH_WINDOW,
};
use crate::core::{Error, Result};
use crate::service::paging::page_request;

/// Most upload ids one FlushPending or TriggerRetry may name.
pub const MAX_NAMED_UPLOADS: usize = 1_000;

/// A run as its caller sees it: the log row and what happened to each upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub run: RetryRun,
    pub uploads: Vec<UploadRetryResult>,
}

impl UploadService {
    /// An offline client's outbox is back: deliver its named uploads now.
    pub async fn flush_pending(&self, upload_ids: Vec<String>) -> Result<RunReport> {
        let upload_ids = self.named_uploads(upload_ids, false)?;
        let selection = DeliverySelection::Named {
            upload_ids: upload_ids.clone(),
            reset_failed: false,
        };
        self.run(RetrySource::ClientFlush, selection, Some(upload_ids))
            .await
    }

    /// An operator's retry: the named uploads (those that gave up start over), or everything
    /// waiting for delivery.
    pub async fn trigger_retry(&self, upload_ids: Vec<String>) -> Result<RunReport> {
        let upload_ids = self.named_uploads(upload_ids, true)?;
        if upload_ids.is_empty() {
            return self
                .run(RetrySource::Manual, DeliverySelection::Waiting, None)
                .await;
        }
        let selection = DeliverySelection::Named {
            upload_ids: upload_ids.clone(),
            reset_failed: true,
        };
        self.run(RetrySource::Manual, selection, Some(upload_ids))
            .await
    }

    /// The scheduler's sweep: uploads whose backoff is over, and deliveries whose replica died.
    pub async fn sweep(&self) -> Result<RunReport> {
        self.run(RetrySource::Scheduled, DeliverySelection::Due, None)
            .await
    }

    /// The first delivery of a just-stored upload, started at once instead of waiting for the
    /// sweep. Not a retry, so not logged as a run; if it fails, the sweep retries after the
    /// backoff.
    pub(super) fn deliver_in_background(self: &Arc<Self>, upload_id: String) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let selection = DeliverySelection::Named {
                upload_ids: vec![upload_id.clone()],
                reset_failed: false,
            };
            let now = service.clock.now();
            let lease_until = now.plus(service.settings.delivery_lease);
            match service
                .store
                .claim_deliveries(&selection, 1, now, lease_until)
                .await
            {
                Ok(leases) => {
                    for lease in leases {
                        service.attempt(lease).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(upload_id, error = %err, "first delivery not started; the sweep will deliver")
                }
            }
        });
    }

    fn named_uploads(&self, upload_ids: Vec<String>, may_be_empty: bool) -> Result<Vec<String>> {
        if upload_ids.is_empty() && !may_be_empty {
            return Err(Error::invalid("upload_ids", "name at least one upload"));
        }
        if upload_ids.len() > MAX_NAMED_UPLOADS {
            return Err(Error::too_large(
                "upload_ids",
                format!(
                    "{} ids, at most {MAX_NAMED_UPLOADS} per call",
                    upload_ids.len()
                ),
            ));
        }
        let mut unique = Vec::with_capacity(upload_ids.len());
        for (index, id) in upload_ids.into_iter().enumerate() {
            let id = self.limits.id(&format!("upload_ids[{index}]"), id)?;
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        Ok(unique)
    }

    async fn run(
        &self,
        source: RetrySource,
        selection: DeliverySelection,
        named: Option<Vec<String>>,
    ) -> Result<RunReport> {
        let started_at = self.clock.now();
        let lease_until = started_at.plus(self.settings.delivery_lease);
        let limit = match &named {
            Some(ids) => ids.len() as u32,
            None => self.settings.max_uploads_per_run,
        };
        let leases = self
            .store
            .claim_deliveries(&selection, limit, started_at, lease_until)
            .await?;
        let mut results: Vec<UploadRetryResult> = stream::iter(leases)
            .map(|lease| self.attempt(lease))
            .buffer_unordered(self.settings.delivery_concurrency.max(1))
            .collect()
            .await;
        if let Some(ids) = named {
            results = self.explain_the_rest(ids, results).await?;
        }
        let finished_at = self.clock.now();
        let run = self
            .store
            .insert_retry_run(&NewRetryRun::from_results(
                source,
                &results,
                started_at,
                finished_at,
            ))
            .await?;
        tracing::info!(
            source = source.as_str(),
            attempted = run.attempted,
            succeeded = run.succeeded,
            failed = run.failed,
            "upload retry run"
        );
        Ok(RunReport {
            run,
            uploads: results,
        })
    }

    /// Puts the named uploads' results in request order, saying for each one that was not
    /// attempted why not.
    async fn explain_the_rest(
        &self,
        ids: Vec<String>,
        attempted: Vec<UploadRetryResult>,
    ) -> Result<Vec<UploadRetryResult>> {
        let mut by_id: HashMap<String, UploadRetryResult> = attempted
            .into_iter()
            .map(|result| (result.upload_id.clone(), result))
            .collect();
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !by_id.contains_key(*id))
            .cloned()
            .collect();
        for upload in self.store.find_uploads(&missing).await? {
            by_id.insert(
                upload.upload_id.clone(),
                UploadRetryResult {
                    outcome: outcome_without_attempt(&upload),
                    status: Some(upload.status),
                    error: upload.failure_reason.clone(),
                    upload_id: upload.upload_id,
                },
            );
        }
        Ok(ids
            .into_iter()
            .map(|id| {
                by_id.remove(&id).unwrap_or(UploadRetryResult {
                    upload_id: id,
                    outcome: RetryOutcome::NotFound,
                    status: None,
                    error: None,
                })
            })
            .collect())
    }

    /// One delivery attempt under `lease`, renewing the lease while it runs.
    async fn attempt(&self, lease: DeliveryLease) -> UploadRetryResult {
        let upload = &lease.upload;
        let delivered = tokio::select! {
            delivered = self.deliver(&lease) => delivered,
            lost = self.keep_lease(&lease) => Err(lost),
        };
        let report = match delivered {
            Ok(()) => DeliveryReport::Delivered,
            Err(error) => {
                let now = self.clock.now();
                let retry_at = self.settings.policy.next_delivery(
                    upload.delivery_attempts,
                    upload.max_delivery_attempts,
                    now,
                    fastrand::f64(),
                );
                let error = if retry_at.is_none() {
                    format!(
                        "delivery failed after {} attempts: {error}",
                        upload.delivery_attempts
                    )
                } else {
                    error
                };
                DeliveryReport::Failed { error, retry_at }
            }
        };
        let finished = self
            .store
            .finish_delivery(&upload.upload_id, &lease.token, &report, self.clock.now())
            .await;
        let (outcome, status) = match (&report, finished) {
            (_, Ok(None)) => (RetryOutcome::InProgress, None),
            (DeliveryReport::Delivered, Ok(Some(after))) => {
                (RetryOutcome::Delivered, Some(after.status))
            }
            (DeliveryReport::Failed { retry_at, .. }, Ok(Some(after))) => {
                let outcome = if retry_at.is_some() {
                    RetryOutcome::RetryScheduled
                } else {
                    RetryOutcome::Failed
                };
                (outcome, Some(after.status))
            }
            (_, Err(err)) => {
                // The lease runs out and the next run finds the upload again.
                tracing::warn!(upload_id = upload.upload_id, error = %err, "cannot record a delivery outcome");
                (RetryOutcome::InProgress, Some(UploadStatus::Delivering))
            }
        };
        let error = match report {
            DeliveryReport::Failed { error, .. } => Some(error),
            DeliveryReport::Delivered => None,
        };
        if let Some(error) = &error {
            tracing::info!(
                upload_id = upload.upload_id,
                error,
                "delivery attempt failed"
            );
        }
        UploadRetryResult {
            upload_id: upload.upload_id.clone(),
            outcome,
            status,
            error,
        }
    }

    async fn deliver(&self, lease: &DeliveryLease) -> Result<(), String> {
        let content = self
            .blobs
            .open(&lease.upload.blob_key, 0)
            .await
            .map_err(|err| format!("cannot read the stored content: {err}"))?;
        self.deliveries.deliver(&lease.upload, content).await
    }

    /// Renews the lease every third of its length; returns (ending the attempt) only when the
    /// lease was lost.
    async fn keep_lease(&self, lease: &DeliveryLease) -> String {
        let period = self.settings.delivery_lease / 3;
        loop {
            tokio::time::sleep(period.max(Duration::from_millis(10))).await;
            let until = self.clock.now().plus(self.settings.delivery_lease);
            match self
                .store
                .extend_delivery(&lease.upload.upload_id, &lease.token, until)
                .await
            {
                Ok(true) => {}
                Ok(false) => return "the delivery lease was lost to another run".to_owned(),
                Err(err) => {
                    tracing::warn!(upload_id = lease.upload.upload_id, error = %err, "cannot renew a delivery lease")
                }
            }
        }
    }

    pub async fn list_retry_runs(
        &self,
        filter: RetryRunFilter,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<RetryRun>> {
        let page = page_request(&self.limits, page_size, 50, page_token)?;
        self.store.list_retry_runs(&filter, page).await
    }

    /// The seed's health report over the last `window` (7 days when `None`).
    pub async fn retry_health(&self, window: Option<Duration>) -> Result<RetryHealth> {
        let window_end = self.clock.now();
        let window_start = window_end.minus(window.unwrap_or(DEFAULT_HEALTH_WINDOW));
        let sums = self.store.retry_run_sums(window_start, window_end).await?;
        Ok(RetryHealth::from_sums(window_start, window_end, &sums))
    }

    /// Removes retry logs older than `log_retention` and the content of uploads delivered more
    /// than `content_retention` ago. Returns (logs, contents) removed.
    pub async fn prune(
        &self,
        log_retention: Duration,
        content_retention: Duration,
    ) -> Result<(u64, u64)> {
        const BATCH: u32 = 500;
        let now = self.clock.now();
        let logs = self
            .store
            .prune_retry_runs(now.minus(log_retention))
            .await?;
        let mut contents = 0;
        loop {
            let delivered = self
                .store
                .delivered_content_before(now.minus(content_retention), BATCH)
                .await?;
            for upload in &delivered {
                self.blobs
                    .remove(&upload.blob_key)
                    .await
                    .map_err(super::blob_error)?;
                self.store
                    .mark_content_pruned(&upload.upload_id, now)
                    .await?;
                contents += 1;
            }
            if delivered.len() < BATCH as usize {
                break;
            }
        }
        Ok((logs, contents))
    }
}
