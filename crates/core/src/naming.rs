//! Docker container names as cri-dockerd writes them. `docker ps` shows the
//! same names under both runtimes, and a restarted shim recovers pod and
//! container metadata from the name alone.

use cri_dockerd_api::v1::{ContainerMetadata, PodSandboxMetadata};

const KUBE_PREFIX: &str = "k8s";
/// Longer ids name no container and no checkpoint file (NAME_MAX is 255).
const MAX_REFERENCE_LEN: usize = 253;

/// Whether `id` can name a Docker container: a full id, a unique prefix of
/// one, or a name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, Docker's rule for names).
/// Nothing else may reach Docker's URL paths, where `/`, `.` and `%` change
/// what is asked.
pub fn is_container_reference(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= MAX_REFERENCE_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
pub const SANDBOX_CONTAINER_NAME: &str = "POD";
const DELIMITER: char = '_';

/// `k8s_POD_<name>_<namespace>_<uid>_<attempt>`
pub fn sandbox_name(metadata: &PodSandboxMetadata) -> String {
    [
        KUBE_PREFIX,
        SANDBOX_CONTAINER_NAME,
        &metadata.name,
        &metadata.namespace,
        &metadata.uid,
        &metadata.attempt.to_string(),
    ]
    .join("_")
}

/// `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`
pub fn container_name(sandbox: &PodSandboxMetadata, container: &ContainerMetadata) -> String {
    [
        KUBE_PREFIX,
        &container.name,
        &sandbox.name,
        &sandbox.namespace,
        &sandbox.uid,
        &container.attempt.to_string(),
    ]
    .join("_")
}

/// Splits a Docker name into its six parts, tolerating the leading `/` Docker
/// adds and the random seventh part old Docker versions needed on conflicts.
fn split(name: &str) -> Option<Vec<&str>> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let parts: Vec<&str> = name.split(DELIMITER).collect();
    if (parts.len() == 6 || parts.len() == 7) && parts[0] == KUBE_PREFIX {
        Some(parts)
    } else {
        None
    }
}

pub fn parse_sandbox_name(name: &str) -> Option<PodSandboxMetadata> {
    let parts = split(name)?;
    Some(PodSandboxMetadata {
        name: parts[2].to_string(),
        namespace: parts[3].to_string(),
        uid: parts[4].to_string(),
        attempt: parts[5].parse().ok()?,
    })
}

pub fn parse_container_name(name: &str) -> Option<ContainerMetadata> {
    let parts = split(name)?;
    Some(ContainerMetadata {
        name: parts[1].to_string(),
        attempt: parts[5].parse().ok()?,
    })
}

/// Names Docker reports carry a leading slash; the CRI never shows it.
pub fn first_name(names: Option<&Vec<String>>) -> &str {
    names
        .and_then(|n| n.first())
        .map(|n| n.strip_prefix('/').unwrap_or(n))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodSandboxMetadata {
        PodSandboxMetadata {
            name: "web".into(),
            namespace: "demo".into(),
            uid: "0f5c4c2e-1b7a-4a53-9d36-5a1f0f4f7e11".into(),
            attempt: 1,
        }
    }

    #[test]
    fn sandbox_name_matches_cri_dockerd() {
        // testdata/cri-dockerd-v0.3.21/docker-inspect/sandbox-pod-network.json
        assert_eq!(
            sandbox_name(&pod()),
            "k8s_POD_web_demo_0f5c4c2e-1b7a-4a53-9d36-5a1f0f4f7e11_1"
        );
    }

    #[test]
    fn container_name_matches_cri_dockerd() {
        let c = ContainerMetadata {
            name: "app".into(),
            attempt: 2,
        };
        assert_eq!(
            container_name(&pod(), &c),
            "k8s_app_web_demo_0f5c4c2e-1b7a-4a53-9d36-5a1f0f4f7e11_2"
        );
    }

    #[test]
    fn names_round_trip() {
        let name = format!("/{}", sandbox_name(&pod()));
        assert_eq!(parse_sandbox_name(&name), Some(pod()));
        let c = parse_container_name("/k8s_app_web_demo_uid_7").unwrap();
        assert_eq!((c.name.as_str(), c.attempt), ("app", 7));
    }

    #[test]
    fn tolerates_random_suffix_and_rejects_foreign_names() {
        assert!(parse_sandbox_name("k8s_POD_a_b_c_0_deadbeef").is_some());
        assert!(parse_sandbox_name("nginx").is_none());
        assert!(parse_sandbox_name("k8s_POD_a_b_c_x").is_none());
        assert!(parse_sandbox_name("x8s_POD_a_b_c_0").is_none());
        assert!(parse_container_name("k8s_a_b_c_d_-1").is_none());
    }

    #[test]
    fn container_references() {
        for ok in [
            "3e0b0a2d5a9b",
            "3e0b0a2d5a9bea7e34ec4ad62c065907ac4520c0062230e75da5eabb3f48e320",
            "k8s_POD_web_default_uid-1_0",
            "a.b-c",
        ] {
            assert!(is_container_reference(ok), "{ok}");
        }
        let long = "a".repeat(254);
        for bad in [
            "",
            "/",
            ".",
            "..",
            "a/b",
            "%2e%2e%2f",
            "-rf",
            "a\0b",
            "é",
            " ",
            long.as_str(),
        ] {
            assert!(!is_container_reference(bad), "{bad:?}");
        }
    }
}
