//! Docker labels as cri-dockerd writes them. CRI labels are stored as-is,
//! annotations under a prefix, plus a few internal keys that tell sandboxes
//! from containers. Everything ListPodSandbox and ListContainers return is
//! rebuilt from these labels and the container name.

use std::collections::HashMap;

pub const CONTAINER_TYPE: &str = "io.kubernetes.docker.type";
pub const CONTAINER_TYPE_SANDBOX: &str = "podsandbox";
pub const CONTAINER_TYPE_CONTAINER: &str = "container";
pub const CONTAINER_LOG_PATH: &str = "io.kubernetes.container.logpath";
pub const SANDBOX_ID: &str = "io.kubernetes.sandbox.id";
pub const KUBERNETES_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const ANNOTATION_PREFIX: &str = "annotation.";
/// Resources Docker has no API for (hugepages, cgroup v2 unified keys),
/// applied to the container's cgroup once it runs. Ours, not cri-dockerd's.
pub const EXTRA_RESOURCES: &str = "io.kubernetes.cri-dockerd-rs.extra-resources";

/// The images of a container's image volumes as the CRI named them, by
/// container path (JSON): Docker's record may name one by its ID (see
/// `translate::container::mounts`). Ours, not cri-dockerd's.
pub const IMAGE_VOLUMES: &str = "io.kubernetes.cri-dockerd-rs.image-volumes";

const INTERNAL_KEYS: [&str; 5] = [
    CONTAINER_TYPE,
    CONTAINER_LOG_PATH,
    SANDBOX_ID,
    EXTRA_RESOURCES,
    IMAGE_VOLUMES,
];

/// Merges CRI labels and annotations into one Docker label map (Docker has no
/// annotations).
pub fn make_labels(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut merged = labels.clone();
    for (k, v) in annotations {
        merged.insert(format!("{ANNOTATION_PREFIX}{k}"), v.clone());
    }
    merged
}

/// Splits Docker labels back into CRI labels and annotations, dropping the
/// keys the shim adds for itself.
pub fn extract_labels(
    docker_labels: &HashMap<String, String>,
) -> (HashMap<String, String>, HashMap<String, String>) {
    let is_sandbox =
        docker_labels.get(CONTAINER_TYPE).map(String::as_str) == Some(CONTAINER_TYPE_SANDBOX);
    let mut labels = HashMap::new();
    let mut annotations = HashMap::new();
    for (k, v) in docker_labels {
        if INTERNAL_KEYS.contains(&k.as_str()) {
            continue;
        }
        // The shim adds the container name label to sandboxes; the CRI
        // client never set it, so it must not see it.
        if is_sandbox && k == KUBERNETES_CONTAINER_NAME {
            continue;
        }
        match k.strip_prefix(ANNOTATION_PREFIX) {
            Some(annotation) => {
                annotations.insert(annotation.to_string(), v.clone());
            }
            None => {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    (labels, annotations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_get_the_prefix_and_come_back() {
        let labels = map(&[("app", "web")]);
        let annotations = map(&[("example.com/note", "hello")]);
        let mut docker = make_labels(&labels, &annotations);
        assert_eq!(docker["annotation.example.com/note"], "hello");
        docker.insert(CONTAINER_TYPE.into(), CONTAINER_TYPE_SANDBOX.into());
        docker.insert(KUBERNETES_CONTAINER_NAME.into(), "POD".into());
        let (l, a) = extract_labels(&docker);
        assert_eq!(l, labels);
        assert_eq!(a, annotations);
    }

    #[test]
    fn container_name_label_stays_on_containers() {
        let docker = map(&[
            (CONTAINER_TYPE, CONTAINER_TYPE_CONTAINER),
            (KUBERNETES_CONTAINER_NAME, "app"),
            (SANDBOX_ID, "abc"),
            (CONTAINER_LOG_PATH, "/var/log/pods/x/app/0.log"),
        ]);
        let (l, a) = extract_labels(&docker);
        assert_eq!(l, map(&[(KUBERNETES_CONTAINER_NAME, "app")]));
        assert!(a.is_empty());
    }
}
