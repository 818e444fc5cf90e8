//! Sandbox lifecycle against the real daemon: cleanup, restarts, failures,
//! checkpoints, filters, idempotency.

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use cri_dockerd_api::v1::*;
use cri_dockerd_core::checkpoint::PodSandboxCheckpoint;
use cri_dockerd_testkit::cri::{docker_pid, host_network, pod_config, pods};
use cri_dockerd_testkit::netns::{host_veth_of, interface_with_index, ip_reservations};
use cri_dockerd_testkit::{Shim, test_env, unique};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const NETWORK: &str = "bridge";

async fn container_exists(docker: &bollard::Docker, id: &str) -> bool {
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .is_ok()
}

fn reserved_by(id: &str) -> bool {
    ip_reservations(NETWORK)
        .iter()
        .any(|(_, owner)| owner == id)
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_pods_run_stop_and_leave_nothing_behind() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let mut runs = Vec::new();
    for i in 0..20 {
        let client = shim.runtime.clone();
        let config = pod_config(
            &format!("many-{i}"),
            "default",
            &shim.pod_uid(&format!("m{i}")),
        );
        runs.push(tokio::spawn(
            async move { pods::run(&client, config).await },
        ));
    }
    let mut ids = Vec::new();
    for run in runs {
        ids.push(run.await.unwrap().expect("RunPodSandbox"));
    }
    let mut veths = Vec::new();
    let mut ips = Vec::new();
    for id in &ids {
        let status = pods::status(&shim.runtime, id).await;
        assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
        ips.push(status.network.unwrap().ip);
        veths.push(host_veth_of(docker_pid(&env.docker, id).await).expect("veth"));
        assert!(reserved_by(id), "host-local holds an address for {id}");
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "every pod has its own address");

    let mut teardowns = Vec::new();
    for id in ids.clone() {
        let client = shim.runtime.clone();
        teardowns.push(tokio::spawn(async move {
            pods::stop(&client, &id).await;
            pods::remove(&client, &id).await;
        }));
    }
    for t in teardowns {
        t.await.unwrap();
    }
    for (id, veth) in ids.iter().zip(&veths) {
        assert!(
            !container_exists(&env.docker, id).await,
            "pause container {id} is gone"
        );
        assert!(
            !shim.root.join("sandbox").join(id).exists(),
            "checkpoint of {id} is gone"
        );
        assert!(
            !Path::new("/sys/class/net").join(veth).exists(),
            "veth {veth} is gone"
        );
        assert!(!reserved_by(id), "the address of {id} is released");
        let cached: Vec<_> = std::fs::read_dir(shim.cni_cache_dir.join("results"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().contains(id.as_str()))
                    .count()
            })
            .into_iter()
            .collect();
        assert!(cached.iter().all(|n| *n == 0), "CNI cache of {id} is gone");
    }
    assert!(
        pods::list(&shim.runtime, None)
            .await
            .iter()
            .all(|p| !ids.contains(&p.id))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_shim_finds_the_pod_and_cleans_it_up() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let uid = shim.pod_uid("restart");
    let id = pods::run(&shim.runtime, pod_config("restart", "default", &uid))
        .await
        .unwrap();
    let ip = pods::status(&shim.runtime, &id).await.network.unwrap().ip;
    let veth = host_veth_of(docker_pid(&env.docker, &id).await).unwrap();

    shim.kill();
    shim.restart().await;

    let listed = pods::list(&shim.runtime, None).await;
    let pod = listed
        .iter()
        .find(|p| p.id == id)
        .expect("the pod is listed after a restart");
    assert_eq!(pod.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(pod.metadata.as_ref().unwrap().uid, uid);
    let status = pods::status(&shim.runtime, &id).await;
    assert_eq!(
        status.network.unwrap().ip,
        ip,
        "the same address after the restart"
    );

    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
    assert!(!container_exists(&env.docker, &id).await);
    assert!(!reserved_by(&id));
    assert!(!Path::new("/sys/class/net").join(&veth).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_container_removed_behind_our_back_is_still_cleaned_up() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let uid = shim.pod_uid("gone");
    let id = pods::run(&shim.runtime, pod_config("gone", "default", &uid))
        .await
        .unwrap();
    assert!(reserved_by(&id));
    shim.kill();
    env.docker
        .remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    shim.restart().await;

    let listed = pods::list(&shim.runtime, None).await;
    let pod = listed
        .iter()
        .find(|p| p.id == id)
        .expect("listed from its checkpoint");
    assert_eq!(pod.state, PodSandboxState::SandboxNotready as i32);
    assert_eq!(pod.metadata.as_ref().unwrap().name, "gone");
    let status = pods::status(&shim.runtime, &id).await;
    assert_eq!(status.state, PodSandboxState::SandboxNotready as i32);

    pods::stop(&shim.runtime, &id).await;
    assert!(
        !reserved_by(&id),
        "the address is released from the cached result"
    );
    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
    assert!(!shim.root.join("sandbox").join(&id).exists());
    assert!(
        pods::list(&shim.runtime, None)
            .await
            .iter()
            .all(|p| p.id != id)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_cni_plugin_fails_the_pod_and_leaves_nothing() {
    let env = test_env().await;
    let conf = tempfile::tempdir().unwrap();
    let network = unique("crid-fail-");
    // The bridge plugin succeeds, then tuning fails on a sysctl that does not exist.
    std::fs::write(
        conf.path().join("10-fail.conflist"),
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": network,
            "plugins": [
                {"type": "bridge", "bridge": "crid-fail0", "isGateway": true,
                 "ipam": {"type": "host-local", "subnet": "10.89.0.0/24"}},
                {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let shim = Shim::builder(BIN).cni_conf_dir(conf.path()).start().await;
    let name = unique("failing-");
    let err = pods::run(
        &shim.runtime,
        pod_config(&name, "default", &shim.pod_uid("f")),
    )
    .await
    .unwrap_err();
    assert!(
        err.message().contains("tuning"),
        "the plugin is named: {}",
        err.message()
    );
    assert!(
        err.message().contains("no_such_knob"),
        "the plugin's message comes back: {}",
        err.message()
    );

    let filters = HashMap::from([("name".to_string(), vec![name.clone()])]);
    let left = env
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(left.is_empty(), "no pause container is left: {left:?}");
    assert_eq!(
        std::fs::read_dir(shim.root.join("sandbox"))
            .unwrap()
            .count(),
        0,
        "no checkpoint is left"
    );
    assert!(
        ip_reservations(&network).is_empty(),
        "no address is left reserved"
    );
    let veths_on_bridge = std::fs::read_dir("/sys/class/net/crid-fail0/brif")
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(veths_on_bridge, 0, "no veth is left on the bridge");
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "crid-fail0"])
        .status();
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_hostname_and_sysctls_are_visible_in_the_pod() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let mut config = pod_config("dns", "default", &shim.pod_uid("dns"));
    config.hostname = "custom-host".into();
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        options: vec!["ndots:5".into()],
    });
    config
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "123".into());
    let id = pods::run(&shim.runtime, config).await.unwrap();
    let pid = docker_pid(&env.docker, &id).await;
    let resolv = std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf")).unwrap();
    assert_eq!(
        resolv,
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
    );
    let hostname = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-u", "hostname"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&hostname.stdout).trim(),
        "custom-host"
    );
    let sysctl = cri_dockerd_testkit::netns::in_netns(
        pid,
        &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
    );
    assert_eq!(String::from_utf8_lossy(&sysctl.stdout).trim(), "123");
    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_list_and_filters() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let uid = shim.pod_uid("st");
    let mut config = pod_config("status", "team-a", &uid);
    config.labels.insert("app".into(), unique("app-"));
    config
        .annotations
        .insert("example.com/note".into(), "hello".into());
    let app = config.labels["app"].clone();
    let id = pods::run(&shim.runtime, config.clone()).await.unwrap();

    let status = pods::status(&shim.runtime, &id).await;
    assert_eq!(
        status.metadata.as_ref().unwrap(),
        config.metadata.as_ref().unwrap()
    );
    assert_eq!(status.labels, config.labels);
    assert_eq!(status.annotations, config.annotations);
    let ns = status.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(
        (ns.network, ns.pid, ns.ipc),
        (
            NamespaceMode::Pod as i32,
            NamespaceMode::Container as i32,
            NamespaceMode::Pod as i32
        )
    );
    assert!(status.created_at > 1_600_000_000_000_000_000);

    let verbose = shim
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert_eq!(info["pid"], docker_pid(&env.docker, &id).await);
    assert_eq!(info["cniNetwork"], NETWORK);

    // Docker's view matches cri-dockerd's naming and labels.
    let inspect = env
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(
        inspect.name.unwrap(),
        format!("/k8s_POD_status_team-a_{uid}_0")
    );
    let docker_labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(docker_labels["io.kubernetes.docker.type"], "podsandbox");
    assert_eq!(docker_labels["io.kubernetes.container.name"], "POD");
    assert_eq!(docker_labels["annotation.example.com/note"], "hello");

    // The checkpoint is cri-dockerd's format and verifies.
    let checkpoint =
        PodSandboxCheckpoint::decode(&std::fs::read(shim.root.join("sandbox").join(&id)).unwrap())
            .unwrap();
    assert_eq!(
        (checkpoint.name.as_str(), checkpoint.namespace.as_str()),
        ("status", "team-a")
    );

    let by_label = |k: &str, v: &str| PodSandboxFilter {
        label_selector: HashMap::from([(k.into(), v.into())]),
        ..Default::default()
    };
    let found = pods::list(&shim.runtime, Some(by_label("app", &app))).await;
    assert_eq!(
        found.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    assert!(
        pods::list(&shim.runtime, Some(by_label("app", "nope")))
            .await
            .is_empty()
    );
    let by_prefix = PodSandboxFilter {
        id: id[..12].to_string(),
        ..Default::default()
    };
    assert_eq!(pods::list(&shim.runtime, Some(by_prefix)).await.len(), 1);
    let ready = |state: PodSandboxState| PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: state as i32,
        }),
        label_selector: HashMap::from([("app".into(), app.clone())]),
        ..Default::default()
    };
    assert_eq!(
        pods::list(&shim.runtime, Some(ready(PodSandboxState::SandboxReady)))
            .await
            .len(),
        1
    );
    assert!(
        pods::list(&shim.runtime, Some(ready(PodSandboxState::SandboxNotready)))
            .await
            .is_empty()
    );

    pods::stop(&shim.runtime, &id).await;
    assert_eq!(
        pods::status(&shim.runtime, &id).await.state,
        PodSandboxState::SandboxNotready as i32
    );
    assert_eq!(
        pods::list(&shim.runtime, Some(ready(PodSandboxState::SandboxNotready)))
            .await
            .len(),
        1
    );
    assert!(
        pods::list(&shim.runtime, Some(ready(PodSandboxState::SandboxReady)))
            .await
            .is_empty()
    );
    pods::remove(&shim.runtime, &id).await;
    let err = shim
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_remove_are_idempotent_and_serialised() {
    test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    pods::stop(
        &shim.runtime,
        "0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await;
    pods::remove(
        &shim.runtime,
        "0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await;
    let id = pods::run(
        &shim.runtime,
        pod_config("idem", "default", &shim.pod_uid("i")),
    )
    .await
    .unwrap();
    let mut calls = Vec::new();
    for n in 0..6 {
        let mut client = shim.runtime.clone();
        let id = id.clone();
        calls.push(tokio::spawn(async move {
            if n % 2 == 0 {
                client
                    .stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id })
                    .await
                    .map(|_| ())
            } else {
                client
                    .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await
                    .map(|_| ())
            }
        }));
    }
    for call in calls {
        call.await
            .unwrap()
            .expect("concurrent stop/remove all succeed");
    }
    assert!(!reserved_by(&id));
    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
    let err = shim
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_pods_never_call_cni() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let id = pods::run(
        &shim.runtime,
        host_network(pod_config("hostnet", "default", &shim.pod_uid("h"))),
    )
    .await
    .unwrap();
    let status = pods::status(&shim.runtime, &id).await;
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(
        status
            .linux
            .unwrap()
            .namespaces
            .unwrap()
            .options
            .unwrap()
            .network,
        NamespaceMode::Node as i32
    );
    assert!(
        !shim.cni_cache_dir.join("results").exists()
            || std::fs::read_dir(shim.cni_cache_dir.join("results"))
                .unwrap()
                .count()
                == 0
    );
    let inspect = env
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(
        inspect.host_config.unwrap().network_mode.as_deref(),
        Some("host")
    );
    let checkpoint =
        PodSandboxCheckpoint::decode(&std::fs::read(shim.root.join("sandbox").join(&id)).unwrap())
            .unwrap();
    assert!(checkpoint.data().host_network);
    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_written_by_cri_dockerd_are_adopted() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let reference =
        cri_dockerd_testkit::repo_root().join("testdata/cri-dockerd-v0.3.21/checkpoints");
    // A fresh id: the checkpoint of a pod whose pause container is long gone.
    let id = unique("c0ffee").repeat(4)[..64].to_string();
    std::fs::copy(
        reference.join("0bd9a3e1aa0a4af38b26f9145eed996cf0973b65c23c977cddf8bf3c117e4cdb"),
        shim.root.join("sandbox").join(&id),
    )
    .unwrap();
    std::fs::write(
        shim.root.join("sandbox").join("corrupt"),
        b"{\"version\":\"v1\",\"name\":\"x\"",
    )
    .unwrap();

    let listed = pods::list(&shim.runtime, None).await;
    let pod = listed
        .iter()
        .find(|p| p.id == id)
        .expect("the cri-dockerd checkpoint is listed");
    assert_eq!(pod.state, PodSandboxState::SandboxNotready as i32);
    let metadata = pod.metadata.as_ref().unwrap();
    assert_eq!(
        (metadata.name.as_str(), metadata.namespace.as_str()),
        ("web", "demo")
    );
    assert!(
        listed.iter().all(|p| p.id != "corrupt"),
        "a corrupt checkpoint is skipped"
    );
    assert!(shim.log_text().contains("corrupt"), "and reported");

    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
    assert!(!shim.root.join("sandbox").join(&id).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn oom_score_is_clamped_where_it_cannot_be_lowered() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let id = pods::run(
        &shim.runtime,
        pod_config("oom", "default", &shim.pod_uid("o")),
    )
    .await
    .unwrap();
    let adj = env
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .host_config
        .unwrap()
        .oom_score_adj
        .unwrap();
    let pid = docker_pid(&env.docker, &id).await;
    let effective: i64 = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        adj, effective,
        "Docker was asked for what the pause process got"
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    let can_lower = u64::from_str_radix(bounding, 16).unwrap() & (1 << 24) != 0;
    if can_lower {
        assert_eq!(adj, -998, "cri-dockerd's score where it can be set");
    } else {
        let own: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            adj,
            own.max(-998),
            "raised to the lowest score this machine allows"
        );
    }
    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_handlers_select_docker_runtimes() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let err = shim
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("rh", "default", &shim.pod_uid("rh"))),
            runtime_handler: "no-such-runtime".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let id = shim
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("rh", "default", &shim.pod_uid("rh"))),
            runtime_handler: "runc".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let inspect = env
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(
        inspect.host_config.unwrap().runtime.as_deref(),
        Some("runc")
    );
    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_network_plugin_uses_dockers_bridge() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).arg("--network-plugin=").start().await;
    let id = pods::run(
        &shim.runtime,
        pod_config("dbridge", "default", &shim.pod_uid("d")),
    )
    .await
    .unwrap();
    let ip = pods::status(&shim.runtime, &id).await.network.unwrap().ip;
    let docker_ip = env
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .network_settings
        .unwrap()
        .networks
        .unwrap()["bridge"]
        .ip_address
        .clone()
        .unwrap();
    assert_eq!(ip, docker_ip);
    assert!(interface_with_index("1").is_some());
    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
}
