//! SyncRetry's domain: sources synced on an interval, the retry queue of their failed syncs, and
//! the rules deciding what a failure leads to. Classification, connection health, snapshots and
//! record conflicts each have their own module.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::chunks::status_enum;
use super::retry::RetryPolicy;
use super::Timestamp;

pub mod classify;
pub mod health;
pub mod input;
pub mod records;
pub mod snapshots;

pub use classify::Classification;
pub use health::{ConnectionHealth, HealthStatus};

status_enum!(
    /// Where a sync task is in its life.
    SyncTaskStatus {
        Pending => "pending",
        Processing => "processing",
        RetryScheduled => "retry_scheduled",
        Completed => "completed",
        Failed => "failed",
        Exhausted => "exhausted",
        Cancelled => "cancelled",
    }
);

impl SyncTaskStatus {
    /// Open tasks block new scheduled syncs of their data type; at most one exists per type.
    pub const OPEN: &'static [SyncTaskStatus] = &[
        Self::Pending,
        Self::Processing,
        Self::RetryScheduled,
        Self::Failed,
    ];

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Exhausted | Self::Cancelled)
    }
}

/// `[sync]` in retryd.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSettings {
    /// Snapshot versions kept per data type, the current one included.
    pub snapshot_retention: u32,
    pub classification: classify::ClassificationRules,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            snapshot_retention: 5,
            classification: classify::ClassificationRules::default(),
        }
    }
}

pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(300);
/// Claims without a `max` take this many tasks.
pub const DEFAULT_CLAIM_MAX: u32 = 10;

/// How the failed syncs of a source are retried: retry `n` waits `base_delay × multiplier^(n−1)`,
/// capped at `max_delay`. No jitter: a source has one task at a time, so there is no herd to
/// spread, and operators can read the schedule off the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncRetryPolicy {
    pub base_delay: Duration,
    pub multiplier: f64,
    pub max_retries: u32,
    pub max_delay: Duration,
}

impl Default for SyncRetryPolicy {
    /// The seed's schedule: 5, 10 and 20 minutes, then no more.
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(300),
            multiplier: 2.0,
            max_retries: 3,
            max_delay: Duration::from_secs(3600),
        }
    }
}

impl SyncRetryPolicy {
    /// The wait before retry number `retry` (1-based).
    pub fn delay_before(&self, retry: u32) -> Duration {
        RetryPolicy {
            initial_backoff: self.base_delay,
            multiplier: self.multiplier,
            max_backoff: self.max_delay,
        }
        .backoff(retry, 0.0)
    }
}

/// What a failed sync leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSyncFailure {
    /// Recoverable with retries left: retry number `retry` becomes due at `at`.
    Retry { retry: u32, at: Timestamp },
    /// Recoverable, but every retry is used up.
    Exhausted,
    /// Not recoverable: a person has to act.
    NeedsPerson,
}

impl AfterSyncFailure {
    pub fn decide(
        retry_count: u32,
        max_retries: u32,
        recoverable: bool,
        policy: &SyncRetryPolicy,
        now: Timestamp,
    ) -> Self {
        if !recoverable {
            Self::NeedsPerson
        } else if retry_count < max_retries {
            let retry = retry_count + 1;
            Self::Retry {
                retry,
                at: now.plus(policy.delay_before(retry)),
            }
        } else {
            Self::Exhausted
        }
    }

    pub fn status(self) -> SyncTaskStatus {
        match self {
            Self::Retry { .. } => SyncTaskStatus::RetryScheduled,
            Self::Exhausted => SyncTaskStatus::Exhausted,
            Self::NeedsPerson => SyncTaskStatus::Failed,
        }
    }
}

/// A validated RegisterSource.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSource {
    pub data_type: String,
    pub sync_interval: Duration,
    pub retry_policy: SyncRetryPolicy,
    pub config: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub data_type: String,
    pub sync_interval: Duration,
    pub retry_policy: SyncRetryPolicy,
    pub config: String,
    pub next_sync_at: Timestamp,
    pub current_version: Option<u64>,
    pub health: ConnectionHealth,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTask {
    pub task_id: i64,
    pub data_type: String,
    pub status: SyncTaskStatus,
    pub retry_count: u32,
    pub max_retries: u32,
    pub next_retry_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub worker_id: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncClaim {
    pub worker_id: String,
    /// Empty: every data type.
    pub data_types: Vec<String>,
    pub max: u32,
    pub lease: Duration,
    pub lease_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedSyncTask {
    pub task_id: i64,
    pub data_type: String,
    pub retry_count: u32,
    pub config: String,
    pub lease_token: String,
    pub lease_expires_at: Timestamp,
    pub current_version: Option<u64>,
}

/// A failed sync as the store records it: the service has classified it already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    pub task_id: i64,
    pub lease_token: String,
    pub error_message: String,
    pub classification: Classification,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSync {
    pub task: SyncTask,
    pub classification: Classification,
    pub health: ConnectionHealth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureLog {
    pub id: i64,
    pub task_id: i64,
    pub data_type: String,
    pub error_message: String,
    pub recoverable: bool,
    pub matched_rule: Option<String>,
    pub retry_count: u32,
    pub rolled_back_to: Option<u64>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncTaskFilter {
    pub data_type: Option<String>,
    pub status: Option<SyncTaskStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_default_schedule_is_5_10_20_minutes_then_no_more() {
        let policy = SyncRetryPolicy::default();
        let now = Timestamp::from_micros(0);
        let delays: Vec<_> = (0..4)
            .map(|retries| AfterSyncFailure::decide(retries, 3, true, &policy, now))
            .collect();
        assert_eq!(
            delays,
            vec![
                AfterSyncFailure::Retry {
                    retry: 1,
                    at: now.plus(5 * MINUTE)
                },
                AfterSyncFailure::Retry {
                    retry: 2,
                    at: now.plus(10 * MINUTE)
                },
                AfterSyncFailure::Retry {
                    retry: 3,
                    at: now.plus(20 * MINUTE)
                },
                AfterSyncFailure::Exhausted,
            ]
        );
        assert_eq!(
            AfterSyncFailure::decide(0, 3, false, &policy, now),
            AfterSyncFailure::NeedsPerson
        );
    }

    #[test]
    fn the_delay_is_capped() {
        let policy = SyncRetryPolicy {
            max_delay: 15 * MINUTE,
            ..SyncRetryPolicy::default()
        };
        assert_eq!(policy.delay_before(3), 15 * MINUTE);
    }
}
