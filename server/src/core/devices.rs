//! DeviceImages' domain: battery devices that wake on a schedule and send images in chunks, the
//! chunk bitmap that makes chunk storage idempotent, and the timeout rule that fails an image
//! still receiving at the device's next wake and queues the retry of its missing chunks.

use std::time::Duration;

use prost::Message;

use super::chunks::status_enum;
use super::{Error, Result, Timestamp};

/// Every image may be retried this many times before it stays failed (the seed's default).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The command type the timeout rule queues.
pub const RETRY_IMAGE: &str = "retry_image";
/// Retry commands outrank what an operator usually queues (0 to 10, higher first).
pub const RETRY_PRIORITY: u32 = 8;
pub const MAX_PRIORITY: u32 = 10;
/// A retry becomes due this long before the wake it is meant for, so it is waiting at HELLO.
pub const RETRY_LEAD: Duration = Duration::from_secs(5 * 60);
/// A retry nobody picked up within this long after the wake is dropped: the next timeout queues
/// a fresh one with the chunks missing then.
pub const RETRY_VALIDITY: Duration = Duration::from_secs(60 * 60);
pub const TIMEOUT_REASON: &str = "not completed before wake window";
/// Chunks per image: a bitmap of 512 bytes at most.
pub const MAX_CHUNKS: u32 = 4096;
/// A week: devices that sleep longer are told their next wake time instead.
pub const MAX_WAKE_INTERVAL_SECONDS: u32 = 7 * 24 * 3600;

status_enum!(DeviceStatus {
    /// Registered; no HELLO yet.
    Registered => "registered",
    /// In a wake session.
    Awake => "awake",
    Asleep => "asleep",
});

status_enum!(ImageStatus {
    /// Announced; no chunk yet.
    Pending => "pending",
    Receiving => "receiving",
    /// Every chunk in, checksum good, in the blob store.
    Complete => "complete",
    /// Timed out or checksum mismatch; its missing chunks may still arrive.
    Failed => "failed",
});

status_enum!(CommandStatus {
    Pending => "pending",
    /// Published to the device.
    Sent => "sent",
});

status_enum!(WakeSessionStatus {
    InProgress => "in_progress",
    /// Ended with `sleep`.
    Completed => "completed",
    /// Never closed by the device.
    Timeout => "timeout",
    /// Ended with device error codes.
    Error => "error",
});

/// A MAC address as 12 uppercase hex digits; ':' and '-' separators are accepted and dropped.
pub fn normalize_mac(field: &str, value: &str) -> Result<String> {
    let digits: String = value.chars().filter(|c| *c != ':' && *c != '-').collect();
    if digits.len() != 12 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            field,
            "must be a MAC address: 12 hex digits, ':' or '-' separators allowed",
        ));
    }
    Ok(digits.to_ascii_uppercase())
}

/// A device's display name: 1 to 128 bytes, no control characters.
pub fn validate_device_name(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 128 {
        return Err(Error::invalid(field, "must be 1 to 128 bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// An image name is used in blob keys and device buffers: 1 to 64 bytes of letters, digits,
/// '.', '_' and '-', not starting with '.'.
pub fn validate_image_name(field: &str, value: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.is_empty() || value.len() > 64 || value.starts_with('.') || !value.chars().all(allowed)
    {
        return Err(Error::invalid(
            field,
            "must be 1 to 64 bytes of letters, digits, '.', '_' and '-', not starting with '.'",
        ));
    }
    Ok(())
}

/// A command type: 1 to 32 bytes of lowercase letters, digits and '_'.
pub fn validate_command_type(field: &str, value: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if value.is_empty() || value.len() > 32 || !value.chars().all(allowed) {
        return Err(Error::invalid(
            field,
            "must be 1 to 32 bytes of lowercase letters, digits and '_'",
        ));
    }
    Ok(())
}

pub fn validate_priority(field: &str, value: u32) -> Result<()> {
    if value > MAX_PRIORITY {
        return Err(Error::invalid(field, "must be 0 to 10"));
    }
    Ok(())
}

pub fn validate_total_chunks(field: &str, value: u32) -> Result<()> {
    if value == 0 || value > MAX_CHUNKS {
        return Err(Error::invalid(field, format!("must be 1 to {MAX_CHUNKS}")));
    }
    Ok(())
}

pub fn validate_wake_interval(field: &str, seconds: u32) -> Result<()> {
    if seconds > MAX_WAKE_INTERVAL_SECONDS {
        return Err(Error::invalid(field, "must be at most 7 days"));
    }
    Ok(())
}

/// Which chunks of an image have arrived: bit `i % 8` of byte `i / 8` is chunk `i`. Setting a bit
/// twice is harmless, which is what makes chunk storage idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkBitmap {
    total: u32,
    bits: Vec<u8>,
}

impl ChunkBitmap {
    pub fn empty(total: u32) -> Self {
        Self {
            total,
            bits: vec![0; total.div_ceil(8) as usize],
        }
    }

    /// A stored bitmap; bytes missing at the end read as chunks not received, bits past `total`
    /// are ignored.
    pub fn from_bytes(total: u32, bytes: &[u8]) -> Self {
        let mut bitmap = Self::empty(total);
        let len = bitmap.bits.len().min(bytes.len());
        bitmap.bits[..len].copy_from_slice(&bytes[..len]);
        if !total.is_multiple_of(8) {
            if let Some(last) = bitmap.bits.last_mut() {
                *last &= (1u8 << (total % 8)) - 1;
            }
        }
        bitmap
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn contains(&self, index: u32) -> bool {
        index < self.total && self.bits[(index / 8) as usize] & (1 << (index % 8)) != 0
    }

    /// Marks a chunk received. Err for an index past the end; Ok(false) when it was already in.
    pub fn insert(&mut self, index: u32) -> Result<bool> {
        if index >= self.total {
            return Err(Error::OutOfRange(format!(
                "chunk {index} is past the image's {} chunks",
                self.total
            )));
        }
        let newly = !self.contains(index);
        self.bits[(index / 8) as usize] |= 1 << (index % 8);
        Ok(newly)
    }

    pub fn received(&self) -> u32 {
        self.bits.iter().map(|byte| byte.count_ones()).sum()
    }

    pub fn is_complete(&self) -> bool {
        self.received() == self.total
    }

    /// The indices not received yet, ascending.
    pub fn missing(&self) -> Vec<u32> {
        (0..self.total)
            .filter(|index| !self.contains(*index))
            .collect()
    }
}

/// What the timeout rule looks at of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageProgress {
    pub image_name: String,
    pub status: ImageStatus,
    pub retry_count: u32,
    pub max_retries: u32,
    pub chunks: ChunkBitmap,
}

/// An image still pending or receiving when its device's wake time has come will not be
/// finished in this wake: it is failed (a pending one lost every chunk, and is retried whole).
/// Without a known wake time nothing times out.
pub fn is_timed_out(status: ImageStatus, next_wake_at: Option<Timestamp>, now: Timestamp) -> bool {
    matches!(status, ImageStatus::Pending | ImageStatus::Receiving)
        && next_wake_at.is_some_and(|wake| now >= wake)
}

/// A command to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    /// The image a retry_image command is about: a newer retry of it replaces this one.
    pub image_name: Option<String>,
    pub command_type: String,
    pub payload: Vec<u8>,
    pub priority: u32,
    pub scheduled_for: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// What the timeout rule decides for one timed-out image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutDecision {
    /// The image's retry_count after the timeout.
    pub retry_count: u32,
    /// The retry to queue; None when the image's retries are used up.
    pub retry: Option<NewCommand>,
    /// Whether this timeout raises the "approaching max retries" alert.
    pub alert: bool,
}

/// The timeout rule: the image is failed; while it has retries left, its retry_count goes up and
/// a `retry_image` command naming its missing chunks is queued for the next wake (due 5 minutes
/// before it, dropped an hour after it). The alert is raised when retry_count reaches
/// max_retries − 1. Past max_retries nothing is queued: the image waits for an operator.
pub fn decide_timeout(image: &ImageProgress, next_wake_at: Timestamp) -> TimeoutDecision {
    if image.retry_count >= image.max_retries {
        return TimeoutDecision {
            retry_count: image.retry_count,
            retry: None,
            alert: false,
        };
    }
    let retry_count = image.retry_count + 1;
    TimeoutDecision {
        retry_count,
        retry: Some(retry_command(
            &image.image_name,
            image.chunks.missing(),
            next_wake_at,
        )),
        alert: retry_count + 1 == image.max_retries,
    }
}

/// The `retry_image` command for the wake at `next_wake_at`.
pub fn retry_command(image_name: &str, missing: Vec<u32>, next_wake_at: Timestamp) -> NewCommand {
    NewCommand {
        image_name: Some(image_name.to_owned()),
        command_type: RETRY_IMAGE.to_owned(),
        payload: retry_payload(image_name, missing),
        priority: RETRY_PRIORITY,
        scheduled_for: next_wake_at.minus(RETRY_LEAD),
        expires_at: Some(next_wake_at.plus(RETRY_VALIDITY)),
    }
}

/// The payload bytes are part of the device contract (`RetryImagePayload` in
/// device_contract.proto), so they are encoded with the contract's own generated message.
pub fn retry_payload(image_name: &str, missing_chunks: Vec<u32>) -> Vec<u8> {
    retryd_client::v1::RetryImagePayload {
        image_name: image_name.to_owned(),
        missing_chunks,
    }
    .encode_to_vec()
}

/// A command as the due-commands query sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOrder {
    pub id: i64,
    pub priority: u32,
    pub scheduled_for: Timestamp,
}

/// Whether a pending command may be delivered at `now`: its time has come and it has not expired.
pub fn is_deliverable(
    scheduled_for: Timestamp,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    scheduled_for <= now && expires_at.is_none_or(|expiry| now < expiry)
}

/// Delivery order: highest priority first, then the earliest scheduled, then the oldest.
pub fn delivery_order(a: &CommandOrder, b: &CommandOrder) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then(a.scheduled_for.cmp(&b.scheduled_for))
        .then(a.id.cmp(&b.id))
}

/// A device to register (or whose name and schedule to update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub mac: String,
    pub name: String,
    pub wake_interval_seconds: u32,
    pub next_wake_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub mac: String,
    pub name: String,
    pub status: DeviceStatus,
    pub wake_interval_seconds: u32,
    pub next_wake_at: Option<Timestamp>,
    pub last_seen_at: Option<Timestamp>,
    pub firmware: String,
    pub battery_percent: u32,
    /// Images pending or receiving: the dashboard's yellow badge.
    pub pending_images: u32,
    /// Failed images: the red badge.
    pub failed_images: u32,
    pub created_at: Timestamp,
}

/// An image a device announced with `image/begin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    pub image_name: String,
    pub total_chunks: u32,
    pub size_bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub mac: String,
    pub image_name: String,
    pub status: ImageStatus,
    pub size_bytes: u64,
    pub sha256: String,
    pub chunks: ChunkBitmap,
    pub retry_count: u32,
    pub max_retries: u32,
    pub failed_at: Option<Timestamp>,
    pub timeout_reason: Option<String>,
    pub blob_key: Option<String>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

impl Image {
    /// Whether `begin` announces this same image again (a device repeating image/begin).
    pub fn is_announced_as(&self, begin: &NewImage) -> bool {
        self.chunks.total() == begin.total_chunks
            && self.size_bytes == begin.size_bytes
            && self.sha256 == begin.sha256
    }
}

/// What storing one chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkReceipt {
    pub image: Image,
    /// False for a chunk that was already in: nothing changed.
    pub newly_stored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub id: i64,
    pub mac: String,
    pub command_type: String,
    pub payload: Vec<u8>,
    pub priority: u32,
    pub scheduled_for: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub status: CommandStatus,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

pub const ALERT_APPROACHING_MAX_RETRIES: &str = "image_transmission_failed";
pub const ALERT_RETRIES_EXHAUSTED: &str = "image_retries_exhausted";
pub const SEVERITY_CRITICAL: &str = "critical";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: i64,
    pub mac: String,
    pub alert_type: String,
    pub severity: String,
    pub message: String,
    pub image_name: Option<String>,
    pub created_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
}

pub const EVENT_HELLO: &str = "hello";
pub const EVENT_SLEEP: &str = "sleep";
pub const EVENT_IMAGE_BEGIN: &str = "image_begin";
pub const EVENT_IMAGE_COMPLETE: &str = "image_complete";
pub const EVENT_IMAGE_TIMEOUT: &str = "image_timeout";
pub const EVENT_CHECKSUM_MISMATCH: &str = "checksum_mismatch";
pub const EVENT_MANUAL_RETRY: &str = "manual_retry";
pub const EVENT_COMMAND_SENT: &str = "command_sent";
pub const CHECKSUM_MISMATCH_REASON: &str = "checksum mismatch: every chunk is needed again";

/// One wake-to-sleep cycle of a device, with what it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeSession {
    pub id: i64,
    pub mac: String,
    pub status: WakeSessionStatus,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Chunks stored during the session (repeats not counted).
    pub chunks_sent: u32,
    /// Chunks of the images the device sent chunks of this session.
    pub chunks_total: u32,
    /// Chunks still missing of those images when the session ended.
    pub chunks_missing: Vec<u32>,
    pub firmware: String,
    pub battery_percent: u32,
    pub battery_millivolts: u32,
    pub wifi_retries: u32,
    pub rssi_dbm: i32,
    pub error_codes: Vec<u32>,
}

/// What a HELLO did: the session it opened, what the device's own timeout check did, and the
/// commands to publish now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloOutcome {
    pub session_id: i64,
    pub timeouts: SweepOutcome,
    pub commands: Vec<Command>,
}

/// When a device wakes next: the time it named, else its interval after `now`, else unknown.
pub fn next_wake(
    named: Option<Timestamp>,
    wake_interval_seconds: u32,
    now: Timestamp,
) -> Option<Timestamp> {
    named.or_else(|| {
        (wake_interval_seconds > 0)
            .then(|| now.plus(Duration::from_secs(u64::from(wake_interval_seconds))))
    })
}

/// Numbers kept in one text column ("3,7,12"): chunk indices, device error codes.
pub fn join_numbers(numbers: &[u32]) -> String {
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The inverse of `join_numbers`; anything unreadable is skipped.
pub fn split_numbers(text: &str) -> Vec<u32> {
    text.split(',')
        .filter_map(|part| part.trim().parse().ok())
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    pub id: i64,
    pub mac: String,
    pub event_type: String,
    pub message: String,
    pub image_name: Option<String>,
    pub session_id: Option<i64>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    pub mac: Option<String>,
    pub status: Option<ImageStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandFilter {
    pub mac: Option<String>,
    pub status: Option<CommandStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub mac: Option<String>,
    pub include_acknowledged: bool,
}

/// What one timeout sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    pub images_timed_out: u32,
    pub retries_queued: u32,
    /// Timed-out images whose retries were used up: no retry queued.
    pub failed_to_queue: u32,
    pub expired_commands_removed: u32,
}

/// What RetryFailedImages did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryReset {
    pub images_reset: u32,
    pub retries_queued: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn progress(received: &[u32], total: u32, retry_count: u32) -> ImageProgress {
        let mut chunks = ChunkBitmap::empty(total);
        for index in received {
            chunks.insert(*index).unwrap();
        }
        ImageProgress {
            image_name: "image_1762625082788.jpg".into(),
            status: ImageStatus::Receiving,
            retry_count,
            max_retries: DEFAULT_MAX_RETRIES,
            chunks,
        }
    }

    #[test]
    fn macs_are_normalized_and_bad_ones_name_the_field() {
        assert_eq!(
            normalize_mac("mac", "a4:cf:12:34:56:78").unwrap(),
            "A4CF12345678"
        );
        assert_eq!(
            normalize_mac("mac", "A4-CF-12-34-56-78").unwrap(),
            "A4CF12345678"
        );
        for bad in [
            "",
            "A4CF1234567",
            "A4CF123456789",
            "G4CF12345678",
            "A4 CF12345678",
        ] {
            let err = normalize_mac("mac", bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { ref field, .. } if field == "mac"));
        }
    }

    #[test]
    fn names_and_command_types_are_checked() {
        assert!(validate_device_name("name", "Test Device 002 - Missing Chunks").is_ok());
        assert!(validate_device_name("name", "").is_err());
        assert!(validate_device_name("name", "a\nb").is_err());
        assert!(validate_image_name("image_name", "image_1762625082788.jpg").is_ok());
        assert!(validate_image_name("image_name", "../etc/passwd").is_err());
        assert!(validate_image_name("image_name", ".hidden").is_err());
        assert!(validate_image_name("image_name", &"a".repeat(65)).is_err());
        assert!(validate_command_type("type", "retry_image").is_ok());
        assert!(validate_command_type("type", "Retry").is_err());
        assert!(validate_priority("priority", 10).is_ok());
        assert!(validate_priority("priority", 11).is_err());
        assert!(validate_total_chunks("total_chunks", 0).is_err());
        assert!(validate_total_chunks("total_chunks", MAX_CHUNKS + 1).is_err());
        assert!(
            validate_wake_interval("wake_interval_seconds", MAX_WAKE_INTERVAL_SECONDS + 1).is_err()
        );
    }

    #[test]
    fn statuses_round_trip_through_their_words() {
        for status in ImageStatus::ALL {
            assert_eq!(ImageStatus::parse(status.as_str()), Some(*status));
        }
        for status in WakeSessionStatus::ALL {
            assert_eq!(WakeSessionStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(CommandStatus::parse("sent"), Some(CommandStatus::Sent));
        assert_eq!(DeviceStatus::parse("gone"), None);
    }

    #[test]
    fn bitmap_insert_is_idempotent_and_rejects_indices_past_the_end() {
        let mut bitmap = ChunkBitmap::empty(4);
        assert!(bitmap.insert(2).unwrap());
        assert!(bitmap.insert(0).unwrap());
        assert!(!bitmap.insert(2).unwrap());
        assert!(matches!(bitmap.insert(4), Err(Error::OutOfRange(_))));
        assert_eq!(bitmap.received(), 2);
        assert_eq!(bitmap.missing(), vec![1, 3]);
        bitmap.insert(1).unwrap();
        bitmap.insert(3).unwrap();
        assert!(bitmap.is_complete());
    }

    #[test]
    fn bitmap_survives_storage_and_ignores_stray_bits() {
        let mut bitmap = ChunkBitmap::empty(10);
        bitmap.insert(9).unwrap();
        bitmap.insert(3).unwrap();
        let restored = ChunkBitmap::from_bytes(10, bitmap.as_bytes());
        assert_eq!(restored, bitmap);
        // Bits past the total and a short stored value do not count as chunks.
        assert_eq!(ChunkBitmap::from_bytes(3, &[0xff]).received(), 3);
        assert_eq!(ChunkBitmap::from_bytes(16, &[0x01]).missing().len(), 15);
    }

    #[test]
    fn only_unfinished_images_time_out_and_only_once_the_wake_time_came() {
        let wake = Timestamp::from_micros(100 * MINUTE);
        let before = Timestamp::from_micros(100 * MINUTE - 1);
        assert!(!is_timed_out(ImageStatus::Receiving, Some(wake), before));
        assert!(is_timed_out(ImageStatus::Receiving, Some(wake), wake));
        assert!(!is_timed_out(ImageStatus::Receiving, None, wake));
        assert!(is_timed_out(ImageStatus::Pending, Some(wake), wake));
        for status in [ImageStatus::Complete, ImageStatus::Failed] {
            assert!(!is_timed_out(status, Some(wake), wake));
        }
    }

    #[test]
    fn a_timeout_queues_a_retry_of_the_missing_chunks_around_the_next_wake() {
        let wake = Timestamp::from_micros(100 * MINUTE);
        let decision = decide_timeout(&progress(&[0, 1, 3], 4, 0), wake);
        assert_eq!(decision.retry_count, 1);
        assert!(!decision.alert);
        let retry = decision.retry.unwrap();
        assert_eq!(retry.command_type, RETRY_IMAGE);
        assert_eq!(retry.priority, 8);
        assert_eq!(retry.scheduled_for, Timestamp::from_micros(95 * MINUTE));
        assert_eq!(retry.expires_at, Some(Timestamp::from_micros(160 * MINUTE)));
        let payload = retryd_client::v1::RetryImagePayload::decode(&retry.payload[..]).unwrap();
        assert_eq!(payload.image_name, "image_1762625082788.jpg");
        assert_eq!(payload.missing_chunks, vec![2]);
    }

    #[test]
    fn the_alert_comes_at_max_retries_minus_one_and_retries_stop_at_max() {
        let wake = Timestamp::from_micros(0);
        let second = decide_timeout(&progress(&[0], 4, 1), wake);
        assert_eq!((second.retry_count, second.alert), (2, true));
        let third = decide_timeout(&progress(&[0], 4, 2), wake);
        assert_eq!((third.retry_count, third.alert), (3, false));
        assert!(third.retry.is_some());
        let used_up = decide_timeout(&progress(&[0], 4, 3), wake);
        assert_eq!((used_up.retry_count, used_up.retry), (3, None));
    }

    #[test]
    fn commands_are_delivered_by_priority_then_schedule_and_never_after_expiry() {
        let now = Timestamp::from_micros(10 * MINUTE);
        assert!(is_deliverable(now, None, now));
        assert!(!is_deliverable(
            Timestamp::from_micros(11 * MINUTE),
            None,
            now
        ));
        assert!(!is_deliverable(Timestamp::from_micros(0), Some(now), now));
        assert!(is_deliverable(
            Timestamp::from_micros(0),
            Some(Timestamp::from_micros(10 * MINUTE + 1)),
            now
        ));
        let command = |id, priority, at| CommandOrder {
            id,
            priority,
            scheduled_for: Timestamp::from_micros(at),
        };
        let mut commands = [
            command(1, 2, 0),
            command(2, 8, 5),
            command(3, 8, 1),
            command(4, 2, 0),
        ];
        commands.sort_by(delivery_order);
        let ids: Vec<i64> = commands.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![3, 2, 1, 4]);
    }
}
