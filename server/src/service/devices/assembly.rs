//! Putting an image together once every chunk is in: the chunks are joined in order, checked
//! against the SHA-256 the device announced, and written to the blob store; only then is the
//! image complete and its chunk rows deleted. A crash anywhere before that leaves the chunks in
//! the database and the image not complete, so the next repeated chunk or sweep does it again.

use sha2::{Digest, Sha256};

use super::DeviceService;
use crate::core::devices::Image;
use crate::core::{Error, Result};

/// The blob key of a device image. Keys are letters, digits and '-': the image name (which may
/// hold '.' and '_') is hex-encoded.
pub fn image_blob_key(mac: &str, image_name: &str) -> String {
    format!("device-{mac}-{}", hex::encode(image_name.as_bytes()))
}

impl DeviceService {
    pub(super) async fn assemble(&self, mac: &str, image_name: &str) -> Result<Image> {
        let image = self.store.get_image(mac, image_name).await?;
        let chunks = self.store.image_chunks(mac, image_name).await?;
        if chunks.len() != image.chunks.total() as usize {
            // Not every chunk row is there (a concurrent completion deleted them): nothing to do.
            return self.store.get_image(mac, image_name).await;
        }
        let content = chunks.concat();
        let digest = hex::encode(Sha256::digest(&content));
        let now = self.clock.now();
        if digest != image.sha256 || content.len() as u64 != image.size_bytes {
            tracing::warn!(
                %mac,
                %image_name,
                expected = %image.sha256,
                got = %digest,
                size = content.len(),
                "image checksum mismatch: every chunk is asked for again"
            );
            let image = self
                .store
                .reject_image_checksum(mac, image_name, now)
                .await?;
            self.history_changed();
            return Ok(image);
        }
        let key = image_blob_key(mac, image_name);
        let length = content.len() as u64;
        let stored = async {
            let mut writer = self.blobs.writer(&key).await?;
            writer.write_at(0, content).await?;
            writer.sync().await?;
            self.blobs.seal(&key, length).await
        };
        stored.await.map_err(|err| {
            Error::Unavailable(format!("cannot store image {image_name:?}: {err}"))
        })?;
        let image = self
            .store
            .complete_image(mac, image_name, &key, now)
            .await?;
        self.history_changed();
        Ok(image)
    }
}
