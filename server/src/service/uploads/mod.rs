//! UploadRetry's use cases: declaring uploads, receiving and checking their content
//! ([`receive`]), and the retry runs that deliver them ([`retry`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::blobs::{BlobReader, BlobStore};
use crate::core::chunks::Page;
use crate::core::limits::Limits;
use crate::core::uploads::{CreateUploadInput, Upload, UploadFilter, UploadPolicy};
use crate::core::{Clock, Error, Result};
use crate::delivery::Deliveries;
use crate::service::paging::page_request;
use crate::store::Store;

mod receive;
mod retry;

pub use receive::Receiving;
pub use retry::RunReport;

/// How retry runs and content reception behave (the `[uploads]` configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct UploadSettings {
    pub policy: UploadPolicy,
    /// A delivery attempt's lease, renewed while it runs: a replica that dies mid-delivery
    /// leaves the upload to others once its lease runs out.
    pub delivery_lease: Duration,
    /// Delivery attempts one run makes at once.
    pub delivery_concurrency: usize,
    /// Most uploads one run takes.
    pub max_uploads_per_run: u32,
    /// Received bytes are made durable and recorded at least this often (and when a call ends).
    pub checkpoint_bytes: u64,
    pub checkpoint_interval: Duration,
    /// Start the first delivery as soon as an upload is stored (otherwise the next sweep does).
    pub deliver_on_store: bool,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            policy: UploadPolicy::default(),
            delivery_lease: Duration::from_secs(60),
            delivery_concurrency: 4,
            max_uploads_per_run: 100,
            checkpoint_bytes: 4 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(2),
            deliver_on_store: true,
        }
    }
}

pub struct UploadService {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    deliveries: Arc<Deliveries>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    settings: UploadSettings,
}

impl UploadService {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        deliveries: Arc<Deliveries>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        settings: UploadSettings,
    ) -> Self {
        Self {
            store,
            blobs,
            deliveries,
            clock,
            limits,
            settings,
        }
    }

    pub fn settings(&self) -> &UploadSettings {
        &self.settings
    }

    pub async fn create_upload(&self, input: CreateUploadInput) -> Result<Upload> {
        let upload = self
            .settings
            .policy
            .new_upload(input, |field, value| self.limits.id(field, value))?;
        let blob_key = uuid::Uuid::new_v4().simple().to_string();
        self.store
            .create_upload(&upload, blob_key, self.clock.now())
            .await
    }

    pub async fn get_upload(&self, upload_id: String) -> Result<Upload> {
        let upload_id = self.limits.id("upload_id", upload_id)?;
        self.store.get_upload(&upload_id).await
    }

    pub async fn list_uploads(
        &self,
        filter: UploadFilter,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Upload>> {
        if let Some(owner) = &filter.owner {
            self.limits.id("owner", owner.clone())?;
        }
        let page = page_request(&self.limits, page_size, 50, page_token)?;
        self.store.list_uploads(&filter, page).await
    }

    /// The stored content of an upload from `offset`, with the upload.
    pub async fn download(&self, upload_id: String, offset: u64) -> Result<(Upload, BlobReader)> {
        let upload = self.get_upload(upload_id).await?;
        if upload.stored_at.is_none() || upload.content_pruned_at.is_some() {
            let why = if upload.content_pruned_at.is_some() {
                "its content was removed after the retention"
            } else {
                "it has no complete content yet"
            };
            return Err(Error::FailedPrecondition(format!(
                "upload {:?} cannot be downloaded: {why}",
                upload.upload_id
            )));
        }
        if offset > upload.size_bytes {
            return Err(Error::OutOfRange(format!(
                "offset {offset} is past the end of upload {:?} ({} bytes)",
                upload.upload_id, upload.size_bytes
            )));
        }
        let reader = self
            .blobs
            .open(&upload.blob_key, offset)
            .await
            .map_err(blob_error)?;
        Ok((upload, reader))
    }
}

/// The blob store failing is the server's trouble, not the caller's: a full or missing disk may
/// come back, so the call may be retried.
fn blob_error(err: io::Error) -> Error {
    match err.kind() {
        io::ErrorKind::NotFound => {
            Error::Internal(format!("content missing from the blob store: {err}"))
        }
        _ => Error::Unavailable(format!("blob store: {err}")),
    }
}
