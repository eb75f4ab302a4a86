//! How database failures become domain errors: connection trouble is Unavailable (the call may
//! be retried), anything else unexpected is Internal. Domain errors raised inside a transaction
//! travel through it unchanged and roll it back.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::core::Error;

/// The error of a store transaction: a database error, or a domain error that aborts it.
#[derive(Debug)]
pub enum TxError {
    Db(DieselError),
    Domain(Error),
}

impl From<DieselError> for TxError {
    fn from(err: DieselError) -> Self {
        Self::Db(err)
    }
}

impl From<Error> for TxError {
    fn from(err: Error) -> Self {
        Self::Domain(err)
    }
}

impl From<TxError> for Error {
    fn from(err: TxError) -> Self {
        match err {
            TxError::Domain(err) => err,
            TxError::Db(err) => db_error(err),
        }
    }
}

pub fn db_error(err: DieselError) -> Error {
    match &err {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | DieselError::BrokenTransactionManager => Error::Unavailable(err.to_string()),
        DieselError::DatabaseError(_, info) if is_sqlite_busy(info.message()) => {
            Error::Unavailable(format!("database is busy: {}", info.message()))
        }
        DieselError::DatabaseError(_, info) if is_transient(info.message()) => {
            Error::Unavailable(err.to_string())
        }
        _ => Error::Internal(err.to_string()),
    }
}

/// Messages of a database that is restarting, shutting down or out of reach: the call may succeed
/// later, so it is UNAVAILABLE rather than INTERNAL. (diesel does not pass on SQLSTATE codes.)
fn is_transient(message: &str) -> bool {
    const TRANSIENT: &[&str] = &[
        "connection",
        "the database system is",
        "shutting down",
        "administrator command",
        "recovery mode",
        "timed out",
        "broken pipe",
        "unexpected eof",
        // Lost a lock conflict (or a serializable race): the same call again will succeed.
        "deadlock detected",
        "could not serialize access",
    ];
    let message = message.to_lowercase();
    TRANSIENT.iter().any(|pattern| message.contains(pattern))
}

fn is_sqlite_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

pub fn pool_error(err: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("no database connection: {err}"))
}
