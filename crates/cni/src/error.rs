use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no valid CNI network config found in {dir}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    NoNetwork {
        dir: PathBuf,
        detail: Option<String>,
    },
    #[error("invalid CNI config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("plugin type={plugin:?} name={network:?} failed ({command}): {message}")]
    Plugin {
        plugin: String,
        network: String,
        command: &'static str,
        message: String,
    },
    #[error("plugin type={plugin:?} name={network:?} timed out after {seconds}s ({command})")]
    Timeout {
        plugin: String,
        network: String,
        command: &'static str,
        seconds: u64,
    },
    #[error("plugin type={plugin:?} returned an unparsable result: {reason}")]
    BadResult { plugin: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
