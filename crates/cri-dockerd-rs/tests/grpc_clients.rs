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
