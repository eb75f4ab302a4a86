//! The device side of DeviceImages, as the MQTT adapter sees it: one call per message a device
//! publishes. Kept apart from the operator's API so the adapter depends on nothing else.

use async_trait::async_trait;

use crate::core::device_messages::{ChunkAck, HelloReport, SleepReport};
use crate::core::devices::{Command, NewImage};
use crate::core::Result;

#[async_trait]
pub trait DeviceInbox: Send + Sync {
    /// Opens a wake session (closing one left open), applies the timeout rule to the device's
    /// images whose wake time has come, records the telemetry, and returns the commands to
    /// publish now: due, unexpired, highest priority first. They stay pending until
    /// `commands_published` says they went out, so a crash in between re-sends them at the next
    /// HELLO rather than losing them. NotFound for an unknown device (unless devices are
    /// registered automatically).
    async fn hello(&self, mac: &str, hello: HelloReport) -> Result<Vec<Command>>;
    /// The adapter handed these commands to the broker.
    async fn commands_published(&self, mac: &str, command_ids: &[i64]) -> Result<()>;
    /// Records an announced image; the same announcement again changes nothing.
    async fn begin_image(&self, mac: &str, image: NewImage) -> Result<()>;
    /// Stores a chunk idempotently, completing the image (checksum checked, assembled into the
    /// blob store) when it was the last one missing. Returns the acknowledgement to publish.
    async fn chunk(
        &self,
        mac: &str,
        image_name: &str,
        index: u32,
        data: Vec<u8>,
    ) -> Result<ChunkAck>;
    /// Closes the wake session and records the next wake time.
    async fn sleep(&self, mac: &str, sleep: SleepReport) -> Result<()>;
}
