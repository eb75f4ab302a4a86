//! In-process wake-ups: waiting claimers and Work streams learn that a queue has new work, and
//! WatchJob streams that a job changed, without polling the database.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{broadcast, watch};

use crate::store::ChangeSink;

/// Announced as the changed job when every watcher should look again. Job ids cannot contain
/// control characters, so it names no real job.
pub const EVERY_JOB: &str = "\u{0}";

pub struct Events {
    queues: Mutex<HashMap<String, watch::Sender<u64>>>,
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
    /// A receiver that changes whenever work may have arrived in `queue`. Subscribe before
    /// looking for work, so work that arrives in between is not missed.
    pub fn subscribe_queue(&self, queue: &str) -> watch::Receiver<u64> {
        self.queue_sender(queue, |sender| sender.subscribe())
    }

    pub fn work_available(&self, queue: &str) {
        self.queue_sender(queue, |sender| sender.send_modify(|version| *version += 1));
    }

    /// Wakes every waiter: used when work may have appeared in queues we cannot name cheaply
    /// (recovered or released leases).
    pub fn work_available_everywhere(&self) {
        let queues = self
            .queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for sender in queues.values() {
            sender.send_modify(|version| *version += 1);
        }
    }

    pub fn subscribe_jobs(&self) -> broadcast::Receiver<String> {
        self.jobs.subscribe()
    }

    pub fn job_changed(&self, job_id: &str) {
        // No receiver is fine: nobody is watching.
        let _ = self.jobs.send(job_id.to_owned());
    }

    fn queue_sender<T>(&self, queue: &str, use_sender: impl FnOnce(&watch::Sender<u64>) -> T) -> T {
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Forget queues nobody waits on, so the map does not grow with every queue name seen.
        if queues.len() > 1024 {
            queues.retain(|_, sender| sender.receiver_count() > 0);
        }
        let sender = queues
            .entry(queue.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        use_sender(sender)
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
    async fn a_waiter_subscribed_before_new_work_is_woken() {
        let events = Events::default();
        let mut waiter = events.subscribe_queue("q");
        events.work_available("other");
        assert!(!waiter.has_changed().unwrap());
        events.work_available("q");
        waiter.changed().await.unwrap();
        events.work_available_everywhere();
        assert!(waiter.has_changed().unwrap());
    }
}
