//! The calls a kubelet makes for a static pod, end to end, then the same
//! with the shim killed and restarted half way.

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::containers::{self, exec_stdout};
use cri_dockerd_testkit::cri::{container_config, pod_config, pods};
use cri_dockerd_testkit::env::{BUSYBOX_IMAGE, plain_registry};
use cri_dockerd_testkit::images::push_to_registry;
use cri_dockerd_testkit::{Shim, test_env, unique};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

struct Pod {
    image: String,
    config: PodSandboxConfig,
}

async fn prepare(shim: &Shim, name: &str) -> Pod {
    let env = test_env().await;
    let image = format!("{}/crid-test/static:{}", plain_registry(), unique("v"));
    push_to_registry(&env.docker, BUSYBOX_IMAGE, &image, None).await;
    let mut config = pod_config(name, "kube-system", &shim.pod_uid(name));
    config.log_directory = shim
        .dir
        .path()
        .join("pods")
        .join(name)
        .display()
        .to_string();
    Pod { image, config }
}

async fn pull(shim: &Shim, image: &str) -> String {
    shim.images
        .clone()
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("PullImage")
        .into_inner()
        .image_ref
}

fn web(image_ref: &str) -> ContainerConfig {
    let mut config = container_config("web", image_ref, &["httpd", "-f", "-p", "8080", "-h", "/"]);
    config
        .annotations
        .insert("io.kubernetes.container.restartCount".into(), "0".into());
    config
}

async fn finish(shim: &mut Shim, pod_id: &str, container_id: &str, image: &str) {
    containers::stop(&shim.runtime, container_id, 2).await;
    assert_eq!(
        containers::status(&shim.runtime, container_id).await.state,
        ContainerState::ContainerExited as i32
    );
    pods::stop(&shim.runtime, pod_id).await;
    containers::remove(&shim.runtime, container_id).await;
    pods::remove(&shim.runtime, pod_id).await;
    assert!(
        pods::list(&shim.runtime, None)
            .await
            .iter()
            .all(|p| p.id != pod_id)
    );
    let left = shim
        .runtime
        .clone()
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod_id.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty());
    shim.images
        .clone()
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn static_pod_sequence_end_to_end() {
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let pod = prepare(&shim, "static-web").await;
    let image_ref = pull(&shim, &pod.image).await;
    let pod_id = pods::run(&shim.runtime, pod.config.clone()).await.unwrap();
    let id = containers::create(&shim.runtime, &pod_id, web(&image_ref), &pod.config)
        .await
        .unwrap();
    containers::start(&shim.runtime, &id).await;
    let status = containers::status(&shim.runtime, &id).await;
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    assert_eq!(
        status.annotations["io.kubernetes.container.restartCount"],
        "0"
    );
    let ip = pods::status(&shim.runtime, &pod_id)
        .await
        .network
        .unwrap()
        .ip;
    let page = exec_stdout(
        &shim.runtime,
        &id,
        &[
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{ip}:8080/etc/hostname"),
        ],
    )
    .await;
    assert_eq!(page.trim(), "static-web");
    finish(&mut shim, &pod_id, &id, &pod.image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn static_pod_sequence_survives_shim_restarts() {
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let pod = prepare(&shim, "restarting").await;
    let image_ref = pull(&shim, &pod.image).await;
    let pod_id = pods::run(&shim.runtime, pod.config.clone()).await.unwrap();
    let id = containers::create(&shim.runtime, &pod_id, web(&image_ref), &pod.config)
        .await
        .unwrap();

    shim.kill();
    shim.restart().await;
    let created = containers::status(&shim.runtime, &id).await;
    assert_eq!(created.state, ContainerState::ContainerCreated as i32);
    assert_eq!(created.metadata.unwrap().name, "web");
    containers::start(&shim.runtime, &id).await;

    shim.kill();
    shim.restart().await;
    let listed = shim
        .runtime
        .clone()
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ContainerState::ContainerRunning as i32);
    assert_eq!(
        pods::status(&shim.runtime, &pod_id).await.state,
        PodSandboxState::SandboxReady as i32
    );
    finish(&mut shim, &pod_id, &id, &pod.image).await;
}
