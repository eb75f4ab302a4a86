//! Exponential backoff with jitter for retryable failures.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub multiplier: f64,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The delay before the retry that follows failed attempt number `attempt` (1-based).
    ///
    /// `jitter` in [0, 1) takes up to half of the exponential delay off ("equal jitter"), so
    /// retries of many chunks that failed together spread out but still back off.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = base.min(self.max_backoff.as_secs_f64()).max(0.0);
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 - jitter / 2.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_per_attempt_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(policy.backoff(2, 0.0), Duration::from_secs(2));
        assert_eq!(policy.backoff(4, 0.0), Duration::from_secs(8));
        assert_eq!(policy.backoff(30, 0.0), Duration::from_secs(300));
        assert_eq!(policy.backoff(u32::MAX, 0.0), Duration::from_secs(300));
    }

    #[test]
    fn jitter_takes_off_at_most_half() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(2, 0.5), Duration::from_millis(1500));
        assert!(policy.backoff(2, 0.999_999) >= Duration::from_secs(1));
        assert_eq!(policy.backoff(2, 7.0), Duration::from_secs(1));
    }
}
