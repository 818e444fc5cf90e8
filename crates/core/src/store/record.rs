//! What the store keeps per Docker container of ours: its last inspect and
//! the facts every list and status call derives from it.

use std::collections::HashMap;

use cri_dockerd_engine::model::{ContainerInspect, ContainerStatus};

use crate::labels;
use crate::time::rfc3339_to_ns;

/// Which of ours a Docker container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sandbox,
    Container,
}

/// The lifecycle phases the CRI tells apart (and its events report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Created,
    Running,
    Exited,
    /// Paused, restarting, removing: neither running nor finished.
    Other,
}

#[derive(Debug)]
pub(crate) struct Record {
    pub id: String,
    pub kind: Kind,
    /// The Docker name without its leading `/`.
    pub name: String,
    pub created_ns: i64,
    pub phase: Phase,
    /// The sandbox a container belongs to; empty for sandboxes.
    pub sandbox_id: String,
    pub inspect: ContainerInspect,
    /// When the inspect behind this record was asked for: a record is only
    /// replaced by one asked for later.
    pub(super) seq: u64,
}

static NO_LABELS: std::sync::LazyLock<HashMap<String, String>> =
    std::sync::LazyLock::new(HashMap::new);

/// Docker's state as a phase, as `docker ps` summarises it.
pub(crate) fn phase_of(inspect: &ContainerInspect) -> Phase {
    let Some(state) = inspect.state.as_ref() else {
        return Phase::Other;
    };
    if state.running == Some(true) && state.paused != Some(true) {
        return Phase::Running;
    }
    match state.status {
        Some(ContainerStatus::Created) => Phase::Created,
        Some(ContainerStatus::Exited | ContainerStatus::Dead) => Phase::Exited,
        _ => Phase::Other,
    }
}

impl Record {
    /// `None` for a container that is not one of ours.
    /// Whether Docker's container carries our CRI type label.
    pub(super) fn is_ours(inspect: &ContainerInspect) -> bool {
        Self::kind_of(inspect).is_some()
    }

    fn kind_of(inspect: &ContainerInspect) -> Option<Kind> {
        let docker_labels = inspect.config.as_ref()?.labels.as_ref()?;
        match docker_labels
            .get(labels::CONTAINER_TYPE)
            .map(String::as_str)
        {
            Some(labels::CONTAINER_TYPE_SANDBOX) => Some(Kind::Sandbox),
            Some(labels::CONTAINER_TYPE_CONTAINER) => Some(Kind::Container),
            _ => None,
        }
    }

    pub(super) fn from_inspect(inspect: ContainerInspect, seq: u64) -> Option<Self> {
        let id = inspect.id.clone()?;
        let kind = Self::kind_of(&inspect)?;
        let docker_labels = inspect.config.as_ref()?.labels.as_ref()?;
        let sandbox_id = match kind {
            Kind::Container => docker_labels
                .get(labels::SANDBOX_ID)
                .cloned()
                .unwrap_or_default(),
            Kind::Sandbox => String::new(),
        };
        let name = inspect
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        Some(Self {
            id,
            kind,
            name,
            created_ns: rfc3339_to_ns(inspect.created.as_deref().unwrap_or_default()),
            phase: phase_of(&inspect),
            sandbox_id,
            inspect,
            seq,
        })
    }

    pub fn labels(&self) -> &HashMap<String, String> {
        self.inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .unwrap_or(&NO_LABELS)
    }

    /// Docker's `Created` as the list API gives it: whole seconds.
    pub fn created_seconds_ns(&self) -> i64 {
        self.created_ns / 1_000_000_000 * 1_000_000_000
    }

    /// Whether the container shares the node's network namespace.
    pub fn host_network(&self) -> bool {
        self.inspect
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            == Some(crate::translate::NAMESPACE_MODE_HOST)
    }

    /// The pid of the main process while it runs.
    pub fn running_pid(&self) -> Option<i64> {
        super::running_pid(&self.inspect)
    }

    /// Whether `selector`'s labels all have these values here.
    pub fn matches_labels(&self, selector: &HashMap<String, String>) -> bool {
        let labels = self.labels();
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// The CRI's id filters: the full id or a prefix of it.
pub(crate) fn id_matches(id: &str, wanted: &str) -> bool {
    wanted.is_empty() || id.starts_with(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_dockerd_engine::model::{ContainerConfig, ContainerState};

    pub(crate) fn inspect(
        id: &str,
        kind: &str,
        status: ContainerStatus,
        running: bool,
    ) -> ContainerInspect {
        ContainerInspect {
            id: Some(id.into()),
            name: Some(format!("/k8s_c_p_ns_uid-{id}_0")),
            created: Some("2026-01-02T03:04:05.678Z".into()),
            config: Some(ContainerConfig {
                labels: Some(HashMap::from([
                    (labels::CONTAINER_TYPE.to_string(), kind.to_string()),
                    (labels::SANDBOX_ID.to_string(), "sb".to_string()),
                    ("app".to_string(), "web".to_string()),
                ])),
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: Some(status),
                running: Some(running),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn records_of_ours_only() {
        let r = Record::from_inspect(
            inspect("c1", "container", ContainerStatus::Running, true),
            7,
        )
        .unwrap();
        assert_eq!(r.kind, Kind::Container);
        assert_eq!(r.phase, Phase::Running);
        assert_eq!(r.sandbox_id, "sb");
        assert_eq!(r.name, "k8s_c_p_ns_uid-c1_0");
        assert_eq!(r.created_seconds_ns() % 1_000_000_000, 0);
        assert!(r.created_ns > r.created_seconds_ns());
        let s = Record::from_inspect(
            inspect("s1", "podsandbox", ContainerStatus::Exited, false),
            1,
        )
        .unwrap();
        assert_eq!(
            (s.kind, s.phase, s.sandbox_id.as_str()),
            (Kind::Sandbox, Phase::Exited, "")
        );
        assert!(
            Record::from_inspect(inspect("x", "other", ContainerStatus::Running, true), 1)
                .is_none()
        );
        assert!(r.matches_labels(&HashMap::from([("app".into(), "web".into())])));
        assert!(!r.matches_labels(&HashMap::from([("app".into(), "db".into())])));
        assert!(
            id_matches("abcdef", "abc") && id_matches("abcdef", "") && !id_matches("abc", "abd")
        );
    }
}
