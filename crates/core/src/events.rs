//! GetContainerEvents, as the kubelet's Evented PLEG consumes it: every
//! phase change the store sees (the shim's own calls and Docker's events
//! alike) becomes a CREATED, STARTED, STOPPED or DELETED event for the
//! container, or for the sandbox with its id as `container_id`. Each event
//! carries the pod's sandbox status (the kubelet drops events without its
//! metadata; a deleted sandbox's is its last known one) and the statuses
//! of the pod's containers.
//!
//! Every subscriber reads its own position in one bounded buffer of
//! changes: a subscriber that falls more than its length behind loses the
//! oldest events instead of holding up the others, and the loss is logged
//! and counted in the subscriber's `container_events_dropped_total`.

use std::sync::Arc;

use cri_dockerd_api::v1::{ContainerEventResponse, ContainerEventType};
use cri_dockerd_telemetry::metrics::EventSubscriber;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::docker_cri::DockerCri;
use crate::naming;
use crate::sandbox::SandboxDetails;
use crate::store::{Change, Freshness, Kind, Transition};

fn event_type(transition: Transition) -> ContainerEventType {
    match transition {
        Transition::Created => ContainerEventType::ContainerCreatedEvent,
        Transition::Started => ContainerEventType::ContainerStartedEvent,
        Transition::Stopped => ContainerEventType::ContainerStoppedEvent,
        Transition::Deleted => ContainerEventType::ContainerDeletedEvent,
    }
}

impl DockerCri {
    /// A subscriber's stream of events, from now on.
    pub fn container_events(
        self: &Arc<Self>,
    ) -> impl Stream<Item = ContainerEventResponse> + Send + use<> {
        let changes = self.store.subscribe();
        let runtime = self.clone();
        // Its series live as long as the stream.
        let subscriber = EventSubscriber::new();
        futures::stream::unfold(
            (changes, runtime, 0u64, subscriber),
            |(mut changes, runtime, mut lost, subscriber)| async move {
                loop {
                    match changes.recv().await {
                        Ok(change) => {
                            if let Some(event) = runtime.event_of(&change).await {
                                subscriber.delivered();
                                return Some((event, (changes, runtime, lost, subscriber)));
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            lost += n;
                            subscriber.dropped(n);
                            tracing::warn!(
                                lost_now = n,
                                lost_in_all = lost,
                                "a container event subscriber fell behind; its oldest events were dropped"
                            );
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        )
    }

    /// The CRI event for one change; `None` when its pod is unknown (a
    /// container whose sandbox is gone and has no checkpoint).
    async fn event_of(&self, change: &Change) -> Option<ContainerEventResponse> {
        let record = &change.record;
        let sandbox_id = match record.kind {
            Kind::Sandbox => record.id.clone(),
            Kind::Container => record.sandbox_id.clone(),
        };
        let details = if record.kind == Kind::Sandbox && change.transition == Transition::Deleted {
            // Gone from the store: its last known state.
            SandboxDetails {
                id: record.id.clone(),
                metadata: naming::parse_sandbox_name(&record.name)?,
                host_network: false,
                pid: None,
                record: Some(record.clone()),
                checkpoint: None,
            }
        } else {
            self.sandbox_details(&sandbox_id, Freshness::Stored)
                .await
                .ok()
                .flatten()?
        };
        let (pod_sandbox_status, _) = self.sandbox_status_of(&details, false);
        Some(ContainerEventResponse {
            container_id: record.id.clone(),
            container_event_type: event_type(change.transition) as i32,
            created_at: change.at_ns,
            pod_sandbox_status: Some(pod_sandbox_status),
            containers_statuses: self.pod_container_statuses(&sandbox_id).await,
        })
    }
}
