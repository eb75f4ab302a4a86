//! Limits on what a request may carry, and the checks that turn raw request fields into validated
//! domain values. Field names in errors are the contract's, so a client can find the bad field.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::chunks::{NewJob, DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE};
use super::retry::RetryPolicy;
use super::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest chunk payload (and chunk result), in bytes.
    pub max_payload_bytes: usize,
    pub max_chunks_per_job: usize,
    /// Most chunks one claim (or one Work credit grant) may lease.
    pub max_claim_batch: u32,
    /// Longest id, queue name or worker id, in bytes.
    pub max_id_bytes: usize,
    /// Error messages longer than this are cut (not refused: the failure report matters more).
    pub max_error_message_bytes: usize,
    pub max_attempts: u32,
    pub max_lease_seconds: u32,
    pub default_lease_seconds: u32,
    pub max_wait_seconds: u32,
    pub max_page_size: u32,
    /// Largest gRPC message the server accepts, in bytes.
    pub max_message_bytes: usize,
    /// SyncRetry: the largest snapshot a sync may report, in bytes.
    pub max_snapshot_bytes: u64,
    /// SyncRetry: most record changes one PushChanges may carry.
    pub max_changes_per_push: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            max_chunks_per_job: 100_000,
            max_claim_batch: 1_000,
            max_id_bytes: 128,
            max_error_message_bytes: 4_096,
            max_attempts: 1_000,
            max_lease_seconds: 24 * 3600,
            default_lease_seconds: 600,
            max_wait_seconds: 60,
            max_page_size: 1_000,
            max_message_bytes: 64 * 1024 * 1024,
            max_snapshot_bytes: 256 * 1024 * 1024,
            max_changes_per_push: 1_000,
        }
    }
}

/// A retry policy as a client sends it: zeros mean "use the default".
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RetryPolicyInput {
    pub initial_backoff_ms: u32,
    pub multiplier: f64,
    pub max_backoff_ms: u32,
}

/// `CreateJob` as received.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateJobInput {
    pub job_id: String,
    pub queue: String,
    pub payloads: Vec<Vec<u8>>,
    pub priority: i32,
    pub max_attempts: u32,
    pub retry_policy: Option<RetryPolicyInput>,
}

impl Limits {
    pub fn new_job(&self, input: CreateJobInput, generated_id: String) -> Result<NewJob> {
        let job_id = if input.job_id.is_empty() {
            generated_id
        } else {
            self.id("job_id", input.job_id)?
        };
        let queue = self.queue(input.queue)?;
        if input.payloads.is_empty() {
            return Err(Error::invalid("chunks", "a job needs at least one chunk"));
        }
        if input.payloads.len() > self.max_chunks_per_job {
            return Err(Error::too_large(
                "chunks",
                format!(
                    "{} chunks, at most {} per job",
                    input.payloads.len(),
                    self.max_chunks_per_job
                ),
            ));
        }
        for (index, payload) in input.payloads.iter().enumerate() {
            self.payload(&format!("chunks[{index}].payload"), payload)?;
        }
        let max_attempts = match input.max_attempts {
            0 => DEFAULT_MAX_ATTEMPTS,
            n if n > self.max_attempts => {
                return Err(Error::invalid(
                    "max_attempts",
                    format!("{n} is more than the limit of {}", self.max_attempts),
                ))
            }
            n => n,
        };
        Ok(NewJob {
            job_id,
            queue,
            priority: input.priority,
            max_attempts,
            retry_policy: retry_policy(input.retry_policy.unwrap_or_default())?,
            payloads: input.payloads,
        })
    }

    /// A required identifier: non-empty, within the length limit, no control characters.
    pub fn id(&self, field: &str, value: String) -> Result<String> {
        if value.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if value.len() > self.max_id_bytes {
            return Err(Error::invalid(
                field,
                format!("{} bytes, at most {}", value.len(), self.max_id_bytes),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
        Ok(value)
    }

    /// A queue name, "default" when empty: letters, digits, `-`, `_`, `.` and `:` only, so it can
    /// be used in metrics labels and notification channels as it is.
    pub fn queue(&self, value: String) -> Result<String> {
        if value.is_empty() {
            return Ok(DEFAULT_QUEUE.to_owned());
        }
        self.name("queue", value)
    }

    /// A required name (queue, data type, collection): letters, digits, `-`, `_`, `.` and `:`
    /// only.
    pub fn name(&self, field: &str, value: String) -> Result<String> {
        let value = self.id(field, value)?;
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(Error::invalid(
                field,
                "only ASCII letters, digits and - _ . : are allowed",
            ));
        }
        Ok(value)
    }

    pub fn payload(&self, field: &str, payload: &[u8]) -> Result<()> {
        if payload.len() > self.max_payload_bytes {
            return Err(Error::too_large(
                field,
                format!(
                    "{} bytes, at most {}",
                    payload.len(),
                    self.max_payload_bytes
                ),
            ));
        }
        Ok(())
    }

    /// `requested` seconds, or the default lease when 0.
    pub fn lease(&self, field: &str, requested: u32) -> Result<Duration> {
        let seconds = match requested {
            0 => self.default_lease_seconds,
            n if n > self.max_lease_seconds => {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{n} s is more than the limit of {} s",
                        self.max_lease_seconds
                    ),
                ))
            }
            n => n,
        };
        Ok(Duration::from_secs(u64::from(seconds)))
    }

    pub fn claim_batch(&self, field: &str, requested: u32) -> Result<u32> {
        match requested {
            0 => Ok(1),
            n if n > self.max_claim_batch => Err(Error::too_large(
                field,
                format!("{n} chunks, at most {} per claim", self.max_claim_batch),
            )),
            n => Ok(n),
        }
    }

    pub fn wait(&self, requested: u32) -> Result<Duration> {
        if requested > self.max_wait_seconds {
            return Err(Error::invalid(
                "wait_seconds",
                format!(
                    "{requested} s is more than the limit of {} s",
                    self.max_wait_seconds
                ),
            ));
        }
        Ok(Duration::from_secs(u64::from(requested)))
    }

    pub fn page_size(&self, requested: u32, default: u32) -> Result<u32> {
        match requested {
            0 => Ok(default.min(self.max_page_size)),
            n if n > self.max_page_size => Err(Error::invalid(
                "page_size",
                format!("{n}, at most {}", self.max_page_size),
            )),
            n => Ok(n),
        }
    }

    /// Cuts an error message to the limit on a character boundary.
    pub fn error_message(&self, mut message: String) -> String {
        if message.len() > self.max_error_message_bytes {
            let mut cut = self.max_error_message_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        message
    }

    pub fn lease_token(&self, value: String) -> Result<String> {
        self.id("lease_token", value)
    }

    pub fn chunk_id(&self, value: i64) -> Result<i64> {
        positive_id("chunk_id", value)
    }
}

/// A backoff multiplier as a client sends it (`retry_policy.multiplier`): 0 means `default`.
pub(crate) fn backoff_multiplier(requested: f64, default: f64) -> Result<f64> {
    if requested == 0.0 {
        Ok(default)
    } else if requested.is_finite() && (1.0..=100.0).contains(&requested) {
        Ok(requested)
    } else {
        Err(Error::invalid(
            "retry_policy.multiplier",
            "must be between 1 and 100",
        ))
    }
}

/// A database id a client sends back: positive.
pub(crate) fn positive_id(field: &str, value: i64) -> Result<i64> {
    if value <= 0 {
        return Err(Error::invalid(field, "must be positive"));
    }
    Ok(value)
}

fn retry_policy(input: RetryPolicyInput) -> Result<RetryPolicy> {
    let defaults = RetryPolicy::default();
    let multiplier = backoff_multiplier(input.multiplier, defaults.multiplier)?;
    let initial = match input.initial_backoff_ms {
        0 => defaults.initial_backoff,
        ms => Duration::from_millis(u64::from(ms)),
    };
    let max = match input.max_backoff_ms {
        0 => defaults.max_backoff.max(initial),
        ms => Duration::from_millis(u64::from(ms)),
    };
    if max < initial {
        return Err(Error::invalid(
            "retry_policy.max_backoff_ms",
            "must not be less than initial_backoff_ms",
        ));
    }
    Ok(RetryPolicy {
        initial_backoff: initial,
        multiplier,
        max_backoff: max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CreateJobInput {
        CreateJobInput {
            payloads: vec![b"x".to_vec()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let job = Limits::default().new_job(input(), "gen".into()).unwrap();
        assert_eq!(job.job_id, "gen");
        assert_eq!(job.queue, "default");
        assert_eq!(job.max_attempts, 3);
        assert_eq!(job.retry_policy, RetryPolicy::default());
    }

    #[test]
    fn each_bad_field_is_named() {
        let limits = Limits {
            max_payload_bytes: 4,
            max_chunks_per_job: 2,
            ..Limits::default()
        };
        let field_of = |input: CreateJobInput| match limits.new_job(input, "g".into()) {
            Err(Error::InvalidArgument { field, .. } | Error::ResourceExhausted { field, .. }) => {
                field
            }
            other => panic!("expected a field error, got {other:?}"),
        };
        let mut i = input();
        i.payloads.clear();
        assert_eq!(field_of(i), "chunks");
        let mut i = input();
        i.payloads = vec![vec![0; 3]; 3];
        assert_eq!(field_of(i), "chunks");
        let mut i = input();
        i.payloads.push(vec![0; 5]);
        assert_eq!(field_of(i), "chunks[1].payload");
        let mut i = input();
        i.queue = "bad queue".into();
        assert_eq!(field_of(i), "queue");
        let mut i = input();
        i.job_id = "x".repeat(129);
        assert_eq!(field_of(i), "job_id");
        let mut i = input();
        i.max_attempts = 5000;
        assert_eq!(field_of(i), "max_attempts");
        let mut i = input();
        i.retry_policy = Some(RetryPolicyInput {
            multiplier: f64::NAN,
            ..Default::default()
        });
        assert_eq!(field_of(i), "retry_policy.multiplier");
        let mut i = input();
        i.retry_policy = Some(RetryPolicyInput {
            initial_backoff_ms: 10,
            max_backoff_ms: 5,
            ..Default::default()
        });
        assert_eq!(field_of(i), "retry_policy.max_backoff_ms");
    }

    #[test]
    fn error_messages_are_cut_on_a_character_boundary() {
        let limits = Limits {
            max_error_message_bytes: 3,
            ..Limits::default()
        };
        assert_eq!(limits.error_message("aéb".into()), "aé");
        assert_eq!(limits.error_message("aébc".into()), "aé");
    }
}
