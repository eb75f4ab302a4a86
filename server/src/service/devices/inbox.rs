//! The device side: what HELLO, image/begin, chunks and sleep do.

use async_trait::async_trait;

use super::DeviceService;
use crate::core::device_messages::{ChunkAck, HelloReport, SleepReport};
use crate::core::devices::{
    validate_image_name, validate_total_chunks, Command, ImageStatus, NewDevice, NewImage,
};
use crate::core::{Error, Result};
use crate::service::device_inbox::DeviceInbox;

impl DeviceService {
    /// A device that said HELLO without being registered: registered under its MAC when the
    /// server is configured to, else NotFound (the adapter logs and ignores it).
    async fn register_on_first_hello(&self, mac: &str, hello: &HelloReport) -> Result<()> {
        if !self.settings.auto_register {
            return Err(Error::NotFound {
                kind: "device",
                id: mac.to_owned(),
            });
        }
        let device = NewDevice {
            mac: mac.to_owned(),
            name: mac.to_owned(),
            wake_interval_seconds: hello.wake_interval_seconds,
            next_wake_at: None,
        };
        self.store
            .register_device(&device, self.clock.now())
            .await?;
        tracing::info!(%mac, "registered a new device on its first hello");
        Ok(())
    }

    fn check_announcement(&self, image: &NewImage) -> Result<()> {
        validate_image_name("image_name", &image.image_name)?;
        validate_total_chunks("total_chunks", image.total_chunks)?;
        let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if image.sha256.len() != 64 || !image.sha256.chars().all(is_hex) {
            return Err(Error::invalid(
                "sha256",
                "must be 32 bytes (64 lowercase hex digits)",
            ));
        }
        if image.size_bytes > self.settings.max_image_bytes {
            return Err(Error::too_large(
                "size_bytes",
                format!("must be at most {} bytes", self.settings.max_image_bytes),
            ));
        }
        let most = u64::from(image.total_chunks) * self.settings.max_chunk_bytes as u64;
        if image.size_bytes > most || image.size_bytes < u64::from(image.total_chunks) {
            return Err(Error::invalid(
                "size_bytes",
                "does not fit total_chunks chunks of at least one byte and at most the chunk limit",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl DeviceInbox for DeviceService {
    async fn hello(&self, mac: &str, hello: HelloReport) -> Result<Vec<Command>> {
        let now = self.clock.now();
        let outcome = match self.store.device_hello(mac, &hello, now).await {
            Err(Error::NotFound { kind: "device", .. }) => {
                self.register_on_first_hello(mac, &hello).await?;
                self.store.device_hello(mac, &hello, now).await?
            }
            other => other?,
        };
        if outcome.timeouts.images_timed_out > 0 {
            tracing::info!(
                %mac,
                timed_out = outcome.timeouts.images_timed_out,
                retries = outcome.timeouts.retries_queued,
                "images not finished before this wake were failed"
            );
        }
        self.history_changed();
        Ok(outcome.commands)
    }

    async fn commands_published(&self, mac: &str, command_ids: &[i64]) -> Result<()> {
        if command_ids.is_empty() {
            return Ok(());
        }
        self.store
            .mark_commands_sent(mac, command_ids, self.clock.now())
            .await?;
        self.history_changed();
        Ok(())
    }

    async fn begin_image(&self, mac: &str, image: NewImage) -> Result<()> {
        self.check_announcement(&image)?;
        self.store
            .begin_image(mac, &image, self.clock.now())
            .await?;
        self.history_changed();
        Ok(())
    }

    async fn chunk(
        &self,
        mac: &str,
        image_name: &str,
        index: u32,
        data: Vec<u8>,
    ) -> Result<ChunkAck> {
        if data.is_empty() || data.len() > self.settings.max_chunk_bytes {
            return Err(Error::invalid(
                "data",
                format!("must be 1 to {} bytes", self.settings.max_chunk_bytes),
            ));
        }
        let receipt = self
            .store
            .store_chunk(mac, image_name, index, &data, self.clock.now())
            .await?;
        let mut image = receipt.image;
        // A repeated last chunk also gets here: it finishes an image whose assembly a crash
        // interrupted.
        if image.status != ImageStatus::Complete && image.chunks.is_complete() {
            image = self.assemble(mac, image_name).await?;
        }
        Ok(ChunkAck {
            image_name: image.image_name,
            chunks_received: image.chunks.received(),
            total_chunks: image.chunks.total(),
            image_complete: image.status == ImageStatus::Complete,
        })
    }

    async fn sleep(&self, mac: &str, sleep: SleepReport) -> Result<()> {
        self.store
            .device_sleep(mac, &sleep, self.clock.now())
            .await?;
        self.history_changed();
        Ok(())
    }
}
