//! The one table from domain error kinds to gRPC status codes. Messages name the offending field
//! so a client (or an operator with grpcurl) can fix the request.

use tonic::{Code, Status};

use crate::core::Error;

pub fn status(err: Error) -> Status {
    let code = match &err {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::ResourceExhausted { .. } => Code::ResourceExhausted,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::OutOfRange(_) => Code::OutOfRange,
        Error::DataLoss(_) => Code::DataLoss,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Internal(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %err, "internal error");
    }
    Status::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code_and_the_field_in_the_message() {
        let invalid = status(Error::invalid("chunks[2].payload", "too big"));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert!(invalid.message().contains("chunks[2].payload"));
        assert_eq!(
            status(Error::stale_lease(7)).code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            status(Error::AlreadyExists {
                kind: "job",
                id: "a".into()
            })
            .code(),
            Code::AlreadyExists
        );
        assert_eq!(
            status(Error::too_large("chunks", "x")).code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            status(Error::OutOfRange("past the end".into())).code(),
            Code::OutOfRange
        );
        assert_eq!(status(Error::DataLoss("sha".into())).code(), Code::DataLoss);
        assert_eq!(
            status(Error::Unavailable("db".into())).code(),
            Code::Unavailable
        );
    }
}
