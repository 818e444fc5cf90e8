//! Pod sandboxes on real CNI plugins: addresses, the bridge, hairpin,
//! reachability, host ports.

use std::net::SocketAddr;

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{docker_pid, pod_config, pods};
use cri_dockerd_testkit::netns::{
    fetch, hairpin_mode, host_ipv4_addresses, host_veth_of, in_pod_subnet, ping_from,
    ping_from_host, serve_in_netns,
};
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

#[tokio::test(flavor = "multi_thread")]
async fn pods_get_bridge_addresses_hairpin_and_reach_each_other() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (uid_a, uid_b) = (shim.pod_uid("a"), shim.pod_uid("b"));
    let a = pods::run(&shim.runtime, pod_config("net-a", "default", &uid_a))
        .await
        .unwrap();
    let b = pods::run(&shim.runtime, pod_config("net-b", "default", &uid_b))
        .await
        .unwrap();

    let status_a = pods::status(&shim.runtime, &a).await;
    assert_eq!(status_a.state, PodSandboxState::SandboxReady as i32);
    let ip_a = status_a.network.as_ref().unwrap().ip.clone();
    let ip_b = pods::status(&shim.runtime, &b).await.network.unwrap().ip;
    assert!(in_pod_subnet(&ip_a), "{ip_a}");
    assert!(in_pod_subnet(&ip_b), "{ip_b}");
    assert_ne!(ip_a, ip_b);

    let bridge = host_ipv4_addresses("kubelet0");
    assert!(bridge.contains("10.88.0.1/16"), "{bridge}");

    let pid_a = docker_pid(&env.docker, &a).await;
    let pid_b = docker_pid(&env.docker, &b).await;
    let veth = host_veth_of(pid_a).expect("host end of the pod's veth");
    assert_eq!(hairpin_mode(&veth), "1");

    assert!(ping_from_host(&ip_a), "the host reaches the pod");
    assert!(ping_from(pid_a, "10.88.0.1"), "the pod reaches its gateway");
    assert!(ping_from(pid_a, &ip_b), "the pod reaches another pod");
    // lo is up in the pod namespace (the loopback plugin ran).
    assert!(ping_from(pid_b, "127.0.0.1"));

    for id in [&a, &b] {
        pods::stop(&shim.runtime, id).await;
        pods::remove(&shim.runtime, id).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_port_reaches_a_listener_in_the_pod() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let host_port = 20000 + (std::process::id() % 10000) as i32;
    let mut config = pod_config("hostport", "default", &shim.pod_uid("hp"));
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    let id = pods::run(&shim.runtime, config).await.unwrap();
    let pid = docker_pid(&env.docker, &id).await;
    let server = serve_in_netns(pid, 8080, b"hello from the pod\n", 1);
    let addr: SocketAddr = format!("127.0.0.1:{host_port}").parse().unwrap();
    let reply = fetch(addr).expect("connecting to the host port");
    assert_eq!(reply, b"hello from the pod\n");
    server.join().unwrap();

    pods::stop(&shim.runtime, &id).await;
    pods::remove(&shim.runtime, &id).await;
    assert!(
        fetch(addr).is_err(),
        "the host port is released with the pod"
    );
}
