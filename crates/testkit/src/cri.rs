//! CRI request builders with what the kubelet would fill in.

use std::collections::HashMap;

use k8s_cri::v1::*;

pub fn pod_config(name: &str, namespace: &str, uid: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: format!("/tmp/crid-test-logs/{namespace}_{name}_{uid}"),
        labels: HashMap::from([
            ("io.kubernetes.pod.name".into(), name.into()),
            ("io.kubernetes.pod.namespace".into(), namespace.into()),
            ("io.kubernetes.pod.uid".into(), uid.into()),
        ]),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn host_network(mut config: PodSandboxConfig) -> PodSandboxConfig {
    let ns = config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default);
    ns.network = NamespaceMode::Node as i32;
    config
}

pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("io.kubernetes.container.name".into(), name.into())]),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}
