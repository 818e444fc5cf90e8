//! Pure translation from CRI configs to Docker create bodies. No I/O here
//! beyond what callers pass in, so every rule is unit-tested.

pub mod cdi;
pub mod container;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod sandbox;
pub mod security;
pub mod signals;

use crate::facts::CgroupDriver;

/// Docker's value for sharing a namespace with the host.
pub const NAMESPACE_MODE_HOST: &str = "host";

/// cgroup parents as the cgroup driver expects them: systemd wants only the
/// slice name, cgroupfs the path.
pub fn cgroup_parent(parent: &str, driver: CgroupDriver) -> Option<String> {
    if parent.is_empty() {
        return None;
    }
    Some(match driver {
        CgroupDriver::Systemd => parent.rsplit('/').next().unwrap_or(parent).to_string(),
        CgroupDriver::Cgroupfs => parent.to_string(),
    })
}

/// `container:<id>`, Docker's syntax for joining another container's namespace.
pub fn container_mode(id: &str) -> String {
    format!("container:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parent_follows_the_driver() {
        assert_eq!(cgroup_parent("", CgroupDriver::Cgroupfs), None);
        assert_eq!(
            cgroup_parent("/kubepods/burstable", CgroupDriver::Cgroupfs).as_deref(),
            Some("/kubepods/burstable")
        );
        assert_eq!(
            cgroup_parent(
                "/kubepods.slice/kubepods-burstable.slice",
                CgroupDriver::Systemd
            )
            .as_deref(),
            Some("kubepods-burstable.slice")
        );
    }
}

/// A capability as Docker names it in its answers: `net_admin` and
/// `NET_ADMIN` are `CAP_NET_ADMIN`.
pub fn capability_name(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") || upper == "ALL" {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

#[cfg(test)]
mod capability_tests {
    #[test]
    fn capability_names_as_docker_gives_them() {
        assert_eq!(super::capability_name("net_admin"), "CAP_NET_ADMIN");
        assert_eq!(super::capability_name("CAP_PERFMON"), "CAP_PERFMON");
        assert_eq!(super::capability_name("all"), "ALL");
    }
}
