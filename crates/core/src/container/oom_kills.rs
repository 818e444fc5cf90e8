//! Whether an exited container was killed by the OOM killer, also when
//! Docker's own flag says no.
//!
//! Docker (20.10 and later) sets `State.OOMKilled` only when containerd's
//! OOM event reaches it before the exit event. The two come from different
//! places in the shim (the cgroup's eventfd and the reaper), and under load
//! the OOM event can come second: the flag then stays false forever, while
//! Docker still records an `oom` event for the container. So for a
//! memory-limited container that died of SIGKILL without the flag, Docker's
//! event history decides. The answer is kept per container: the kubelet asks
//! for the status of an exited container every second.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cri_dockerd_engine::Engine;
use cri_dockerd_engine::model::ContainerInspect;
use futures::StreamExt;

use crate::time::rfc3339_to_ns;

/// An exit this recent may still have its OOM event on the way.
const LATE_EVENT_WINDOW: Duration = Duration::from_secs(2);
/// How long to wait for such an event.
const LATE_EVENT_WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(100);
/// Remembered answers; past this many the oldest knowledge is dropped.
const MAX_REMEMBERED: usize = 4096;

#[derive(Default)]
pub(crate) struct OomKills {
    known: Mutex<HashMap<String, bool>>,
}

/// SIGKILL's exit status.
const KILLED: i64 = 137;

/// Only a memory-limited container that died of SIGKILL and that Docker
/// did not flag needs a second look.
fn needs_history(inspect: &ContainerInspect) -> bool {
    let Some(state) = inspect.state.as_ref() else {
        return false;
    };
    let limited = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.memory)
        .unwrap_or(0)
        > 0;
    limited
        && state.running != Some(true)
        && state.exit_code == Some(KILLED)
        && state.oom_killed != Some(true)
        && rfc3339_to_ns(state.finished_at.as_deref().unwrap_or_default()) > 0
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl OomKills {
    /// Whether the container `inspect` describes was OOM-killed.
    pub(crate) async fn was_oom_killed(
        &self,
        engine: &Engine,
        id: &str,
        inspect: &ContainerInspect,
    ) -> bool {
        let flagged = inspect.state.as_ref().and_then(|s| s.oom_killed) == Some(true);
        if flagged || !needs_history(inspect) {
            return flagged;
        }
        if let Some(known) = self.known.lock().get(id) {
            return *known;
        }
        let state = inspect.state.as_ref().expect("checked");
        let started_ns = rfc3339_to_ns(state.started_at.as_deref().unwrap_or_default());
        let finished_ns = rfc3339_to_ns(state.finished_at.as_deref().unwrap_or_default());
        let since_finished =
            unix_now().saturating_sub(Duration::from_nanos(finished_ns.max(0) as u64));
        let wait = if since_finished < LATE_EVENT_WINDOW {
            LATE_EVENT_WAIT
        } else {
            Duration::ZERO
        };
        let asked = Instant::now();
        loop {
            match oom_event_since(engine, id, started_ns).await {
                Ok(true) => {
                    tracing::debug!(
                        container_id = id,
                        "State.OOMKilled is false but Docker recorded an oom event: OOMKilled"
                    );
                    self.remember(id, true);
                    return true;
                }
                Ok(false) if asked.elapsed() >= wait => {
                    self.remember(id, false);
                    return false;
                }
                Ok(false) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::debug!(container_id = id, error = %e, "reading Docker's OOM events failed");
                    return false;
                }
            }
        }
    }

    fn remember(&self, id: &str, oom_killed: bool) {
        let mut known = self.known.lock();
        if known.len() >= MAX_REMEMBERED {
            known.clear();
        }
        known.insert(id.to_string(), oom_killed);
    }

    pub(crate) fn forget(&self, id: &str) {
        self.known.lock().remove(id);
    }
}

/// Whether Docker recorded an `oom` event for the container since it
/// started (`started_ns`, Unix nanoseconds): its history up to now; the
/// call does not wait for new events.
pub async fn oom_event_since(
    engine: &Engine,
    id: &str,
    started_ns: i64,
) -> Result<bool, bollard::errors::Error> {
    let since = (started_ns / 1_000_000_000 - 1).max(0);
    let now = unix_now();
    let until = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let filters = [
        ("container", vec![id.to_string()]),
        ("event", vec!["oom".to_string()]),
    ];
    let events = engine
        .events(Some(&since.to_string()), Some(&until), &filters)
        .await?;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let event = event?;
        if event.action.as_deref() == Some("oom") {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_dockerd_engine::model::{ContainerState, HostConfig};

    fn inspect(memory: i64, exit: i64, oom: bool, running: bool) -> ContainerInspect {
        ContainerInspect {
            state: Some(ContainerState {
                running: Some(running),
                exit_code: Some(exit),
                oom_killed: Some(oom),
                started_at: Some("2026-01-01T00:00:00Z".into()),
                finished_at: Some("2026-01-01T00:00:01Z".into()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                memory: Some(memory),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_unflagged_sigkills_of_limited_containers_are_looked_up() {
        assert!(needs_history(&inspect(32 << 20, 137, false, false)));
        assert!(
            !needs_history(&inspect(32 << 20, 137, true, false)),
            "flagged"
        );
        assert!(!needs_history(&inspect(0, 137, false, false)), "no limit");
        assert!(
            !needs_history(&inspect(32 << 20, 1, false, false)),
            "not SIGKILL"
        );
        assert!(
            !needs_history(&inspect(32 << 20, 137, false, true)),
            "running"
        );
    }
}
