//! UploadRetry's domain: uploads and their statuses, the rules for accepting content, where a
//! finished upload goes, and the retry runs that deliver it.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::chunks::status_enum;
use super::retry::RetryPolicy;
use super::{Error, Result, Timestamp};

status_enum!(UploadStatus {
    /// Declared; no byte received yet.
    Pending => "pending",
    /// Some bytes received.
    Receiving => "receiving",
    /// Every byte received, checksum good, kept in the blob store.
    Stored => "stored",
    /// A delivery attempt holds the upload.
    Delivering => "delivering",
    Delivered => "delivered",
    /// A checksum mismatch (content discarded) or delivery attempts used up (content kept).
    Failed => "failed",
});

/// Where a stored upload is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An `http://` or `https://` URL that takes a PUT of the content.
    Http(String),
    /// A directory; the file lands there under the upload's file name.
    Directory(PathBuf),
}

impl Destination {
    /// Reads a destination as a client sends it. Directories must lie under one of `file_roots`
    /// (none by default): a client must not make the server write wherever it may.
    pub fn parse(text: &str, file_roots: &[PathBuf]) -> Result<Self> {
        const FIELD: &str = "destination";
        if text.chars().any(char::is_control) {
            return Err(Error::invalid(FIELD, "must not contain control characters"));
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let host = text
                .split_once("://")
                .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
                .unwrap_or("");
            if host.is_empty() || text.contains(' ') {
                return Err(Error::invalid(FIELD, "not a valid http(s) URL"));
            }
            return Ok(Destination::Http(text.to_owned()));
        }
        if let Some(path) = text.strip_prefix("file://") {
            let path = Path::new(path);
            if !path.is_absolute()
                || path
                    .components()
                    .any(|part| matches!(part, Component::ParentDir | Component::CurDir))
            {
                return Err(Error::invalid(
                    FIELD,
                    "a file:// destination needs an absolute directory path without . or ..",
                ));
            }
            if !file_roots.iter().any(|root| path.starts_with(root)) {
                return Err(Error::invalid(
                    FIELD,
                    "file:// destinations must lie under one of the server's \
                     uploads.file_destination_roots",
                ));
            }
            return Ok(Destination::Directory(path.to_path_buf()));
        }
        Err(Error::invalid(
            FIELD,
            "must be an http:// or https:// URL or a file:// directory",
        ))
    }

    /// Reads a destination the store holds (validated when it was accepted).
    pub fn from_stored(text: &str) -> Self {
        match text.strip_prefix("file://") {
            Some(path) => Destination::Directory(PathBuf::from(path)),
            None => Destination::Http(text.to_owned()),
        }
    }

    pub fn as_text(&self) -> String {
        match self {
            Destination::Http(url) => url.clone(),
            Destination::Directory(path) => format!("file://{}", path.display()),
        }
    }
}

/// The server's rules for uploads (from the `[uploads]` configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPolicy {
    pub max_upload_bytes: u64,
    pub max_part_bytes: usize,
    pub max_delivery_attempts: u32,
    pub delivery_backoff: RetryPolicy,
    pub file_destination_roots: Vec<PathBuf>,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        Self {
            max_upload_bytes: 5 * 1024 * 1024 * 1024,
            max_part_bytes: 4 * 1024 * 1024,
            max_delivery_attempts: 5,
            delivery_backoff: RetryPolicy {
                initial_backoff: Duration::from_secs(30),
                multiplier: 2.0,
                max_backoff: Duration::from_secs(3600),
            },
            file_destination_roots: Vec::new(),
        }
    }
}

/// `CreateUpload` as received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateUploadInput {
    pub upload_id: String,
    pub owner: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub destination: String,
}

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
const MAX_FILE_NAME_BYTES: usize = 255;
const MAX_CONTENT_TYPE_BYTES: usize = 255;
const MAX_DESTINATION_BYTES: usize = 4096;

/// A validated declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub upload_id: String,
    pub owner: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub destination: Option<Destination>,
    pub max_delivery_attempts: u32,
}

impl UploadPolicy {
    /// Checks every field; `id` validates identifiers with the server's general limits.
    pub fn new_upload(
        &self,
        input: CreateUploadInput,
        id: impl Fn(&str, String) -> Result<String>,
    ) -> Result<NewUpload> {
        let upload_id = id("upload_id", input.upload_id)?;
        let owner = id("owner", input.owner)?;
        let file_name = plain_file_name(input.file_name)?;
        let content_type = if input.content_type.is_empty() {
            DEFAULT_CONTENT_TYPE.to_owned()
        } else if input.content_type.len() > MAX_CONTENT_TYPE_BYTES
            || !input
                .content_type
                .chars()
                .all(|c| c.is_ascii_graphic() || c == ' ')
        {
            return Err(Error::invalid(
                "content_type",
                "must be printable ASCII, at most 255 bytes",
            ));
        } else {
            input.content_type
        };
        if input.size_bytes > self.max_upload_bytes {
            return Err(Error::too_large(
                "size_bytes",
                format!(
                    "{} bytes, at most {}",
                    input.size_bytes, self.max_upload_bytes
                ),
            ));
        }
        let sha256 = input.sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid("sha256", "must be 64 hex digits"));
        }
        let destination = match input.destination.as_str() {
            "" => None,
            text if text.len() > MAX_DESTINATION_BYTES => {
                return Err(Error::invalid("destination", "longer than 4096 bytes"))
            }
            text => Some(Destination::parse(text, &self.file_destination_roots)?),
        };
        Ok(NewUpload {
            upload_id,
            owner,
            file_name,
            content_type,
            size_bytes: input.size_bytes,
            sha256,
            destination,
            max_delivery_attempts: self.max_delivery_attempts,
        })
    }

    /// Checks a part's size before anything is written.
    pub fn part(&self, data: &[u8]) -> Result<()> {
        if data.len() > self.max_part_bytes {
            return Err(Error::too_large(
                "data",
                format!(
                    "a part of {} bytes, at most {}",
                    data.len(),
                    self.max_part_bytes
                ),
            ));
        }
        Ok(())
    }

    /// When a delivery that failed on attempt `attempts` is tried again, or `None` when that was
    /// the last attempt.
    pub fn next_delivery(
        &self,
        attempts: u32,
        max_attempts: u32,
        now: Timestamp,
        jitter: f64,
    ) -> Option<Timestamp> {
        (attempts < max_attempts).then(|| now.plus(self.delivery_backoff.backoff(attempts, jitter)))
    }
}

/// A file name usable as it is in a directory: no path, no control characters.
fn plain_file_name(name: String) -> Result<String> {
    const FIELD: &str = "file_name";
    if name.is_empty() {
        return Err(Error::invalid(FIELD, "must not be empty"));
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(Error::invalid(FIELD, "longer than 255 bytes"));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            FIELD,
            "must be a plain file name: no path separators, control characters, . or ..",
        ));
    }
    Ok(name)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: String,
    pub owner: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub destination: Option<Destination>,
    /// The content's name in the blob store.
    pub blob_key: String,
    pub status: UploadStatus,
    pub received_bytes: u64,
    pub failure_reason: Option<String>,
    pub delivery_attempts: u32,
    pub max_delivery_attempts: u32,
    pub next_delivery_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub stored_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub content_pruned_at: Option<Timestamp>,
}

impl Upload {
    /// Whether a repeated CreateUpload declares this same upload.
    pub fn is_declared_as(&self, new: &NewUpload) -> bool {
        self.owner == new.owner
            && self.file_name == new.file_name
            && self.content_type == new.content_type
            && self.size_bytes == new.size_bytes
            && self.sha256 == new.sha256
            && self.destination == new.destination
    }

    /// Whether the upload still takes content: nothing complete has been kept yet.
    pub fn accepts_content(&self) -> bool {
        self.stored_at.is_none()
            && matches!(
                self.status,
                UploadStatus::Pending | UploadStatus::Receiving | UploadStatus::Failed
            )
    }

    /// Checks that a call's first part may start at `offset`.
    pub fn check_resume_at(&self, offset: u64) -> Result<()> {
        if !self.accepts_content() {
            return Err(Error::FailedPrecondition(format!(
                "upload {:?} is {} and takes no more content",
                self.upload_id,
                self.status.as_str()
            )));
        }
        if offset != self.received_bytes {
            return Err(wrong_offset(&self.upload_id, offset, self.received_bytes));
        }
        Ok(())
    }

    /// Whether a retry run may hand this upload to a delivery attempt at `now` without a reset.
    pub fn awaits_delivery(&self) -> bool {
        self.destination.is_some() && self.status == UploadStatus::Stored
    }
}

pub fn wrong_offset(upload_id: &str, offset: u64, expected: u64) -> Error {
    Error::FailedPrecondition(format!(
        "part at offset {offset} for upload {upload_id:?}, which continues at offset {expected}: \
         resume from received_bytes"
    ))
}

/// Checks a part against the end of the declared content.
pub fn check_part_range(upload: &Upload, offset: u64, len: usize) -> Result<()> {
    let end = offset.saturating_add(len as u64);
    if end > upload.size_bytes {
        return Err(Error::OutOfRange(format!(
            "a part ending at byte {end} of upload {:?}, which has {} bytes",
            upload.upload_id, upload.size_bytes
        )));
    }
    Ok(())
}

/// The reason kept on an upload whose content did not match its declared checksum.
pub fn checksum_mismatch(expected: &str, actual: &str) -> String {
    format!(
        "sha256 mismatch: declared {expected}, received content has {actual}; the bytes were \
         discarded, upload again from offset 0"
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadFilter {
    pub owner: Option<String>,
    pub status: Option<UploadStatus>,
}

status_enum!(
    /// What started a retry run.
    RetrySource {
        /// A client's outbox (FlushPending).
        ClientFlush => "client-flush",
        /// An operator (TriggerRetry).
        Manual => "manual",
        /// The scheduler's sweep.
        Scheduled => "scheduled",
    }
);

/// Which uploads a retry run takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverySelection {
    /// Stored uploads whose backoff is over, and deliveries whose lease ran out (the sweep).
    Due,
    /// Every upload waiting for delivery, backoff or not (a manual run without ids).
    Waiting,
    /// These uploads, backoff or not. With `reset_failed`, those whose attempts ran out get a
    /// fresh set (an operator's decision).
    Named {
        upload_ids: Vec<String>,
        reset_failed: bool,
    },
}

/// An upload handed to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLease {
    pub upload: Upload,
    /// Proves the attempt still holds the upload when it reports.
    pub token: String,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryReport {
    Delivered,
    /// Failed; tried again at `retry_at`, or given up when `None`.
    Failed {
        error: String,
        retry_at: Option<Timestamp>,
    },
}

/// What a retry run did with one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    Delivered,
    RetryScheduled,
    Failed,
    AlreadyDone,
    Incomplete,
    InProgress,
    NotFound,
    GaveUp,
}

/// Why a named upload was not handed to a delivery attempt.
pub fn outcome_without_attempt(upload: &Upload) -> RetryOutcome {
    match upload.status {
        UploadStatus::Delivered => RetryOutcome::AlreadyDone,
        UploadStatus::Stored if upload.destination.is_none() => RetryOutcome::AlreadyDone,
        UploadStatus::Delivering => RetryOutcome::InProgress,
        UploadStatus::Failed if upload.stored_at.is_some() => RetryOutcome::GaveUp,
        UploadStatus::Pending | UploadStatus::Receiving | UploadStatus::Failed => {
            RetryOutcome::Incomplete
        }
        // Claimable, but taken by another run between the claim and this look.
        UploadStatus::Stored => RetryOutcome::InProgress,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRetryResult {
    pub upload_id: String,
    pub outcome: RetryOutcome,
    pub status: Option<UploadStatus>,
    pub error: Option<String>,
}

/// One retry log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRun {
    pub id: i64,
    pub source: RetrySource,
    pub attempted: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRetryRun {
    pub source: RetrySource,
    pub attempted: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

impl NewRetryRun {
    /// Counts a run's results: every delivery attempt is attempted, and succeeded or failed.
    pub fn from_results(
        source: RetrySource,
        results: &[UploadRetryResult],
        started_at: Timestamp,
        finished_at: Timestamp,
    ) -> Self {
        let count = |wanted: &[RetryOutcome]| {
            results
                .iter()
                .filter(|result| wanted.contains(&result.outcome))
                .count() as u32
        };
        let succeeded = count(&[RetryOutcome::Delivered]);
        let failed = count(&[RetryOutcome::RetryScheduled, RetryOutcome::Failed]);
        Self {
            source,
            attempted: succeeded + failed,
            succeeded,
            failed,
            started_at,
            finished_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryRunFilter {
    pub source: Option<RetrySource>,
    pub started_at_or_after: Option<Timestamp>,
    pub started_before: Option<Timestamp>,
}

/// Runs of one source summed over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHealth {
    pub source: Option<RetrySource>,
    pub runs: u64,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl SourceHealth {
    pub fn empty(source: Option<RetrySource>) -> Self {
        Self {
            source,
            runs: 0,
            attempted: 0,
            succeeded: 0,
            failed: 0,
        }
    }

    /// succeeded / attempted in percent, rounded to two decimals; `None` when nothing was
    /// attempted (the seed's `NULLIF(attempted, 0)`).
    pub fn success_rate_percent(&self) -> Option<f64> {
        (self.attempted > 0)
            .then(|| (self.succeeded as f64 * 10_000.0 / self.attempted as f64).round() / 100.0)
    }
}

/// The health report: every source (zeros included) and their total.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryHealth {
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub sources: Vec<SourceHealth>,
    pub total: SourceHealth,
}

impl RetryHealth {
    /// Builds the report from per-source sums (sources without runs may be missing).
    pub fn from_sums(
        window_start: Timestamp,
        window_end: Timestamp,
        sums: &[SourceHealth],
    ) -> Self {
        let sources: Vec<SourceHealth> = RetrySource::ALL
            .iter()
            .map(|&source| {
                sums.iter()
                    .find(|sum| sum.source == Some(source))
                    .cloned()
                    .unwrap_or_else(|| SourceHealth::empty(Some(source)))
            })
            .collect();
        let mut total = SourceHealth::empty(None);
        for source in &sources {
            total.runs += source.runs;
            total.attempted += source.attempted;
            total.succeeded += source.succeeded;
            total.failed += source.failed;
        }
        Self {
            window_start,
            window_end,
            sources,
            total,
        }
    }
}

pub const DEFAULT_HEALTH_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn id(_: &str, value: String) -> Result<String> {
        Ok(value)
    }

    fn input() -> CreateUploadInput {
        CreateUploadInput {
            upload_id: "u1".into(),
            owner: "alice".into(),
            file_name: "photo.jpg".into(),
            size_bytes: 10,
            sha256: "AB".repeat(32),
            ..Default::default()
        }
    }

    fn field_of(policy: &UploadPolicy, input: CreateUploadInput) -> String {
        match policy.new_upload(input, id) {
            Err(Error::InvalidArgument { field, .. } | Error::ResourceExhausted { field, .. }) => {
                field
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_declaration_is_normalised() {
        let upload = UploadPolicy::default().new_upload(input(), id).unwrap();
        assert_eq!(upload.sha256, "ab".repeat(32));
        assert_eq!(upload.content_type, DEFAULT_CONTENT_TYPE);
        assert_eq!(upload.destination, None);
        assert_eq!(upload.max_delivery_attempts, 5);
    }

    #[test]
    fn each_bad_field_is_named() {
        let policy = UploadPolicy {
            max_upload_bytes: 100,
            file_destination_roots: vec![PathBuf::from("/srv/drop")],
            ..UploadPolicy::default()
        };
        for name in ["", "a/b", "..", "a\\b", "x\ny"] {
            let mut bad = input();
            bad.file_name = name.into();
            assert_eq!(field_of(&policy, bad), "file_name", "{name:?}");
        }
        let mut bad = input();
        bad.size_bytes = 101;
        assert_eq!(field_of(&policy, bad), "size_bytes");
        for sha in ["", "zz", &"g".repeat(64)] {
            let mut bad = input();
            bad.sha256 = sha.into();
            assert_eq!(field_of(&policy, bad), "sha256");
        }
        for destination in [
            "ftp://x/y",
            "http://",
            "file://relative/dir",
            "file:///srv/drop/../etc",
            "file:///etc",
        ] {
            let mut bad = input();
            bad.destination = destination.into();
            assert_eq!(field_of(&policy, bad), "destination", "{destination}");
        }
        let mut bad = input();
        bad.content_type = "text/plain\u{7}".into();
        assert_eq!(field_of(&policy, bad), "content_type");
    }

    #[test]
    fn destinations_round_trip() {
        let roots = [PathBuf::from("/srv/drop")];
        for text in ["https://bucket.example/key?sig=1", "file:///srv/drop/in"] {
            assert_eq!(Destination::parse(text, &roots).unwrap().as_text(), text);
        }
    }

    #[test]
    fn delivery_backs_off_until_the_last_attempt() {
        let policy = UploadPolicy::default();
        let now = Timestamp::from_micros(0);
        assert_eq!(
            policy.next_delivery(1, 3, now, 0.0),
            Some(now.plus(Duration::from_secs(30)))
        );
        assert_eq!(
            policy.next_delivery(2, 3, now, 0.0),
            Some(now.plus(Duration::from_secs(60)))
        );
        assert_eq!(policy.next_delivery(3, 3, now, 0.0), None);
    }

    #[test]
    fn success_rate_has_two_decimals_and_no_division_by_zero() {
        let mut health = SourceHealth::empty(Some(RetrySource::Manual));
        assert_eq!(health.success_rate_percent(), None);
        health.attempted = 3;
        health.succeeded = 2;
        assert_eq!(health.success_rate_percent(), Some(66.67));
        health.succeeded = 3;
        assert_eq!(health.success_rate_percent(), Some(100.0));
    }

    #[test]
    fn the_report_lists_every_source_and_their_total() {
        let sums = [SourceHealth {
            source: Some(RetrySource::Scheduled),
            runs: 2,
            attempted: 4,
            succeeded: 1,
            failed: 3,
        }];
        let t = Timestamp::from_micros(0);
        let report = RetryHealth::from_sums(t, t, &sums);
        let names: Vec<_> = report.sources.iter().map(|s| s.source.unwrap()).collect();
        assert_eq!(names, RetrySource::ALL);
        assert_eq!(
            report.sources[0],
            SourceHealth::empty(Some(RetrySource::ClientFlush))
        );
        assert_eq!(report.total.attempted, 4);
        assert_eq!(report.total.success_rate_percent(), Some(25.0));
    }
}
