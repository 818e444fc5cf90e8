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

/// Sandbox helpers shared by the tests.
pub mod pods {
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    use k8s_cri::v1::*;
    use tonic::transport::Channel;

    pub async fn run(
        client: &RuntimeServiceClient<Channel>,
        config: PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        client
            .clone()
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
    }

    pub async fn status(client: &RuntimeServiceClient<Channel>, id: &str) -> PodSandboxStatus {
        client
            .clone()
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .expect("PodSandboxStatus")
            .into_inner()
            .status
            .expect("status")
    }

    pub async fn stop(client: &RuntimeServiceClient<Channel>, id: &str) {
        client
            .clone()
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .expect("StopPodSandbox");
    }

    pub async fn remove(client: &RuntimeServiceClient<Channel>, id: &str) {
        client
            .clone()
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .expect("RemovePodSandbox");
    }

    pub async fn list(
        client: &RuntimeServiceClient<Channel>,
        filter: Option<PodSandboxFilter>,
    ) -> Vec<PodSandbox> {
        client
            .clone()
            .list_pod_sandbox(ListPodSandboxRequest { filter })
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items
    }
}

/// The PID of a container's init process, from Docker.
pub async fn docker_pid(docker: &bollard::Docker, id: &str) -> i64 {
    docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .expect("docker inspect")
        .state
        .and_then(|s| s.pid)
        .expect("pid")
}
