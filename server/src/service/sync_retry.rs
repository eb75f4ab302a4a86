//! SyncRetry's use cases: validation, classification, and snapshots streamed in and out in
//! bounded parts.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::core::chunks::Page;
use crate::core::limits::Limits;
use crate::core::sync::classify::Classifier;
use crate::core::sync::input::{PushInput, RegisterSourceInput};
use crate::core::sync::records::{
    ChangeResult, Conflict, ConflictFilter, ConflictStatus, PulledChanges, Resolution,
};
use crate::core::sync::snapshots::{CompletedSync, SnapshotInfo, SnapshotUpload, PART_BYTES};
use crate::core::sync::{
    Classification, ConnectionHealth, FailedSync, FailureLog, LeasedSyncTask, Source, SyncClaim,
    SyncFailure, SyncSettings, SyncTask, SyncTaskFilter, SyncTaskStatus, DEFAULT_CLAIM_MAX,
};
use crate::core::{Clock, Error, Result, Timestamp};
use crate::service::chunk_queue::new_lease_token;
use crate::service::paging::page_request;
use crate::store::Store;

pub struct SyncRetryService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    classifier: Classifier,
    snapshot_retention: u32,
}

/// A claim as received.
#[derive(Debug, Clone, Default)]
pub struct SyncClaimInput {
    pub worker_id: String,
    pub data_types: Vec<String>,
    pub max: u32,
    pub lease_seconds: u32,
}

impl SyncRetryService {
    /// Fails when a classification rule is not a valid expression.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        settings: &SyncSettings,
    ) -> Result<Self, String> {
        Ok(Self {
            store,
            clock,
            limits,
            classifier: Classifier::new(&settings.classification)?,
            snapshot_retention: settings.snapshot_retention.max(1),
        })
    }

    pub async fn register_source(&self, input: RegisterSourceInput) -> Result<Source> {
        let source = self.limits.new_source(input)?;
        self.store.register_source(&source, self.clock.now()).await
    }

    pub async fn list_sources(&self) -> Result<Vec<Source>> {
        self.store.list_sources().await
    }

    pub async fn claim(&self, input: SyncClaimInput) -> Result<Vec<LeasedSyncTask>> {
        let data_types = input
            .data_types
            .into_iter()
            .enumerate()
            .map(|(index, name)| self.limits.name(&format!("data_types[{index}]"), name))
            .collect::<Result<Vec<_>>>()?;
        let max = match input.max {
            0 => DEFAULT_CLAIM_MAX,
            n => self.limits.claim_batch("max", n)?,
        };
        let claim = SyncClaim {
            worker_id: self.limits.id("worker_id", input.worker_id)?,
            data_types,
            max,
            lease: self.limits.lease("lease_seconds", input.lease_seconds)?,
            lease_token: new_lease_token(),
        };
        self.store.claim_sync_tasks(&claim, self.clock.now()).await
    }

    pub async fn extend_lease(
        &self,
        task_id: i64,
        lease_token: String,
        lease_seconds: u32,
    ) -> Result<Timestamp> {
        let task_id = self.limits.task_id(task_id)?;
        let lease_token = self.limits.lease_token(lease_token)?;
        let expires_at = self
            .clock
            .now()
            .plus(self.limits.lease("lease_seconds", lease_seconds)?);
        self.store
            .extend_sync_lease(task_id, &lease_token, expires_at)
            .await
    }

    /// Records a failed sync, classified by the worker's `retryable` or by the rules.
    pub async fn fail(
        &self,
        task_id: i64,
        lease_token: String,
        error_message: String,
        retryable: Option<bool>,
    ) -> Result<FailedSync> {
        if error_message.trim().is_empty() {
            return Err(Error::invalid("error_message", "must not be empty"));
        }
        let error_message = self.limits.error_message(error_message);
        let classification = match retryable {
            Some(retryable) => Classification::by_worker(retryable),
            None => self.classifier.classify(&error_message),
        };
        let failure = SyncFailure {
            task_id: self.limits.task_id(task_id)?,
            lease_token: self.limits.lease_token(lease_token)?,
            error_message,
            classification,
        };
        self.store.fail_sync(failure, self.clock.now()).await
    }

    pub fn classify(&self, message: &str) -> Classification {
        self.classifier.classify(message)
    }

    /// Starts receiving a sync's snapshot for a leased task.
    pub async fn begin_snapshot(
        &self,
        task_id: i64,
        lease_token: String,
        content_type: String,
    ) -> Result<SnapshotWriter> {
        let task_id = self.limits.task_id(task_id)?;
        let lease_token = self.limits.lease_token(lease_token)?;
        if content_type.len() > self.limits.max_id_bytes {
            return Err(Error::invalid(
                "content_type",
                format!("at most {} bytes", self.limits.max_id_bytes),
            ));
        }
        let snapshot_id = self
            .store
            .begin_snapshot(task_id, &lease_token, &content_type, self.clock.now())
            .await?;
        Ok(SnapshotWriter {
            store: Arc::clone(&self.store),
            clock: Arc::clone(&self.clock),
            max_bytes: self.limits.max_snapshot_bytes,
            keep_versions: self.snapshot_retention,
            snapshot_id,
            task_id,
            lease_token,
            hasher: Sha256::new(),
            buffer: Vec::new(),
            next_part: 0,
            total: 0,
        })
    }

    pub async fn list_tasks(
        &self,
        data_type: String,
        status: Option<SyncTaskStatus>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<SyncTask>> {
        let filter = SyncTaskFilter {
            data_type: self.optional_name("data_type", data_type)?,
            status,
        };
        let page = page_request(&self.limits, page_size, 50, page_token)?;
        self.store.list_sync_tasks(filter, page).await
    }

    pub async fn retry_now(&self, task_id: i64) -> Result<SyncTask> {
        let task_id = self.limits.task_id(task_id)?;
        self.store.retry_sync_now(task_id, self.clock.now()).await
    }

    pub async fn cancel(&self, task_id: i64) -> Result<SyncTask> {
        let task_id = self.limits.task_id(task_id)?;
        self.store.cancel_sync_task(task_id, self.clock.now()).await
    }

    pub async fn failure_logs(
        &self,
        data_type: String,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<FailureLog>> {
        let data_type = self.optional_name("data_type", data_type)?;
        let page = page_request(&self.limits, page_size, 50, page_token)?;
        self.store
            .list_failure_logs(data_type.as_deref(), page)
            .await
    }

    /// A kept snapshot (the current one for version 0) and a reader of its data.
    pub async fn open_dataset(
        &self,
        data_type: String,
        version: u64,
    ) -> Result<(SnapshotInfo, DatasetReader)> {
        let data_type = self.limits.name("data_type", data_type)?;
        let (info, snapshot_id) = self
            .store
            .find_snapshot(&data_type, Some(version).filter(|v| *v > 0))
            .await?;
        let reader = DatasetReader {
            store: Arc::clone(&self.store),
            snapshot_id,
            next_part: 0,
        };
        Ok((info, reader))
    }

    pub async fn list_snapshots(&self, data_type: String) -> Result<Vec<SnapshotInfo>> {
        let data_type = self.limits.name("data_type", data_type)?;
        self.store.list_snapshots(&data_type).await
    }

    pub async fn rollback_to(&self, data_type: String, version: u64) -> Result<SnapshotInfo> {
        let data_type = self.limits.name("data_type", data_type)?;
        if version == 0 {
            return Err(Error::invalid("version", "must be positive"));
        }
        let snapshot = self
            .store
            .rollback_to(&data_type, version, self.clock.now())
            .await?;
        tracing::warn!(data_type, version, "rolled back by hand");
        Ok(snapshot)
    }

    pub async fn connection_health(&self, data_type: String) -> Result<Vec<ConnectionHealth>> {
        let data_type = self.optional_name("data_type", data_type)?;
        self.store.connection_health(data_type.as_deref()).await
    }

    /// The retry processor's run: expired leases become failures, then up to `limit` due
    /// retries become claimable. Returns (expired, released).
    pub async fn process_retries(&self, limit: u32) -> Result<(u32, u32)> {
        let now = self.clock.now();
        let expired = self.store.expire_sync_leases(now).await?;
        let released = self.store.release_due_retries(now, limit).await?;
        Ok((expired, released))
    }

    pub async fn prune(&self, retention: std::time::Duration) -> Result<u64> {
        let before = self.clock.now().minus(retention);
        self.store.prune_sync_history(before).await
    }

    pub async fn push(&self, input: PushInput) -> Result<Vec<ChangeResult>> {
        let push = self.limits.push(input)?;
        self.store.push_changes(&push, self.clock.now()).await
    }

    pub async fn pull(&self, collection: String, since: u64, limit: u32) -> Result<PulledChanges> {
        let collection = self.limits.name("collection", collection)?;
        let limit = self.limits.page_size(limit, 100).map_err(|_| {
            Error::invalid("limit", format!("at most {}", self.limits.max_page_size))
        })?;
        self.store.pull_changes(&collection, since, limit).await
    }

    pub async fn conflicts(
        &self,
        collection: String,
        status: Option<ConflictStatus>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Conflict>> {
        let filter = ConflictFilter {
            collection: self.optional_name("collection", collection)?,
            status,
        };
        let page = page_request(&self.limits, page_size, 50, page_token)?;
        self.store.list_conflicts(filter, page).await
    }

    pub async fn resolve(&self, conflict_id: i64, resolution: Resolution) -> Result<Conflict> {
        let conflict_id = self.limits.conflict_id(conflict_id)?;
        if let Resolution::Merged { payload, .. } = &resolution {
            self.limits.payload("merged_payload", payload)?;
        }
        self.store
            .resolve_conflict(conflict_id, resolution, self.clock.now())
            .await
    }

    fn optional_name(&self, field: &str, value: String) -> Result<Option<String>> {
        if value.is_empty() {
            return Ok(None);
        }
        self.limits.name(field, value).map(Some)
    }
}

/// Receives a snapshot's data: checks the size limit and hashes as the data arrives, and stores
/// it in parts of `PART_BYTES`, so at most one part (plus one message) is ever held in memory.
pub struct SnapshotWriter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    max_bytes: u64,
    keep_versions: u32,
    snapshot_id: i64,
    task_id: i64,
    lease_token: String,
    hasher: Sha256,
    buffer: Vec<u8>,
    next_part: u32,
    total: u64,
}

impl SnapshotWriter {
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.total = self.total.saturating_add(data.len() as u64);
        if self.total > self.max_bytes {
            return Err(Error::too_large(
                "data",
                format!("the snapshot passed {} bytes, the limit", self.max_bytes),
            ));
        }
        self.hasher.update(data);
        self.buffer.extend_from_slice(data);
        while self.buffer.len() >= PART_BYTES {
            let rest = self.buffer.split_off(PART_BYTES);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.store_part(&part).await?;
        }
        Ok(())
    }

    /// Stores what is left and has the snapshot judged. `expected_sha256`, when given, is the
    /// worker's checksum of everything it sent.
    pub async fn finish(
        mut self,
        item_count: u64,
        expected_sha256: Option<String>,
    ) -> Result<CompletedSync> {
        if let Some(expected) = &expected_sha256 {
            if expected.len() != 64 || !expected.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(Error::invalid(
                    "end.sha256",
                    "must be 64 hexadecimal digits",
                ));
            }
        }
        if !self.buffer.is_empty() {
            let part = std::mem::take(&mut self.buffer);
            self.store_part(&part).await?;
        }
        let upload = SnapshotUpload {
            snapshot_id: self.snapshot_id,
            task_id: self.task_id,
            lease_token: self.lease_token.clone(),
            item_count,
            byte_size: self.total,
            checksum: hex::encode(self.hasher.clone().finalize()),
            expected_checksum: expected_sha256,
            keep_versions: self.keep_versions,
        };
        self.store.finish_snapshot(upload, self.clock.now()).await
    }

    /// Throws away a snapshot whose stream broke off or was refused.
    pub async fn discard(self) {
        if let Err(err) = self.store.discard_snapshot(self.snapshot_id).await {
            tracing::warn!(error = %err, snapshot = self.snapshot_id, "cannot discard a staged snapshot; pruning will");
        }
    }

    async fn store_part(&mut self, part: &[u8]) -> Result<()> {
        self.store
            .append_snapshot_part(self.snapshot_id, self.next_part, part)
            .await?;
        self.next_part += 1;
        Ok(())
    }
}

/// Reads a stored snapshot part by part.
pub struct DatasetReader {
    store: Arc<dyn Store>,
    snapshot_id: i64,
    next_part: u32,
}

impl DatasetReader {
    /// The next part; None after the last.
    pub async fn next_part(&mut self) -> Result<Option<Vec<u8>>> {
        let part = self
            .store
            .snapshot_part(self.snapshot_id, self.next_part)
            .await?;
        self.next_part += 1;
        Ok(part)
    }
}
