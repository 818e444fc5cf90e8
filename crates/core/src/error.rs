use thiserror::Error;

/// Errors of the translation core. Each variant says which gRPC status code the
/// server layer should answer with; the message is what the client reads.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{context}: {source}")]
    Docker {
        context: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Network(#[from] cri_dockerd_cni::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Docker's words when the OCI runtime would not create or start a container.
const RUNTIME_REFUSED: [&str; 5] = [
    "OCI runtime create failed",
    "OCI runtime start failed",
    "OCI runtime exec failed",
    // A CDI device no spec defines (Docker 25+).
    "CDI device injection failed",
    // Device requests with CDI off.
    "could not select device driver",
];

/// The gRPC code family an error belongs to, so the server crate can map it
/// without knowing Docker or CNI error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    InvalidArgument,
    FailedPrecondition,
    AlreadyExists,
    DeadlineExceeded,
    PermissionDenied,
    Unavailable,
    Unimplemented,
    Internal,
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NotFound(_) => Kind::NotFound,
            Error::InvalidArgument(_) => Kind::InvalidArgument,
            Error::FailedPrecondition(_) => Kind::FailedPrecondition,
            Error::AlreadyExists(_) => Kind::AlreadyExists,
            Error::DeadlineExceeded(_) => Kind::DeadlineExceeded,
            Error::PermissionDenied(_) => Kind::PermissionDenied,
            Error::Unavailable(_) => Kind::Unavailable,
            Error::Unimplemented(_) => Kind::Unimplemented,
            Error::Docker { source, .. } => docker_error_kind(source),
            Error::Network(e) if e.is_timeout() => Kind::DeadlineExceeded,
            Error::Io { .. } | Error::Network(_) | Error::Internal(_) => Kind::Internal,
        }
    }

    pub fn docker(context: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Error {
        let context = context.into();
        move |source| Error::Docker { context, source }
    }

    /// For a container start: runc refusing the container as configured
    /// (a sysctl the kernel does not namespace, a missing executable, a bad
    /// mount) is the configuration's failure on this node, not the shim's.
    pub fn docker_start(
        context: impl Into<String>,
    ) -> impl FnOnce(bollard::errors::Error) -> Error {
        let context = context.into();
        move |source| match &source {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message,
            } if RUNTIME_REFUSED.iter().any(|m| message.contains(m)) => {
                Error::FailedPrecondition(format!("{context}: {message}"))
            }
            _ => Error::Docker { context, source },
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == Kind::NotFound
    }
}

fn docker_error_kind(error: &bollard::errors::Error) -> Kind {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError { status_code, .. } => match status_code {
            404 => Kind::NotFound,
            400 => Kind::InvalidArgument,
            409 => Kind::FailedPrecondition,
            _ => Kind::Internal,
        },
        E::RequestTimeoutError => Kind::DeadlineExceeded,
        // The daemon's socket is missing, refuses, or drops the connection
        // (dockerd stopped or restarting): the transport, not the request.
        E::SocketNotFoundError(_)
        | E::HyperResponseError { .. }
        | E::HyperLegacyError { .. }
        | E::IOError { .. } => Kind::Unavailable,
        _ => Kind::Internal,
    }
}

/// True when Docker answered 404 for the object asked about.
pub fn is_docker_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// True when Docker answered 409 (name in use, container running, ...).
pub fn is_docker_conflict(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// Docker answers 304 to start/stop requests that find the container already
/// in the wanted state.
pub fn is_docker_not_modified(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}
