//! The fleet's running totals, shared by every device task and read by the progress lines and
//! the summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Default)]
pub struct Counters {
    pub wakes: AtomicU64,
    /// Wakes cut short: no connection, or the link dropped.
    pub failed_wakes: AtomicU64,
    pub chunks_published: AtomicU64,
    pub chunks_dropped: AtomicU64,
    pub acks_received: AtomicU64,
    pub retry_commands_obeyed: AtomicU64,
    pub commands_ignored: AtomicU64,
    pub duplicate_commands: AtomicU64,
    /// Images announced and sent whole again because the server had none of their chunks.
    pub whole_resends: AtomicU64,
    pub complete: AtomicU64,
    pub failed_for_good: AtomicU64,
    pub gave_up: AtomicU64,
    /// From the first chunk published to the last ack received: the ingestion window.
    window: Mutex<Option<(Instant, Instant)>>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn finished(&self) -> u64 {
        Self::get(&self.complete) + Self::get(&self.failed_for_good) + Self::get(&self.gave_up)
    }

    pub fn chunk_published(&self, at: Instant) {
        Self::add(&self.chunks_published, 1);
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        match window.as_mut() {
            Some((first, _)) if *first <= at => {}
            Some((first, _)) => *first = at,
            None => *window = Some((at, at)),
        }
    }

    pub fn ack_received(&self, at: Instant) {
        Self::add(&self.acks_received, 1);
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, last)) = window.as_mut() {
            if *last < at {
                *last = at;
            }
        }
    }

    /// Seconds from the first chunk to the last ack; None before both.
    pub fn ingestion_seconds(&self) -> Option<f64> {
        let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.map(|(first, last)| last.saturating_duration_since(first).as_secs_f64())
    }
}
