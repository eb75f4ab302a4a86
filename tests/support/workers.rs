//! `retryd worker` processes, whose stdout says which completions the server accepted.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::server::BINARY;

pub struct WorkerProcess {
    child: Child,
    completed: Arc<Mutex<Vec<i64>>>,
}

impl WorkerProcess {
    /// `mode` is `stream` or `poll`; `extra` adds flags such as `--lease-seconds 2`.
    pub fn start(server_url: &str, queue: &str, mode: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args([
                "worker", "--server", server_url, "--queue", queue, "--mode", mode,
            ])
            .args(extra)
            .env("RETRYD_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn retryd worker");
        let stdout = child.stdout.take().expect("stdout");
        let completed = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&completed);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(id) = line
                    .strip_prefix("completed ")
                    .and_then(|id| id.parse().ok())
                {
                    sink.lock().unwrap().push(id);
                }
            }
        });
        Self { child, completed }
    }

    pub fn completed(&self) -> Vec<i64> {
        self.completed.lock().unwrap().clone()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every completion the workers reported, checked to be unique: returns how many there were.
pub fn assert_each_completed_at_most_once(workers: &[WorkerProcess]) -> usize {
    let mut seen = std::collections::HashSet::new();
    for worker in workers {
        for chunk_id in worker.completed() {
            assert!(
                seen.insert(chunk_id),
                "chunk {chunk_id} was completed twice"
            );
        }
    }
    seen.len()
}
