//! Record sync between clients (seed 002): clients edit records offline and push their changes
//! later; a change based on an older version than the server's is a conflict, settled by the
//! push's strategy or kept for a person. "Local" is the pushing client's change, "remote" the
//! server's record.

use sha2::{Digest, Sha256};

use super::super::chunks::status_enum;
use super::super::{Error, Timestamp};

status_enum!(
    ConflictStrategy {
        LocalWins => "local-wins",
        RemoteWins => "remote-wins",
        NewestWins => "newest-wins",
        Manual => "manual",
    }
);

status_enum!(
    ChangeStatus {
        Applied => "applied",
        Conflict => "conflict",
        Rejected => "rejected",
    }
);

status_enum!(
    ConflictStatus {
        Open => "open",
        Resolved => "resolved",
    }
);

status_enum!(
    ResolutionKind {
        Local => "local",
        Remote => "remote",
        Merged => "merged",
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChange {
    pub change_id: String,
    pub record_id: String,
    pub base_version: u64,
    pub updated_at: Timestamp,
    pub payload: Vec<u8>,
    pub deleted: bool,
}

impl RecordChange {
    /// A digest of everything but the change id: a repeated change is only a replay when this
    /// matches.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update((self.record_id.len() as u64).to_be_bytes());
        hasher.update(self.record_id.as_bytes());
        hasher.update(self.base_version.to_be_bytes());
        hasher.update(self.updated_at.as_micros().to_be_bytes());
        hasher.update([u8::from(self.deleted)]);
        hasher.update(&self.payload);
        hex::encode(hasher.finalize())
    }
}

/// A validated PushChanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub collection: String,
    pub client_id: String,
    pub strategy: ConflictStrategy,
    pub changes: Vec<RecordChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub collection: String,
    pub record_id: String,
    pub version: u64,
    pub updated_at: Timestamp,
    pub payload: Vec<u8>,
    pub deleted: bool,
    pub changed_by: String,
    pub cursor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeResult {
    pub change_id: String,
    pub record_id: String,
    pub status: ChangeStatus,
    /// Applied: the new version.
    pub version: u64,
    /// Conflict: the server's record.
    pub server_record: Option<Record>,
    pub conflict_id: Option<i64>,
    /// Rejected: why.
    pub rejection: Option<Error>,
}

/// What to do with one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeDecision {
    Apply,
    /// The server's record stands.
    KeepServer,
    /// The server's record stands and a person decides later.
    OpenConflict,
    Reject(String),
}

impl ChangeDecision {
    pub fn decide(
        change: &RecordChange,
        server: Option<&Record>,
        strategy: ConflictStrategy,
    ) -> Self {
        let Some(server) = server else {
            return if change.base_version == 0 {
                Self::Apply
            } else {
                Self::Reject(format!(
                    "record {:?} does not exist, so base_version {} is unknown",
                    change.record_id, change.base_version
                ))
            };
        };
        if change.base_version == server.version {
            return Self::Apply;
        }
        if change.base_version > server.version {
            return Self::Reject(format!(
                "base_version {} is ahead of the server's version {} of record {:?}",
                change.base_version, server.version, change.record_id
            ));
        }
        match strategy {
            ConflictStrategy::LocalWins => Self::Apply,
            ConflictStrategy::RemoteWins => Self::KeepServer,
            ConflictStrategy::NewestWins if change.updated_at > server.updated_at => Self::Apply,
            ConflictStrategy::NewestWins => Self::KeepServer,
            ConflictStrategy::Manual => Self::OpenConflict,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub conflict_id: i64,
    pub collection: String,
    pub record_id: String,
    pub client_id: String,
    pub change_id: String,
    pub base_version: u64,
    pub local_payload: Vec<u8>,
    pub local_deleted: bool,
    pub local_updated_at: Timestamp,
    pub server_version: u64,
    pub server_payload: Vec<u8>,
    pub server_deleted: bool,
    pub server_updated_at: Timestamp,
    pub status: ConflictStatus,
    pub resolution: Option<ResolutionKind>,
    pub resolved_version: Option<u64>,
    pub created_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
}

/// A person's decision on a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Local,
    Remote,
    Merged { payload: Vec<u8>, deleted: bool },
}

impl Resolution {
    pub fn kind(&self) -> ResolutionKind {
        match self {
            Self::Local => ResolutionKind::Local,
            Self::Remote => ResolutionKind::Remote,
            Self::Merged { .. } => ResolutionKind::Merged,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConflictFilter {
    pub collection: Option<String>,
    pub status: Option<ConflictStatus>,
}

/// A page of PullChanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledChanges {
    pub records: Vec<Record>,
    pub next_cursor: u64,
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(version: u64, updated_at: i64) -> Record {
        Record {
            collection: "c".into(),
            record_id: "r".into(),
            version,
            updated_at: Timestamp::from_micros(updated_at),
            payload: Vec::new(),
            deleted: false,
            changed_by: "other".into(),
            cursor: 1,
        }
    }

    fn change(base_version: u64, updated_at: i64) -> RecordChange {
        RecordChange {
            change_id: "x".into(),
            record_id: "r".into(),
            base_version,
            updated_at: Timestamp::from_micros(updated_at),
            payload: Vec::new(),
            deleted: false,
        }
    }

    #[test]
    fn strategies_settle_stale_changes() {
        let record = server(2, 100);
        let decide = |change: &RecordChange, strategy| {
            ChangeDecision::decide(change, Some(&record), strategy)
        };
        let stale_newer = change(1, 200);
        let stale_older = change(1, 50);
        assert_eq!(
            decide(&stale_newer, ConflictStrategy::LocalWins),
            ChangeDecision::Apply
        );
        assert_eq!(
            decide(&stale_newer, ConflictStrategy::RemoteWins),
            ChangeDecision::KeepServer
        );
        assert_eq!(
            decide(&stale_newer, ConflictStrategy::NewestWins),
            ChangeDecision::Apply
        );
        assert_eq!(
            decide(&stale_older, ConflictStrategy::NewestWins),
            ChangeDecision::KeepServer
        );
        assert_eq!(
            decide(&change(1, 100), ConflictStrategy::NewestWins),
            ChangeDecision::KeepServer,
            "a tie keeps the server's record"
        );
        assert_eq!(
            decide(&stale_newer, ConflictStrategy::Manual),
            ChangeDecision::OpenConflict
        );
        assert_eq!(
            decide(&change(2, 0), ConflictStrategy::Manual),
            ChangeDecision::Apply
        );
        assert!(matches!(
            decide(&change(3, 0), ConflictStrategy::LocalWins),
            ChangeDecision::Reject(_)
        ));
        assert!(matches!(
            ChangeDecision::decide(&change(1, 0), None, ConflictStrategy::LocalWins),
            ChangeDecision::Reject(_)
        ));
    }
}
