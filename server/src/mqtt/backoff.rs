//! Exponential backoff with jitter, for reconnecting to the broker and for retrying a message
//! while the database is unavailable.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt: the current step, doubled each time up to `max`, with
    /// the upper half randomized so many clients cut off together do not return together.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        let half = step / 2;
        half + Duration::from_micros(fastrand::u64(0..=half.as_micros() as u64))
    }

    /// After a success: the next failure starts from `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let ranges = [(50, 100), (100, 200), (200, 400), (250, 500), (250, 500)];
        for (low, high) in ranges {
            let delay = backoff.next_delay();
            assert!(
                delay >= Duration::from_millis(low) && delay <= Duration::from_millis(high),
                "{delay:?} not in {low}..={high} ms"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
