//! ChunkQueue's domain: jobs split into chunks, chunk leases, and the rules that decide a job's
//! overall status.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::retry::RetryPolicy;
use super::Timestamp;

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$variant_meta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database and shown to people.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

// Other domains name their statuses the same way.
pub(crate) use status_enum;

status_enum!(
    /// A job's overall status, derived from its chunks.
    JobStatus {
        Pending => "pending",
        Processing => "processing",
        Completed => "completed",
        PartialFailure => "partial_failure",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

status_enum!(
    ChunkStatus {
        Pending => "pending",
        Processing => "processing",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::PartialFailure | Self::Failed | Self::Cancelled
        )
    }

    /// The status once every chunk is either completed or failed; `None` while some are not.
    pub fn when_all_chunks_final(total: u32, completed: u32, failed: u32) -> Option<Self> {
        if completed + failed < total {
            None
        } else if failed == 0 {
            Some(Self::Completed)
        } else if completed == 0 {
            Some(Self::Failed)
        } else {
            Some(Self::PartialFailure)
        }
    }
}

impl ChunkStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

pub const DEFAULT_QUEUE: &str = "default";
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A validated request to create a job.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub job_id: String,
    pub queue: String,
    pub priority: i32,
    pub max_attempts: u32,
    pub retry_policy: RetryPolicy,
    pub payloads: Vec<Vec<u8>>,
}

impl NewJob {
    /// A digest of everything but the id: creating the same id again is only idempotent when
    /// this matches.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.queue.as_bytes());
        hasher.update([0]);
        hasher.update(self.priority.to_be_bytes());
        hasher.update(self.max_attempts.to_be_bytes());
        hasher.update((self.retry_policy.initial_backoff.as_micros() as u64).to_be_bytes());
        hasher.update(self.retry_policy.multiplier.to_be_bytes());
        hasher.update((self.retry_policy.max_backoff.as_micros() as u64).to_be_bytes());
        hasher.update((self.payloads.len() as u64).to_be_bytes());
        for payload in &self.payloads {
            hasher.update((payload.len() as u64).to_be_bytes());
            hasher.update(payload);
        }
        hex::encode(hasher.finalize())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub job_id: String,
    pub queue: String,
    pub status: JobStatus,
    pub priority: i32,
    pub max_attempts: u32,
    pub retry_policy: RetryPolicy,
    pub total_chunks: u32,
    pub completed_chunks: u32,
    pub failed_chunks: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// What `create_job` did: an idempotent repeat returns the existing job with `created == false`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedJob {
    pub job: Job,
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub status: Option<JobStatus>,
}

/// A page request over a keyset: `after` is the position of the last item of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The position to continue after, when there may be more.
    pub next_after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub queue: String,
    pub worker_id: String,
    pub max_chunks: u32,
    pub lease: Duration,
    /// Identifies this lease; the holder must present it to complete, fail or extend.
    pub lease_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedChunk {
    pub chunk_id: i64,
    pub job_id: String,
    pub index: u32,
    pub payload: Vec<u8>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub lease_token: String,
    pub lease_expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub chunk_id: i64,
    pub lease_token: String,
    pub result: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub chunk_id: i64,
    pub lease_token: String,
    pub error_message: String,
    pub retryable: bool,
    /// A random number in [0, 1) that spreads the retry's backoff.
    pub jitter: f64,
}

/// The effect of an accepted completion or failure on the chunk's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSettled {
    pub job_id: String,
    pub queue: String,
    pub job_status: JobStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailOutcome {
    pub settled: ChunkSettled,
    pub chunk_status: ChunkStatus,
    pub attempts: u32,
    pub retry_at: Option<Timestamp>,
}

/// What happens to a chunk after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(Timestamp),
    Fail,
}

impl AfterFailure {
    pub fn decide(
        attempts: u32,
        max_attempts: u32,
        retryable: bool,
        policy: &RetryPolicy,
        jitter: f64,
        now: Timestamp,
    ) -> Self {
        if retryable && attempts < max_attempts {
            Self::RetryAt(now.plus(policy.backoff(attempts, jitter)))
        } else {
            Self::Fail
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoverOutcome {
    pub recovered: u32,
    pub failed: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    pub job_id: String,
    pub status: JobStatus,
    pub total: u32,
    pub pending: u32,
    pub processing: u32,
    pub completed: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl JobProgress {
    /// The share of chunks that reached a final state, 0 to 100.
    pub fn percentage(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        let done = self.completed + self.failed + self.cancelled;
        (f64::from(done) * 100.0 / f64::from(self.total)).min(100.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub chunk_id: i64,
    pub job_id: String,
    pub index: u32,
    pub status: ChunkStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub worker_id: Option<String>,
    pub run_at: Timestamp,
    pub lease_expires_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub payload_size: u32,
    pub result: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueDepth {
    pub queue: String,
    pub pending: u64,
    pub processing: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl QueueDepth {
    pub fn add(&mut self, status: ChunkStatus, count: u64) {
        let slot = match status {
            ChunkStatus::Pending => &mut self.pending,
            ChunkStatus::Processing => &mut self.processing,
            ChunkStatus::Completed => &mut self.completed,
            ChunkStatus::Failed => &mut self.failed,
            ChunkStatus::Cancelled => &mut self.cancelled,
        };
        *slot += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_status_once_all_chunks_are_final() {
        assert_eq!(JobStatus::when_all_chunks_final(3, 2, 0), None);
        assert_eq!(
            JobStatus::when_all_chunks_final(3, 3, 0),
            Some(JobStatus::Completed)
        );
        assert_eq!(
            JobStatus::when_all_chunks_final(3, 2, 1),
            Some(JobStatus::PartialFailure)
        );
        assert_eq!(
            JobStatus::when_all_chunks_final(3, 0, 3),
            Some(JobStatus::Failed)
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(*status));
        }
        for status in ChunkStatus::ALL {
            assert_eq!(ChunkStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(JobStatus::parse("bogus"), None);
    }

    #[test]
    fn a_failure_retries_until_attempts_are_used_up_or_not_retryable() {
        let policy = RetryPolicy::default();
        let now = Timestamp::from_micros(0);
        assert_eq!(
            AfterFailure::decide(1, 3, true, &policy, 0.0, now),
            AfterFailure::RetryAt(now.plus(Duration::from_secs(1)))
        );
        assert_eq!(
            AfterFailure::decide(3, 3, true, &policy, 0.0, now),
            AfterFailure::Fail
        );
        assert_eq!(
            AfterFailure::decide(1, 3, false, &policy, 0.0, now),
            AfterFailure::Fail
        );
    }

    #[test]
    fn content_hash_depends_on_every_payload_byte_and_setting() {
        let job = NewJob {
            job_id: "a".into(),
            queue: "q".into(),
            priority: 0,
            max_attempts: 3,
            retry_policy: RetryPolicy::default(),
            payloads: vec![b"ab".to_vec(), b"c".to_vec()],
        };
        let mut split_differently = job.clone();
        split_differently.payloads = vec![b"a".to_vec(), b"bc".to_vec()];
        let mut other_id = job.clone();
        other_id.job_id = "b".into();
        assert_ne!(job.content_hash(), split_differently.content_hash());
        assert_eq!(job.content_hash(), other_id.content_hash());
    }

    #[test]
    fn progress_of_an_empty_or_overfull_job_stays_in_range() {
        let mut progress = JobProgress {
            job_id: "j".into(),
            status: JobStatus::Processing,
            total: 4,
            pending: 1,
            processing: 1,
            completed: 1,
            failed: 1,
            cancelled: 0,
        };
        assert_eq!(progress.percentage(), 50.0);
        progress.total = 0;
        assert_eq!(progress.percentage(), 100.0);
    }
}
