//! Docker's event history as `oom_kills` reads it, against the real daemon:
//! an OOM kill leaves an `oom` event, a plain SIGKILL does not.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use cri_dockerd_core::oom_kills::oom_event_since;
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::{test_env, unique};

/// Runs `cmd` under a memory limit (SIGKILLed at once with `kill`) until it
/// exits, then asks Docker's history for an oom event.
async fn oom_event_after(cmd: &[&str], memory: i64, kill: bool) -> bool {
    let docker = &test_env().await.docker;
    let name = unique("crid-oom-");
    let id = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(BUSYBOX_IMAGE.into()),
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                labels: Some(HashMap::from([("crid-test".into(), "oom".into())])),
                host_config: Some(HostConfig {
                    memory: Some(memory),
                    memory_swap: Some(memory),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    docker
        .start_container(&id, None::<StartContainerOptions>)
        .await
        .unwrap();
    if kill {
        docker
            .kill_container(
                &id,
                Some(KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await
            .unwrap();
    }
    let (started, exit) = loop {
        let inspect = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let state = inspect.state.unwrap();
        if state.running != Some(true) {
            let started = chrono::DateTime::parse_from_rfc3339(&state.started_at.unwrap())
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            break (started, state.exit_code.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Docker publishes the event as it handles containerd's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found = oom_event_since(&test_env().await.engine, &id, started)
        .await
        .unwrap();
    docker
        .remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(exit, 137);
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oom_kill_is_in_dockers_history_and_a_sigkill_is_not() {
    assert!(
        oom_event_after(&["tail", "/dev/zero"], 32 << 20, false).await,
        "no oom event for a memory hog"
    );
    assert!(
        !oom_event_after(&["sleep", "60"], 32 << 20, true).await,
        "an oom event for a plain SIGKILL"
    );
}
