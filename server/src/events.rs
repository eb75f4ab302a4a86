//! In-process wake-ups: waiting claimers and Work streams learn that a queue has new work, and
//! WatchJob streams that a job changed, without polling the database.
//!
//! New work wakes one waiter of its queue, not all of them: eight idle workers woken by every
//! new chunk would send eight claims where one finds it. A waiter that fills its whole batch
//! passes the wake-up on (`work_available` again), so a large job still reaches every waiter.
//! A wake-up with nobody waiting is kept for the next one, so work that arrives while a worker
//! is between its check and its wait is not missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, Notify};

use crate::store::ChangeSink;

/// Announced as the changed job when every watcher should look again. Job ids cannot contain
/// control characters, so it names no real job.
pub const EVERY_JOB: &str = "\u{0}";

pub struct Events {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    jobs: broadcast::Sender<String>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            // Lagging watchers only miss intermediate states; they re-read progress anyway.
            jobs: broadcast::channel(1024).0,
        }
    }
}

impl Events {
    /// The signal of `queue`: wait on `notified()` for work to arrive.
    pub fn queue_signal(&self, queue: &str) -> Arc<Notify> {
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Forget queues nobody waits on, so the map does not grow with every queue name seen.
        if queues.len() > 1024 {
            queues.retain(|_, signal| Arc::strong_count(signal) > 1);
        }
        Arc::clone(queues.entry(queue.to_owned()).or_default())
    }

    /// Wakes one waiter of `queue` (or the next one to wait).
    pub fn work_available(&self, queue: &str) {
        self.queue_signal(queue).notify_one();
    }

    /// Wakes every waiter: used when work may have appeared in queues we cannot name cheaply
    /// (recovered or released leases, missed notifications).
    pub fn work_available_everywhere(&self) {
        let queues = self
            .queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for signal in queues.values() {
            signal.notify_waiters();
            signal.notify_one();
        }
    }

    pub fn subscribe_jobs(&self) -> broadcast::Receiver<String> {
        self.jobs.subscribe()
    }

    pub fn job_changed(&self, job_id: &str) {
        // No receiver is fine: nobody is watching.
        let _ = self.jobs.send(job_id.to_owned());
    }
}

impl ChangeSink for Events {
    fn work_available(&self, queue: &str) {
        Events::work_available(self, queue);
    }

    fn job_changed(&self, job_id: &str) {
        Events::job_changed(self, job_id);
    }

    fn resync(&self) {
        self.work_available_everywhere();
        self.job_changed(EVERY_JOB);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn new_work_wakes_one_waiter_and_is_kept_when_nobody_waits() {
        let events = Events::default();
        let signal = events.queue_signal("q");
        events.work_available("other");
        events.work_available("q");
        // Nobody was waiting: the wake-up is kept for the next waiter.
        signal.notified().await;

        let first = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move { signal.notified().await }
        });
        let second = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move { signal.notified().await }
        });
        tokio::task::yield_now().await;
        events.work_available_everywhere();
        first.await.unwrap();
        second.await.unwrap();
    }
}
