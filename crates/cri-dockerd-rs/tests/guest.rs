//! What only a node like the ones people run shows: systemd as PID 1,
//! cgroup v2, Docker's systemd cgroup driver, AppArmor. These tests run
//! inside the test guest (`make test-guest`; scripts/guest/), one at a
//! time; on a host without those they fail, saying so.
//!
//! - The Debian package under systemd: socket activation, READY, STOPPING
//!   and the watchdog as systemd itself records them, `systemctl restart
//!   docker` under the shim, purge.
//! - Pods in systemd slices: the cgroups the kubelet's parent gives them,
//!   stats and metrics from the v2 files (CPU, memory, pids, io.stat,
//!   pressure stalls), limits written by UpdateContainerResources and
//!   UpdatePodSandboxResources, an OOM kill.
//! - AppArmor: the CRI's profiles mapped to Docker's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, containers, pod_config, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::pod_cgroup::{Layout, PodCgroup};
use cri_dockerd_testkit::{Shim, test_env};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const MIB: i64 = 1 << 20;

/// Fails unless this is a systemd host on cgroup v2 whose Docker uses the
/// systemd cgroup driver: the guest.
async fn require_guest() {
    let env = test_env().await;
    let driver = env
        .engine
        .info()
        .await
        .unwrap()
        .cgroup_driver
        .unwrap_or_default();
    assert!(
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
            && Path::new("/run/systemd/system").exists()
            && driver == "systemd",
        "these tests need a systemd host on cgroup v2 with Docker's systemd cgroup driver \
         (Docker says {driver:?}): run them in the test guest, `make test-guest`"
    );
}

fn sh(command: &str) -> String {
    let out = Command::new("sh").args(["-c", command]).output().unwrap();
    assert!(
        out.status.success(),
        "{command}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sh_status(command: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", command]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn unit_property(unit: &str, property: &str) -> String {
    sh(&format!("systemctl show -p {property} --value {unit}"))
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn client_of(socket: &Path) -> Option<RuntimeServiceClient<tonic::transport::Channel>> {
    let channel = cri_dockerd_testkit::shim::channel_for(socket).await.ok()?;
    Some(RuntimeServiceClient::new(channel))
}

fn the_package() -> PathBuf {
    let dir = cri_dockerd_testkit::repo_root().join("target/deb");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; the guest runner builds it (make deb)",
                dir.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs.pop().expect("a package built by make deb")
}

/// The package as a node installs it: dpkg, then systemd runs the shim
/// from its socket unit, sees READY, STOPPING and the watchdog pings, the
/// shim outlives `systemctl restart docker`, and purge leaves nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_debian_package_runs_under_systemd() {
    require_guest().await;
    let deb = the_package();
    sh(&format!("dpkg -i {}", deb.display()));
    assert_eq!(
        sh("systemctl is-enabled cri-docker.socket cri-docker.service"),
        "enabled\nenabled"
    );
    assert_eq!(sh("systemctl is-active cri-docker.socket"), "active");
    let socket = Path::new("/run/cri-dockerd.sock");
    let service = "cri-docker.service";

    // Socket activation, as at boot (sockets.target starts the socket): a
    // client's connection makes systemd start the service, and the call is
    // answered. The socket is PartOf the service, as in cri-dockerd's
    // units: stopping the service closes it, so it is started alone.
    sh("systemctl stop cri-docker.service");
    assert_ne!(
        sh_status("systemctl is-active cri-docker.socket").1,
        "active",
        "the socket goes with its service (PartOf)"
    );
    sh("systemctl start cri-docker.socket");
    assert_eq!(sh("systemctl is-active cri-docker.socket"), "active");
    assert_eq!(
        sh_status("systemctl is-active cri-docker.service").1,
        "inactive"
    );
    let version = client_of(socket)
        .await
        .expect("the socket systemd holds")
        .version(VersionRequest::default())
        .await
        .expect("Version, answered by the service systemd started for it")
        .into_inner();
    assert_eq!(version.runtime_name, "docker");
    assert_eq!(sh("systemctl is-active cri-docker.service"), "active");
    // Type=notify: systemd counts it started only after READY=1, and keeps
    // the STATUS= it sent.
    assert!(
        unit_property(service, "StatusText").starts_with("serving the CRI"),
        "{}",
        unit_property(service, "StatusText")
    );

    // The watchdog: with WatchdogSec=4s the shim pings every 2 s while
    // Docker answers, and systemd records each ping.
    std::fs::create_dir_all("/etc/systemd/system/cri-docker.service.d").unwrap();
    std::fs::write(
        "/etc/systemd/system/cri-docker.service.d/50-guest-watchdog.conf",
        "[Service]\nWatchdogSec=4s\n",
    )
    .unwrap();
    sh("systemctl daemon-reload && systemctl restart cri-docker.service");
    assert_eq!(unit_property(service, "WatchdogUSec"), "4s");
    let pinged = |_: ()| {
        unit_property(service, "WatchdogTimestampMonotonic")
            .parse::<u64>()
            .unwrap_or(0)
    };
    let first = pinged(());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = pinged(());
    assert!(
        later > first && first > 0,
        "systemd saw watchdog pings: {first} then {later}"
    );
    assert_eq!(unit_property(service, "NRestarts"), "0");
    // Back to the unit's 60 s: a Docker restart (slow in the guest) must
    // not outlast the watchdog.
    std::fs::remove_dir_all("/etc/systemd/system/cri-docker.service.d").unwrap();
    sh("systemctl daemon-reload && systemctl restart cri-docker.service");
    assert_eq!(unit_property(service, "WatchdogUSec"), "1min");

    // Docker restarted under the shim: the same process serves again once
    // Docker is back, and systemd never restarted it.
    let main_pid = unit_property(service, "MainPID");
    sh("systemctl restart docker");
    let mut client = client_of(socket).await.unwrap();
    let started = Instant::now();
    loop {
        let ready = client
            .status(StatusRequest { verbose: false })
            .await
            .ok()
            .and_then(|s| s.into_inner().status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "RuntimeReady" && c.status)
            });
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "serving again after Docker's restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(unit_property(service, "MainPID"), main_pid);
    assert_eq!(unit_property(service, "NRestarts"), "0");

    // STOPPING=1 as systemd's own debug log records the notification.
    let cursor = sh("journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'");
    sh("systemd-analyze log-level debug");
    sh("systemctl stop cri-docker.service");
    sh("systemd-analyze log-level info");
    let journal = sh(&format!(
        "journalctl --no-pager -o cat --after-cursor '{cursor}' _PID=1"
    ));
    assert!(
        journal
            .lines()
            .any(|l| l.contains(service) && l.contains("STOPPING=1")),
        "systemd recorded STOPPING=1:\n{journal}"
    );
    assert_eq!(unit_property(service, "Result"), "success");

    // Purge: nothing of the package is left, nor its units in systemd.
    sh("dpkg --purge cri-dockerd-rs");
    for path in [
        "/usr/bin/cri-dockerd-rs",
        "/lib/systemd/system/cri-docker.service",
        "/lib/systemd/system/cri-docker.socket",
        "/etc/systemd/system/sockets.target.wants/cri-docker.socket",
        "/etc/systemd/system/multi-user.target.wants/cri-docker.service",
        "/run/cri-dockerd.sock",
    ] {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    sh("systemctl daemon-reload");
    assert_eq!(
        sh("systemctl list-unit-files --no-legend 'cri-docker*' | wc -l"),
        "0"
    );
    assert_ne!(
        sh_status("systemctl is-active cri-docker.socket").1,
        "active"
    );
}

fn cgroup_file(path: &str, file: &str) -> String {
    let full = PathBuf::from("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{}: {e}", full.display()))
        .trim()
        .to_string()
}

/// The cgroup v2 path of a process, from `/proc/<pid>/cgroup` (`0::<path>`).
fn cgroup_of(pid: i64) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .to_string()
}

fn value(v: &Option<UInt64Value>) -> u64 {
    v.as_ref().expect("a figure").value
}

/// Pods under a kubelet-style systemd slice on cgroup v2: where their
/// cgroups are, what the stats and metrics read from the v2 files, the
/// limits the update calls write, and an OOM kill.
#[tokio::test(flavor = "multi_thread")]
async fn pods_in_systemd_slices_on_cgroup_v2() {
    require_guest().await;
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let mut rt = shim.runtime.clone();
    let driver = rt
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner()
        .linux
        .unwrap()
        .cgroup_driver;
    assert_eq!(driver, CgroupDriver::Systemd as i32);

    let uid = shim.pod_uid("slice");
    let cgroup = PodCgroup::create(Layout::V2Systemd, &uid, 256 << 20);
    assert!(
        cgroup.parent.starts_with("kubepods-burstable-pod"),
        "{}",
        cgroup.parent
    );
    let mut config = pod_config("slice", "default", &uid);
    config.log_directory = shim.dir.path().join("pods/slice").display().to_string();
    config.linux.as_mut().unwrap().cgroup_parent = cgroup.parent.clone();
    let pod = pods::run(&shim.runtime, config.clone()).await.unwrap();

    // The pause container and the containers are scopes of the pod's slice.
    let pause_pid = cri_dockerd_testkit::cri::docker_pid(&env.docker, &pod).await;
    assert_eq!(cgroup_of(pause_pid), cgroup.container_path(&pod));

    // A worker that spins under a CPU quota (throttled, so stalled) and
    // writes 8 MiB to its disk with fsync.
    let mut worker = container_config(
        "worker",
        BUSYBOX_IMAGE,
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/written bs=1M count=8 conv=fsync 2>/dev/null && echo written; \
             while :; do :; done",
        ],
    );
    worker.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            memory_limit_in_bytes: 128 * MIB,
            ..Default::default()
        }),
        ..Default::default()
    });
    let worker = containers::run(&shim.runtime, &pod, worker, &config).await;
    let worker_pid = cri_dockerd_testkit::cri::docker_pid(&env.docker, &worker).await;
    let worker_cgroup = cgroup.container_path(&worker);
    assert_eq!(cgroup_of(worker_pid), worker_cgroup);
    assert_eq!(cgroup_file(&worker_cgroup, "cpu.max"), "20000 100000");
    assert_eq!(
        cgroup_file(&worker_cgroup, "memory.max"),
        (128 * MIB).to_string()
    );
    let log = containers::status(&shim.runtime, &worker).await.log_path;
    wait_until("the worker wrote its file", Duration::from_secs(60), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("written")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // ContainerStats from the v2 files, pressure stalls included.
    let stats = rt
        .container_stats(ContainerStatsRequest {
            container_id: worker.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let cpu = stats.cpu.as_ref().unwrap();
    assert!(value(&cpu.usage_core_nano_seconds) > 100_000_000, "{cpu:?}");
    let cpu_psi = cpu.psi.as_ref().expect("cpu.pressure (psi=1)");
    assert!(
        cpu_psi.some.as_ref().unwrap().total > 0,
        "a throttled spinner stalls: {cpu_psi:?}"
    );
    let memory = stats.memory.as_ref().unwrap();
    assert!(value(&memory.working_set_bytes) > 0);
    assert_eq!(
        value(&memory.available_bytes),
        (128 << 20) - value(&memory.working_set_bytes)
    );
    assert!(memory.psi.is_some(), "memory.pressure");
    assert!(
        stats.io.as_ref().and_then(|io| io.psi.as_ref()).is_some(),
        "io.pressure"
    );
    let swap = stats.swap.as_ref().expect("memory.swap.current");
    assert_eq!(value(&swap.swap_usage_bytes), 0, "the guest has no swap");
    assert!(stats.writable_layer.is_some());

    // The pod: its slice's figures, its processes from cgroup.procs.
    let pod_stats = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = pod_stats.linux.as_ref().unwrap();
    // The pause process and the worker's shell (dd has finished).
    assert_eq!(value(&linux.process.as_ref().unwrap().process_count), 2);
    let pod_memory = linux.memory.as_ref().unwrap();
    assert_eq!(
        value(&pod_memory.available_bytes),
        (256 << 20) - value(&pod_memory.working_set_bytes)
    );
    assert!(linux.cpu.as_ref().unwrap().psi.is_some());

    // Metrics: cAdvisor's names over the v2 files, io.stat included.
    let metrics = rt
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let mine = metrics.iter().find(|m| m.pod_sandbox_id == pod).unwrap();
    let series = &mine
        .container_metrics
        .iter()
        .find(|c| c.container_id == worker)
        .unwrap()
        .metrics;
    let find = |name: &str| {
        series
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} in {series:?}"))
    };
    assert_eq!(
        find("container_cpu_usage_seconds_total").label_values[1],
        worker_cgroup
    );
    assert!(
        find("container_cpu_cfs_throttled_periods_total")
            .value
            .unwrap()
            .value
            > 0
    );
    assert_eq!(
        find("container_spec_cpu_quota").value.unwrap().value,
        20_000
    );
    let written = series
        .iter()
        .filter(|m| m.name == "container_fs_writes_bytes_total")
        .map(|m| m.value.unwrap().value)
        .sum::<u64>();
    assert!(
        written >= 8 << 20,
        "io.stat counted the fsynced 8 MiB: {written}"
    );
    let device = &find("container_fs_writes_bytes_total").label_values[6];
    assert!(device.starts_with("/dev/"), "a device name: {device}");
    assert_eq!(find("container_processes").value.unwrap().value, 1);

    // UpdateContainerResources writes cpu.max and memory.max.
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: worker.clone(),
        linux: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            memory_limit_in_bytes: 96 * MIB,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(cgroup_file(&worker_cgroup, "cpu.max"), "50000 100000");
    assert_eq!(
        cgroup_file(&worker_cgroup, "memory.max"),
        (96 * MIB).to_string()
    );

    // UpdatePodSandboxResources writes the pause container's.
    rt.update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod.clone(),
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 150_000,
            memory_limit_in_bytes: 200 * MIB,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let pause_cgroup = cgroup.container_path(&pod);
    assert_eq!(cgroup_file(&pause_cgroup, "cpu.max"), "150000 100000");
    assert_eq!(
        cgroup_file(&pause_cgroup, "memory.max"),
        (200 * MIB).to_string()
    );

    // A container whose main process outgrows its limit: OOMKilled.
    let mut hog = container_config("hog", BUSYBOX_IMAGE, &["tail", "/dev/zero"]);
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 16 * MIB,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = containers::run(&shim.runtime, &pod, hog, &config).await;
    let status = containers::wait_exited(&shim.runtime, &hog).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    assert_eq!(status.exit_code, 137);

    pods::stop(&shim.runtime, &pod).await;
    pods::remove(&shim.runtime, &pod).await;
}

const TEST_PROFILE: &str = "crid-test-deny-forbidden";

/// AppArmor on, as on Ubuntu: the CRI's RuntimeDefault is Docker's
/// `docker-default`, Unconfined is unconfined, `localhost/<name>` a profile
/// the node has loaded; one it has not is refused clearly.
#[tokio::test(flavor = "multi_thread")]
async fn apparmor_profiles_map_to_dockers() {
    require_guest().await;
    let loaded = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
        .expect("AppArmor is on in the guest");
    assert!(loaded.contains("docker-default"), "{loaded}");
    let profile_file = std::env::temp_dir().join(format!("{TEST_PROFILE}.profile"));
    std::fs::write(
        &profile_file,
        format!(
            "#include <tunables/global>\n\
             profile {TEST_PROFILE} flags=(attach_disconnected,mediate_deleted) {{\n\
               #include <abstractions/base>\n\
               file,\n  network,\n  capability,\n  signal,\n  ptrace,\n  mount,\n  umount,\n  pivot_root,\n\
               deny /tmp/forbidden* w,\n\
             }}\n"
        ),
    )
    .unwrap();
    sh(&format!("apparmor_parser -r {}", profile_file.display()));

    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("apparmor").await;
    let with_profile = |name: &str, profile: Option<SecurityProfile>| {
        let mut c = container_config(name, BUSYBOX_IMAGE, &["sleep", "3600"]);
        c.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                apparmor: profile,
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let profile = |kind: security_profile::ProfileType, name: &str| {
        Some(SecurityProfile {
            profile_type: kind as i32,
            localhost_ref: name.into(),
        })
    };
    let current = |id: String| {
        let runtime = shim.runtime.clone();
        async move {
            containers::exec_stdout(&runtime, &id, &["cat", "/proc/1/attr/current"])
                .await
                .trim()
                .to_string()
        }
    };

    let default = containers::run(
        &shim.runtime,
        &pod,
        with_profile(
            "default",
            profile(security_profile::ProfileType::RuntimeDefault, ""),
        ),
        &config,
    )
    .await;
    assert_eq!(current(default).await, "docker-default (enforce)");
    let unconfined = containers::run(
        &shim.runtime,
        &pod,
        with_profile(
            "unconfined",
            profile(security_profile::ProfileType::Unconfined, ""),
        ),
        &config,
    )
    .await;
    assert_eq!(current(unconfined).await, "unconfined");
    let mine = containers::run(
        &shim.runtime,
        &pod,
        with_profile(
            "mine",
            profile(
                security_profile::ProfileType::Localhost,
                &format!("localhost/{TEST_PROFILE}"),
            ),
        ),
        &config,
    )
    .await;
    assert_eq!(
        current(mine.clone()).await,
        format!("{TEST_PROFILE} (enforce)")
    );
    let denied = containers::exec(&shim.runtime, &mine, &["touch", "/tmp/forbidden"]).await;
    assert_ne!(denied.exit_code, 0, "the profile denies the write");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    containers::exec_stdout(&shim.runtime, &mine, &["touch", "/tmp/allowed"]).await;

    let err = shim
        .runtime
        .clone()
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(with_profile(
                "missing",
                profile(
                    security_profile::ProfileType::Localhost,
                    "localhost/crid-no-such-profile",
                ),
            )),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("crid-no-such-profile"), "{err}");

    pods::stop(&shim.runtime, &pod).await;
    pods::remove(&shim.runtime, &pod).await;
    sh(&format!("apparmor_parser -R {}", profile_file.display()));
}
