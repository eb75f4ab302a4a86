//! DeviceImages' use cases: the operator's side here, the device's side (what the MQTT adapter
//! hands in) in `inbox`, putting a complete image together in `assembly`.

mod assembly;
mod inbox;

use std::sync::Arc;

use tokio::sync::watch;

use crate::blobs::{BlobReader, BlobStore};
use crate::core::chunks::Page;
use crate::core::devices::{
    normalize_mac, validate_command_type, validate_device_name, validate_image_name,
    validate_priority, validate_wake_interval, Alert, AlertFilter, Command, CommandFilter,
    CommandStatus, Device, HistoryEvent, Image, ImageFilter, ImageStatus, NewCommand, NewDevice,
    RetryReset, SweepOutcome, WakeSession,
};
use crate::core::limits::Limits;
use crate::core::{Clock, Error, Result, Timestamp};
use crate::service::paging::page_request;
use crate::store::Store;

/// The contract bounds a command payload so a device can receive it into a fixed buffer.
pub const MAX_COMMAND_PAYLOAD_BYTES: usize = 1024;
const DEFAULT_PAGE_SIZE: u32 = 50;
/// Images waiting for assembly picked up per sweep.
const ASSEMBLY_BATCH: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSettings {
    /// A HELLO from an unknown MAC registers the device (named after its MAC) instead of being
    /// ignored.
    pub auto_register: bool,
    /// The largest chunk accepted; larger ones are dropped.
    pub max_chunk_bytes: usize,
    /// The largest image accepted at image/begin: assembly holds one image in memory.
    pub max_image_bytes: u64,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Self {
            auto_register: false,
            max_chunk_bytes: 64 * 1024,
            max_image_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A registration as received.
#[derive(Debug, Clone, Default)]
pub struct RegisterDeviceInput {
    pub mac: String,
    pub name: String,
    pub wake_interval_seconds: u32,
    pub next_wake_at: Option<Timestamp>,
}

/// A command as an operator queues it.
#[derive(Debug, Clone, Default)]
pub struct QueueCommandInput {
    pub mac: String,
    pub command_type: String,
    pub payload: Vec<u8>,
    pub priority: u32,
    pub scheduled_for: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

pub struct DeviceService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    blobs: Arc<dyn BlobStore>,
    limits: Limits,
    settings: DeviceSettings,
    /// Bumped whenever this process writes history, so watchers look at once instead of at
    /// their next poll (which still finds what other replicas wrote).
    history_written: watch::Sender<u64>,
}

impl DeviceService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        blobs: Arc<dyn BlobStore>,
        limits: Limits,
        settings: DeviceSettings,
    ) -> Self {
        Self {
            store,
            clock,
            blobs,
            limits,
            settings,
            history_written: watch::channel(0).0,
        }
    }

    fn history_changed(&self) {
        self.history_written.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub async fn register_device(&self, input: RegisterDeviceInput) -> Result<Device> {
        let mac = normalize_mac("mac", &input.mac)?;
        validate_device_name("name", &input.name)?;
        validate_wake_interval("wake_interval_seconds", input.wake_interval_seconds)?;
        let device = NewDevice {
            mac,
            name: input.name,
            wake_interval_seconds: input.wake_interval_seconds,
            next_wake_at: input.next_wake_at,
        };
        self.store.register_device(&device, self.clock.now()).await
    }

    pub async fn get_device(&self, mac: &str) -> Result<Device> {
        self.store.get_device(&normalize_mac("mac", mac)?).await
    }

    pub async fn list_devices(&self, page_size: u32, page_token: &str) -> Result<Page<Device>> {
        let page = page_request(&self.limits, page_size, DEFAULT_PAGE_SIZE, page_token)?;
        self.store.list_devices(page).await
    }

    pub async fn list_images(
        &self,
        mac: &str,
        status: Option<ImageStatus>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Image>> {
        let filter = ImageFilter {
            mac: optional_mac(mac)?,
            status,
        };
        let page = page_request(&self.limits, page_size, DEFAULT_PAGE_SIZE, page_token)?;
        self.store.list_images(&filter, page).await
    }

    pub async fn get_image(&self, mac: &str, image_name: &str) -> Result<Image> {
        let mac = normalize_mac("mac", mac)?;
        validate_image_name("image_name", image_name)?;
        self.store.get_image(&mac, image_name).await
    }

    /// A complete image and a reader of its bytes; FailedPrecondition before it is complete.
    pub async fn download_image(&self, mac: &str, image_name: &str) -> Result<(Image, BlobReader)> {
        let image = self.get_image(mac, image_name).await?;
        let key = match (&image.status, &image.blob_key) {
            (ImageStatus::Complete, Some(key)) => key.clone(),
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "image {image_name:?} is {}, not complete: {} of {} chunks in",
                    image.status.as_str(),
                    image.chunks.received(),
                    image.chunks.total()
                )))
            }
        };
        let reader = self.blobs.open(&key, 0).await.map_err(|err| {
            Error::DataLoss(format!(
                "image {image_name:?} is missing from the blob store: {err}"
            ))
        })?;
        Ok((image, reader))
    }

    pub async fn retry_failed_images(&self, mac: &str) -> Result<RetryReset> {
        let mac = normalize_mac("mac", mac)?;
        let reset = self
            .store
            .retry_failed_images(&mac, self.clock.now())
            .await?;
        self.history_changed();
        Ok(reset)
    }

    pub async fn queue_command(&self, input: QueueCommandInput) -> Result<Command> {
        let mac = normalize_mac("mac", &input.mac)?;
        validate_command_type("type", &input.command_type)?;
        validate_priority("priority", input.priority)?;
        if input.payload.len() > MAX_COMMAND_PAYLOAD_BYTES {
            return Err(Error::too_large(
                "payload",
                format!("must be at most {MAX_COMMAND_PAYLOAD_BYTES} bytes"),
            ));
        }
        let now = self.clock.now();
        let scheduled_for = input.scheduled_for.unwrap_or(now);
        if input
            .expires_at
            .is_some_and(|expiry| expiry <= scheduled_for)
        {
            return Err(Error::invalid("expires_at", "must be after scheduled_for"));
        }
        let command = NewCommand {
            image_name: None,
            command_type: input.command_type,
            payload: input.payload,
            priority: input.priority,
            scheduled_for,
            expires_at: input.expires_at,
        };
        self.store.queue_command(&mac, &command, now).await
    }

    pub async fn list_commands(
        &self,
        mac: &str,
        status: Option<CommandStatus>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Command>> {
        let filter = CommandFilter {
            mac: optional_mac(mac)?,
            status,
        };
        let page = page_request(&self.limits, page_size, DEFAULT_PAGE_SIZE, page_token)?;
        self.store.list_commands(&filter, page).await
    }

    pub async fn list_alerts(
        &self,
        mac: &str,
        include_acknowledged: bool,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Alert>> {
        let filter = AlertFilter {
            mac: optional_mac(mac)?,
            include_acknowledged,
        };
        let page = page_request(&self.limits, page_size, DEFAULT_PAGE_SIZE, page_token)?;
        self.store.list_alerts(&filter, page).await
    }

    pub async fn acknowledge_alert(&self, alert_id: i64) -> Result<Alert> {
        if alert_id <= 0 {
            return Err(Error::invalid(
                "alert_id",
                "must be an id ListAlerts returned",
            ));
        }
        self.store
            .acknowledge_alert(alert_id, self.clock.now())
            .await
    }

    pub async fn list_wake_sessions(
        &self,
        mac: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<WakeSession>> {
        let mac = optional_mac(mac)?;
        let page = page_request(&self.limits, page_size, DEFAULT_PAGE_SIZE, page_token)?;
        self.store.list_wake_sessions(mac.as_deref(), page).await
    }

    pub async fn list_history(
        &self,
        mac: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<HistoryEvent>> {
        let mac = optional_mac(mac)?;
        let page = page_request(&self.limits, page_size, DEFAULT_PAGE_SIZE, page_token)?;
        self.store.list_history(mac.as_deref(), page).await
    }

    /// The timeout sweep: first finishes images that hold every chunk but were never put
    /// together (a crash in between), so they are not timed out; then the timeout rule and the
    /// removal of expired commands.
    pub async fn run_timeout_sweep(&self) -> Result<SweepOutcome> {
        for (mac, image_name) in self.store.images_awaiting_assembly(ASSEMBLY_BATCH).await? {
            if let Err(err) = self.assemble(&mac, &image_name).await {
                tracing::warn!(%mac, %image_name, %err, "could not put a complete image together");
            }
        }
        let outcome = self.store.run_timeout_sweep(self.clock.now()).await?;
        self.history_changed();
        Ok(outcome)
    }

    /// The MAC a watch is about (validated), and where its history starts: only what happens
    /// from now on.
    pub async fn watch_start(&self, mac: &str) -> Result<(Option<String>, i64)> {
        let mac = optional_mac(mac)?;
        if let Some(mac) = &mac {
            self.store.get_device(mac).await?;
        }
        Ok((mac, self.store.last_history_id().await?))
    }

    /// History after `after_id`, oldest first, at most `limit` events.
    pub async fn history_after(
        &self,
        mac: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<HistoryEvent>> {
        self.store.history_after(mac, after_id, limit).await
    }

    /// Changes whenever this process writes history.
    pub fn history_written(&self) -> watch::Receiver<u64> {
        self.history_written.subscribe()
    }
}

/// An optional MAC filter: empty means every device.
fn optional_mac(mac: &str) -> Result<Option<String>> {
    if mac.is_empty() {
        Ok(None)
    } else {
        normalize_mac("mac", mac).map(Some)
    }
}
