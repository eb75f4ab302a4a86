//! Receiving an upload's content: parts are written at their offsets, made durable and recorded
//! in checkpoints, and checked against the declared sha256 when the last byte is in.

use std::sync::Arc;

use super::{blob_error, UploadService};
use crate::blobs::BlobWriter;
use crate::core::uploads::{check_part_range, checksum_mismatch, wrong_offset, Upload};
use crate::core::{Error, Result, Timestamp};

/// One UploadContent call in progress.
pub struct Receiving {
    service: Arc<UploadService>,
    upload: Upload,
    writer: Box<dyn BlobWriter>,
    /// Where the next part must start.
    position: u64,
    /// What the store has recorded as durable.
    recorded: u64,
    last_checkpoint_at: Timestamp,
    /// Set once the content was checked (stored, or rejected).
    finished: Option<Upload>,
}

impl UploadService {
    /// Starts a call whose first part is at `offset`: it must be where the upload continues.
    pub async fn begin_receiving(
        self: &Arc<Self>,
        upload_id: String,
        offset: u64,
    ) -> Result<Receiving> {
        let upload = self.get_upload(upload_id).await?;
        upload.check_resume_at(offset)?;
        let writer = self
            .blobs
            .writer(&upload.blob_key)
            .await
            .map_err(blob_error)?;
        Ok(Receiving {
            service: Arc::clone(self),
            position: offset,
            recorded: offset,
            last_checkpoint_at: self.clock.now(),
            finished: None,
            upload,
            writer,
        })
    }
}

impl Receiving {
    pub fn upload_id(&self) -> &str {
        &self.upload.upload_id
    }

    /// Takes one part. Every check comes before the write, so a refused part changes nothing.
    /// When the part completes the content, the content is checked: a mismatch is DataLoss.
    pub async fn append(&mut self, upload_id: &str, offset: u64, data: Vec<u8>) -> Result<()> {
        if !upload_id.is_empty() && upload_id != self.upload.upload_id {
            return Err(Error::invalid(
                "upload_id",
                "every part of one call must name the same upload",
            ));
        }
        if let Some(done) = &self.finished {
            return Err(Error::FailedPrecondition(format!(
                "upload {:?} is {} and takes no more content",
                done.upload_id,
                done.status.as_str()
            )));
        }
        if offset != self.position {
            return Err(wrong_offset(&self.upload.upload_id, offset, self.position));
        }
        self.service.settings.policy.part(&data)?;
        check_part_range(&self.upload, offset, data.len())?;
        if !data.is_empty() {
            let len = data.len() as u64;
            self.writer
                .write_at(offset, data)
                .await
                .map_err(blob_error)?;
            self.position += len;
        }
        if self.position == self.upload.size_bytes {
            return self.complete().await;
        }
        let settings = &self.service.settings;
        let now = self.service.clock.now();
        if self.position - self.recorded >= settings.checkpoint_bytes
            || now.since(self.last_checkpoint_at) >= settings.checkpoint_interval
        {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Ends the call, whether the client finished or went away: what was received is made
    /// durable and recorded, so the next call resumes right after it.
    pub async fn end(mut self) -> Result<Upload> {
        if let Some(done) = self.finished.take() {
            return Ok(done);
        }
        if self.position > self.recorded {
            return self.checkpoint().await;
        }
        self.service.store.get_upload(&self.upload.upload_id).await
    }

    async fn checkpoint(&mut self) -> Result<Upload> {
        self.writer.sync().await.map_err(blob_error)?;
        let now = self.service.clock.now();
        let upload = self
            .service
            .store
            .record_received(&self.upload.upload_id, self.position, now)
            .await?;
        self.recorded = self.position;
        self.last_checkpoint_at = now;
        Ok(upload)
    }

    /// Every byte is in: check it, then seal it as the upload's content, or throw it away.
    async fn complete(&mut self) -> Result<()> {
        let service = Arc::clone(&self.service);
        let key = &self.upload.blob_key;
        let size = self.upload.size_bytes;
        self.writer.sync().await.map_err(blob_error)?;
        let actual = service.blobs.digest(key, size).await.map_err(blob_error)?;
        let now = service.clock.now();
        if actual != self.upload.sha256 {
            let reason = checksum_mismatch(&self.upload.sha256, &actual);
            service.blobs.discard(key).await.map_err(blob_error)?;
            let rejected = service
                .store
                .mark_content_rejected(&self.upload.upload_id, &reason, now)
                .await?;
            self.finished = Some(rejected);
            return Err(Error::DataLoss(reason));
        }
        service.blobs.seal(key, size).await.map_err(blob_error)?;
        let deliver_at = self.upload.destination.as_ref().map(|_| now);
        let stored = match service
            .store
            .mark_stored(&self.upload.upload_id, deliver_at, now)
            .await
        {
            Ok(stored) => stored,
            // Another call finished the same upload first: the content is the same.
            Err(Error::FailedPrecondition(_)) => {
                service.store.get_upload(&self.upload.upload_id).await?
            }
            Err(err) => return Err(err),
        };
        if stored.awaits_delivery() && service.settings.deliver_on_store {
            service.deliver_in_background(stored.upload_id.clone());
        }
        self.finished = Some(stored);
        Ok(())
    }
}
