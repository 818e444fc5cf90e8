//! The daemon itself: `GET /info` and `GET /version`.

use std::collections::HashMap;

use super::lenient::docker_model;

docker_model! {
    /// `GET /info`: what the shim needs to know of the daemon.
    pub struct SystemInfo {
        "ID" => id: String,
        "Name" => name: String,
        "ServerVersion" => server_version: String,
        "Driver" => driver: String,
        /// `[["driver-type", "io.containerd.snapshotter.v1"]]` on the
        /// containerd image store.
        "DriverStatus" => driver_status: Vec<Vec<String>>,
        "DockerRootDir" => docker_root_dir: String,
        "CgroupDriver" => cgroup_driver: String,
        "CgroupVersion" => cgroup_version: String,
        "KernelVersion" => kernel_version: String,
        "OperatingSystem" => operating_system: String,
        "OSType" => os_type: String,
        "Architecture" => architecture: String,
        "Runtimes" => runtimes: HashMap<String, Runtime>,
        "DefaultRuntime" => default_runtime: String,
        "ExperimentalBuild" => experimental_build: bool,
        "SecurityOptions" => security_options: Vec<String>,
        "Containerd" => containerd: ContainerdInfo,
        /// Where the daemon reads CDI specs (API 1.44+); empty when its
        /// CDI feature is off.
        "CDISpecDirs" => cdi_spec_dirs: Vec<String>,
        /// The devices the daemon's device drivers found, CDI's among them
        /// (API 1.50+).
        "DiscoveredDevices" => discovered_devices: Vec<DeviceInfo>,
        "Labels" => labels: Vec<String>,
    }
}

docker_model! {
    pub struct Runtime {
        "path" => path: String,
        "runtimeType" => runtime_type: String,
        /// `org.opencontainers.runtime-spec.features`: the runtime's
        /// `features` document as a JSON string (API 1.44+).
        "status" => status: HashMap<String, String>,
    }
}

docker_model! {
    pub struct DeviceInfo {
        /// The device driver: `cdi`.
        "Source" => source: String,
        /// For CDI, the fully-qualified device name.
        "ID" => id: String,
    }
}

docker_model! {
    /// The containerd the daemon uses (API 1.46+).
    pub struct ContainerdInfo {
        "Address" => address: String,
    }
}

docker_model! {
    /// `GET /version`.
    pub struct SystemVersion {
        "Version" => version: String,
        "ApiVersion" => api_version: String,
        "MinAPIVersion" => min_api_version: String,
        "Os" => os: String,
        "Arch" => arch: String,
        "KernelVersion" => kernel_version: String,
        "Experimental" => experimental: bool,
        "Components" => components: Vec<ComponentVersion>,
    }
}

docker_model! {
    pub struct ComponentVersion {
        "Name" => name: String,
        "Version" => version: String,
    }
}

/// What a runtime says it supports (`runc features`), as far as the shim
/// reads it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RuntimeFeatures {
    #[serde(rename = "mountOptions", default)]
    pub mount_options: Option<Vec<String>>,
}

impl Runtime {
    /// The runtime's features document, when the daemon reports it.
    pub fn features(&self) -> Option<RuntimeFeatures> {
        let text = self
            .status
            .as_ref()?
            .get("org.opencontainers.runtime-spec.features")?;
        serde_json::from_str(text).ok()
    }
}

impl SystemInfo {
    /// Whether images live in containerd's store (Docker's
    /// `containerd-snapshotter` feature; the default for new installs of
    /// Docker 29) rather than in a graph driver's directories.
    pub fn containerd_image_store(&self) -> bool {
        self.driver_status.iter().flatten().any(|pair| {
            pair.first().map(String::as_str) == Some("driver-type")
                && pair
                    .get(1)
                    .is_some_and(|t| t.starts_with("io.containerd.snapshotter"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_containerd_image_store_and_runtime_features_are_read() {
        let info: SystemInfo = serde_json::from_str(
            r#"{"Driver": "overlayfs",
                "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
                "CgroupDriver": "cgroupfs", "CgroupVersion": "1",
                "Runtimes": {"runc": {"path": "runc", "status": {
                    "org.opencontainers.runtime-spec.features": "{\"mountOptions\":[\"ro\",\"rro\"]}"}},
                    "old": {"path": "/usr/bin/old"}},
                "Containerd": {"Address": "/run/docker/containerd/containerd.sock",
                               "Namespaces": {"Containers": "moby"}},
                "CDISpecDirs": ["/etc/cdi"], "NewThing": {"x": [1, 2]}}"#,
        )
        .unwrap();
        assert!(info.containerd_image_store());
        let runtimes = info.runtimes.as_ref().unwrap();
        let features = runtimes["runc"].features().unwrap();
        assert!(features.mount_options.unwrap().contains(&"rro".to_string()));
        assert!(runtimes["old"].features().is_none());
        let graph: SystemInfo = serde_json::from_str(
            r#"{"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]}"#,
        )
        .unwrap();
        assert!(!graph.containerd_image_store());
    }
}
