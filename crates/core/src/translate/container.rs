//! ContainerConfig (+ the pod's PodSandboxConfig) → Docker's create body, as
//! cri-dockerd's CreateContainer builds it.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HealthConfig, HostConfig, HostConfigLogConfig, Mount,
    MountBindOptions, MountBindOptionsPropagationEnum, MountType, RestartPolicy,
    RestartPolicyNameEnum,
};
use cri_dockerd_api::v1::{
    ContainerConfig, LinuxContainerResources, MountPropagation, NamespaceMode, PodSandboxConfig,
};

use super::security::{self, Seccomp};
use super::{NAMESPACE_MODE_HOST, cgroup_parent, container_mode};
use crate::error::{Error, Result};
use crate::facts::CgroupDriver;
use crate::labels;
use crate::naming;
use cri_dockerd_engine::api_version::{self, ApiVersion};

/// Docker keeps its own copy of the logs bounded; the CRI log file is ours.
pub const DOCKER_LOG_MAX_SIZE: &str = "10m";
pub const DOCKER_LOG_MAX_FILE: &str = "2";

pub struct ContainerOptions<'a> {
    pub sandbox_id: &'a str,
    pub cgroup_driver: CgroupDriver,
    /// Maps a requested OOM score to what the daemon can set.
    pub clamp_oom_score_adj: &'a (dyn Fn(i64) -> i64 + Sync),
    /// The sandbox's Docker runtime.
    pub runtime: Option<&'a str>,
    pub read_file: &'a (dyn Fn(&str) -> std::io::Result<Vec<u8>> + Sync),
    /// What the daemon makes of mounts.
    pub mounts: MountSupport,
    /// The image ID of each image an image volume names.
    pub image_volume_ids: &'a HashMap<String, String>,
    /// Capabilities this machine can grant, when it cannot grant all.
    pub grantable_capabilities: Option<&'a [&'static str]>,
}

/// `<log_directory>/<log_path>`, the file the kubelet reads.
pub fn log_path(config: &ContainerConfig, sandbox: &PodSandboxConfig) -> String {
    if sandbox.log_directory.is_empty() || config.log_path.is_empty() {
        return String::new();
    }
    std::path::Path::new(&sandbox.log_directory)
        .join(&config.log_path)
        .display()
        .to_string()
}

/// Docker's propagation of a mount (`docker inspect` → Mounts) as the CRI
/// names it; Docker's default, rprivate, and anything unknown are private.
pub fn cri_propagation(docker: &str) -> MountPropagation {
    match docker {
        "rshared" | "shared" => MountPropagation::PropagationBidirectional,
        "rslave" | "slave" => MountPropagation::PropagationHostToContainer,
        _ => MountPropagation::PropagationPrivate,
    }
}

fn bind_string(m: &cri_dockerd_api::v1::Mount) -> String {
    let mut attrs = Vec::new();
    if m.readonly {
        attrs.push("ro");
    }
    if m.selinux_relabel {
        attrs.push("Z");
    }
    match MountPropagation::try_from(m.propagation) {
        Ok(MountPropagation::PropagationBidirectional) => attrs.push("rshared"),
        Ok(MountPropagation::PropagationHostToContainer) => attrs.push("rslave"),
        _ => {}
    }
    let bind = format!("{}:{}", m.host_path, m.container_path);
    if attrs.is_empty() {
        bind
    } else {
        format!("{bind}:{}", attrs.join(","))
    }
}

/// What the daemon makes of the mounts of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountSupport {
    /// The API version spoken with the daemon.
    pub api: ApiVersion,
    /// Recursively read-only mounts work for this container's runtime (API
    /// 1.44, kernel 5.12, a runtime that knows `rro`).
    pub recursive_read_only: bool,
    /// Docker relabels binds for SELinux (`dockerd --selinux-enabled`).
    pub selinux_relabel: bool,
}

fn bind_propagation(m: &cri_dockerd_api::v1::Mount) -> MountBindOptionsPropagationEnum {
    match MountPropagation::try_from(m.propagation) {
        Ok(MountPropagation::PropagationBidirectional) => MountBindOptionsPropagationEnum::RSHARED,
        Ok(MountPropagation::PropagationHostToContainer) => MountBindOptionsPropagationEnum::RSLAVE,
        _ => MountBindOptionsPropagationEnum::RPRIVATE,
    }
}

/// A bind through Docker's Mounts API. `CreateMountpoint` keeps what the
/// `Binds` form does for a missing host path: Docker creates it.
fn api_bind(m: &cri_dockerd_api::v1::Mount, options: MountBindOptions) -> Mount {
    Mount {
        target: Some(m.container_path.clone()),
        source: Some(m.host_path.clone()),
        typ: Some(MountType::BIND),
        read_only: Some(m.readonly),
        bind_options: Some(MountBindOptions {
            propagation: Some(bind_propagation(m)),
            create_mountpoint: Some(true),
            ..options
        }),
        ..Default::default()
    }
}

/// The CRI's mounts as Docker takes them: binds in cri-dockerd's
/// `host:container[:ro,Z,rshared]` form where that means what the CRI
/// asks, the Mounts API where it would not.
///
/// - From API 1.44 Docker makes a plain read-only bind recursively
///   read-only (kernel 5.12+), so read-only sub-mounts of the host path
///   (a volume under a read-only hostPath) would turn read-only too. The
///   CRI's `readonly` is not recursive: such binds go through the Mounts
///   API with `ReadOnlyNonRecursive`. The Mounts API has no SELinux
///   relabel: where Docker relabels (SELinux on), a read-only bind that
///   asks for one keeps the `Binds` form and Docker's default; where it
///   does not, the relabel means nothing and is dropped, as Docker would.
/// - `recursive_read_only` needs a read-only, private mount (the CRI
///   says so) and a daemon that can make it (`support`).
/// - Image volumes need API 1.48. Docker 28 refuses a second mount of
///   the same image reference in one container (its mounts and leases are
///   named by it), which the kubelet sends for two sub-paths of one image
///   volume: every further mount of an image names it by another
///   reference, its full ID, then ever longer ID prefixes
///   (`image_volume_ids`).
pub fn mounts(
    config: &ContainerConfig,
    support: MountSupport,
    image_volume_ids: &HashMap<String, String>,
) -> Result<(Vec<String>, Vec<Mount>)> {
    let mut binds = Vec::new();
    let mut api_mounts = Vec::new();
    let mut image_uses: HashMap<&str, usize> = HashMap::new();
    for m in &config.mounts {
        if m.container_path.is_empty() {
            return Err(Error::InvalidArgument(
                "mounts need a container_path".into(),
            ));
        }
        if let Some(image) = m.image.as_ref().filter(|i| !i.image.is_empty()) {
            if support.api < api_version::IMAGE_MOUNTS {
                return Err(Error::FailedPrecondition(format!(
                    "image volume {} needs Docker Engine 28 (API {}) or later; this daemon speaks API {}",
                    m.container_path,
                    api_version::IMAGE_MOUNTS,
                    support.api
                )));
            }
            let uses = image_uses.entry(image.image.as_str()).or_default();
            let source = nth_image_reference(&image.image, image_volume_ids, *uses);
            *uses += 1;
            api_mounts.push(Mount {
                target: Some(m.container_path.clone()),
                source: Some(source),
                typ: Some(MountType::IMAGE),
                // Image volumes are read-only (KEP-4639).
                read_only: Some(true),
                image_options: Some(bollard::models::MountImageOptions {
                    subpath: Some(m.image_sub_path.clone()).filter(|p| !p.is_empty()),
                }),
                ..Default::default()
            });
            continue;
        }
        if m.host_path.is_empty() {
            return Err(Error::InvalidArgument(
                "mounts need a host_path and a container_path".into(),
            ));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(Error::InvalidArgument(
                "id-mapped mounts are not supported by Docker".into(),
            ));
        }
        if m.recursive_read_only {
            if !m.readonly {
                return Err(Error::InvalidArgument(format!(
                    "recursive read-only mount {} must also be read-only",
                    m.container_path
                )));
            }
            if !matches!(
                MountPropagation::try_from(m.propagation),
                Ok(MountPropagation::PropagationPrivate)
            ) {
                return Err(Error::InvalidArgument(format!(
                    "recursive read-only mount {} must have private propagation",
                    m.container_path
                )));
            }
            if !support.recursive_read_only {
                return Err(Error::FailedPrecondition(format!(
                    "recursive read-only mount {}: this node cannot make one (it needs Docker API {} or later, a kernel of 5.12 or later and a runtime that supports rro; see the runtime handler's recursive_read_only_mounts in Status)",
                    m.container_path,
                    api_version::RECURSIVE_READ_ONLY
                )));
            }
            api_mounts.push(api_bind(
                m,
                MountBindOptions {
                    read_only_force_recursive: Some(true),
                    ..Default::default()
                },
            ));
            continue;
        }
        let relabel = m.selinux_relabel && support.selinux_relabel;
        if m.readonly && !relabel && support.api >= api_version::RECURSIVE_READ_ONLY {
            api_mounts.push(api_bind(
                m,
                MountBindOptions {
                    read_only_non_recursive: Some(true),
                    ..Default::default()
                },
            ));
            continue;
        }
        binds.push(bind_string(m));
    }
    Ok((binds, api_mounts))
}

/// The reference the `nth` image volume of `image` in one container gives
/// Docker: the name itself, then the image's full ID, then ever longer
/// prefixes of its hex digest (Docker resolves an unambiguous prefix).
fn nth_image_reference(image: &str, ids: &HashMap<String, String>, nth: usize) -> String {
    let Some(id) = ids.get(image).filter(|_| nth > 0) else {
        return image.to_string();
    };
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if nth == 1 || hex.len() < 24 {
        return id.clone();
    }
    hex[..(10 + nth).min(hex.len())].to_string()
}

/// An image volume as the `IMAGE_VOLUMES` label keeps it: the image as the
/// CRI named it, and its ID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageVolume {
    pub image: String,
    pub id: String,
}

/// The image volumes, by container path, for the `IMAGE_VOLUMES` label.
fn image_volumes_label(config: &ContainerConfig, ids: &HashMap<String, String>) -> Option<String> {
    let volumes: HashMap<&str, ImageVolume> = config
        .mounts
        .iter()
        .filter_map(|m| {
            let image = m.image.as_ref().filter(|i| !i.image.is_empty())?;
            Some((
                m.container_path.as_str(),
                ImageVolume {
                    image: image.image.clone(),
                    id: ids.get(&image.image).cloned().unwrap_or_default(),
                },
            ))
        })
        .collect();
    (!volumes.is_empty()).then(|| serde_json::to_string(&volumes).expect("serialisable"))
}

/// An environment value as Docker can carry it. Since cri-api v0.36.3 the
/// kubelet sends env values as bytes (a Secret's need not be UTF-8), but
/// Docker's API takes JSON strings: bytes that are not UTF-8 become U+FFFD,
/// as Docker's own decoder would make them (see `non_utf8_env`).
pub fn env_value(value: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(value)
}

/// The names of the env vars whose values are not UTF-8.
pub fn non_utf8_env(config: &ContainerConfig) -> Vec<&str> {
    config
        .envs
        .iter()
        .filter(|kv| std::str::from_utf8(&kv.value).is_err())
        .map(|kv| kv.key.as_str())
        .collect()
}

/// Resources as `docker create` and `docker update` take them. Memory and
/// swap are set equal unless a swap limit is given: no swap, as cri-dockerd.
pub fn apply_resources(
    host: &mut HostConfig,
    r: &LinuxContainerResources,
    clamp_oom: &dyn Fn(i64) -> i64,
) {
    let positive = |v: i64| (v > 0).then_some(v);
    host.memory = positive(r.memory_limit_in_bytes);
    host.memory_swap = if r.memory_swap_limit_in_bytes > 0 {
        Some(r.memory_swap_limit_in_bytes)
    } else {
        positive(r.memory_limit_in_bytes)
    };
    host.cpu_shares = positive(r.cpu_shares);
    host.cpu_quota = positive(r.cpu_quota);
    host.cpu_period = positive(r.cpu_period);
    host.cpuset_cpus = Some(r.cpuset_cpus.clone()).filter(|s| !s.is_empty());
    host.cpuset_mems = Some(r.cpuset_mems.clone()).filter(|s| !s.is_empty());
    host.oom_score_adj = Some(clamp_oom(r.oom_score_adj));
}

/// What `docker update` can change of the CRI's resources.
pub fn update_body(r: &LinuxContainerResources) -> bollard::models::ContainerUpdateBody {
    let mut host = HostConfig::default();
    apply_resources(&mut host, r, &|v| v);
    bollard::models::ContainerUpdateBody {
        memory: host.memory,
        memory_swap: host.memory_swap,
        cpu_shares: host.cpu_shares,
        cpu_period: host.cpu_period,
        cpu_quota: host.cpu_quota,
        cpuset_cpus: host.cpuset_cpus,
        cpuset_mems: host.cpuset_mems,
        ..Default::default()
    }
}

/// Limits Docker cannot set, kept in a label until the cgroup exists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtraResources {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hugepages: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unified: std::collections::BTreeMap<String, String>,
}

impl ExtraResources {
    pub fn of(r: &LinuxContainerResources) -> Option<Self> {
        let extra = Self {
            hugepages: r
                .hugepage_limits
                .iter()
                .map(|h| (h.page_size.clone(), h.limit))
                .collect(),
            unified: r
                .unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        (!extra.hugepages.is_empty() || !extra.unified.is_empty()).then_some(extra)
    }
}

/// Capability lists for Docker; "ALL" becomes the explicit list of what the
/// machine can grant when it cannot grant everything.
fn capabilities(list: &[String], grantable: Option<&[&'static str]>) -> Option<Vec<String>> {
    if list.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for cap in list {
        match grantable {
            Some(grantable) if cap.eq_ignore_ascii_case("ALL") => {
                out.extend(grantable.iter().map(|c| c.to_string()));
            }
            _ => out.push(cap.clone()),
        }
    }
    Some(out)
}

pub fn create_body(
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
    image: &str,
    options: &ContainerOptions,
) -> Result<(String, ContainerCreateBody)> {
    let metadata = config
        .metadata
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("container config has no metadata".into()))?;
    let sandbox_metadata = sandbox
        .metadata
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("sandbox config has no metadata".into()))?;
    if metadata.name.is_empty() || metadata.name.contains('_') {
        return Err(Error::InvalidArgument(format!(
            "container name {:?} must be non-empty and free of '_'",
            metadata.name
        )));
    }
    let name = naming::container_name(sandbox_metadata, metadata);
    crate::features::check_container(config)?;

    let mut docker_labels = labels::make_labels(&config.labels, &config.annotations);
    docker_labels.insert(
        labels::CONTAINER_TYPE.into(),
        labels::CONTAINER_TYPE_CONTAINER.into(),
    );
    docker_labels.insert(labels::CONTAINER_LOG_PATH.into(), log_path(config, sandbox));
    docker_labels.insert(labels::SANDBOX_ID.into(), options.sandbox_id.into());

    let (binds, api_mounts) = mounts(config, options.mounts, options.image_volume_ids)?;
    if let Some(volumes) = image_volumes_label(config, options.image_volume_ids) {
        docker_labels.insert(labels::IMAGE_VOLUMES.into(), volumes);
    }
    let mut host = HostConfig {
        binds: Some(binds),
        mounts: (!api_mounts.is_empty()).then_some(api_mounts),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), DOCKER_LOG_MAX_SIZE.to_string()),
                ("max-file".to_string(), DOCKER_LOG_MAX_FILE.to_string()),
            ])),
        }),
        devices: Some(
            config
                .devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host_path.clone()),
                    path_in_container: Some(d.container_path.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect(),
        ),
        device_requests: {
            let cdi = super::cdi::requested_devices(config)?;
            (!cdi.is_empty()).then(|| vec![super::cdi::device_request(&cdi)])
        },
        cgroup_parent: sandbox
            .linux
            .as_ref()
            .and_then(|l| cgroup_parent(&l.cgroup_parent, options.cgroup_driver)),
        runtime: options.runtime.map(str::to_string),
        oom_score_adj: Some((options.clamp_oom_score_adj)(0)),
        ..Default::default()
    };

    // The pod's network, IPC and UTS come from the sandbox.
    let sandbox_mode = container_mode(options.sandbox_id);
    host.network_mode = Some(sandbox_mode.clone());
    host.ipc_mode = Some(sandbox_mode.clone());

    let linux = config.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let ns = sc.and_then(|s| s.namespace_options.as_ref());
    let ns_mode = |v: Option<i32>, default: NamespaceMode| {
        v.and_then(|v| NamespaceMode::try_from(v).ok())
            .unwrap_or(default)
    };
    host.pid_mode = match ns_mode(ns.map(|n| n.pid), NamespaceMode::Container) {
        NamespaceMode::Node => Some(NAMESPACE_MODE_HOST.into()),
        NamespaceMode::Pod => Some(sandbox_mode.clone()),
        NamespaceMode::Target => {
            let target = ns.map(|n| n.target_id.as_str()).unwrap_or_default();
            if target.is_empty() {
                return Err(Error::InvalidArgument(
                    "PID namespace mode TARGET needs a target_id".into(),
                ));
            }
            Some(container_mode(target))
        }
        NamespaceMode::Container => None,
    };
    if ns_mode(ns.map(|n| n.network), NamespaceMode::Pod) == NamespaceMode::Node {
        host.uts_mode = Some(NAMESPACE_MODE_HOST.into());
    }

    if let Some(resources) = linux.and_then(|l| l.resources.as_ref()) {
        apply_resources(&mut host, resources, options.clamp_oom_score_adj);
        if let Some(extra) = ExtraResources::of(resources) {
            docker_labels.insert(
                labels::EXTRA_RESOURCES.into(),
                serde_json::to_string(&extra).expect("serialisable"),
            );
        }
    }

    let mut user = None;
    let mut security_opt = Vec::new();
    if let Some(sc) = sc {
        user = security::docker_user(
            sc.run_as_user.as_ref().map(|v| v.value),
            &sc.run_as_username,
            sc.run_as_group.as_ref().map(|v| v.value),
        )?;
        host.group_add = (!sc.supplemental_groups.is_empty()).then(|| {
            sc.supplemental_groups
                .iter()
                .map(|g| g.to_string())
                .collect()
        });
        host.privileged = Some(sc.privileged);
        host.readonly_rootfs = Some(sc.readonly_rootfs);
        if let Some(caps) = &sc.capabilities {
            host.cap_add = capabilities(&caps.add_capabilities, options.grantable_capabilities);
            host.cap_drop = capabilities(&caps.drop_capabilities, None);
        }
        security_opt.extend(security::selinux_security_opts(sc.selinux_options.as_ref()));
        #[allow(deprecated)]
        let (legacy_apparmor, legacy_seccomp) = (&sc.apparmor_profile, &sc.seccomp_profile_path);
        security_opt.extend(security::apparmor_security_opt(
            sc.apparmor.as_ref(),
            legacy_apparmor,
        ));
        if sc.no_new_privs {
            security_opt.push("no-new-privileges".into());
        }
        if !sc.privileged {
            host.masked_paths = Some(sc.masked_paths.clone()).filter(|p| !p.is_empty());
            host.readonly_paths = Some(sc.readonly_paths.clone()).filter(|p| !p.is_empty());
        }
        if sc.privileged {
            // A privileged container runs without seccomp whatever profile
            // it names, as the CRI's runtimes do. Docker 20.10 ignored the
            // profile of a privileged container itself; Docker 28 applies
            // it (a profile blocking sethostname then blocks it).
            security_opt.push("seccomp=unconfined".into());
        } else {
            let seccomp =
                security::seccomp_choice(sc.seccomp.as_ref(), legacy_seccomp, Seccomp::Unconfined);
            security_opt.extend(security::seccomp_security_opt(&seccomp, options.read_file)?);
        }
    } else {
        // The kubelet's default, and cri-dockerd's for a missing profile.
        security_opt.push("seccomp=unconfined".into());
    }
    host.security_opt = Some(security_opt);

    let non_empty = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: non_empty(&config.command),
        cmd: non_empty(&config.args),
        env: Some(
            config
                .envs
                .iter()
                .map(|kv| format!("{}={}", kv.key, env_value(&kv.value)))
                .collect(),
        ),
        working_dir: Some(config.working_dir.clone()).filter(|w| !w.is_empty()),
        labels: Some(docker_labels),
        open_stdin: Some(config.stdin),
        stdin_once: Some(config.stdin_once),
        tty: Some(config.tty),
        user,
        // Docker health checks are not the kubelet's probes.
        healthcheck: Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        host_config: Some(host),
        stop_signal: crate::translate::signals::docker_stop_signal(config.stop_signal()),
        ..Default::default()
    };
    Ok((name, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::fixtures::{ctr, pod_ports, reference_inspect};
    use cri_dockerd_api::v1::{
        Capability, Device, Int64Value, LinuxContainerConfig, LinuxContainerSecurityContext,
        NamespaceOption, SeLinuxOption, SecurityProfile,
    };

    const SANDBOX: &str = "0bd9a3e1aa0a4af38b26f9145eed996cf0973b65c23c977cddf8bf3c117e4cdb";

    fn options() -> ContainerOptions<'static> {
        ContainerOptions {
            sandbox_id: SANDBOX,
            cgroup_driver: CgroupDriver::Cgroupfs,
            clamp_oom_score_adj: &|v| v,
            runtime: None,
            read_file: &|_| Err(std::io::ErrorKind::NotFound.into()),
            mounts: MountSupport {
                api: ApiVersion::new(1, 41),
                recursive_read_only: false,
                selinux_relabel: false,
            },
            image_volume_ids: &NO_IDS,
            grantable_capabilities: None,
        }
    }

    static NO_IDS: std::sync::LazyLock<HashMap<String, String>> =
        std::sync::LazyLock::new(HashMap::new);

    fn body(config: &ContainerConfig) -> ContainerCreateBody {
        create_body(config, &pod_ports(), "img", &options())
            .unwrap()
            .1
    }

    #[test]
    fn reference_container_name_labels_and_host_config() {
        let (name, body) = create_body(
            &ctr(),
            &pod_ports(),
            "registry.k8s.io/pause:3.10",
            &options(),
        )
        .unwrap();
        let reference = reference_inspect("container.json");
        assert_eq!(format!("/{name}"), reference["Name"]);
        let ours = serde_json::to_value(&body).unwrap();
        assert_eq!(ours["Labels"], reference["Config"]["Labels"]);
        assert_eq!(ours["Env"], reference["Config"]["Env"]);
        assert_eq!(ours["Image"], reference["Config"]["Image"]);
        assert_eq!(
            ours["Healthcheck"]["Test"],
            reference["Config"]["Healthcheck"]["Test"]
        );
        let host = &ours["HostConfig"];
        let theirs = &reference["HostConfig"];
        // Unset fields are Docker's defaults.
        let or_default =
            |v: &serde_json::Value, d: serde_json::Value| if v.is_null() { d } else { v.clone() };
        for key in ["SecurityOpt", "OomScoreAdj", "Binds", "Devices"] {
            assert_eq!(host[key], theirs[key], "HostConfig.{key}");
        }
        for key in ["Privileged", "ReadonlyRootfs"] {
            assert_eq!(
                or_default(&host[key], false.into()),
                theirs[key],
                "HostConfig.{key}"
            );
        }
        assert_eq!(
            host["RestartPolicy"]["Name"],
            theirs["RestartPolicy"]["Name"]
        );
        assert_eq!(host["LogConfig"]["Type"], theirs["LogConfig"]["Type"]);
        // Where the CRI gives a reason to differ: a container always joins its
        // pod (cri-dockerd only does when the config has a linux section), and
        // Docker's own log copy is bounded.
        assert_eq!(host["NetworkMode"], format!("container:{SANDBOX}"));
        assert_eq!(host["IpcMode"], format!("container:{SANDBOX}"));
        assert_eq!(host["LogConfig"]["Config"]["max-size"], DOCKER_LOG_MAX_SIZE);
    }

    #[test]
    fn command_args_env_workdir_and_stdio() {
        let mut c = ctr();
        c.command = vec!["/bin/sh".into(), "-c".into()];
        c.args = vec!["echo hi".into()];
        c.working_dir = "/tmp".into();
        c.stdin = true;
        c.stdin_once = true;
        c.tty = true;
        let b = body(&c);
        assert_eq!(b.entrypoint.unwrap(), vec!["/bin/sh", "-c"]);
        assert_eq!(b.cmd.unwrap(), vec!["echo hi"]);
        assert_eq!(b.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(
            (b.open_stdin, b.stdin_once, b.tty),
            (Some(true), Some(true), Some(true))
        );
        let b = body(&ctr());
        assert_eq!(
            (b.entrypoint, b.cmd, b.working_dir),
            (None, None, None),
            "image defaults stay"
        );
    }

    fn with_ns(pid: NamespaceMode, network: NamespaceMode, target: &str) -> ContainerConfig {
        let mut c = ctr();
        c.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: pid as i32,
                    network: network as i32,
                    target_id: target.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    #[test]
    fn pid_namespace_modes() {
        let pid = |c: &ContainerConfig| body(c).host_config.unwrap().pid_mode;
        assert_eq!(
            pid(&with_ns(NamespaceMode::Pod, NamespaceMode::Pod, "")),
            Some(format!("container:{SANDBOX}"))
        );
        assert_eq!(
            pid(&with_ns(NamespaceMode::Container, NamespaceMode::Pod, "")),
            None
        );
        assert_eq!(
            pid(&with_ns(NamespaceMode::Node, NamespaceMode::Pod, "")).as_deref(),
            Some("host")
        );
        assert_eq!(
            pid(&with_ns(NamespaceMode::Target, NamespaceMode::Pod, "abc")).as_deref(),
            Some("container:abc")
        );
        assert!(
            create_body(
                &with_ns(NamespaceMode::Target, NamespaceMode::Pod, ""),
                &pod_ports(),
                "i",
                &options()
            )
            .is_err()
        );
        let host = body(&with_ns(NamespaceMode::Container, NamespaceMode::Node, ""))
            .host_config
            .unwrap();
        assert_eq!(host.uts_mode.as_deref(), Some("host"));
    }

    #[test]
    fn image_volumes_need_docker_api_1_48() {
        let mut config = ctr();
        config.mounts = vec![cri_dockerd_api::v1::Mount {
            container_path: "/data".into(),
            image: Some(cri_dockerd_api::v1::ImageSpec {
                image: "registry.example/data:v1".into(),
                ..Default::default()
            }),
            image_sub_path: "share/data".into(),
            ..Default::default()
        }];
        let (binds, api) = mounts(&config, support(1, 48, false), &HashMap::new()).unwrap();
        assert!(binds.is_empty());
        assert_eq!(api.len(), 1);
        assert_eq!(api[0].typ, Some(MountType::IMAGE));
        assert_eq!(api[0].source.as_deref(), Some("registry.example/data:v1"));
        assert_eq!(api[0].target.as_deref(), Some("/data"));
        assert_eq!(api[0].read_only, Some(true));
        assert_eq!(
            api[0].image_options.as_ref().unwrap().subpath.as_deref(),
            Some("share/data")
        );
        let err = mounts(&config, support(1, 41, false), &HashMap::new()).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("Docker Engine 28 (API 1.48)") && err.contains("API 1.41"),
            "{err}"
        );
    }

    #[test]
    fn a_second_image_volume_of_one_image_names_it_by_id() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let volume = |path: &str, sub: &str| cri_dockerd_api::v1::Mount {
            container_path: path.into(),
            image: Some(cri_dockerd_api::v1::ImageSpec {
                image: "registry.example/models:v1".into(),
                ..Default::default()
            }),
            image_sub_path: sub.into(),
            ..Default::default()
        };
        let mut config = ctr();
        config.mounts = vec![volume("/a", "x"), volume("/b", "y"), volume("/c", "")];
        let ids = HashMap::from([("registry.example/models:v1".to_string(), id.clone())]);
        let (_, api) = mounts(&config, support(1, 48, false), &ids).unwrap();
        let sources: Vec<&str> = api.iter().map(|m| m.source.as_deref().unwrap()).collect();
        assert_eq!(
            sources,
            vec![
                "registry.example/models:v1",
                id.as_str(),
                &"ab".repeat(32)[..12]
            ]
        );
        let label = image_volumes_label(&config, &ids).unwrap();
        let parsed: HashMap<String, ImageVolume> = serde_json::from_str(&label).unwrap();
        assert_eq!(
            parsed["/b"],
            ImageVolume {
                image: "registry.example/models:v1".into(),
                id: id.clone()
            }
        );
        assert_eq!(parsed.len(), 3);
    }

    #[test]
    fn a_privileged_container_ignores_its_seccomp_profile() {
        let mut c = ctr();
        c.linux = Some(cri_dockerd_api::v1::LinuxContainerConfig {
            security_context: Some(cri_dockerd_api::v1::LinuxContainerSecurityContext {
                privileged: true,
                seccomp: Some(cri_dockerd_api::v1::SecurityProfile {
                    profile_type: cri_dockerd_api::v1::security_profile::ProfileType::Localhost
                        as i32,
                    localhost_ref: "/nonexistent/block-hostname.json".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let host = body(&c).host_config.unwrap();
        assert_eq!(host.privileged, Some(true));
        assert_eq!(
            host.security_opt.unwrap(),
            vec!["seccomp=unconfined".to_string()],
            "no profile read, none sent"
        );
    }

    #[test]
    fn docker_propagation_back_to_the_cri() {
        for p in [
            MountPropagation::PropagationPrivate,
            MountPropagation::PropagationHostToContainer,
            MountPropagation::PropagationBidirectional,
        ] {
            let m = cri_dockerd_api::v1::Mount {
                host_path: "/h".into(),
                container_path: "/c".into(),
                propagation: p as i32,
                ..Default::default()
            };
            let docker = bind_string(&m).rsplit(':').next().unwrap().to_string();
            assert_eq!(cri_propagation(&docker), p, "{docker}");
        }
        assert_eq!(cri_propagation(""), MountPropagation::PropagationPrivate);
        assert_eq!(
            cri_propagation("rprivate"),
            MountPropagation::PropagationPrivate
        );
    }

    #[test]
    fn mounts_with_readonly_relabel_and_propagation() {
        let mut c = ctr();
        let mount =
            |host: &str, ro: bool, relabel: bool, p: MountPropagation| cri_dockerd_api::v1::Mount {
                container_path: format!("/c{host}"),
                host_path: host.into(),
                readonly: ro,
                selinux_relabel: relabel,
                propagation: p as i32,
                ..Default::default()
            };
        c.mounts = vec![
            mount("/a", false, false, MountPropagation::PropagationPrivate),
            mount(
                "/b",
                true,
                true,
                MountPropagation::PropagationHostToContainer,
            ),
            mount(
                "/c",
                false,
                false,
                MountPropagation::PropagationBidirectional,
            ),
        ];
        assert_eq!(
            body(&c).host_config.unwrap().binds.unwrap(),
            vec!["/a:/c/a", "/b:/c/b:ro,Z,rslave", "/c:/c/c:rshared"]
        );
    }

    fn support(major: u16, minor: u16, rro: bool) -> MountSupport {
        MountSupport {
            api: ApiVersion::new(major, minor),
            recursive_read_only: rro,
            selinux_relabel: false,
        }
    }

    fn bind(host: &str, ro: bool, p: MountPropagation) -> cri_dockerd_api::v1::Mount {
        cri_dockerd_api::v1::Mount {
            container_path: format!("/c{host}"),
            host_path: host.into(),
            readonly: ro,
            propagation: p as i32,
            ..Default::default()
        }
    }

    #[test]
    fn read_only_binds_stay_non_recursive_on_docker_25_and_later() {
        let mut c = ctr();
        let mut relabelled = bind("/z", true, MountPropagation::PropagationPrivate);
        relabelled.selinux_relabel = true;
        c.mounts = vec![
            bind("/a", false, MountPropagation::PropagationPrivate),
            bind("/ro", true, MountPropagation::PropagationHostToContainer),
            relabelled,
        ];
        // API 1.41: Docker's read-only binds are not recursive.
        let (binds, api) = mounts(&c, support(1, 41, false), &HashMap::new()).unwrap();
        assert_eq!(
            binds,
            vec!["/a:/c/a", "/ro:/c/ro:ro,rslave", "/z:/c/z:ro,Z"]
        );
        assert!(api.is_empty());
        // API 1.44+: a read-only bind asks for ReadOnlyNonRecursive; a
        // relabel keeps the Binds form only where Docker relabels.
        let (binds, api) = mounts(&c, support(1, 51, true), &HashMap::new()).unwrap();
        assert_eq!(binds, vec!["/a:/c/a"]);
        assert_eq!(api.len(), 2);
        assert_eq!(api[1].source.as_deref(), Some("/z"));
        let mut selinux = support(1, 51, true);
        selinux.selinux_relabel = true;
        let (binds, api) = mounts(&c, selinux, &HashMap::new()).unwrap();
        assert_eq!(binds, vec!["/a:/c/a", "/z:/c/z:ro,Z"]);
        assert_eq!(api.len(), 1);
        let m = &api[0];
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!(m.source.as_deref(), Some("/ro"));
        assert_eq!(m.target.as_deref(), Some("/c/ro"));
        assert_eq!(m.read_only, Some(true));
        let o = m.bind_options.as_ref().unwrap();
        assert_eq!(o.read_only_non_recursive, Some(true));
        assert_eq!(o.read_only_force_recursive, None);
        assert_eq!(o.create_mountpoint, Some(true));
        assert_eq!(o.propagation, Some(MountBindOptionsPropagationEnum::RSLAVE));
    }

    #[test]
    fn recursive_read_only_mounts_are_checked_and_forced() {
        let mut c = ctr();
        let mut rro = bind("/r", true, MountPropagation::PropagationPrivate);
        rro.recursive_read_only = true;
        c.mounts = vec![rro.clone()];
        // A node that cannot make one says so.
        let err = mounts(&c, support(1, 51, false), &HashMap::new()).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        let (binds, api) = mounts(&c, support(1, 51, true), &HashMap::new()).unwrap();
        assert!(binds.is_empty());
        let o = api[0].bind_options.as_ref().unwrap();
        assert_eq!(o.read_only_force_recursive, Some(true));
        assert_eq!(
            o.propagation,
            Some(MountBindOptionsPropagationEnum::RPRIVATE)
        );
        // The CRI: recursive read-only must be read-only and private.
        for propagation in [
            MountPropagation::PropagationHostToContainer,
            MountPropagation::PropagationBidirectional,
        ] {
            let mut m = rro.clone();
            m.propagation = propagation as i32;
            c.mounts = vec![m];
            let err = mounts(&c, support(1, 51, true), &HashMap::new()).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        }
        let mut m = rro.clone();
        m.readonly = false;
        c.mounts = vec![m];
        assert!(matches!(
            mounts(&c, support(1, 51, true), &HashMap::new()),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn devices_and_resources() {
        let mut c = ctr();
        c.devices = vec![Device {
            container_path: "/dev/xnull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }];
        c.linux = Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_period: 100000,
                cpu_quota: 50000,
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: -997,
                cpuset_cpus: "0".into(),
                cpuset_mems: "0".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut opts = options();
        opts.clamp_oom_score_adj = &|v: i64| v.max(0);
        let host = create_body(&c, &pod_ports(), "i", &opts)
            .unwrap()
            .1
            .host_config
            .unwrap();
        let d = &host.devices.unwrap()[0];
        assert_eq!(
            (
                d.path_on_host.as_deref(),
                d.path_in_container.as_deref(),
                d.cgroup_permissions.as_deref()
            ),
            (Some("/dev/null"), Some("/dev/xnull"), Some("rw"))
        );
        assert_eq!(
            (host.cpu_period, host.cpu_quota, host.cpu_shares),
            (Some(100000), Some(50000), Some(512))
        );
        assert_eq!(
            (host.memory, host.memory_swap),
            (Some(64 << 20), Some(64 << 20))
        );
        assert_eq!(host.oom_score_adj, Some(0), "clamped");
        assert_eq!(
            (host.cpuset_cpus.as_deref(), host.cpuset_mems.as_deref()),
            (Some("0"), Some("0"))
        );
    }

    #[test]
    fn security_context() {
        let mut c = ctr();
        c.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: vec!["ALL".into()],
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                run_as_user: Some(Int64Value { value: 1234 }),
                run_as_group: Some(Int64Value { value: 5555 }),
                supplemental_groups: vec![7, 8],
                readonly_rootfs: true,
                no_new_privs: true,
                masked_paths: vec!["/proc/kcore".into()],
                readonly_paths: vec!["/proc/sys".into()],
                seccomp: Some(SecurityProfile {
                    profile_type: 0,
                    localhost_ref: String::new(),
                }),
                apparmor: Some(SecurityProfile {
                    profile_type: 1,
                    localhost_ref: String::new(),
                }),
                selinux_options: Some(SeLinuxOption {
                    level: "s0:c1,c2".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let grantable = ["CAP_CHOWN", "CAP_KILL"];
        let mut opts = options();
        opts.grantable_capabilities = Some(&grantable);
        let b = create_body(&c, &pod_ports(), "i", &opts).unwrap().1;
        let host = b.host_config.unwrap();
        assert_eq!(b.user.as_deref(), Some("1234:5555"));
        assert_eq!(host.group_add.unwrap(), vec!["7", "8"]);
        assert_eq!(
            host.cap_add.unwrap(),
            vec!["CAP_CHOWN", "CAP_KILL"],
            "ALL is what the machine can grant"
        );
        assert_eq!(host.cap_drop.unwrap(), vec!["ALL"]);
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.masked_paths.unwrap(), vec!["/proc/kcore"]);
        assert_eq!(host.readonly_paths.unwrap(), vec!["/proc/sys"]);
        assert_eq!(
            host.security_opt.unwrap(),
            vec![
                "label=level:s0:c1,c2",
                "apparmor=unconfined",
                "no-new-privileges"
            ]
        );
    }

    #[test]
    fn privileged_ignores_masked_paths_and_keeps_all() {
        let mut c = ctr();
        c.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                privileged: true,
                masked_paths: vec!["/proc/kcore".into()],
                run_as_username: "tester".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let b = body(&c);
        assert_eq!(b.user.as_deref(), Some("tester"));
        let host = b.host_config.unwrap();
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.masked_paths, None);
        assert_eq!(host.security_opt.unwrap(), vec!["seccomp=unconfined"]);
    }

    #[test]
    fn bad_configs_are_invalid_arguments() {
        let mut c = ctr();
        c.metadata = None;
        assert!(create_body(&c, &pod_ports(), "i", &options()).is_err());
        let mut c = ctr();
        c.metadata.as_mut().unwrap().name = "a_b".into();
        assert!(create_body(&c, &pod_ports(), "i", &options()).is_err());
        let mut c = ctr();
        c.mounts = vec![cri_dockerd_api::v1::Mount {
            container_path: "/x".into(),
            ..Default::default()
        }];
        assert!(create_body(&c, &pod_ports(), "i", &options()).is_err());
    }

    #[test]
    fn hugepages_and_unified_travel_in_a_label() {
        let mut c = ctr();
        c.linux = Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                hugepage_limits: vec![cri_dockerd_api::v1::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 4 << 20,
                }],
                unified: HashMap::from([("memory.high".to_string(), "1000000".to_string())]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let b = body(&c);
        let label = &b.labels.unwrap()[labels::EXTRA_RESOURCES];
        let extra: ExtraResources = serde_json::from_str(label).unwrap();
        assert_eq!(extra.hugepages, vec![("2MB".to_string(), 4 << 20)]);
        assert_eq!(extra.unified["memory.high"], "1000000");
        assert!(
            !body(&ctr())
                .labels
                .unwrap()
                .contains_key(labels::EXTRA_RESOURCES)
        );
    }

    #[test]
    fn log_path_joins_the_pod_directory() {
        assert_eq!(
            log_path(&ctr(), &pod_ports()),
            "/var/log/pods/demo_web_0f5c4c2e-1b7a-4a53-9d36-5a1f0f4f7e11/app/2.log"
        );
        let mut pod = pod_ports();
        pod.log_directory.clear();
        assert_eq!(log_path(&ctr(), &pod), "");
    }
}
