//! Connection health per data type, moved by every sync outcome.

use super::super::chunks::status_enum;
use super::super::Timestamp;

status_enum!(
    HealthStatus {
        Unknown => "unknown",
        Healthy => "healthy",
        Degraded => "degraded",
        Unhealthy => "unhealthy",
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionHealth {
    pub data_type: String,
    pub status: HealthStatus,
    pub last_check_at: Option<Timestamp>,
    /// Items of the current snapshot.
    pub item_count: u64,
    pub error_message: Option<String>,
    pub consecutive_failures: u32,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
}

impl ConnectionHealth {
    pub fn unknown(data_type: &str) -> Self {
        Self {
            data_type: data_type.to_owned(),
            status: HealthStatus::Unknown,
            last_check_at: None,
            item_count: 0,
            error_message: None,
            consecutive_failures: 0,
            last_success_at: None,
            last_failure_at: None,
        }
    }

    /// An accepted sync: healthy, failures forgotten.
    pub fn after_success(&mut self, item_count: u64, now: Timestamp) {
        self.status = HealthStatus::Healthy;
        self.last_check_at = Some(now);
        self.item_count = item_count;
        self.error_message = None;
        self.consecutive_failures = 0;
        self.last_success_at = Some(now);
    }

    /// A failed sync. While it will be retried and the data in hand came from a good sync, the
    /// connection is degraded; a failure nobody will retry, or one with no good sync behind it,
    /// makes it unhealthy. The item count stays the current snapshot's.
    pub fn after_failure(&mut self, error: &str, will_retry: bool, now: Timestamp) {
        let last_sync_good = self.last_success_at.is_some()
            && matches!(self.status, HealthStatus::Healthy | HealthStatus::Degraded);
        self.status = if will_retry && last_sync_good {
            HealthStatus::Degraded
        } else {
            HealthStatus::Unhealthy
        };
        self.last_check_at = Some(now);
        self.error_message = Some(error.to_owned());
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_failure_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_before_any_good_sync_is_unhealthy() {
        let mut health = ConnectionHealth::unknown("orders");
        health.after_failure("timeout", true, Timestamp::from_micros(1));
        assert_eq!(health.status, HealthStatus::Unhealthy);
        assert_eq!(health.consecutive_failures, 1);
    }
}
