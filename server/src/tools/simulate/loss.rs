//! Chunk loss: each chunk is independently not published with a given probability, from a
//! seeded generator of its own so a run with the same seed drops the same chunks.

pub struct Loss {
    probability: f64,
    rng: fastrand::Rng,
}

impl Loss {
    pub fn new(probability: f64, seed: u64) -> Self {
        Self {
            probability,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// True when the next chunk is lost.
    pub fn drops(&mut self) -> bool {
        // Draw even at 0 so the sequence does not depend on the probability's value.
        self.rng.f64() < self.probability
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(probability: f64, seed: u64, n: usize) -> Vec<bool> {
        let mut loss = Loss::new(probability, seed);
        (0..n).map(|_| loss.drops()).collect()
    }

    #[test]
    fn the_same_seed_drops_the_same_chunks() {
        assert_eq!(sample(0.3, 42, 1000), sample(0.3, 42, 1000));
        assert_ne!(sample(0.3, 42, 1000), sample(0.3, 43, 1000));
    }

    #[test]
    fn no_loss_drops_nothing() {
        assert!(sample(0.0, 1, 10_000).iter().all(|dropped| !dropped));
    }

    #[test]
    fn the_share_dropped_is_near_the_probability() {
        // Seeded, so this is one fixed sequence: the bound is about the generator being used
        // the right way round, not about chance.
        let dropped = sample(0.1, 5, 20_000).iter().filter(|d| **d).count();
        assert!(
            (1_700..2_300).contains(&dropped),
            "{dropped} of 20000 dropped"
        );
    }
}
