//! GetContainerEvents as the kubelet's Evented PLEG consumes it: the four
//! events of a container and of its sandbox, in order, each with the pod's
//! sandbox status and metadata; a `docker kill` behind the shim's back seen
//! within a second; several subscribers at once; and PodSandboxStatus with
//! a timestamp and its containers' statuses.

use std::time::{Duration, Instant};

use bollard::query_parameters::KillContainerOptions;
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::{Shim, test_env};
use futures::StreamExt;
use tonic::Streaming;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

async fn subscribe(shim: &Shim) -> Streaming<ContainerEventResponse> {
    shim.runtime
        .clone()
        .get_container_events(GetEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// Reads events until `done` says the collected ones (of `ids` only: other
/// tests share the daemon) are enough, or `limit` passes.
async fn collect(
    events: &mut Streaming<ContainerEventResponse>,
    ids: &[&str],
    limit: Duration,
    done: impl Fn(&[ContainerEventResponse]) -> bool,
) -> Vec<ContainerEventResponse> {
    let started = Instant::now();
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Some(Ok(event))) => {
                if ids.contains(&event.container_id.as_str()) {
                    seen.push(event);
                }
            }
            _ => break,
        }
    }
    seen
}

fn kinds(events: &[ContainerEventResponse], id: &str) -> Vec<ContainerEventType> {
    events
        .iter()
        .filter(|e| e.container_id == id)
        .map(|e| ContainerEventType::try_from(e.container_event_type).unwrap())
        .collect()
}

use ContainerEventType::*;
const LIFE: [ContainerEventType; 4] = [
    ContainerCreatedEvent,
    ContainerStartedEvent,
    ContainerStoppedEvent,
    ContainerDeletedEvent,
];

#[tokio::test(flavor = "multi_thread")]
async fn a_pods_life_in_events_for_two_subscribers() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let mut first = subscribe(&shim).await;
    let mut second = subscribe(&shim).await;
    let mut rt = shim.runtime.clone();

    let (pod, config) = shim.run_pod("evented").await;
    let ctr = shim.run_sleeper(&pod, &config, "app").await;
    let status = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.timestamp > 0, "EventedPLEG needs the timestamp");
    assert_eq!(status.containers_statuses.len(), 1);
    assert_eq!(status.containers_statuses[0].id, ctr);
    assert_eq!(
        status.containers_statuses[0].state,
        ContainerState::ContainerRunning as i32
    );

    rt.stop_container(StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.remove_container(RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();

    let ids = [pod.as_str(), ctr.as_str()];
    let complete = |events: &[ContainerEventResponse]| {
        kinds(events, &pod).len() >= 4 && kinds(events, &ctr).len() >= 4
    };
    for events in [&mut first, &mut second] {
        let seen = collect(events, &ids, Duration::from_secs(10), complete).await;
        assert_eq!(kinds(&seen, &ctr), LIFE, "container events: {seen:#?}");
        assert_eq!(kinds(&seen, &pod), LIFE, "sandbox events: {seen:#?}");
        let created = seen.iter().map(|e| e.created_at).collect::<Vec<_>>();
        assert!(
            created.iter().all(|t| *t > 1_600_000_000_000_000_000),
            "nanoseconds"
        );
        assert!(created.windows(2).all(|w| w[0] <= w[1]), "in order");
        for event in &seen {
            let status = event
                .pod_sandbox_status
                .as_ref()
                .expect("pod_sandbox_status");
            assert_eq!(status.id, pod);
            let metadata = status.metadata.as_ref().expect("metadata");
            assert_eq!(metadata.uid, shim.pod_uid("evented"));
            assert_eq!(metadata.name, "evented");
        }
        let started = seen
            .iter()
            .find(|e| {
                e.container_id == ctr && e.container_event_type == ContainerStartedEvent as i32
            })
            .unwrap();
        assert!(
            started
                .containers_statuses
                .iter()
                .any(|s| s.id == ctr && s.state == ContainerState::ContainerRunning as i32),
            "the pod's container statuses come with the event"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_kill_is_an_event_within_a_second() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("killed").await;
    let ctr = shim.run_sleeper(&pod, &config, "victim").await;
    let mut events = subscribe(&shim).await;
    env.docker
        .kill_container(&ctr, None::<KillContainerOptions>)
        .await
        .unwrap();
    let killed = Instant::now();
    let seen = collect(&mut events, &[ctr.as_str()], Duration::from_secs(1), |e| {
        !kinds(e, &ctr).is_empty()
    })
    .await;
    assert_eq!(kinds(&seen, &ctr), vec![ContainerStoppedEvent]);
    assert!(killed.elapsed() < Duration::from_secs(1));
    let status = seen[0]
        .containers_statuses
        .iter()
        .find(|s| s.id == ctr)
        .expect("the killed container's status");
    assert_eq!(status.exit_code, 137);
    assert_eq!(
        seen[0]
            .pod_sandbox_status
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .name,
        "killed"
    );
}
