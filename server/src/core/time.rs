//! Instants as microseconds since the Unix epoch: one representation for both storage engines and
//! exact arithmetic for leases and backoff.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Saturates instead of overflowing: durations come from validated input, but an instant far
    /// in the future must still never wrap around into the past.
    pub fn plus(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    pub fn minus(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(micros))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    pub fn seconds_and_nanos(self) -> (i64, i32) {
        let seconds = self.0.div_euclid(1_000_000);
        let nanos = (self.0.rem_euclid(1_000_000) * 1_000) as i32;
        (seconds, nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_splits_negative_instants_correctly() {
        let t = Timestamp::from_micros(1_500_000);
        assert_eq!(t.plus(Duration::from_secs(1)).as_micros(), 2_500_000);
        assert_eq!(t.minus(Duration::from_millis(500)).as_micros(), 1_000_000);
        assert_eq!(
            Timestamp::from_micros(i64::MAX - 1)
                .plus(Duration::MAX)
                .as_micros(),
            i64::MAX
        );
        assert_eq!(t.since(Timestamp::from_micros(2_000_000)), Duration::ZERO);
        assert_eq!(
            Timestamp::from_micros(-1).seconds_and_nanos(),
            (-1, 999_999_000)
        );
    }
}
