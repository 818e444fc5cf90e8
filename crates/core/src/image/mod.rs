//! The CRI ImageService on Docker's image store.

pub mod reference;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions};
use cri_dockerd_api::v1::{
    AuthConfig, FilesystemIdentifier, FilesystemUsage, Image, ImageFsInfoResponse, ImageSpec,
    ImageStatusResponse, Int64Value, UInt64Value,
};
use cri_dockerd_engine::model::ImageInspect;
use cri_dockerd_telemetry::metrics;
use futures::StreamExt;

use crate::docker_cri::DockerCri;
use crate::error::{Error, Result, is_docker_not_found};
use crate::image::reference::{ImageName, Reference, normalize, parse_image_name};

/// Docker's placeholders for untagged images.
const NONE_TAG: &str = "<none>:<none>";
const NONE_DIGEST: &str = "<none>@<none>";
const PULL_PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

fn clean(list: Vec<String>, placeholder: &str) -> Vec<String> {
    list.into_iter().filter(|s| s != placeholder).collect()
}

/// Whether the image Docker found for `requested` really is that image:
/// Docker also resolves ID prefixes and ignores what it cannot parse.
pub(crate) fn image_matches(
    id: &str,
    repo_tags: &[String],
    repo_digests: &[String],
    requested: &str,
) -> bool {
    match parse_image_name(requested) {
        Ok(ImageName::Id(wanted)) => id == wanted,
        Ok(ImageName::Reference(reference)) => {
            if let Some(digest) = &reference.digest {
                let wanted = format!("{}@{digest}", reference.name());
                return id == digest
                    || repo_digests
                        .iter()
                        .any(|d| normalize(d).as_deref() == Some(&wanted));
            }
            match &reference.tag {
                Some(tag) => {
                    let wanted = format!("{}:{tag}", reference.name());
                    repo_tags
                        .iter()
                        .any(|t| normalize(t).as_deref() == Some(&wanted))
                }
                // A bare name: Docker resolved it (a name with :latest, or an
                // ID prefix); cri-dockerd accepts that too.
                None => true,
            }
        }
        Err(_) => {
            id.starts_with(requested)
                || id
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(requested))
        }
    }
}

/// `1000`, `1000:1000` → uid; anything else is a user name.
fn user_from_image(user: &str) -> (Option<i64>, String) {
    let user = user.split(':').next().unwrap_or("");
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

impl DockerCri {
    fn is_pinned(&self, repo_tags: &[String]) -> bool {
        let Some(infra) = normalize_tagged(&self.settings.pod_infra_image) else {
            return false;
        };
        repo_tags
            .iter()
            .any(|t| normalize(t).as_deref() == Some(&infra))
    }

    /// The image's size as ListImages reports it. With the graph drivers
    /// that is the inspect's own figure; with the containerd image store an
    /// inspect gives only the packed content of the host's platform, and
    /// the list gives what the image takes (content and unpacked
    /// snapshots), so the list is asked.
    async fn image_size(&self, inspect: &ImageInspect) -> Result<u64> {
        let own = inspect.size.unwrap_or(0).max(0) as u64;
        if !self.facts().containerd_image_store() {
            return Ok(own);
        }
        let id = inspect.id.clone().unwrap_or_default();
        let tags = clean(inspect.repo_tags.clone().unwrap_or_default(), NONE_TAG);
        let filters: Vec<(&str, Vec<String>)> = match tags.first() {
            Some(tag) => vec![("reference", vec![tag.clone()])],
            None => vec![("dangling", vec!["true".to_string()])],
        };
        let listed = self
            .engine
            .list_images(&filters)
            .await
            .map_err(Error::docker("listing images"))?;
        Ok(listed
            .into_iter()
            .find(|s| s.id.as_deref() == Some(id.as_str()))
            .and_then(|s| s.size)
            .map_or(own, |size| size.max(0) as u64))
    }

    fn inspect_to_image(&self, inspect: &ImageInspect, size: u64) -> Image {
        let id = inspect.id.clone().unwrap_or_default();
        let repo_tags = clean(inspect.repo_tags.clone().unwrap_or_default(), NONE_TAG);
        let repo_digests = clean(
            inspect.repo_digests.clone().unwrap_or_default(),
            NONE_DIGEST,
        );
        let user = inspect
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        let (uid, username) = user_from_image(&user);
        Image {
            pinned: self.is_pinned(&repo_tags),
            spec: Some(ImageSpec {
                image: id.clone(),
                ..Default::default()
            }),
            id,
            repo_tags,
            repo_digests,
            size,
            uid: uid.map(|value| Int64Value { value }),
            username,
        }
    }

    /// The image `name` refers to, or `None` when Docker has no such image.
    pub(crate) async fn inspect_image_by_ref(&self, name: &str) -> Result<Option<ImageInspect>> {
        let lookup = match parse_image_name(name) {
            Ok(ImageName::Id(id)) => id,
            Ok(ImageName::Reference(r)) => r.with_default_tag().to_string(),
            // Not a reference, so no image has this name; and it must not
            // reach Docker's URL path, where `/` and `.` change what is asked.
            Err(_) => return Ok(None),
        };
        match self.engine.inspect_image(&lookup).await {
            Ok(inspect) => {
                let id = inspect.id.clone().unwrap_or_default();
                let tags = inspect.repo_tags.clone().unwrap_or_default();
                let digests = inspect.repo_digests.clone().unwrap_or_default();
                Ok(image_matches(&id, &tags, &digests, name).then_some(inspect))
            }
            Err(e) if is_docker_not_found(&e) => Ok(None),
            Err(e) => Err(Error::docker(format!("inspecting image {name}"))(e)),
        }
    }

    pub async fn list_images(&self, filter: Option<&str>) -> Result<Vec<Image>> {
        let summaries = self
            .engine
            .list_images(&[])
            .await
            .map_err(Error::docker("listing images"))?;
        let mut images = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(id) = summary.id.filter(|id| !id.is_empty()) else {
                continue;
            };
            let repo_tags = clean(summary.repo_tags.unwrap_or_default(), NONE_TAG);
            let repo_digests = clean(summary.repo_digests.unwrap_or_default(), NONE_DIGEST);
            if let Some(wanted) = filter.filter(|f| !f.is_empty()) {
                let named = match parse_image_name(wanted) {
                    Ok(ImageName::Reference(r)) if r.tag.is_none() && r.digest.is_none() => {
                        let name = r.name();
                        repo_tags.iter().chain(&repo_digests).any(|t| {
                            crate::image::reference::parse_normalized(t)
                                .is_ok_and(|p| p.name() == name)
                        })
                    }
                    _ => image_matches(&id, &repo_tags, &repo_digests, wanted),
                };
                if !named {
                    continue;
                }
            }
            images.push(Image {
                pinned: self.is_pinned(&repo_tags),
                spec: Some(ImageSpec {
                    image: id.clone(),
                    ..Default::default()
                }),
                id,
                repo_tags,
                repo_digests,
                size: summary.size.unwrap_or(0).max(0) as u64,
                uid: None,
                username: String::new(),
            });
        }
        Ok(images)
    }

    pub async fn image_status(&self, image: &str, verbose: bool) -> Result<ImageStatusResponse> {
        let Some(inspect) = self.inspect_image_by_ref(image).await? else {
            return Ok(ImageStatusResponse::default());
        };
        let mut info = HashMap::new();
        if verbose {
            let detail = serde_json::json!({
                "id": inspect.id,
                "repoTags": inspect.repo_tags,
                "repoDigests": inspect.repo_digests,
                "created": inspect.created,
                "architecture": inspect.architecture,
                "os": inspect.os,
                "size": inspect.size,
                "imageSpec": { "config": inspect.config },
            });
            info.insert("info".to_string(), detail.to_string());
        }
        let size = self.image_size(&inspect).await?;
        Ok(ImageStatusResponse {
            image: Some(self.inspect_to_image(&inspect, size)),
            info,
        })
    }

    /// Pulls and returns the image ID. Fails when Docker reports no progress
    /// for `--image-pull-progress-deadline`.
    pub async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>) -> Result<String> {
        let reference = match parse_image_name(image) {
            Ok(ImageName::Reference(r)) => r.with_default_tag(),
            Ok(ImageName::Id(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "cannot pull {image:?}: an image ID is not a pullable reference"
                )));
            }
            Err(e) => return Err(Error::InvalidArgument(e.to_string())),
        };
        let full = reference.to_string();
        let credentials = auth.map(|a| credentials_for(a, &reference)).transpose()?;
        let started = Instant::now();
        let pulled = self.pull_reference(&full, credentials).await;
        let size = match &pulled {
            Ok(inspect) => self.image_size(inspect).await.unwrap_or(0),
            Err(_) => 0,
        };
        metrics::image_pull(started.elapsed(), size, pulled.is_ok());
        let id = pulled?.id.unwrap_or_default();
        tracing::info!(image = %full, id = %id, seconds = started.elapsed().as_secs_f32(), "pulled image");
        Ok(id)
    }

    /// Pulls `full` and inspects what arrived.
    async fn pull_reference(
        &self,
        full: &str,
        credentials: Option<DockerCredentials>,
    ) -> Result<ImageInspect> {
        let options = CreateImageOptions {
            from_image: Some(full.to_string()),
            ..Default::default()
        };
        let deadline = self.settings.image_pull_progress_deadline;
        let mut stream = self
            .engine
            .api()
            .create_image(Some(options), None, credentials);
        let mut last_log = Instant::now();
        let mut latest = String::new();
        tracing::info!(image = %full, "pulling image");
        loop {
            match tokio::time::timeout(deadline, stream.next()).await {
                Err(_) => {
                    return Err(Error::DeadlineExceeded(format!(
                        "cancelled pulling image {full:?} because of no progress for {}s, latest progress: {latest:?}",
                        deadline.as_secs()
                    )));
                }
                Ok(None) => break,
                Ok(Some(Ok(info))) => {
                    let bytes = info
                        .progress_detail
                        .as_ref()
                        .and_then(|p| Some(format!("{}/{}", p.current?, p.total?)));
                    latest = [info.id, info.status, bytes]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ");
                    if last_log.elapsed() >= PULL_PROGRESS_LOG_INTERVAL {
                        tracing::info!(image = %full, progress = %latest, "pulling image");
                        last_log = Instant::now();
                    }
                }
                Ok(Some(Err(e))) => return Err(pull_error(full, e)),
            }
        }
        self.inspect_image_by_ref(full).await?.ok_or_else(|| {
            Error::Internal(format!("image {full:?} is not present after pulling it"))
        })
    }

    /// By ID: every tag and digest goes, then the image. By tag or digest:
    /// only that name. A missing image is not an error.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let Some(inspect) = self.inspect_image_by_ref(image).await? else {
            return Ok(());
        };
        let id = inspect.id.clone().unwrap_or_default();
        let by_id = matches!(parse_image_name(image), Ok(ImageName::Id(_)))
            || (id.starts_with(image)
                || id
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(image)));
        let options = || {
            Some(RemoveImageOptions {
                noprune: false,
                force: false,
                ..Default::default()
            })
        };
        let remove = |name: String| async move {
            match self.engine.api().remove_image(&name, options(), None).await {
                Ok(_) => Ok(()),
                Err(e) if is_docker_not_found(&e) => Ok(()),
                Err(e) => Err(Error::docker(format!("removing image {name}"))(e)),
            }
        };
        if by_id {
            let names = clean(inspect.repo_tags.unwrap_or_default(), NONE_TAG)
                .into_iter()
                .chain(clean(inspect.repo_digests.unwrap_or_default(), NONE_DIGEST));
            for name in names {
                remove(name).await?;
            }
            remove(id).await
        } else {
            let name = match parse_image_name(image) {
                Ok(ImageName::Reference(r)) => r.with_default_tag().to_string(),
                _ => image.to_string(),
            };
            remove(name).await
        }
    }

    /// Docker keeps images and writable layers in one place, its data root
    /// (or containerd's root, with the containerd image store and a
    /// containerd of the system's): both lists name it, the images with
    /// what is not a running container's writable layer. Figures come from
    /// the background walk (a minute old at most); no call walks the disk.
    pub async fn image_fs_info(&self) -> Result<ImageFsInfoResponse> {
        let root = self.disk_usage.image_root();
        let usage = self.disk_usage.data_root().map_err(Error::io(format!(
            "reading the usage of Docker's images under {}",
            root.display()
        )))?;
        let filesystem = |used: crate::stats::fs_usage::Usage| FilesystemUsage {
            timestamp: usage.at_ns,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: root.display().to_string(),
            }),
            used_bytes: Some(UInt64Value { value: used.bytes }),
            inodes_used: Some(UInt64Value { value: used.inodes }),
        };
        Ok(ImageFsInfoResponse {
            image_filesystems: vec![filesystem(usage.images)],
            container_filesystems: vec![filesystem(usage.containers)],
        })
    }

    /// Makes sure `image` is present, pulling it only when it is missing.
    pub(crate) async fn ensure_image(&self, image: &str) -> Result<String> {
        if let Some(inspect) = self.inspect_image_by_ref(image).await? {
            return Ok(inspect.id.unwrap_or_default());
        }
        self.pull_image(image, None).await
    }
}

fn normalize_tagged(image: &str) -> Option<String> {
    crate::image::reference::parse_normalized(image)
        .ok()
        .map(|r| r.with_default_tag().to_string())
}

/// The CRI's AuthConfig as Docker's X-Registry-Auth. `auth` is
/// `base64(user:password)`; the daemon only reads username and password.
pub(crate) fn credentials_for(
    auth: &AuthConfig,
    reference: &Reference,
) -> Result<DockerCredentials> {
    let mut username = auth.username.clone();
    let mut password = auth.password.clone();
    if username.is_empty() && !auth.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|e| Error::InvalidArgument(format!("auth is not base64: {e}")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| Error::InvalidArgument("auth is not UTF-8".into()))?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| Error::InvalidArgument("auth must encode user:password".into()))?;
        username = user.to_string();
        password = pass.to_string();
    }
    let server = if auth.server_address.is_empty() {
        reference.domain.clone()
    } else {
        auth.server_address.clone()
    };
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    Ok(DockerCredentials {
        username: non_empty(username),
        password: non_empty(password),
        auth: None,
        email: None,
        serveraddress: Some(server),
        identitytoken: non_empty(auth.identity_token.clone()),
        registrytoken: non_empty(auth.registry_token.clone()),
    })
}

/// What Docker says when it cannot reach a registry (Go's net/http and
/// resolver messages).
const REGISTRY_UNREACHABLE: [&str; 9] = [
    "connection refused",
    "no such host",
    "i/o timeout",
    "proxyconnect",
    "network is unreachable",
    "tls handshake timeout",
    "server misbehaving",
    "no route to host",
    "request canceled while waiting for connection",
];

fn pull_error(image: &str, error: bollard::errors::Error) -> Error {
    let message = match &error {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let lower = message.to_lowercase();
    let text = format!("pulling image {image:?}: {message}");
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("incorrect username or password")
    {
        Error::PermissionDenied(text)
    } else if lower.contains("manifest unknown")
        || lower.contains("not found")
        || lower.contains("repository does not exist")
        || matches!(
            error,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        )
    {
        Error::NotFound(text)
    } else if REGISTRY_UNREACHABLE.iter().any(|m| lower.contains(m)) {
        // The registry (or the proxy to it) cannot be reached: a condition
        // of the network that a retry may get past, not of the request.
        Error::Unavailable(text)
    } else {
        Error::Docker {
            context: format!("pulling image {image:?}"),
            source: error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sha256:d858f15132e02a44fe35159faa096dabc3f82f1931019848f979fbbef0ac564b";

    fn tags() -> Vec<String> {
        vec!["busybox:latest".into(), "127.0.0.1:5000/t/bb:v1".into()]
    }

    #[test]
    fn matching_by_tag_name_digest_and_id() {
        let digests = vec![format!("127.0.0.1:5000/t/bb@sha256:{}", "c".repeat(64))];
        assert!(image_matches(ID, &tags(), &digests, "busybox"));
        assert!(image_matches(
            ID,
            &tags(),
            &digests,
            "docker.io/library/busybox:latest"
        ));
        assert!(image_matches(
            ID,
            &tags(),
            &digests,
            "127.0.0.1:5000/t/bb:v1"
        ));
        assert!(!image_matches(
            ID,
            &tags(),
            &digests,
            "127.0.0.1:5000/t/bb:v2"
        ));
        assert!(image_matches(
            ID,
            &tags(),
            &digests,
            &format!("127.0.0.1:5000/t/bb@sha256:{}", "c".repeat(64))
        ));
        assert!(!image_matches(
            ID,
            &tags(),
            &digests,
            &format!("127.0.0.1:5000/t/bb@sha256:{}", "d".repeat(64))
        ));
        assert!(image_matches(ID, &tags(), &digests, ID));
        assert!(image_matches(
            ID,
            &tags(),
            &digests,
            ID.strip_prefix("sha256:").unwrap()
        ));
        assert!(!image_matches(
            ID,
            &tags(),
            &digests,
            &format!("sha256:{}", "e".repeat(64))
        ));
    }

    #[test]
    fn image_user_becomes_uid_or_name() {
        assert_eq!(user_from_image("65535:65535"), (Some(65535), String::new()));
        assert_eq!(user_from_image("nobody"), (None, "nobody".to_string()));
        assert_eq!(user_from_image(""), (None, String::new()));
    }

    #[test]
    fn auth_config_maps_to_docker_credentials() {
        let reference = crate::image::reference::parse_normalized("127.0.0.1:5001/x").unwrap();
        let creds = credentials_for(
            &AuthConfig {
                auth: base64::engine::general_purpose::STANDARD.encode("alice:s3cret"),
                ..Default::default()
            },
            &reference,
        )
        .unwrap();
        assert_eq!(creds.username.as_deref(), Some("alice"));
        assert_eq!(creds.password.as_deref(), Some("s3cret"));
        assert_eq!(creds.serveraddress.as_deref(), Some("127.0.0.1:5001"));

        let creds = credentials_for(
            &AuthConfig {
                identity_token: "idt".into(),
                registry_token: "rt".into(),
                server_address: "https://registry.example".into(),
                ..Default::default()
            },
            &reference,
        )
        .unwrap();
        assert_eq!(creds.identitytoken.as_deref(), Some("idt"));
        assert_eq!(creds.registrytoken.as_deref(), Some("rt"));
        assert_eq!(creds.username, None);
        assert_eq!(
            creds.serveraddress.as_deref(),
            Some("https://registry.example")
        );

        let bad = AuthConfig {
            auth: "%%%".into(),
            ..Default::default()
        };
        assert!(credentials_for(&bad, &reference).is_err());
    }

    #[test]
    fn pull_errors_are_classified() {
        let e = |m: &str| bollard::errors::Error::DockerStreamError {
            error: m.to_string(),
        };
        assert!(matches!(
            pull_error("x", e("manifest for x not found: manifest unknown")),
            Error::NotFound(_)
        ));
        assert!(matches!(
            pull_error("x", e("unauthorized: authentication required")),
            Error::PermissionDenied(_)
        ));
        assert!(matches!(
            pull_error("x", e("connection reset")),
            Error::Docker { .. }
        ));
        for unreachable in [
            "Get \"https://registry-1.docker.io/v2/\": proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused",
            "Get \"https://r.example/v2/\": dial tcp: lookup r.example on 10.0.0.2:53: no such host",
            "Get \"https://r.example/v2/\": net/http: TLS handshake timeout",
        ] {
            assert!(
                matches!(pull_error("x", e(unreachable)), Error::Unavailable(_)),
                "{unreachable}"
            );
        }
    }
}
