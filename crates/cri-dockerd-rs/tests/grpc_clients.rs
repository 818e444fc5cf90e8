//! gRPC clients other than Go's and tonic's: Python's grpcio (grpc C-core,
//! as C++ and Ruby clients) on its defaults, which puts the socket path in
//! `:authority`, and the raw path that grpc-java and kubelets/crictl before
//! 1.26 send there (tests/grpc/cri_call.py).

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::{Shim, test_env};
use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

struct Reply {
    code: String,
    details: String,
    response: Vec<u8>,
}

/// Calls `method` through grpcio; `authority` sets grpc.default_authority.
async fn grpcio_call(
    target: &str,
    method: &str,
    request: &impl Message,
    authority: Option<&str>,
) -> Reply {
    let script = cri_dockerd_testkit::repo_root().join("tests/grpc/cri_call.py");
    let request_hex: String = request
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut command = tokio::process::Command::new("python3");
    command.arg(&script).args([target, method, &request_hex]);
    if let Some(authority) = authority {
        command.arg(authority);
    }
    let output = command
        .output()
        .await
        .expect("python3 (scripts/test-env.sh installs it with grpcio)");
    assert!(
        output.status.success(),
        "cri_call.py failed (scripts/test-env.sh installs grpcio): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let hex = json["response"].as_str().unwrap();
    let response = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Reply {
        code: json["code"].as_str().unwrap().to_string(),
        details: json["details"].as_str().unwrap().to_string(),
        response,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_on_its_defaults_lists_pods() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, _) = shim.run_pod("py").await;
    let socket = shim.socket.display().to_string();

    // grpc C-core's two spellings of a unix target (the authority it sends
    // is the percent-encoded path), then the raw path as grpc-java sends it.
    for (target, authority) in [
        (format!("unix://{socket}"), None),
        (format!("unix:{socket}"), None),
        (format!("unix://{socket}"), Some(socket.as_str())),
    ] {
        let reply = grpcio_call(
            &target,
            "/runtime.v1.RuntimeService/Version",
            &VersionRequest::default(),
            authority,
        )
        .await;
        assert_eq!(
            reply.code, "OK",
            "{target} authority {authority:?}: {}",
            reply.details
        );
        let version = VersionResponse::decode(reply.response.as_slice()).unwrap();
        assert_eq!(version.runtime_name, "docker");
        assert_eq!(version.runtime_api_version, "v1");

        let reply = grpcio_call(
            &target,
            "/runtime.v1.RuntimeService/ListPodSandbox",
            &ListPodSandboxRequest::default(),
            authority,
        )
        .await;
        assert_eq!(reply.code, "OK", "{}", reply.details);
        let listed = ListPodSandboxResponse::decode(reply.response.as_slice()).unwrap();
        assert!(
            listed.items.iter().any(|p| p.id == pod),
            "pod {pod} in {:?}",
            listed.items
        );
    }

    // Errors reach it as statuses, and the image service is served too.
    let reply = grpcio_call(
        &format!("unix://{socket}"),
        "/runtime.v1.RuntimeService/ContainerStatus",
        &ContainerStatusRequest {
            container_id: "0123456789abcdef".into(),
            verbose: false,
        },
        None,
    )
    .await;
    assert_eq!(reply.code, "NOT_FOUND", "{}", reply.details);
    let reply = grpcio_call(
        &format!("unix://{socket}"),
        "/runtime.v1.ImageService/ImageFsInfo",
        &ImageFsInfoRequest::default(),
        None,
    )
    .await;
    assert_eq!(reply.code, "OK", "{}", reply.details);
    assert!(
        !ImageFsInfoResponse::decode(reply.response.as_slice())
            .unwrap()
            .image_filesystems
            .is_empty()
    );
}

/// Runs `tests/grpc/<script>` (Python grpcio, stubs compiled from proto/)
/// against the shim; what it saw.
async fn python_scenario(shim: &Shim, script: &str) -> serde_json::Value {
    let work = tempfile::tempdir().unwrap();
    let path = cri_dockerd_testkit::repo_root()
        .join("tests/grpc")
        .join(script);
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(240),
        tokio::process::Command::new("python3")
            .arg(&path)
            .arg(format!("unix://{}", shim.socket.display()))
            .arg(cri_dockerd_testkit::env::BUSYBOX_IMAGE)
            .arg(work.path())
            .output(),
    )
    .await
    .expect("the scenario finishes within 4 minutes")
    .expect("python3 (scripts/test-env.sh installs grpcio-tools)");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Issue 13's client: Python grpcio with stubs compiled from proto/ (as a
/// cri-api v0.34 client has them) resizes a pod, stops a container through
/// its SIGUSR1 stop signal, times ImageFsInfo over a 60,000-file writable
/// layer and lists the pod's metrics (tests/grpc/cri_v034_scenario.py).
#[tokio::test(flavor = "multi_thread")]
async fn python_stubs_from_proto_use_the_cri_of_kubernetes_1_34() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let seen = python_scenario(&shim, "cri_v034_scenario.py").await;

    assert_eq!(seen["runtime_api_version"], "v1");
    assert_eq!(seen["update_pod_sandbox_resources"], "OK");
    assert_eq!(seen["stop_signal"], "SIGUSR1");
    assert_eq!(seen["exit_code"], 7, "the USR1 trap's exit code");
    assert_eq!(seen["trap_ran"], true);
    assert!(
        seen["stop_seconds"].as_f64().unwrap() < 10.0,
        "stopped by the signal, not killed after the 30 s grace: {seen}"
    );

    let timings: Vec<f64> = seen["image_fs_info_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    // The figure is the README's (0.5-0.7 ms); this bound only catches a
    // walk of the disk inside the call, even with the whole suite running.
    assert!(
        timings.iter().all(|ms| *ms < 1000.0),
        "ImageFsInfo answers at once with 60,000 files in a layer: {timings:?}"
    );
    assert_eq!(seen["image_filesystems"], 1);
    assert_eq!(seen["container_filesystems"], 1);
    assert!(
        seen["container_fs_inodes"].as_u64().unwrap() >= 60_000,
        "{seen}"
    );

    let descriptors = seen["descriptors"].as_object().unwrap();
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_usage_bytes",
        "container_memory_rss",
        "container_spec_memory_limit_bytes",
        "container_fs_usage_bytes",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
        "container_processes",
        "container_oom_events_total",
    ] {
        assert!(descriptors.contains_key(name), "descriptor {name}");
    }
    assert_eq!(
        descriptors["container_network_receive_bytes_total"],
        serde_json::json!([
            "container",
            "id",
            "image",
            "name",
            "namespace",
            "pod",
            "interface"
        ])
    );
    let pod_names: Vec<&str> = seen["pod_metric_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        pod_names.contains(&"container_network_receive_bytes_total")
            && pod_names.contains(&"container_network_transmit_bytes_total"),
        "pod-level network series: {pod_names:?}"
    );
    let many = seen["many_id"].as_str().unwrap();
    let many_metrics = &seen["container_metrics"][many];
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_usage_bytes",
        "container_memory_rss",
        "container_spec_memory_limit_bytes",
        "container_fs_usage_bytes",
        "container_processes",
        "container_oom_events_total",
    ] {
        let metric = &many_metrics[name];
        assert!(
            metric.is_object(),
            "{name} for the container: {many_metrics}"
        );
        let labels = metric["labels"].as_array().unwrap();
        assert_eq!(labels[0], "many", "container label of {name}");
        assert_eq!(
            (&labels[4], &labels[5]),
            (&serde_json::json!("default"), &serde_json::json!("py-v034"))
        );
        assert_eq!(
            labels.len(),
            descriptors[name].as_array().unwrap().len(),
            "{name}: one value per key"
        );
    }
    assert_eq!(
        many_metrics["container_processes"]["value"], 2,
        "sh and sleep"
    );
}

/// The CRI of 1.36 from grpcio with stubs compiled from proto/
/// (tests/grpc/cri_v036_scenario.py): an env value that is not UTF-8 sent
/// as bytes reaches the container with U+FFFD for each invalid byte, the
/// Stream* calls give what their unary twins give, and Status's runtime
/// features are answered with their reasons.
#[tokio::test(flavor = "multi_thread")]
async fn python_stubs_from_proto_use_the_cri_of_kubernetes_1_36() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let seen = python_scenario(&shim, "cri_v036_scenario.py").await;

    assert_eq!(seen["env"], "a\u{FFFD}\u{FFFD}z|grüße", "{seen}");
    assert_eq!(seen["stream_containers"], seen["list_containers"]);
    assert_eq!(
        seen["stream_containers"],
        serde_json::json!([seen["container_id"]])
    );
    assert_eq!(seen["stream_pods"], serde_json::json!([seen["pod_id"]]));
    assert_eq!(seen["stream_images"], seen["list_images"]);
    assert_eq!(seen["stream_images"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen["features_set"], true);
    assert_eq!(seen["supplemental_groups_policy"], false);
    assert_eq!(seen["user_namespaces_host_network"], false);
    assert!(
        seen["handler_user_namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u == false)
    );
    let answers = seen["feature_answers"].as_array().unwrap();
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| !a["why"].as_str().unwrap().is_empty())
    );
}
