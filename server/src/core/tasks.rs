//! Scheduled tasks: their runs, and the time slots that make "one run per tick" checkable across
//! replicas.

use std::time::Duration;

use super::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Started by the scheduler for a time slot.
    Schedule,
    /// Started by hand (RunTask).
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Ok,
    Error,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Schedule => "schedule",
            RunKind::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [RunKind::Schedule, RunKind::Manual]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [RunOutcome::Ok, RunOutcome::Error]
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

/// What a run did, as named counts ("recovered" → 3).
pub type TaskCounts = Vec<(String, u64)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTaskRun {
    pub task: String,
    /// The schedule slot this run covers; `None` for manual runs.
    pub slot: Option<i64>,
    pub replica_id: String,
    pub kind: RunKind,
    pub started_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRun {
    pub id: i64,
    pub task: String,
    pub slot: Option<i64>,
    pub replica_id: String,
    pub kind: RunKind,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: Option<RunOutcome>,
    pub counts: TaskCounts,
    pub error: Option<String>,
}

/// The slot `now` falls in for a task run every `interval`: slots are aligned to the epoch, so
/// every replica computes the same slot for the same tick.
pub fn slot_of(now: Timestamp, interval: Duration) -> i64 {
    let interval = i64::try_from(interval.as_micros())
        .unwrap_or(i64::MAX)
        .max(1);
    now.as_micros().div_euclid(interval)
}

/// Counts as stored: `name=value` pairs separated by commas.
pub fn encode_counts(counts: &TaskCounts) -> String {
    counts
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode_counts(text: &str) -> TaskCounts {
    text.split(',')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_and_shared() {
        let minute = Duration::from_secs(60);
        let t = Timestamp::from_micros(125_000_000);
        assert_eq!(slot_of(t, minute), 2);
        assert_eq!(slot_of(t.plus(Duration::from_secs(54)), minute), 2);
        assert_eq!(slot_of(t.plus(Duration::from_secs(55)), minute), 3);
        assert_eq!(slot_of(t, Duration::ZERO), 125_000_000);
    }

    #[test]
    fn counts_round_trip() {
        let counts = vec![("recovered".to_owned(), 3), ("failed".to_owned(), 0)];
        assert_eq!(decode_counts(&encode_counts(&counts)), counts);
        assert_eq!(decode_counts(""), vec![]);
    }
}
