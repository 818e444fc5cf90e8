//! The ImageService against the real daemon and the local registries.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::env::{
    BUSYBOX_IMAGE, REGISTRY_PASSWORD, REGISTRY_USER, auth_registry, plain_registry,
};
use cri_dockerd_testkit::images::{push_to_registry, remove_local};
use cri_dockerd_testkit::{Shim, test_env, unique};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

fn creds() -> DockerCredentials {
    DockerCredentials {
        username: Some(REGISTRY_USER.into()),
        password: Some(REGISTRY_PASSWORD.into()),
        serveraddress: Some(auth_registry()),
        ..Default::default()
    }
}

async fn status(shim: &mut Shim, image: &str) -> Option<Image> {
    shim.images
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

async fn pull(
    shim: &mut Shim,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, tonic::Status> {
    shim.images
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_from_the_registry_then_status_list_and_remove() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let tag = unique("v");
    let image = format!("{}/crid-test/busybox:{tag}", plain_registry());
    push_to_registry(&env.docker, BUSYBOX_IMAGE, &image, None).await;
    assert!(
        status(&mut shim, &image).await.is_none(),
        "the local copy was removed before pulling"
    );

    let image_ref = pull(&mut shim, &image, None).await.unwrap();
    assert_eq!(image_ref, env.busybox_id, "PullImage returns the image ID");

    let by_tag = status(&mut shim, &image).await.expect("status by tag");
    assert_eq!(by_tag.id, env.busybox_id);
    assert!(by_tag.repo_tags.contains(&image), "{:?}", by_tag.repo_tags);
    let digest = by_tag
        .repo_digests
        .iter()
        .find(|d| d.starts_with(&format!("{}/crid-test/busybox@sha256:", plain_registry())))
        .expect("a repo digest from the registry")
        .clone();
    assert_eq!(
        status(&mut shim, &digest)
            .await
            .expect("status by digest")
            .id,
        env.busybox_id
    );
    assert_eq!(
        status(&mut shim, &env.busybox_id)
            .await
            .expect("status by ID")
            .id,
        env.busybox_id
    );
    let wrong_tag = format!("{}/crid-test/busybox:{}", plain_registry(), unique("nope"));
    assert!(status(&mut shim, &wrong_tag).await.is_none());

    let listed = shim
        .images
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(listed.iter().any(|i| i.repo_tags.contains(&image)));
    let filtered = shim
        .images
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: spec(&image),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0].id, env.busybox_id);

    // By tag: only that tag goes; the image (still tagged as BUSYBOX_IMAGE) stays.
    shim.images
        .remove_image(RemoveImageRequest {
            image: spec(&image),
        })
        .await
        .unwrap();
    assert!(status(&mut shim, &image).await.is_none());
    assert!(status(&mut shim, BUSYBOX_IMAGE).await.is_some());
    // Removing what is gone succeeds.
    shim.images
        .remove_image(RemoveImageRequest {
            image: spec(&image),
        })
        .await
        .unwrap();
    remove_local(&env.docker, &digest).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_by_id_removes_every_tag() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    // A private image (its own ID) so removing it cannot disturb other tests.
    let image = format!("{}/crid-test/private:{}", plain_registry(), unique("v"));
    let marker = unique("m");
    let id = build_private_image(&env.docker, &image, &marker).await;
    let second = format!(
        "{}/crid-test/private-alias:{}",
        plain_registry(),
        unique("v")
    );
    let (repo, tag) = second.rsplit_once(':').unwrap();
    env.docker
        .tag_image(
            &image,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(repo.into()),
                tag: Some(tag.into()),
            }),
        )
        .await
        .unwrap();
    assert_eq!(status(&mut shim, &second).await.unwrap().id, id);
    assert_eq!(status(&mut shim, &id).await.unwrap().repo_tags.len(), 2);

    shim.images
        .remove_image(RemoveImageRequest { image: spec(&id) })
        .await
        .unwrap();
    assert!(status(&mut shim, &image).await.is_none());
    assert!(status(&mut shim, &second).await.is_none());
    assert!(status(&mut shim, &id).await.is_none());
    assert!(
        env.docker.inspect_image(&id).await.is_err(),
        "the image itself is gone from Docker"
    );
}

/// Commits a busybox container that wrote `marker`, giving an image with an ID of its own.
async fn build_private_image(docker: &bollard::Docker, name: &str, marker: &str) -> String {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{
        CommitContainerOptions, CreateContainerOptions, RemoveContainerOptions,
    };
    let container = docker
        .create_container(
            None::<CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(BUSYBOX_IMAGE.into()),
                cmd: Some(vec!["true".into()]),
                env: Some(vec![format!("MARKER={marker}")]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (repo, tag) = name.rsplit_once(':').unwrap();
    let committed = docker
        .commit_container(
            CommitContainerOptions {
                container: Some(container.id.clone()),
                repo: Some(repo.into()),
                tag: Some(tag.into()),
                ..Default::default()
            },
            bollard::models::ContainerConfig {
                env: Some(vec![format!("MARKER={marker}")]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker
        .remove_container(
            &container.id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    committed.id
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_with_credentials() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let image = format!("{}/crid-test/secret:{}", auth_registry(), unique("v"));
    push_to_registry(&env.docker, BUSYBOX_IMAGE, &image, Some(creds())).await;

    let anonymous = pull(&mut shim, &image, None).await.unwrap_err();
    assert_ne!(anonymous.code(), tonic::Code::Ok);
    assert!(
        anonymous.message().to_lowercase().contains("auth"),
        "{anonymous:?}"
    );

    let wrong = AuthConfig {
        username: REGISTRY_USER.into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = pull(&mut shim, &image, Some(wrong)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(status(&mut shim, &image).await.is_none());

    let right = AuthConfig {
        username: REGISTRY_USER.into(),
        password: REGISTRY_PASSWORD.into(),
        ..Default::default()
    };
    assert_eq!(
        pull(&mut shim, &image, Some(right)).await.unwrap(),
        env.busybox_id
    );
    shim.images
        .remove_image(RemoveImageRequest {
            image: spec(&image),
        })
        .await
        .unwrap();

    // The `auth` form: base64("user:password").
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));
    let auth = AuthConfig {
        auth: encoded,
        server_address: auth_registry(),
        ..Default::default()
    };
    assert_eq!(
        pull(&mut shim, &image, Some(auth)).await.unwrap(),
        env.busybox_id
    );
    shim.images
        .remove_image(RemoveImageRequest {
            image: spec(&image),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pulling_a_missing_image_is_not_found() {
    test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let image = format!(
        "{}/crid-test/does-not-exist:{}",
        plain_registry(),
        unique("v")
    );
    let err = pull(&mut shim, &image, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(
        err.message().contains("does-not-exist"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_pull_fails_after_the_progress_deadline() {
    test_env().await;
    // A "registry" on loopback that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut shim = Shim::builder(BIN)
        .arg("--image-pull-progress-deadline=2s")
        .start()
        .await;
    let started = Instant::now();
    let err = pull(
        &mut shim,
        &format!("127.0.0.1:{port}/stalled/image:v1"),
        None,
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("no progress"), "{}", err.message());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn image_fs_info_reports_dockers_data_root() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let info = shim
        .images
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let fs = &info.image_filesystems[0];
    let root = env.docker.info().await.unwrap().docker_root_dir.unwrap();
    assert_eq!(fs.fs_id.as_ref().unwrap().mountpoint, root);
    assert!(fs.used_bytes.as_ref().unwrap().value > 1_000_000, "{fs:?}");
    assert!(fs.inodes_used.as_ref().unwrap().value > 10, "{fs:?}");
    assert!(
        fs.timestamp > 1_600_000_000_000_000_000,
        "nanoseconds: {}",
        fs.timestamp
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_status_verbose_and_user() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let pause = shim
        .images
        .image_status(ImageStatusRequest {
            image: spec("registry.k8s.io/pause:3.10"),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let image = pause.image.unwrap();
    assert_eq!(image.id, env.pause_id);
    assert_eq!(image.uid, Some(Int64Value { value: 65535 }));
    assert!(image.pinned, "the sandbox image is pinned");
    let info: serde_json::Value = serde_json::from_str(&pause.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["Entrypoint"][0], "/pause");
    assert!(!status(&mut shim, BUSYBOX_IMAGE).await.unwrap().pinned);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_invalid_argument() {
    test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let err = shim
        .images
        .image_status(ImageStatusRequest {
            image: None,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = pull(&mut shim, "", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = pull(&mut shim, "Not/A/Valid:Reference:x", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = pull(&mut shim, &format!("sha256:{}", "a".repeat(64)), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = shim
        .images
        .remove_image(RemoveImageRequest { image: spec("") })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // Missing images are not errors for status and remove.
    assert!(
        status(&mut shim, "crid-test.local/never-existed:v0")
            .await
            .is_none()
    );
    shim.images
        .remove_image(RemoveImageRequest {
            image: spec("crid-test.local/never-existed:v0"),
        })
        .await
        .unwrap();
}
