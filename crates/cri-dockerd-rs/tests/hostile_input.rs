//! Hostile input for every RPC: random and truncated request bodies (the
//! server must answer each with a clear status and stay up) and well-formed
//! requests with hostile contents (each answered InvalidArgument, NotFound or
//! FailedPrecondition as fits; never Internal or Unknown). The shim drives a
//! Docker daemon of the test's own, so that whatever a request makes can be
//! audited, and that daemon cannot reach registries beyond loopback.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use cri_dockerd_api::v1::image_service_client::ImageServiceClient;
use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, host_network, pod_config, pods};
use cri_dockerd_testkit::env::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use cri_dockerd_testkit::private_docker::PrivateDocker;
use cri_dockerd_testkit::{Shim, test_env};
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

/// Bytes in, bytes out: what a broken or malicious client puts on the wire.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Every RPC of `proto/`, as `/runtime.v1.Service/Method`.
fn methods() -> Vec<String> {
    let proto = std::fs::read_to_string(
        cri_dockerd_testkit::repo_root().join("proto/runtime/v1/api.proto"),
    )
    .unwrap();
    let mut service = String::new();
    let mut methods = Vec::new();
    for line in proto.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("service ") {
            service = rest.split_whitespace().next().unwrap().to_string();
        } else if let Some(rest) = line.strip_prefix("rpc ") {
            let name = rest.split('(').next().unwrap().trim();
            methods.push(format!("/runtime.v1.{service}/{name}"));
        }
    }
    assert_eq!(
        methods.len(),
        41,
        "every RPC of the CRI (v0.36): {methods:?}"
    );
    methods
}

/// One call with a raw body; the status code it got (Ok for a reply).
async fn raw_call(channel: &Channel, method: &str, body: Bytes) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    grpc.ready().await.expect("the shim accepts calls");
    let path = method.parse().unwrap();
    let mut request = tonic::Request::new(futures::stream::once(async move { body }));
    request.set_timeout(Duration::from_secs(10));
    let call = grpc.streaming(request, path, RawCodec);
    match tokio::time::timeout(Duration::from_secs(15), call).await {
        Err(_) => panic!("{method}: no answer within 15 s"),
        Ok(Err(status)) => status.code(),
        Ok(Ok(response)) => {
            let mut stream = response.into_inner();
            // GetContainerEvents streams for ever; its first answer is enough.
            match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
                Ok(Err(status)) => status.code(),
                _ => Code::Ok,
            }
        }
    }
}

/// A private daemon with our images, and a shim on it (no CNI: pods that
/// hostile input makes use the node's network or fail).
async fn isolated_shim() -> (PrivateDocker, Shim) {
    test_env().await;
    let docker = PrivateDocker::start(&serde_json::json!({})).await;
    docker.load_from_host(&[PAUSE_IMAGE, BUSYBOX_IMAGE]);
    let shim = Shim::builder(BIN)
        .arg(format!("--docker-endpoint={}", docker.endpoint()))
        .start()
        .await;
    (docker, shim)
}

/// Stops and removes every pod the shim lists, then checks that the
/// private daemon holds no container and the shim no checkpoint.
async fn remove_everything_and_audit(shim: &Shim, docker: &PrivateDocker) {
    let mut rt = shim.runtime.clone();
    for pod in pods::list(&shim.runtime, None).await {
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox {}: {e}", pod.id));
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox {}: {e}", pod.id));
    }
    let left = docker
        .client()
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(left.is_empty(), "containers left: {left:?}");
    let checkpoints: Vec<_> = std::fs::read_dir(shim.root.join("sandbox"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(checkpoints.is_empty(), "checkpoints left: {checkpoints:?}");
    let images = docker
        .client()
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .unwrap();
    assert_eq!(images.len(), 2, "our two images, nothing removed or added");
}

#[tokio::test(flavor = "multi_thread")]
async fn random_and_truncated_bodies_get_a_status_for_every_rpc() {
    let (docker, mut shim) = isolated_shim().await;
    let channel = cri_dockerd_testkit::shim::channel_for(&shim.socket)
        .await
        .unwrap();
    let seed = std::env::var("CRID_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c21d);
    eprintln!("seed {seed} (CRID_FUZZ_SEED repeats a run)");
    let mut rng = fastrand::Rng::with_seed(seed);
    // Valid encodings to cut short: a request of every shape the shim acts on.
    let whole: Vec<Bytes> = vec![
        RunPodSandboxRequest {
            config: Some(host_network(pod_config("fuzz", "default", "fuzz-uid"))),
            runtime_handler: String::new(),
        }
        .encode_to_vec()
        .into(),
        CreateContainerRequest {
            pod_sandbox_id: "0123456789ab".into(),
            config: Some(container_config("fuzz", BUSYBOX_IMAGE, &["true"])),
            sandbox_config: Some(pod_config("fuzz", "default", "fuzz-uid")),
        }
        .encode_to_vec()
        .into(),
        ExecSyncRequest {
            container_id: "0123456789ab".into(),
            cmd: vec!["sh".into(), "-c".into(), "true".into()],
            timeout: 1,
        }
        .encode_to_vec()
        .into(),
        PullImageRequest {
            image: Some(ImageSpec {
                image: "127.0.0.1:9/none:latest".into(),
                ..Default::default()
            }),
            auth: Some(AuthConfig {
                username: "u".into(),
                password: "p".into(),
                ..Default::default()
            }),
            sandbox_config: None,
        }
        .encode_to_vec()
        .into(),
    ];
    let started = Instant::now();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut calls = 0;
    for method in methods() {
        for round in 0..64 {
            let body: Bytes = if round % 2 == 0 {
                let len = rng.usize(0..400);
                (0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>().into()
            } else {
                let valid = &whole[rng.usize(0..whole.len())];
                valid.slice(0..rng.usize(0..valid.len()))
            };
            let code = raw_call(&channel, &method, body).await;
            *codes.entry(format!("{code:?}")).or_default() += 1;
            calls += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "bounded in time"
        );
    }
    // Over the size limit (16 MiB): refused with a status.
    let huge = Bytes::from(vec![0x0a; 17 << 20]);
    let code = raw_call(&channel, "/runtime.v1.RuntimeService/RunPodSandbox", huge).await;
    // tonic says OutOfRange where grpc-go says ResourceExhausted.
    assert!(
        matches!(code, Code::OutOfRange | Code::ResourceExhausted),
        "{code:?}"
    );
    eprintln!(
        "{calls} random or cut-short bodies in {:?}: {codes:?}",
        started.elapsed()
    );
    // Undecodable bodies are the sender's mistake (InvalidArgument, where
    // tonic alone says Internal), and the rest is hostile content.
    assert!(
        !codes.contains_key("Internal") && !codes.contains_key("Unknown"),
        "{codes:?}"
    );
    assert!(shim.is_running(), "the shim survived");
    shim.runtime
        .clone()
        .version(VersionRequest::default())
        .await
        .expect("and still answers");
    remove_everything_and_audit(&shim, &docker).await;
}

/// Strings a client should never send, but might.
fn hostile_strings(rng: &mut fastrand::Rng) -> Vec<String> {
    let hex: String = (0..64).map(|_| rng.digit(16)).collect();
    vec![
        String::new(),
        hex.clone(),
        hex[..12].to_string(),
        "../../../etc/passwd".into(),
        "a/b".into(),
        "/".into(),
        ".".into(),
        "..".into(),
        "k8s_POD_x_y_z_0".into(),
        "a".repeat(5000),
        "é🙂日本\u{202e}".into(),
        "a\0b".into(),
        " ".into(),
        "*".into(),
        "-rf".into(),
        "%2e%2e%2f".into(),
    ]
}

/// What each call answered, and the answers that break the promise.
#[derive(Default)]
struct Report {
    codes: BTreeMap<String, usize>,
    broken: Vec<String>,
}

impl Report {
    fn record<T>(&mut self, call: &str, input: &str, result: Result<T, tonic::Status>) {
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        *self.codes.entry(format!("{code:?}")).or_default() += 1;
        if matches!(code, Code::Internal | Code::Unknown) {
            let message = result
                .err()
                .map(|s| s.message().to_string())
                .unwrap_or_default();
            let input: String = input.chars().take(40).collect();
            self.broken
                .push(format!("{call}({input:?}): {code:?} {message}"));
        }
    }
}

fn random_map(rng: &mut fastrand::Rng, strings: &[String]) -> HashMap<String, String> {
    (0..rng.usize(0..4))
        .map(|_| {
            (
                strings[rng.usize(0..strings.len())].clone(),
                strings[rng.usize(0..strings.len())].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_contents_get_clear_codes_for_every_rpc() {
    let (docker, shim) = isolated_shim().await;
    let mut rng = fastrand::Rng::with_seed(0xc21d_1234);
    let strings = hostile_strings(&mut rng);
    let mut rt: RuntimeServiceClient<Channel> = shim.runtime.clone();
    let mut images: ImageServiceClient<Channel> = shim.images.clone();
    let mut report = Report::default();
    // A real pod and container, for the calls that reach into one.
    let pod_cfg = host_network(pod_config("real", "default", &shim.pod_uid("real")));
    let pod = pods::run(&shim.runtime, pod_cfg.clone()).await.unwrap();
    let ctr = cri_dockerd_testkit::cri::containers::run(
        &shim.runtime,
        &pod,
        container_config("real", BUSYBOX_IMAGE, &["sleep", "3600"]),
        &pod_cfg,
    )
    .await;
    let numbers = [-1i64, i64::MIN, i64::MAX, 0, 1 << 40];
    let enums = [-5i32, 99, i32::MAX, i32::MIN];
    let started = Instant::now();
    for s in &strings {
        let n = numbers[rng.usize(0..numbers.len())];
        let e = enums[rng.usize(0..enums.len())];
        // Sandboxes.
        let mut cfg = host_network(pod_config(s, s, s));
        cfg.hostname = s.clone();
        cfg.log_directory = s.clone();
        cfg.labels = random_map(&mut rng, &strings);
        cfg.annotations = random_map(&mut rng, &strings);
        cfg.port_mappings = vec![PortMapping {
            protocol: e,
            container_port: n as i32,
            host_port: -(n as i32),
            host_ip: s.clone(),
        }];
        cfg.dns_config = Some(DnsConfig {
            servers: vec![s.clone()],
            searches: vec![s.clone()],
            options: vec![s.clone()],
        });
        if let Some(linux) = cfg.linux.as_mut() {
            linux.cgroup_parent = s.clone();
            linux.sysctls = random_map(&mut rng, &strings);
        }
        let run = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: String::new(),
            })
            .await;
        report.record("RunPodSandbox", s, run);
        let run = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(host_network(pod_config("h", "default", &shim.pod_uid("h")))),
                runtime_handler: s.clone(),
            })
            .await;
        report.record("RunPodSandbox(runtime_handler)", s, run);
        let id = s.clone();
        report.record(
            "StopPodSandbox",
            s,
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await,
        );
        report.record(
            "RemovePodSandbox",
            s,
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await,
        );
        report.record(
            "PodSandboxStatus",
            s,
            rt.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await,
        );
        report.record(
            "ListPodSandbox",
            s,
            rt.list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    id: id.clone(),
                    state: Some(PodSandboxStateValue { state: e }),
                    label_selector: random_map(&mut rng, &strings),
                }),
            })
            .await,
        );
        report.record(
            "PodSandboxStats",
            s,
            rt.pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: id.clone(),
            })
            .await,
        );
        report.record(
            "ListPodSandboxStats",
            s,
            rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest {
                filter: Some(PodSandboxStatsFilter {
                    id: id.clone(),
                    label_selector: random_map(&mut rng, &strings),
                }),
            })
            .await,
        );
        report.record(
            "UpdatePodSandboxResources",
            s,
            rt.update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: id.clone(),
                overhead: Some(LinuxContainerResources {
                    cpu_shares: n,
                    memory_limit_in_bytes: n,
                    cpuset_cpus: s.clone(),
                    ..Default::default()
                }),
                resources: Some(LinuxContainerResources {
                    cpu_quota: n,
                    cpu_period: n,
                    cpuset_mems: s.clone(),
                    ..Default::default()
                }),
            })
            .await,
        );
        report.record(
            "PortForward",
            s,
            rt.port_forward(PortForwardRequest {
                pod_sandbox_id: id.clone(),
                port: vec![n as i32, -1, 70000],
            })
            .await,
        );
        // Containers: hostile ids, and hostile configs in a real pod.
        for (call, result) in [
            (
                "StartContainer",
                rt.start_container(StartContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .map(drop),
            ),
            (
                "StopContainer",
                rt.stop_container(StopContainerRequest {
                    container_id: id.clone(),
                    timeout: n,
                })
                .await
                .map(drop),
            ),
            (
                "ContainerStatus",
                rt.container_status(ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: true,
                })
                .await
                .map(drop),
            ),
            (
                "ContainerStats",
                rt.container_stats(ContainerStatsRequest {
                    container_id: id.clone(),
                })
                .await
                .map(drop),
            ),
            (
                "ReopenContainerLog",
                rt.reopen_container_log(ReopenContainerLogRequest {
                    container_id: id.clone(),
                })
                .await
                .map(drop),
            ),
            (
                "CheckpointContainer",
                rt.checkpoint_container(CheckpointContainerRequest {
                    container_id: id.clone(),
                    location: s.clone(),
                    timeout: n,
                })
                .await
                .map(drop),
            ),
            (
                "Exec",
                rt.exec(ExecRequest {
                    container_id: id.clone(),
                    cmd: vec![s.clone()],
                    tty: true,
                    stdout: true,
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            (
                "Attach",
                rt.attach(AttachRequest {
                    container_id: id.clone(),
                    stdin: true,
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            (
                "ListContainers",
                rt.list_containers(ListContainersRequest {
                    filter: Some(ContainerFilter {
                        id: id.clone(),
                        state: Some(ContainerStateValue { state: e }),
                        pod_sandbox_id: id.clone(),
                        label_selector: random_map(&mut rng, &strings),
                    }),
                })
                .await
                .map(drop),
            ),
            (
                "ListContainerStats",
                rt.list_container_stats(ListContainerStatsRequest {
                    filter: Some(ContainerStatsFilter {
                        id: id.clone(),
                        pod_sandbox_id: id.clone(),
                        label_selector: random_map(&mut rng, &strings),
                    }),
                })
                .await
                .map(drop),
            ),
            (
                "UpdateContainerResources",
                rt.update_container_resources(UpdateContainerResourcesRequest {
                    container_id: id.clone(),
                    linux: Some(LinuxContainerResources {
                        cpu_shares: n,
                        memory_limit_in_bytes: n,
                        oom_score_adj: n,
                        cpuset_cpus: s.clone(),
                        unified: random_map(&mut rng, &strings),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            (
                "UpdateContainerResources(real)",
                rt.update_container_resources(UpdateContainerResourcesRequest {
                    container_id: ctr.clone(),
                    linux: Some(LinuxContainerResources {
                        cpu_shares: n,
                        cpu_quota: n,
                        cpu_period: n,
                        memory_limit_in_bytes: n,
                        oom_score_adj: n,
                        cpuset_cpus: s.clone(),
                        cpuset_mems: s.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            (
                "ExecSync",
                rt.exec_sync(ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec![s.clone()],
                    timeout: n,
                })
                .await
                .map(drop),
            ),
            (
                "ExecSync(real)",
                rt.exec_sync(ExecSyncRequest {
                    container_id: ctr.clone(),
                    cmd: vec![s.clone()],
                    timeout: 2,
                })
                .await
                .map(drop),
            ),
            (
                "UpdateRuntimeConfig",
                rt.update_runtime_config(UpdateRuntimeConfigRequest {
                    runtime_config: Some(RuntimeConfig {
                        network_config: Some(NetworkConfig {
                            pod_cidr: s.clone(),
                        }),
                    }),
                })
                .await
                .map(drop),
            ),
        ] {
            report.record(call, s, result);
        }
        let mut ccfg = container_config(s, BUSYBOX_IMAGE, &[s.as_str()]);
        ccfg.args = vec![s.clone()];
        ccfg.working_dir = s.clone();
        ccfg.log_path = s.clone();
        ccfg.envs = vec![KeyValue {
            key: s.clone(),
            value: s.clone().into_bytes(),
        }];
        ccfg.labels = random_map(&mut rng, &strings);
        ccfg.annotations = random_map(&mut rng, &strings);
        ccfg.stop_signal = e;
        ccfg.mounts = vec![
            Mount {
                container_path: s.clone(),
                host_path: s.clone(),
                propagation: e,
                ..Default::default()
            },
            Mount {
                container_path: format!("/img{}", s.len()),
                image: Some(ImageSpec {
                    image: s.clone(),
                    ..Default::default()
                }),
                image_sub_path: s.clone(),
                ..Default::default()
            },
        ];
        ccfg.devices = vec![Device {
            container_path: s.clone(),
            host_path: s.clone(),
            permissions: s.clone(),
        }];
        let created = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ccfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await;
        if let Ok(created) = &created {
            let id = created.get_ref().container_id.clone();
            let started = rt
                .start_container(StartContainerRequest {
                    container_id: id.clone(),
                })
                .await;
            report.record("StartContainer(hostile config)", s, started);
            report.record(
                "RemoveContainer(hostile config)",
                s,
                rt.remove_container(RemoveContainerRequest { container_id: id })
                    .await,
            );
        }
        report.record("CreateContainer", s, created);
        let mut ccfg = container_config("c", s, &["true"]);
        ccfg.image = Some(ImageSpec {
            image: s.clone(),
            annotations: random_map(&mut rng, &strings),
            user_specified_image: s.clone(),
            runtime_handler: s.clone(),
            image_ref: s.clone(),
        });
        report.record(
            "CreateContainer(image)",
            s,
            rt.create_container(CreateContainerRequest {
                pod_sandbox_id: id.clone(),
                config: Some(ccfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await,
        );
        report.record(
            "RemoveContainer",
            s,
            rt.remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await,
        );
        // Images.
        let spec = Some(ImageSpec {
            image: s.clone(),
            ..Default::default()
        });
        report.record(
            "ImageStatus",
            s,
            images
                .image_status(ImageStatusRequest {
                    image: spec.clone(),
                    verbose: true,
                })
                .await,
        );
        report.record(
            "ListImages",
            s,
            images
                .list_images(ListImagesRequest {
                    filter: Some(ImageFilter {
                        image: spec.clone(),
                    }),
                })
                .await,
        );
        report.record(
            "PullImage",
            s,
            images
                .pull_image(PullImageRequest {
                    image: spec.clone(),
                    auth: Some(AuthConfig {
                        username: s.clone(),
                        password: s.clone(),
                        auth: s.clone(),
                        server_address: s.clone(),
                        identity_token: s.clone(),
                        registry_token: s.clone(),
                    }),
                    sandbox_config: None,
                })
                .await,
        );
        report.record(
            "RemoveImage",
            s,
            images
                .remove_image(RemoveImageRequest { image: spec })
                .await,
        );
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "bounded in time"
        );
    }
    // Pulls from a registry no one serves, on loopback.
    report.record(
        "PullImage(unreachable)",
        "127.0.0.1:9/none",
        images
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: "127.0.0.1:9/none:latest".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
    );
    for (call, result) in [
        (
            "Status",
            rt.status(StatusRequest { verbose: true }).await.map(drop),
        ),
        (
            "ListMetricDescriptors",
            rt.list_metric_descriptors(ListMetricDescriptorsRequest {})
                .await
                .map(drop),
        ),
        (
            "ListPodSandboxMetrics",
            rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
                .await
                .map(drop),
        ),
        (
            "RuntimeConfig",
            rt.runtime_config(RuntimeConfigRequest {}).await.map(drop),
        ),
        (
            "ImageFsInfo",
            images.image_fs_info(ImageFsInfoRequest {}).await.map(drop),
        ),
        (
            "Version",
            rt.version(VersionRequest {
                version: "é\0".into(),
            })
            .await
            .map(drop),
        ),
    ] {
        report.record(call, "", result);
    }
    eprintln!(
        "{} calls in {:?}: {:?}",
        report.codes.values().sum::<usize>(),
        started.elapsed(),
        report.codes
    );
    assert!(
        report.broken.is_empty(),
        "Internal or Unknown for a caller's input:\n  {}",
        report.broken.join("\n  ")
    );
    remove_everything_and_audit(&shim, &docker).await;
}
