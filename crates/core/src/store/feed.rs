//! Docker's event stream into the store. Each event of one of our
//! containers makes the store inspect that container once (events that come
//! together are batched, each container inspected once per batch); image
//! events invalidate cached image names. When the stream breaks (Docker
//! restarting, a dropped connection) the store is marked out of step, and
//! once Docker answers again it relists and follows the stream from just
//! before the relist, so nothing that happened in between is missed.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cri_dockerd_engine::model::{EventMessage, EventType};
use futures::{FutureExt, StreamExt};

use super::NodeStore;
use crate::labels;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A stream that lasted this long was healthy: the next failure starts the
/// backoff over.
const HEALTHY_STREAM: Duration = Duration::from_secs(30);
/// Events replayed from before a relist: Docker's and our clocks may
/// differ a little, and a replayed event only costs one inspect.
const REPLAY_MARGIN: Duration = Duration::from_secs(1);

/// Container actions that can change what the CRI reports. Exec, attach,
/// resize, top and the like (the kubelet's probes exec every few seconds)
/// change nothing and are ignored.
const STATE_ACTIONS: [&str; 12] = [
    "create", "start", "restart", "die", "oom", "kill", "stop", "destroy", "pause", "unpause",
    "rename", "update",
];

/// "Now" as Docker's `since` takes it, a little in the past.
pub(super) fn docker_now_minus_margin() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(REPLAY_MARGIN);
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// What one event asks of the store.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    Inspect(String),
    Destroyed(String),
    ImagesChanged,
    Nothing,
}

fn effect_of(event: &EventMessage) -> Effect {
    let action = event.action.as_deref().unwrap_or_default();
    match event.typ {
        Some(EventType::Image) => Effect::ImagesChanged,
        Some(EventType::Container) => {
            let Some(actor) = event.actor.as_ref() else {
                return Effect::Nothing;
            };
            let ours = actor
                .attributes
                .as_ref()
                .is_some_and(|a| a.contains_key(labels::CONTAINER_TYPE));
            let relevant = STATE_ACTIONS.contains(&action) || action.starts_with("health_status");
            match (&actor.id, ours && relevant) {
                (Some(id), true) if action == "destroy" => Effect::Destroyed(id.clone()),
                (Some(id), true) => Effect::Inspect(id.clone()),
                _ => Effect::Nothing,
            }
        }
        _ => Effect::Nothing,
    }
}

/// Follows the stream for as long as the store is alive.
pub(super) async fn follow_forever(store: Weak<NodeStore>, mut since: String) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(live) = store.upgrade() else { return };
        let started = Instant::now();
        let ended = follow(&live, &since).await;
        live.set_synced(false);
        tracing::warn!(reason = %ended, "Docker's event stream ended; the shim is out of step until it relists");
        if started.elapsed() >= HEALTHY_STREAM {
            backoff = MIN_BACKOFF;
        }
        drop(live);
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let Some(live) = store.upgrade() else { return };
            // The daemon may be another release now (upgraded in place, or
            // rolled back): speak its version before asking anything.
            if let Err(e) = live.engine.renegotiate().await {
                tracing::warn!(error = %e, "Docker is back but cannot be served yet; retrying");
                continue;
            }
            since = docker_now_minus_margin();
            match live.relist().await {
                Ok(()) => {
                    live.set_synced(true);
                    tracing::info!("back in step with Docker");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relisting after the event stream broke failed; retrying")
                }
            }
        }
    }
}

/// Applies events until the stream ends; why it ended.
async fn follow(store: &NodeStore, since: &str) -> String {
    let filters = [("type", vec!["container".to_string(), "image".to_string()])];
    let events = match store.engine.events(Some(since), None, &filters).await {
        Ok(events) => events,
        Err(e) => return e.to_string(),
    };
    let mut events = std::pin::pin!(events);
    loop {
        let first = match events.next().await {
            Some(Ok(event)) => event,
            Some(Err(e)) => return e.to_string(),
            None => return "closed by Docker".to_string(),
        };
        let mut batch = vec![first];
        while let Some(Some(Ok(event))) = events.next().now_or_never() {
            batch.push(event);
        }
        apply(store, &batch).await;
    }
}

/// Each container once per batch, in the order first seen; a destroy
/// seen in the batch wins over earlier actions of the same container.
async fn apply(store: &NodeStore, batch: &[EventMessage]) {
    let mut order: Vec<String> = Vec::new();
    let mut destroyed: HashMap<String, bool> = HashMap::new();
    for event in batch {
        match effect_of(event) {
            Effect::ImagesChanged => store.image_changed(),
            Effect::Inspect(id) => {
                if !destroyed.contains_key(&id) {
                    order.push(id.clone());
                }
                destroyed.insert(id, false);
            }
            Effect::Destroyed(id) => {
                if !destroyed.contains_key(&id) {
                    order.push(id.clone());
                }
                destroyed.insert(id, true);
            }
            Effect::Nothing => {}
        }
    }
    let work = order.into_iter().map(|id| {
        let gone = destroyed.get(&id).copied().unwrap_or(false);
        async move {
            if gone {
                store.forget(&id);
            } else if let Err(e) = store.fetch(&id).await {
                tracing::debug!(container_id = %id, error = %e, "inspect after an event failed");
            }
        }
    });
    futures::future::join_all(work).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_dockerd_engine::model::EventActor;

    fn event(typ: EventType, action: &str, ours: bool) -> EventMessage {
        let mut attributes = HashMap::from([("name".to_string(), "x".to_string())]);
        if ours {
            attributes.insert(labels::CONTAINER_TYPE.into(), "container".into());
        }
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("c1".into()),
                attributes: Some(attributes),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_state_events_of_ours_cost_an_inspect() {
        use EventType::*;
        assert_eq!(
            effect_of(&event(Container, "die", true)),
            Effect::Inspect("c1".into())
        );
        assert_eq!(
            effect_of(&event(Container, "destroy", true)),
            Effect::Destroyed("c1".into())
        );
        assert_eq!(
            effect_of(&event(Container, "health_status: healthy", true)),
            Effect::Inspect("c1".into())
        );
        assert_eq!(
            effect_of(&event(Container, "exec_start: sh", true)),
            Effect::Nothing
        );
        assert_eq!(effect_of(&event(Container, "die", false)), Effect::Nothing);
        assert_eq!(
            effect_of(&event(Image, "tag", false)),
            Effect::ImagesChanged
        );
        assert_eq!(effect_of(&event(Network, "connect", true)), Effect::Nothing);
        assert_eq!(effect_of(&event(Unknown, "start", true)), Effect::Nothing);
    }
}
