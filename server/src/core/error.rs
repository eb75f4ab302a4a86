//! The domain's error type. Every failure a caller can cause or observe is one of these kinds;
//! `grpc::error` is the one place that turns a kind into a gRPC status code.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed. `field` names it as the client wrote it.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A request exceeds a configured limit.
    #[error("{field} exceeds a limit: {reason}")]
    ResourceExhausted { field: String, reason: String },
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// An idempotency key was reused with different content.
    #[error("{kind} {id:?} already exists with different content")]
    AlreadyExists { kind: &'static str, id: String },
    /// The object is not in a state that allows the call (a stale lease, a finished job).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A position past the end of something (a part past an upload's declared size).
    #[error("{0}")]
    OutOfRange(String),
    /// Received content does not match its declared checksum.
    #[error("{0}")]
    DataLoss(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A dependency (the database) cannot be reached; the call may succeed later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Self::InvalidArgument {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn too_large(field: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Self::ResourceExhausted {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn stale_lease(chunk_id: i64) -> Self {
        Self::FailedPrecondition(format!(
            "lease token for chunk {chunk_id} is not current (the lease expired and the chunk was \
             re-leased, released, finished or cancelled)"
        ))
    }
}
