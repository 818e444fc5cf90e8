//! Which CRI container events a change of a record means.

use super::record::{Phase, Record};

/// The CRI's container event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Created,
    Started,
    Stopped,
    Deleted,
}

fn started_at(record: &Record) -> &str {
    record
        .inspect
        .state
        .as_ref()
        .and_then(|s| s.started_at.as_deref())
        .unwrap_or_default()
}

fn ever_started(record: &Record) -> bool {
    crate::time::rfc3339_to_ns(started_at(record)) > 0
}

/// The events between two views of one container (`None`: not there),
/// in the order they happened. A container seen for the first time after
/// it already ran (a gap in the feed, a restart of the shim) gets the
/// events it would have had.
pub(crate) fn between(old: Option<&Record>, new: Option<&Record>) -> Vec<Transition> {
    use Transition::*;
    match (old, new) {
        (None, None) => vec![],
        (None, Some(new)) => match new.phase {
            Phase::Running => vec![Created, Started],
            Phase::Exited if ever_started(new) => vec![Created, Started, Stopped],
            Phase::Exited => vec![Created, Stopped],
            Phase::Created | Phase::Other => vec![Created],
        },
        (Some(old), None) => match old.phase {
            Phase::Running => vec![Stopped, Deleted],
            _ => vec![Deleted],
        },
        (Some(old), Some(new)) => {
            let restarted = started_at(old) != started_at(new) && ever_started(new);
            match (old.phase, new.phase) {
                (Phase::Running, Phase::Running) if restarted => vec![Stopped, Started],
                (Phase::Running, Phase::Exited) if restarted => vec![Stopped, Started, Stopped],
                (Phase::Running, Phase::Exited) => vec![Stopped],
                (Phase::Created | Phase::Other, Phase::Exited) if ever_started(new) => {
                    vec![Started, Stopped]
                }
                (Phase::Created | Phase::Other, Phase::Exited) => vec![Stopped],
                (Phase::Exited, Phase::Exited) if restarted => vec![Started, Stopped],
                (previous, Phase::Running) if previous != Phase::Running => vec![Started],
                _ => vec![],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transition::*;
    use cri_dockerd_engine::model::{
        ContainerConfig, ContainerInspect, ContainerState, ContainerStatus,
    };
    use std::collections::HashMap;

    fn record(status: ContainerStatus, started: &str) -> Record {
        let inspect = ContainerInspect {
            id: Some("c".into()),
            config: Some(ContainerConfig {
                labels: Some(HashMap::from([(
                    crate::labels::CONTAINER_TYPE.to_string(),
                    crate::labels::CONTAINER_TYPE_CONTAINER.to_string(),
                )])),
                ..Default::default()
            }),
            state: Some(ContainerState {
                running: Some(status == ContainerStatus::Running),
                status: Some(status),
                started_at: Some(started.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        Record::from_inspect(inspect, 1).unwrap()
    }

    const ZERO: &str = "0001-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:00:01Z";
    const T2: &str = "2026-01-01T00:00:02Z";

    #[test]
    fn lifecycle_steps() {
        let created = record(ContainerStatus::Created, ZERO);
        let running = record(ContainerStatus::Running, T1);
        let exited = record(ContainerStatus::Exited, T1);
        assert_eq!(between(None, Some(&created)), vec![Created]);
        assert_eq!(between(Some(&created), Some(&running)), vec![Started]);
        assert_eq!(between(Some(&running), Some(&exited)), vec![Stopped]);
        assert_eq!(between(Some(&exited), None), vec![Deleted]);
        assert_eq!(between(Some(&running), Some(&running)), vec![]);
        assert_eq!(between(Some(&exited), Some(&exited)), vec![]);
    }

    #[test]
    fn steps_missed_in_between_are_filled_in() {
        assert_eq!(
            between(None, Some(&record(ContainerStatus::Running, T1))),
            vec![Created, Started]
        );
        assert_eq!(
            between(None, Some(&record(ContainerStatus::Exited, T1))),
            vec![Created, Started, Stopped]
        );
        assert_eq!(
            between(None, Some(&record(ContainerStatus::Exited, ZERO))),
            vec![Created, Stopped]
        );
        assert_eq!(
            between(
                Some(&record(ContainerStatus::Created, ZERO)),
                Some(&record(ContainerStatus::Exited, T1))
            ),
            vec![Started, Stopped]
        );
        assert_eq!(
            between(Some(&record(ContainerStatus::Running, T1)), None),
            vec![Stopped, Deleted]
        );
        // Restarted behind our back between two looks.
        assert_eq!(
            between(
                Some(&record(ContainerStatus::Running, T1)),
                Some(&record(ContainerStatus::Running, T2))
            ),
            vec![Stopped, Started]
        );
        assert_eq!(
            between(
                Some(&record(ContainerStatus::Exited, T1)),
                Some(&record(ContainerStatus::Running, T2))
            ),
            vec![Started]
        );
    }
}
