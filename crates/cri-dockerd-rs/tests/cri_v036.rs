//! What the CRI of Kubernetes 1.36 (cri-api v0.36) added, called with a
//! client built from proto/: the six Stream* lists (gate CRIListStreaming)
//! against their unary twins, in bounded messages, with a reader that
//! stops; env values that are not UTF-8.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, containers};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::{Shim, test_env};
use futures::StreamExt;
use prost::Message;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

/// The shim's bound on one message of a list stream.
const MESSAGE_BYTES: usize = 1 << 20;

/// An annotation this big makes a container's CRI record about half a
/// message.
fn big_annotation() -> HashMap<String, String> {
    HashMap::from([("test.crid/filler".to_string(), "x".repeat(500 << 10))])
}

/// Every message of a stream, checked against the bound.
async fn messages<M: Message>(
    stream: Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>,
) -> Vec<M> {
    let mut stream = stream.expect("the stream starts").into_inner();
    let mut out = Vec::new();
    while let Some(message) = stream.next().await {
        let message = message.expect("a message of the stream");
        assert!(
            message.encoded_len() <= MESSAGE_BYTES + (64 << 10) || out.is_empty(),
            "a message of {} bytes",
            message.encoded_len()
        );
        out.push(message);
    }
    out
}

fn ids<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let all: Vec<String> = items.into_iter().map(str::to_string).collect();
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an item came twice: {all:?}");
    let mut all = all;
    all.sort();
    all
}

fn selector(key: &str, value: &str) -> HashMap<String, String> {
    HashMap::from([(key.to_string(), value.to_string())])
}

/// Each Stream* call gives what its unary twin gives, with the same
/// filters (id, pod, state, labels), each item once; lists bigger than a
/// message come in several messages of at most 1 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn stream_lists_match_their_unary_twins_in_bounded_messages() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let rt: RuntimeServiceClient<Channel> = shim.runtime.clone();
    let (pod_a, config_a) = shim.run_pod("stream-a").await;
    let (pod_b, config_b) = shim.run_pod("stream-b").await;
    let run = shim.pod_uid("run");
    let mut running = Vec::new();
    for (pod, config, name) in [
        (&pod_a, &config_a, "a1"),
        (&pod_a, &config_a, "a2"),
        (&pod_b, &config_b, "b1"),
    ] {
        let mut c = container_config(name, BUSYBOX_IMAGE, &["sleep", "3600"]);
        c.labels.insert("test.crid/run".into(), run.clone());
        c.annotations = big_annotation();
        running.push(containers::run(&rt, pod, c, config).await);
    }
    let mut created = container_config("created", BUSYBOX_IMAGE, &["sleep", "3600"]);
    created.labels.insert("test.crid/run".into(), run.clone());
    created.annotations = big_annotation();
    let created = containers::create(&rt, &pod_b, created, &config_b)
        .await
        .unwrap();
    let ours = selector("test.crid/run", &run);

    // Containers: by label, by pod, by state, by id.
    let filters = [
        ContainerFilter {
            label_selector: ours.clone(),
            ..Default::default()
        },
        ContainerFilter {
            pod_sandbox_id: pod_b.clone(),
            label_selector: ours.clone(),
            ..Default::default()
        },
        ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerCreated as i32,
            }),
            label_selector: ours.clone(),
            ..Default::default()
        },
        ContainerFilter {
            id: running[1].clone(),
            ..Default::default()
        },
    ];
    let mut counts = Vec::new();
    for filter in filters {
        let unary = rt
            .clone()
            .list_containers(ListContainersRequest {
                filter: Some(filter.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        let streamed = messages(
            rt.clone()
                .stream_containers(StreamContainersRequest {
                    filter: Some(filter.clone()),
                })
                .await,
        )
        .await;
        let streamed_ids = ids(streamed
            .iter()
            .flat_map(|m| m.containers.iter().map(|c| c.id.as_str())));
        assert_eq!(
            streamed_ids,
            ids(unary.iter().map(|c| c.id.as_str())),
            "{filter:?}"
        );
        counts.push((streamed_ids.len(), streamed.len()));
        let full: Vec<Container> = streamed.into_iter().flat_map(|m| m.containers).collect();
        for c in &full {
            let twin = unary.iter().find(|u| u.id == c.id).unwrap();
            assert_eq!(c, twin, "the streamed item is the listed one");
        }
    }
    assert_eq!(counts[0].0, 4, "four containers of this test");
    assert!(
        counts[0].1 >= 2,
        "4 items of ~500 KiB need several messages: {counts:?}"
    );
    assert_eq!(counts[1].0, 2, "b1 and created");
    assert_eq!(counts[2].0, 1, "created only");
    assert_eq!(counts[3], (1, 1));

    // Pods.
    for filter in [
        PodSandboxFilter {
            id: pod_a.clone(),
            ..Default::default()
        },
        PodSandboxFilter {
            label_selector: selector("io.kubernetes.pod.uid", &shim.pod_uid("stream-b")),
            ..Default::default()
        },
    ] {
        let unary = rt
            .clone()
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(filter.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        let streamed: Vec<PodSandbox> = messages(
            rt.clone()
                .stream_pod_sandboxes(StreamPodSandboxesRequest {
                    filter: Some(filter.clone()),
                })
                .await,
        )
        .await
        .into_iter()
        .flat_map(|m| m.pod_sandboxes)
        .collect();
        assert_eq!(streamed.len(), 1, "{filter:?}");
        assert_eq!(streamed, unary);
    }

    // Container stats: running containers only, as the unary call.
    let stats_filter = ContainerStatsFilter {
        label_selector: ours.clone(),
        ..Default::default()
    };
    let unary = rt
        .clone()
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(stats_filter.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let streamed = messages(
        rt.clone()
            .stream_container_stats(StreamContainerStatsRequest {
                filter: Some(stats_filter),
            })
            .await,
    )
    .await;
    assert!(streamed.len() >= 2, "3 items of ~500 KiB: several messages");
    let stat_ids = |stats: &[ContainerStats]| {
        ids(stats
            .iter()
            .map(|s| s.attributes.as_ref().unwrap().id.as_str()))
    };
    let streamed: Vec<ContainerStats> = streamed
        .into_iter()
        .flat_map(|m| m.container_stats)
        .collect();
    assert_eq!(stat_ids(&streamed), stat_ids(&unary));
    let mut want = running.clone();
    want.sort();
    assert_eq!(stat_ids(&streamed), want, "not the created one");
    for s in &streamed {
        assert!(s.cpu.is_some() && s.memory.is_some(), "{:?}", s.attributes);
    }
    let by_pod = messages(
        rt.clone()
            .stream_container_stats(StreamContainerStatsRequest {
                filter: Some(ContainerStatsFilter {
                    pod_sandbox_id: pod_a.clone(),
                    ..Default::default()
                }),
            })
            .await,
    )
    .await;
    assert_eq!(
        by_pod
            .iter()
            .map(|m| m.container_stats.len())
            .sum::<usize>(),
        2
    );

    // Pod stats and metrics.
    let pod_filter = PodSandboxStatsFilter {
        id: pod_b.clone(),
        ..Default::default()
    };
    let streamed: Vec<PodSandboxStats> = messages(
        rt.clone()
            .stream_pod_sandbox_stats(StreamPodSandboxStatsRequest {
                filter: Some(pod_filter.clone()),
            })
            .await,
    )
    .await
    .into_iter()
    .flat_map(|m| m.pod_sandbox_stats)
    .collect();
    let unary = rt
        .clone()
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(pod_filter),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0].attributes, unary[0].attributes);
    let containers_of = |s: &PodSandboxStats| {
        ids(s
            .linux
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.attributes.as_ref().unwrap().id.as_str()))
    };
    assert_eq!(containers_of(&streamed[0]), containers_of(&unary[0]));

    let streamed_metrics: Vec<PodSandboxMetrics> = messages(
        rt.clone()
            .stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest {})
            .await,
    )
    .await
    .into_iter()
    .flat_map(|m| m.pod_sandbox_metrics)
    .collect();
    let unary_metrics = rt
        .clone()
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    for pod in [&pod_a, &pod_b] {
        let s = streamed_metrics
            .iter()
            .find(|m| &m.pod_sandbox_id == pod)
            .expect("the pod's metrics streamed");
        let u = unary_metrics
            .iter()
            .find(|m| &m.pod_sandbox_id == pod)
            .unwrap();
        let names = |m: &PodSandboxMetrics| {
            m.container_metrics
                .iter()
                .flat_map(|c| c.metrics.iter().map(|x| x.name.clone()))
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(names(s), names(u));
        assert!(!names(s).is_empty());
    }

    // Images: the same list.
    let mut image = shim.images.clone();
    let unary: Vec<String> = image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect();
    let streamed = messages(image.stream_images(StreamImagesRequest::default()).await).await;
    let streamed: Vec<String> = streamed
        .into_iter()
        .flat_map(|m| m.images)
        .map(|i| i.id)
        .collect();
    assert_eq!(
        ids(streamed.iter().map(String::as_str)),
        ids(unary.iter().map(String::as_str))
    );
    let filtered = messages(
        image
            .stream_images(StreamImagesRequest {
                filter: Some(ImageFilter {
                    image: Some(ImageSpec {
                        image: BUSYBOX_IMAGE.into(),
                        ..Default::default()
                    }),
                }),
            })
            .await,
    )
    .await;
    assert_eq!(
        filtered.iter().map(|m| m.images.len()).sum::<usize>(),
        1,
        "the filter by image"
    );
    let _ = created;
}

/// A client that stops reading a stream holds up nobody else, and after
/// 30 s is given up: what was sent before, then DeadlineExceeded, never a
/// silently shortened list.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_stops_is_given_up_and_stalls_no_one() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let rt = shim.runtime.clone();
    let (pod, config) = shim.run_pod("slowreader").await;
    let run = shim.pod_uid("slow");
    // 24 items of ~500 KiB: more than the transport buffers between a
    // stopped reader and the shim.
    let mut names = Vec::new();
    for i in 0..24 {
        let mut c = container_config(&format!("c{i}"), BUSYBOX_IMAGE, &["sleep", "3600"]);
        c.labels.insert("test.crid/run".into(), run.clone());
        c.annotations = big_annotation();
        names.push(containers::create(&rt, &pod, c, &config).await.unwrap());
    }
    let filter = ContainerFilter {
        label_selector: selector("test.crid/run", &run),
        ..Default::default()
    };
    let mut slow = rt
        .clone()
        .stream_containers(StreamContainersRequest {
            filter: Some(filter.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let first = slow.next().await.unwrap().unwrap();
    assert!(!first.containers.is_empty());

    // The slow reader sits; the others are served as usual.
    for _ in 0..5 {
        let started = Instant::now();
        let all = messages(
            rt.clone()
                .stream_containers(StreamContainersRequest {
                    filter: Some(filter.clone()),
                })
                .await,
        )
        .await;
        assert_eq!(all.iter().map(|m| m.containers.len()).sum::<usize>(), 24);
        rt.clone()
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "served while another stream stalls: {:?}",
            started.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_secs(35)).await;
    let mut received = first.containers.len();
    let mut ending = None;
    while let Some(item) = slow.next().await {
        match item {
            Ok(m) => received += m.containers.len(),
            Err(status) => {
                ending = Some(status);
                break;
            }
        }
    }
    let ending = ending.expect("the stream ends with a status, not a short list");
    assert_eq!(ending.code(), tonic::Code::DeadlineExceeded, "{ending}");
    assert!(received < 24, "the list was given up part way: {received}");
    assert!(
        shim.log_text().contains("stopped reading"),
        "the shim says why"
    );
}

/// The kubelet of 1.36 sends env values as bytes: one that is not UTF-8
/// (from a binary Secret) no longer fails CreateContainer. Docker carries
/// env as text, so its invalid bytes become U+FFFD; UTF-8 values pass as
/// they are.
#[tokio::test(flavor = "multi_thread")]
async fn env_values_that_are_not_utf8_are_passed_on() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("envbytes").await;
    let mut c = container_config("env", BUSYBOX_IMAGE, &["sleep", "3600"]);
    c.envs = vec![
        KeyValue {
            key: "BINARY".into(),
            value: vec![b'a', 0xff, 0xfe, b'z'],
        },
        KeyValue {
            key: "TEXT".into(),
            value: "grüße=1".as_bytes().to_vec(),
        },
    ];
    let id = containers::run(&shim.runtime, &pod, c, &config).await;
    let seen =
        containers::exec_stdout(&shim.runtime, &id, &["sh", "-c", "echo \"$BINARY|$TEXT\""]).await;
    assert_eq!(seen.trim_end(), "a\u{FFFD}\u{FFFD}z|grüße=1");
    assert!(
        shim.log_text().contains("not UTF-8") && shim.log_text().contains("BINARY"),
        "the shim says which value it changed"
    );
}
