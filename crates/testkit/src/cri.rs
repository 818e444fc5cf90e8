//! CRI request builders with what the kubelet would fill in.

use std::collections::HashMap;

use cri_dockerd_api::v1::*;

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
    use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
    use cri_dockerd_api::v1::*;
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

/// Container helpers shared by the tests.
pub mod containers {
    use std::time::{Duration, Instant};

    use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
    use cri_dockerd_api::v1::*;
    use tonic::transport::Channel;

    pub async fn create(
        client: &RuntimeServiceClient<Channel>,
        pod_id: &str,
        config: ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        client
            .clone()
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn start(client: &RuntimeServiceClient<Channel>, id: &str) {
        client
            .clone()
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .expect("StartContainer");
    }

    /// Create and start.
    pub async fn run(
        client: &RuntimeServiceClient<Channel>,
        pod_id: &str,
        config: ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> String {
        let id = create(client, pod_id, config, sandbox)
            .await
            .expect("CreateContainer");
        start(client, &id).await;
        id
    }

    pub async fn stop(client: &RuntimeServiceClient<Channel>, id: &str, timeout: i64) {
        client
            .clone()
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .expect("StopContainer");
    }

    pub async fn remove(client: &RuntimeServiceClient<Channel>, id: &str) {
        client
            .clone()
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .expect("RemoveContainer");
    }

    pub async fn status(client: &RuntimeServiceClient<Channel>, id: &str) -> ContainerStatus {
        client
            .clone()
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("status")
    }

    /// Polls ContainerStatus until the container has exited (30 s limit).
    pub async fn wait_exited(client: &RuntimeServiceClient<Channel>, id: &str) -> ContainerStatus {
        let started = Instant::now();
        loop {
            let s = status(client, id).await;
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "container {id} did not exit: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn exec(
        client: &RuntimeServiceClient<Channel>,
        id: &str,
        cmd: &[&str],
    ) -> ExecSyncResponse {
        client
            .clone()
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 30,
            })
            .await
            .expect("ExecSync")
            .into_inner()
    }

    pub async fn exec_stdout(
        client: &RuntimeServiceClient<Channel>,
        id: &str,
        cmd: &[&str],
    ) -> String {
        let out = exec(client, id, cmd).await;
        assert_eq!(
            out.exit_code,
            0,
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A CRI log file's contents as the kubelet reads them: (stream, line),
    /// with P parts joined to their F line.
    pub fn parse_cri_log(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        // As the kubelet reads them: P parts join the next line of the same
        // stream; the other stream's lines may come in between.
        let mut pending: std::collections::HashMap<String, String> = Default::default();
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
            else {
                panic!("malformed CRI log line {line:?}");
            };
            assert!(
                chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
                "bad timestamp in {line:?}"
            );
            assert!(
                stream == "stdout" || stream == "stderr",
                "bad stream in {line:?}"
            );
            let text = parts.next().unwrap_or("");
            let entry = pending.entry(stream.to_string()).or_default();
            entry.push_str(text);
            match tag {
                "F" => out.push((
                    stream.to_string(),
                    pending.remove(stream).unwrap_or_default(),
                )),
                "P" => {}
                other => panic!("bad tag {other:?} in {line:?}"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::containers::parse_cri_log;

    #[test]
    fn partial_lines_join_within_their_own_stream() {
        let text = "2026-01-01T00:00:01Z stdout P ab\n\
                    2026-01-01T00:00:01Z stderr F err\n\
                    2026-01-01T00:00:01Z stdout F cd\n";
        assert_eq!(
            parse_cri_log(text),
            vec![
                ("stderr".to_string(), "err".to_string()),
                ("stdout".to_string(), "abcd".to_string())
            ]
        );
    }
}
