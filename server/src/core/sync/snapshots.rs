//! Snapshots: every accepted sync is a new version of its data type's dataset; an empty or
//! corrupt one never replaces data that was there.

use super::super::Timestamp;

/// Stored data is split into parts of at most this size, so a part always fits in one message
/// of a client's default size limit (4 MiB).
pub const PART_BYTES: usize = 1024 * 1024;
/// The rule names a rejected snapshot's failure is logged under.
pub const EMPTY_DATA_RULE: &str = "empty data";
pub const MALFORMED_DATA_RULE: &str = "malformed data";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub data_type: String,
    pub version: u64,
    pub item_count: u64,
    pub byte_size: u64,
    /// Lowercase hex SHA-256 of the data.
    pub checksum: String,
    pub content_type: String,
    pub created_at: Timestamp,
    pub current: bool,
}

/// A staged snapshot whose data has all arrived, to be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotUpload {
    pub snapshot_id: i64,
    pub task_id: i64,
    pub lease_token: String,
    pub item_count: u64,
    pub byte_size: u64,
    /// What the server computed over the received data.
    pub checksum: String,
    /// What the worker says it sent, if it said.
    pub expected_checksum: Option<String>,
    /// How many versions to keep, the new one included.
    pub keep_versions: u32,
}

/// What became of a reported snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedSync {
    pub accepted: bool,
    /// Accepted: the new snapshot; rejected: the one kept current, if any.
    pub snapshot: Option<SnapshotInfo>,
    pub reason: Option<String>,
    pub task: super::SyncTask,
    pub health: super::ConnectionHealth,
}

/// The verdict on a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject {
        error: String,
        rule: &'static str,
        /// The version that stays current: an automatic rollback.
        kept_version: Option<u64>,
    },
}

/// The current snapshot of a data type, as the judge needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentData {
    pub version: u64,
    pub item_count: u64,
}

impl Verdict {
    /// Zero items or a checksum mismatch where the data type had data: rejected as "empty
    /// data", the data in hand stays. Without data before, zero items is an honest empty
    /// dataset, but corrupt data is never accepted.
    pub fn judge(item_count: u64, checksum_matches: bool, current: Option<CurrentData>) -> Self {
        let had_data = current.filter(|current| current.item_count > 0);
        match had_data {
            Some(kept) if item_count == 0 => Self::Reject {
                error: format!(
                    "empty data: the sync reported 0 items; version {} stays current",
                    kept.version
                ),
                rule: EMPTY_DATA_RULE,
                kept_version: Some(kept.version),
            },
            Some(kept) if !checksum_matches => Self::Reject {
                error: format!(
                    "empty data: the data does not match its checksum; version {} stays current",
                    kept.version
                ),
                rule: EMPTY_DATA_RULE,
                kept_version: Some(kept.version),
            },
            None if !checksum_matches => Self::Reject {
                error: "malformed data: the data does not match its checksum".to_owned(),
                rule: MALFORMED_DATA_RULE,
                kept_version: current.map(|current| current.version),
            },
            _ => Self::Accept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_data_is_accepted_only_when_there_was_none() {
        let had = Some(CurrentData {
            version: 3,
            item_count: 10,
        });
        assert_eq!(Verdict::judge(0, true, None), Verdict::Accept);
        assert!(matches!(
            Verdict::judge(0, true, had),
            Verdict::Reject {
                kept_version: Some(3),
                ..
            }
        ));
        assert!(matches!(
            Verdict::judge(5, false, had),
            Verdict::Reject {
                rule: EMPTY_DATA_RULE,
                ..
            }
        ));
        assert!(matches!(
            Verdict::judge(5, false, None),
            Verdict::Reject {
                rule: MALFORMED_DATA_RULE,
                ..
            }
        ));
        assert_eq!(Verdict::judge(5, true, had), Verdict::Accept);
    }
}
