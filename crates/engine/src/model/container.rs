//! Containers as Docker describes them: `GET /containers/{id}/json` and
//! `GET /containers/json`.

use std::collections::HashMap;

use super::lenient::{docker_enum, docker_model};

docker_model! {
    /// `GET /containers/{id}/json`.
    pub struct ContainerInspect {
        "Id" => id: String,
        "Created" => created: String,
        "Path" => path: String,
        "Args" => args: Vec<String>,
        "State" => state: ContainerState,
        "Image" => image: String,
        "ResolvConfPath" => resolv_conf_path: String,
        "HostnamePath" => hostname_path: String,
        "HostsPath" => hosts_path: String,
        "LogPath" => log_path: String,
        "Name" => name: String,
        "RestartCount" => restart_count: i64,
        "Driver" => driver: String,
        "Platform" => platform: String,
        "AppArmorProfile" => app_armor_profile: String,
        "HostConfig" => host_config: HostConfig,
        /// Only with the graph drivers; the containerd image store leaves
        /// `Data` empty (Docker 28) or the whole field out (Docker 29).
        "GraphDriver" => graph_driver: DriverData,
        /// `?size=1` only: bytes written to the writable layer.
        "SizeRw" => size_rw: i64,
        "SizeRootFs" => size_root_fs: i64,
        "Mounts" => mounts: Vec<MountPoint>,
        "Config" => config: ContainerConfig,
        "NetworkSettings" => network_settings: NetworkSettings,
    }
}

docker_enum! {
    /// `State.Status`.
    pub enum ContainerStatus {
        "created" => Created,
        "running" => Running,
        "paused" => Paused,
        "restarting" => Restarting,
        "removing" => Removing,
        "exited" => Exited,
        "dead" => Dead,
    }
}

docker_model! {
    pub struct ContainerState {
        "Status" => status: ContainerStatus,
        "Running" => running: bool,
        "Paused" => paused: bool,
        "Restarting" => restarting: bool,
        "OOMKilled" => oom_killed: bool,
        "Dead" => dead: bool,
        "Pid" => pid: i64,
        "ExitCode" => exit_code: i64,
        "Error" => error: String,
        "StartedAt" => started_at: String,
        "FinishedAt" => finished_at: String,
        "Health" => health: Health,
    }
}

docker_model! {
    pub struct Health {
        "Status" => status: String,
        "FailingStreak" => failing_streak: i64,
    }
}

docker_model! {
    /// The container's own configuration (`Config`).
    pub struct ContainerConfig {
        "Hostname" => hostname: String,
        "Domainname" => domainname: String,
        "User" => user: String,
        "Tty" => tty: bool,
        "OpenStdin" => open_stdin: bool,
        "StdinOnce" => stdin_once: bool,
        "Env" => env: Vec<String>,
        "Cmd" => cmd: Vec<String>,
        "Image" => image: String,
        "WorkingDir" => working_dir: String,
        "Entrypoint" => entrypoint: Vec<String>,
        "Labels" => labels: HashMap<String, String>,
        "StopSignal" => stop_signal: String,
        "StopTimeout" => stop_timeout: i64,
    }
}

docker_model! {
    /// What the shim reads back of a container's `HostConfig`.
    pub struct HostConfig {
        "Binds" => binds: Vec<String>,
        "NetworkMode" => network_mode: String,
        "PidMode" => pid_mode: String,
        "IpcMode" => ipc_mode: String,
        "UTSMode" => uts_mode: String,
        "Privileged" => privileged: bool,
        "ReadonlyRootfs" => readonly_rootfs: bool,
        "SecurityOpt" => security_opt: Vec<String>,
        "CgroupParent" => cgroup_parent: String,
        "Runtime" => runtime: String,
        "CpuShares" => cpu_shares: i64,
        "CpuPeriod" => cpu_period: i64,
        "CpuQuota" => cpu_quota: i64,
        "CpusetCpus" => cpuset_cpus: String,
        "CpusetMems" => cpuset_mems: String,
        "Memory" => memory: i64,
        "MemoryReservation" => memory_reservation: i64,
        "MemorySwap" => memory_swap: i64,
        "OomScoreAdj" => oom_score_adj: i64,
        "PidsLimit" => pids_limit: i64,
        "Annotations" => annotations: HashMap<String, String>,
        "Mounts" => mounts: Vec<Mount>,
    }
}

docker_enum! {
    /// A mount's kind, in `Mounts` of an inspect and of a `HostConfig`.
    pub enum MountType {
        "bind" => Bind,
        "volume" => Volume,
        "tmpfs" => Tmpfs,
        "npipe" => Npipe,
        "cluster" => Cluster,
        "image" => Image,
    }
}

docker_model! {
    /// A mount as requested (`HostConfig.Mounts`).
    pub struct Mount {
        "Target" => target: String,
        "Source" => source: String,
        "Type" => typ: MountType,
        "ReadOnly" => read_only: bool,
        "BindOptions" => bind_options: BindOptions,
        "ImageOptions" => image_options: ImageOptions,
    }
}

docker_model! {
    pub struct BindOptions {
        "Propagation" => propagation: String,
        "ReadOnlyNonRecursive" => read_only_non_recursive: bool,
        "ReadOnlyForceRecursive" => read_only_force_recursive: bool,
    }
}

docker_model! {
    pub struct ImageOptions {
        "Subpath" => subpath: String,
    }
}

docker_model! {
    /// A mount as Docker made it (`Mounts` of an inspect).
    pub struct MountPoint {
        "Type" => typ: MountType,
        "Name" => name: String,
        "Source" => source: String,
        "Destination" => destination: String,
        "Driver" => driver: String,
        "Mode" => mode: String,
        "RW" => rw: bool,
        "Propagation" => propagation: String,
    }
}

docker_model! {
    pub struct NetworkSettings {
        "SandboxKey" => sandbox_key: String,
        "IPAddress" => ip_address: String,
        "Networks" => networks: HashMap<String, EndpointSettings>,
    }
}

docker_model! {
    pub struct EndpointSettings {
        "IPAddress" => ip_address: String,
        "GlobalIPv6Address" => global_ipv6_address: String,
    }
}

docker_model! {
    /// A storage driver's name and data.
    pub struct DriverData {
        "Name" => name: String,
        "Data" => data: HashMap<String, String>,
    }
}

docker_model! {
    /// `GET /containers/json`.
    pub struct ContainerSummary {
        "Id" => id: String,
        "Names" => names: Vec<String>,
        "Image" => image: String,
        "ImageID" => image_id: String,
        "Created" => created: i64,
        "State" => state: ContainerStatus,
        "Status" => status: String,
        "Labels" => labels: HashMap<String, String>,
    }
}

impl ContainerInspect {
    /// The container's labels, or none.
    pub fn labels(&self) -> Option<&HashMap<String, String>> {
        self.config.as_ref()?.labels.as_ref()
    }

    /// The writable layer's directory, where the storage driver names it
    /// (overlay2's `UpperDir`).
    pub fn upper_dir(&self) -> Option<&str> {
        self.graph_driver
            .as_ref()?
            .data
            .as_ref()?
            .get("UpperDir")
            .map(String::as_str)
            .filter(|d| !d.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container inspect from Docker 28.5 with the containerd image
    /// store: `GraphDriver.Data` is null and `Storage` is new.
    #[test]
    fn containerd_store_inspect_decodes() {
        let text = r#"{
            "Id": "d445364683f1", "Created": "2026-12-05T01:16:40.1Z",
            "Path": "/bin/busybox", "Args": ["sleep", "1000"],
            "State": {"Status": "running", "Running": true, "Paused": false, "Pid": 4242,
                      "ExitCode": 0, "StartedAt": "2026-12-05T01:16:40.2Z",
                      "FinishedAt": "0001-01-01T00:00:00Z"},
            "Image": "sha256:6b9d", "Name": "/c1", "Driver": "overlayfs",
            "GraphDriver": {"Data": null, "Name": "overlayfs"}, "Storage": null,
            "SizeRw": null,
            "Mounts": [{"Type": "image", "Source": "", "Destination": "/data", "RW": false}],
            "Config": {"Labels": {"a": "b"}, "Cmd": null, "Env": null},
            "HostConfig": {"NetworkMode": "none", "Mounts": [{"Type": "image",
                "Source": "registry/app:1", "Target": "/data", "ReadOnly": true,
                "ImageOptions": {"Subpath": "sub"}}]},
            "NetworkSettings": {"Networks": {}}
        }"#;
        let c: ContainerInspect = serde_json::from_str(text).unwrap();
        assert_eq!(
            c.state.as_ref().unwrap().status,
            Some(ContainerStatus::Running)
        );
        assert_eq!(c.state.as_ref().unwrap().pid, Some(4242));
        assert_eq!(c.upper_dir(), None);
        assert_eq!(c.labels().unwrap()["a"], "b");
        assert_eq!(c.mounts.as_ref().unwrap()[0].typ, Some(MountType::Image));
        let requested = &c.host_config.as_ref().unwrap().mounts.as_ref().unwrap()[0];
        assert_eq!(requested.source.as_deref(), Some("registry/app:1"));
        assert_eq!(
            requested.image_options.as_ref().unwrap().subpath.as_deref(),
            Some("sub")
        );
        assert_eq!(c.config.unwrap().cmd, None);
    }

    #[test]
    fn graph_driver_upper_dir_and_a_state_docker_may_add() {
        let c: ContainerInspect = serde_json::from_str(
            r#"{"GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": "/var/lib/docker/overlay2/x/diff"}},
                "State": {"Status": "hibernating"}}"#,
        )
        .unwrap();
        assert_eq!(c.upper_dir(), Some("/var/lib/docker/overlay2/x/diff"));
        assert_eq!(c.state.unwrap().status, Some(ContainerStatus::Unknown));
    }
}
