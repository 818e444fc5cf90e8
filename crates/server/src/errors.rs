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
    // The request's log record (observe.rs) carries the message.
    Status::new(code, error.to_string())
}

pub(crate) type Reply<T> = Result<tonic::Response<T>, Status>;

pub(crate) fn reply<T>(result: cri_dockerd_core::Result<T>) -> Reply<T> {
    result.map(tonic::Response::new).map_err(to_status)
}
