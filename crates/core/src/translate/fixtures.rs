//! The CRI configs behind testdata/cri-dockerd-v0.3.21 (pod-ports.json,
//! pod-host.json, ctr.json), as Rust values: the generated types do not
//! deserialize crictl's sparse JSON.

use std::collections::HashMap;

use cri_dockerd_api::v1::*;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn namespaces(
    network: NamespaceMode,
    pid: NamespaceMode,
    ipc: NamespaceMode,
) -> Option<LinuxPodSandboxConfig> {
    Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: network as i32,
                pid: pid as i32,
                ipc: ipc as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn pod_ports() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            namespace: "demo".into(),
            uid: "0f5c4c2e-1b7a-4a53-9d36-5a1f0f4f7e11".into(),
            attempt: 1,
        }),
        hostname: "web".into(),
        log_directory: "/var/log/pods/demo_web_0f5c4c2e-1b7a-4a53-9d36-5a1f0f4f7e11".into(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["demo.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        port_mappings: vec![
            PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 18080,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 18053,
                host_ip: "127.0.0.1".into(),
            },
        ],
        labels: map(&[
            ("app", "web"),
            ("io.kubernetes.pod.name", "web"),
            ("io.kubernetes.pod.namespace", "demo"),
            (
                "io.kubernetes.pod.uid",
                "0f5c4c2e-1b7a-4a53-9d36-5a1f0f4f7e11",
            ),
        ]),
        annotations: map(&[
            ("kubernetes.io/config.source", "file"),
            ("example.com/note", "hello"),
        ]),
        linux: namespaces(
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Pod,
        ),
        windows: None,
    }
}

pub fn pod_host() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "hostpod".into(),
            namespace: "kube-system".into(),
            uid: "6a1d3d7e-8a0c-4b8e-a1a2-2b7f1c3d9e01".into(),
            attempt: 0,
        }),
        hostname: "vm".into(),
        log_directory: "/var/log/pods/kube-system_hostpod_6a1d3d7e-8a0c-4b8e-a1a2-2b7f1c3d9e01"
            .into(),
        labels: map(&[("tier", "node")]),
        annotations: map(&[("kubernetes.io/config.hash", "abc123")]),
        linux: namespaces(
            NamespaceMode::Node,
            NamespaceMode::Node,
            NamespaceMode::Node,
        ),
        ..Default::default()
    }
}

pub fn ctr() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 2,
        }),
        image: Some(ImageSpec {
            image: "registry.k8s.io/pause:3.10".into(),
            ..Default::default()
        }),
        log_path: "app/2.log".into(),
        labels: map(&[("io.kubernetes.container.name", "app")]),
        annotations: map(&[
            ("io.kubernetes.container.hash", "deadbeef"),
            ("io.kubernetes.container.restartCount", "2"),
        ]),
        envs: vec![KeyValue {
            key: "FOO".into(),
            value: "bar".into(),
        }],
        ..Default::default()
    }
}

pub fn reference_inspect(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/cri-dockerd-v0.3.21/docker-inspect")
        .join(name);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v[0].clone()
}
