use cri_dockerd_core::{Error, Kind};
use tonic::{Code, Status};

pub fn to_status(error: Error) -> Status {
    let code = match error.kind() {
        Kind::NotFound => Code::NotFound,
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::FailedPrecondition => Code::FailedPrecondition,
        Kind::AlreadyExists => Code::AlreadyExists,
        Kind::DeadlineExceeded => Code::DeadlineExceeded,
        Kind::PermissionDenied => Code::PermissionDenied,
        Kind::Unavailable => Code::Unavailable,
        Kind::Unimplemented => Code::Unimplemented,
        Kind::Internal => Code::Internal,
    };
    if code == Code::Internal || code == Code::Unavailable {
        tracing::warn!(error = %error, "request failed");
    } else {
        tracing::debug!(error = %error, ?code, "request failed");
    }
    Status::new(code, error.to_string())
}

pub(crate) type Reply<T> = Result<tonic::Response<T>, Status>;

pub(crate) fn reply<T>(result: cri_dockerd_core::Result<T>) -> Reply<T> {
    result.map(tonic::Response::new).map_err(to_status)
}
