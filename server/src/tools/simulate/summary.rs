//! The end of a run: totals for people (text) and for scripts and tests (JSON).

use std::time::Duration;

use serde::Serialize;

use super::counters::Counters;
use super::device::Outcome;
use super::fleet::{DeviceReport, Verification};
use super::options::FleetOptions;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub devices: u32,
    pub images_complete: u64,
    pub images_failed_for_good: u64,
    pub devices_gave_up: u64,
    /// The MACs of the devices that gave up.
    pub gave_up_macs: Vec<String>,
    pub wakes: u64,
    pub failed_wakes: u64,
    pub chunks_published: u64,
    pub chunks_dropped: u64,
    pub acks_received: u64,
    pub retry_commands_obeyed: u64,
    pub commands_ignored: u64,
    pub duplicate_commands_skipped: u64,
    pub whole_image_resends: u64,
    /// Complete images downloaded whose SHA-256 matched the device's.
    pub images_verified: u64,
    pub checksum_mismatches: u64,
    pub mismatched_macs: Vec<String>,
    pub download_errors: Vec<String>,
    pub wall_seconds: f64,
    /// From the first chunk published to the last ack received.
    pub ingestion_seconds: f64,
    /// Acked chunks per second over that window.
    pub ingestion_chunks_per_second: f64,
    pub loss: f64,
    pub chunks_per_image: u32,
    pub chunk_bytes: u32,
    pub wake_seconds: u64,
    pub seed: u64,
    pub mac_prefix: String,
}

impl Summary {
    pub fn new(
        options: &FleetOptions,
        counters: &Counters,
        reports: &[DeviceReport],
        verification: &Verification,
        wall: Duration,
    ) -> Self {
        let get = |counter| Counters::get(counter);
        let count = |outcome| reports.iter().filter(|r| r.outcome == outcome).count() as u64;
        let ingestion_seconds = counters.ingestion_seconds().unwrap_or(0.0);
        let acks = get(&counters.acks_received);
        // What reached the server: the server may skip acks when its outgoing queue is full (a
        // later ack carries the count), so acks undercount what was stored.
        let delivered =
            get(&counters.chunks_published).saturating_sub(get(&counters.chunks_dropped));
        Self {
            devices: options.count,
            images_complete: count(Outcome::Complete),
            images_failed_for_good: count(Outcome::FailedForGood),
            devices_gave_up: count(Outcome::GaveUp),
            gave_up_macs: reports
                .iter()
                .filter(|r| r.outcome == Outcome::GaveUp)
                .map(|r| r.mac.clone())
                .collect(),
            wakes: get(&counters.wakes),
            failed_wakes: get(&counters.failed_wakes),
            chunks_published: get(&counters.chunks_published),
            chunks_dropped: get(&counters.chunks_dropped),
            acks_received: acks,
            retry_commands_obeyed: get(&counters.retry_commands_obeyed),
            commands_ignored: get(&counters.commands_ignored),
            duplicate_commands_skipped: get(&counters.duplicate_commands),
            whole_image_resends: get(&counters.whole_resends),
            images_verified: verification.verified,
            checksum_mismatches: verification.mismatches.len() as u64,
            mismatched_macs: verification.mismatches.clone(),
            download_errors: verification.download_errors.clone(),
            wall_seconds: wall.as_secs_f64(),
            ingestion_seconds,
            ingestion_chunks_per_second: if ingestion_seconds > 0.0 {
                delivered as f64 / ingestion_seconds
            } else {
                0.0
            },
            loss: options.loss,
            chunks_per_image: options.chunks,
            chunk_bytes: options.chunk_bytes,
            wake_seconds: options.wake_interval.as_secs(),
            seed: options.seed,
            mac_prefix: options.mac_prefix.clone(),
        }
    }

    /// Every image complete or failed for good, each complete one downloaded intact.
    pub fn succeeded(&self) -> bool {
        self.problems().is_empty()
    }

    /// Why the run did not succeed, one sentence each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.devices_gave_up > 0 {
            problems.push(format!(
                "{} devices gave up: {}",
                self.devices_gave_up,
                self.gave_up_macs.join(", ")
            ));
        }
        if self.checksum_mismatches > 0 {
            problems.push(format!(
                "{} downloaded images differ from what their device sent: {}",
                self.checksum_mismatches,
                self.mismatched_macs.join(", ")
            ));
        }
        if !self.download_errors.is_empty() {
            problems.push(format!(
                "{} complete images could not be downloaded: {}",
                self.download_errors.len(),
                self.download_errors.join("; ")
            ));
        }
        problems
    }

    pub fn to_text(&self) -> String {
        let lines = [
            format!(
                "devices              {} (MACs {}…, seed {})",
                self.devices, self.mac_prefix, self.seed
            ),
            format!(
                "images               {} complete, {} failed for good, {} gave up",
                self.images_complete, self.images_failed_for_good, self.devices_gave_up
            ),
            format!(
                "wakes                {} ({} failed)",
                self.wakes, self.failed_wakes
            ),
            format!(
                "chunks               {} published, {} dropped by the loss ({:.0}%), {} acked",
                self.chunks_published,
                self.chunks_dropped,
                self.loss * 100.0,
                self.acks_received
            ),
            format!(
                "commands             {} retries obeyed, {} duplicates skipped, {} ignored; \
                 {} images sent whole again",
                self.retry_commands_obeyed,
                self.duplicate_commands_skipped,
                self.commands_ignored,
                self.whole_image_resends
            ),
            format!(
                "downloads            {} verified, {} checksum mismatches, {} errors",
                self.images_verified,
                self.checksum_mismatches,
                self.download_errors.len()
            ),
            format!("wall time            {:.1} s", self.wall_seconds),
            format!(
                "ingestion            {:.0} chunks/s ({} chunks of {} bytes sent, last ack after \
                 {:.2} s)",
                self.ingestion_chunks_per_second,
                self.chunks_published - self.chunks_dropped,
                self.chunk_bytes,
                self.ingestion_seconds
            ),
        ];
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}
