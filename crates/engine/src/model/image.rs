//! Images as Docker describes them: `GET /images/{name}/json` and
//! `GET /images/json`.

use std::collections::HashMap;

use super::container::DriverData;
use super::lenient::docker_model;

docker_model! {
    /// `GET /images/{name}/json`.
    pub struct ImageInspect {
        "Id" => id: String,
        "RepoTags" => repo_tags: Vec<String>,
        "RepoDigests" => repo_digests: Vec<String>,
        "Created" => created: String,
        "Architecture" => architecture: String,
        "Variant" => variant: String,
        "Os" => os: String,
        /// With the graph drivers the unpacked size of the layers; with
        /// the containerd image store the size of the packed content of
        /// the host's platform (`GET /images/json` then says more).
        "Size" => size: i64,
        "Config" => config: ImageConfig,
        "GraphDriver" => graph_driver: DriverData,
        /// Docker 28's containerd image store leaves this empty for an
        /// image that has no content for the host's platform.
        "RootFS" => root_fs: RootFs,
        "Metadata" => metadata: ImageMetadata,
        /// The containerd image store's target (manifest or index).
        "Descriptor" => descriptor: OciDescriptor,
    }
}

docker_model! {
    pub struct ImageConfig {
        "User" => user: String,
        "Env" => env: Vec<String>,
        "Cmd" => cmd: Vec<String>,
        "Entrypoint" => entrypoint: Vec<String>,
        "WorkingDir" => working_dir: String,
        "Labels" => labels: HashMap<String, String>,
        "StopSignal" => stop_signal: String,
        "Volumes" => volumes: HashMap<String, serde_json::Value>,
        "ExposedPorts" => exposed_ports: HashMap<String, serde_json::Value>,
    }
}

docker_model! {
    pub struct RootFs {
        "Type" => typ: String,
        "Layers" => layers: Vec<String>,
    }
}

docker_model! {
    pub struct ImageMetadata {
        "LastTagTime" => last_tag_time: String,
    }
}

docker_model! {
    pub struct OciDescriptor {
        "mediaType" => media_type: String,
        "digest" => digest: String,
        "size" => size: i64,
    }
}

docker_model! {
    /// `GET /images/json`.
    pub struct ImageSummary {
        "Id" => id: String,
        "ParentId" => parent_id: String,
        "RepoTags" => repo_tags: Vec<String>,
        "RepoDigests" => repo_digests: Vec<String>,
        "Created" => created: i64,
        /// Graph drivers: the unpacked layers. containerd image store: the
        /// packed content and the unpacked snapshots of every platform
        /// present, which is what removing the image frees.
        "Size" => size: i64,
        "SharedSize" => shared_size: i64,
        "Labels" => labels: HashMap<String, String>,
        "Containers" => containers: i64,
        "Descriptor" => descriptor: OciDescriptor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker 28.5 with the containerd image store, for an image without
    /// content for the host's platform: no `RootFS.Type`, no config.
    #[test]
    fn an_image_without_the_hosts_platform_decodes() {
        let text = r#"{
            "Id": "sha256:0f1e", "RepoTags": ["127.0.0.1:5000/arm/only:1"],
            "RepoDigests": ["127.0.0.1:5000/arm/only@sha256:0f1e"],
            "Parent": "", "Comment": "", "Created": "", "DockerVersion": "",
            "Author": "", "Size": 1234, "GraphDriver": {"Data": null, "Name": "overlayfs"},
            "RootFS": {}, "Metadata": {"LastTagTime": "2026-12-05T01:00:00Z"},
            "Descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json",
                           "digest": "sha256:0f1e", "size": 300},
            "Config": null
        }"#;
        let image: ImageInspect = serde_json::from_str(text).unwrap();
        assert_eq!(image.id.as_deref(), Some("sha256:0f1e"));
        assert_eq!(image.root_fs.unwrap().typ, None);
        assert_eq!(image.config, None);
        assert_eq!(image.size, Some(1234));
    }

    #[test]
    fn a_summary_with_nulls_decodes() {
        let list: Vec<ImageSummary> = serde_json::from_str(
            r#"[{"Containers": -1, "Created": 1796433398, "Id": "sha256:6b9d", "Labels": null,
                 "ParentId": "", "RepoDigests": null, "RepoTags": null, "SharedSize": -1,
                 "Size": 3071357}]"#,
        )
        .unwrap();
        assert_eq!(list[0].size, Some(3071357));
        assert_eq!(list[0].repo_tags, None);
    }
}
