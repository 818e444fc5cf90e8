//! Docker Engine API versions: which one the shim speaks with a daemon, the
//! oldest it serves, and the Docker release each one came with (for
//! messages an operator can act on).

use std::fmt;

/// An Engine API version, `1.41`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u16,
    pub minor: u16,
}

impl ApiVersion {
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// `1.41` → 1.41; anything else (`1`, `v1.41`, `1.x`) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    /// The version both sides speak: the daemon's, but never newer than the
    /// newest this build's models were written against (a newer daemon
    /// still serves older clients).
    pub fn negotiated(daemon: ApiVersion) -> ApiVersion {
        daemon.min(NEWEST)
    }

    /// The Docker release that brought this API version, when known.
    pub fn docker_release(self) -> Option<&'static str> {
        RELEASES
            .iter()
            .find(|(api, _)| *api == self)
            .map(|(_, release)| *release)
    }

    /// `API 1.41 (Docker 20.10)`, or `API 1.99` for a version not in the
    /// table.
    pub fn describe(self) -> String {
        match self.docker_release() {
            Some(release) => format!("API {self} (Docker {release})"),
            None => format!("API {self}"),
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The oldest API the shim serves: Docker 20.10's. Everything the shim
/// sends is in it; what newer APIs add (recursive read-only and
/// non-recursive read-only binds 1.44, image
/// volumes 1.48) is used only where the daemon speaks it.
pub const OLDEST: ApiVersion = ApiVersion::new(1, 41);

/// The newest API the models and requests were written against (bollard's
/// default, Docker 29).
pub const NEWEST: ApiVersion = ApiVersion::new(1, 53);

/// Read-only binds are recursively read-only from this version on (kernel
/// 5.12+), unless the request asks otherwise; and `ReadOnlyNonRecursive` /
/// `ReadOnlyForceRecursive` exist.
pub const RECURSIVE_READ_ONLY: ApiVersion = ApiVersion::new(1, 44);

/// Device requests of the `cdi` driver, and `CDISpecDirs` in `/info`
/// (Docker 25).
pub const CDI_DEVICES: ApiVersion = ApiVersion::new(1, 44);

/// `DiscoveredDevices` in `/info`: the CDI devices the daemon knows
/// (Docker 28.2).
pub const DISCOVERED_DEVICES: ApiVersion = ApiVersion::new(1, 50);

/// Mounts of type `image` (Docker 28).
pub const IMAGE_MOUNTS: ApiVersion = ApiVersion::new(1, 48);

/// Engine API versions by the Docker release that first spoke them (the
/// Engine API's version history; releases whose number we could not check
/// are left out, and are then described by their API version alone).
const RELEASES: [(ApiVersion, &str); 13] = [
    (ApiVersion::new(1, 38), "18.06"),
    (ApiVersion::new(1, 39), "18.09"),
    (ApiVersion::new(1, 40), "19.03"),
    (ApiVersion::new(1, 41), "20.10"),
    (ApiVersion::new(1, 42), "23.0"),
    (ApiVersion::new(1, 43), "24.0"),
    (ApiVersion::new(1, 44), "25.0"),
    (ApiVersion::new(1, 45), "26.0"),
    (ApiVersion::new(1, 46), "27.0"),
    (ApiVersion::new(1, 48), "28.0"),
    (ApiVersion::new(1, 49), "28.1"),
    (ApiVersion::new(1, 51), "28.4"),
    (ApiVersion::new(1, 52), "29.0"),
];

/// Why the shim cannot serve a daemon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Docker {docker_version} speaks {}; cri-dockerd-rs needs {} or later: upgrade Docker Engine",
    api.describe(),
    OLDEST.describe()
)]
pub struct TooOld {
    pub docker_version: String,
    pub api: ApiVersion,
}

/// Whether the shim can serve a daemon of this version.
pub fn check_supported(docker_version: &str, api: ApiVersion) -> Result<(), TooOld> {
    if api < OLDEST {
        return Err(TooOld {
            docker_version: docker_version.to_string(),
            api,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        assert_eq!(ApiVersion::parse("1.41"), Some(ApiVersion::new(1, 41)));
        assert_eq!(ApiVersion::parse(" 1.51 "), Some(ApiVersion::new(1, 51)));
        for bad in ["", "1", "v1.41", "1.x", "1.41.2", "-1.2"] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad:?}");
        }
        assert!(ApiVersion::new(1, 9) < ApiVersion::new(1, 41));
        assert!(ApiVersion::new(2, 0) > ApiVersion::new(1, 99));
        assert_eq!(ApiVersion::new(1, 44).to_string(), "1.44");
    }

    #[test]
    fn negotiation_takes_the_daemons_version_up_to_the_newest_known() {
        assert_eq!(
            ApiVersion::negotiated(ApiVersion::new(1, 41)),
            ApiVersion::new(1, 41)
        );
        assert_eq!(
            ApiVersion::negotiated(ApiVersion::new(1, 51)),
            ApiVersion::new(1, 51)
        );
        assert_eq!(ApiVersion::negotiated(ApiVersion::new(1, 60)), NEWEST);
    }

    #[test]
    fn an_old_daemon_is_refused_naming_both_versions() {
        assert!(check_supported("20.10.24", ApiVersion::new(1, 41)).is_ok());
        assert!(check_supported("28.5.2", ApiVersion::new(1, 51)).is_ok());
        let err = check_supported("19.03.15", ApiVersion::new(1, 40)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Docker 19.03.15"), "{text}");
        assert!(text.contains("API 1.40 (Docker 19.03)"), "{text}");
        assert!(text.contains("API 1.41 (Docker 20.10) or later"), "{text}");
    }
}
