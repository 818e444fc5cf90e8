//! The node's sandboxes and containers as the CRI sees them, in memory.
//!
//! Built at start from one listing of Docker's containers that carry our
//! labels (an inspect each), then kept current by Docker's event stream
//! (`feed`): an event makes the store inspect that one container again,
//! never relist. The shim's own writes refresh their container at once, so
//! a call sees its own effects. Lists, statuses and stats read from here;
//! only misses (an id the store does not know) ask Docker.
//!
//! Every inspect is stamped with a sequence number taken before it was
//! asked for, and a record is only replaced by a later-asked one: an event's
//! inspect that crossed the shim's own write cannot bring back stale state.
//! Each change of a container's phase is broadcast as a [`Change`], which
//! becomes the CRI's container events.

mod feed;
mod record;
mod transitions;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use cri_dockerd_engine::Engine;
use cri_dockerd_engine::model::ContainerInspect;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use crate::error::{Error, Result, is_docker_not_found};
use crate::labels;

pub(crate) use record::{Kind, Phase, Record, id_matches};
pub(crate) use transitions::Transition;

/// Whether a lookup may answer from the store (reads) or must ask Docker
/// (writes, which act on what is there now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    Stored,
    Current,
}

/// InvalidArgument for an id that cannot name any container.
fn check_reference(id: &str) -> Result<()> {
    if crate::naming::is_container_reference(id) {
        return Ok(());
    }
    let shown: String = id.chars().take(80).collect();
    Err(Error::InvalidArgument(format!(
        "{shown:?} is not a container or sandbox id (nor a Docker name)"
    )))
}

/// What Docker says of an id a client handed us.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    /// One of our sandboxes or containers, as it is now.
    Ours(Arc<Record>),
    /// A container without our CRI labels: never acted on, never shown.
    NotOurs,
    /// No such container (or one removed while we asked).
    Gone,
}

/// The pid of a container's main process while it runs.
pub(crate) fn running_pid(inspect: &ContainerInspect) -> Option<i64> {
    let state = inspect.state.as_ref()?;
    (state.running == Some(true))
        .then_some(state.pid?)
        .filter(|p| *p > 0)
}

/// Removed ids remembered so a late inspect cannot resurrect them.
const MAX_TOMBSTONES: usize = 4096;
/// Changes a subscriber may fall behind by before it loses the oldest:
/// CRI-O keeps 1,000 per subscriber; the broadcast buffer holds a power of
/// two, so 1,024.
pub(crate) const CHANGE_BUFFER: usize = 1024;
/// Inspects run at once during a relist.
const RELIST_CONCURRENCY: usize = 16;

/// One phase change of a sandbox or container.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub transition: Transition,
    /// The record after the change; for `Deleted`, the last one known.
    pub record: Arc<Record>,
    /// When the store saw it (Unix nanoseconds).
    pub at_ns: i64,
}

pub(crate) struct NodeStore {
    engine: Engine,
    records: RwLock<HashMap<String, Arc<Record>>>,
    /// Id -> the sequence number at which it was removed.
    tombstones: Mutex<HashMap<String, u64>>,
    seq: AtomicU64,
    synced: watch::Sender<bool>,
    changes: broadcast::Sender<Change>,
    /// Bumped on every image event: caches of image names compare it.
    image_generation: AtomicU64,
}

impl NodeStore {
    pub(crate) fn new(engine: Engine) -> Arc<Self> {
        let (synced, _) = watch::channel(false);
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        Arc::new(Self {
            engine,
            records: RwLock::default(),
            tombstones: Mutex::default(),
            seq: AtomicU64::new(1),
            synced,
            changes,
            image_generation: AtomicU64::new(0),
        })
    }

    /// Lists and inspects everything once, then follows Docker's events in
    /// the background for as long as the store lives.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<()> {
        let since = feed::docker_now_minus_margin();
        self.relist().await?;
        self.synced.send_replace(true);
        tokio::spawn(feed::follow_forever(Arc::downgrade(self), since));
        Ok(())
    }

    /// Follows the in-step flag (false while Docker's events are lost).
    pub(crate) fn synced_changes(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    pub(crate) fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits up to `limit` for the store to be in step with Docker again.
    pub(crate) async fn wait_synced(&self, limit: Duration) -> bool {
        let mut synced = self.synced.subscribe();
        tokio::time::timeout(limit, synced.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// For calls that must not answer from a store that lags: waits a
    /// little for a resync, else says Docker is unavailable.
    pub(crate) async fn ensure_synced(&self) -> Result<()> {
        if self.is_synced() || self.wait_synced(Duration::from_secs(5)).await {
            Ok(())
        } else {
            Err(Error::Unavailable(
                "not in step with Docker: its event stream is reconnecting".into(),
            ))
        }
    }

    fn set_synced(&self, synced: bool) {
        self.synced.send_replace(synced);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    pub(crate) fn image_generation(&self) -> u64 {
        self.image_generation.load(Ordering::Relaxed)
    }

    fn image_changed(&self) {
        self.image_generation.fetch_add(1, Ordering::Relaxed);
    }

    /// A sequence number for an inspect about to be asked for.
    pub(crate) fn ticket(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    /// The record of `id` (a full id or a unique prefix), from memory.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Record>> {
        let records = self.records.read();
        if let Some(record) = records.get(id) {
            return Some(record.clone());
        }
        if id.is_empty() || id.len() >= 64 {
            return None;
        }
        let mut matches = records.values().filter(|r| r.id.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Some(one.clone()),
            _ => None,
        }
    }

    /// The record of `id` from memory, else from Docker (an id the store
    /// has not seen yet, a name, an ambiguous prefix Docker will reject).
    pub(crate) async fn lookup(&self, id: &str) -> Result<Option<Arc<Record>>> {
        check_reference(id)?;
        if self.is_synced()
            && let Some(record) = self.get(id)
        {
            return Ok(Some(record));
        }
        self.fetch(id).await
    }

    /// Every record of `kind`, newest first as `docker ps` lists them.
    pub(crate) fn all(&self, kind: Kind) -> Vec<Arc<Record>> {
        let mut records: Vec<Arc<Record>> = self
            .records
            .read()
            .values()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect();
        records.sort_by(|a, b| b.created_ns.cmp(&a.created_ns).then(a.id.cmp(&b.id)));
        records
    }

    /// The containers (not the sandbox) of a pod.
    pub(crate) fn pod_containers(&self, sandbox_id: &str) -> Vec<Arc<Record>> {
        self.all(Kind::Container)
            .into_iter()
            .filter(|r| r.sandbox_id == sandbox_id)
            .collect()
    }

    /// Inspects `id` now and records what Docker says: for the shim's own
    /// writes (so the next call sees them) and for misses.
    pub(crate) async fn fetch(&self, id: &str) -> Result<Option<Arc<Record>>> {
        Ok(match self.find(id).await? {
            Found::Ours(record) => Some(record),
            Found::NotOurs | Found::Gone => None,
        })
    }

    /// Like `fetch`, but tells a container that is gone (so a stop or
    /// remove of it is already done) from one Docker runs for someone else
    /// (which the CRI must never touch).
    pub(crate) async fn find(&self, id: &str) -> Result<Found> {
        check_reference(id)?;
        let seq = self.ticket();
        match self.engine.inspect_container(id, false).await {
            Ok(inspect) if !Record::is_ours(&inspect) => Ok(Found::NotOurs),
            Ok(inspect) => Ok(self.put(seq, inspect).map_or(Found::Gone, Found::Ours)),
            Err(e) if is_docker_not_found(&e) => {
                if id.len() == 64 {
                    self.remove(seq, id);
                }
                Ok(Found::Gone)
            }
            Err(e) => Err(Error::docker(format!("inspecting {id}"))(e)),
        }
    }

    /// Records an inspect asked for at `seq`; `None` when the container is
    /// not ours. A later-asked inspect already recorded wins.
    pub(crate) fn put(&self, seq: u64, inspect: ContainerInspect) -> Option<Arc<Record>> {
        let record = Arc::new(Record::from_inspect(inspect, seq)?);
        let mut changes = Vec::new();
        let kept = {
            let mut records = self.records.write();
            if self
                .tombstones
                .lock()
                .get(&record.id)
                .is_some_and(|removed| *removed > seq)
            {
                return None;
            }
            match records.get(&record.id) {
                Some(existing) if existing.seq > seq => existing.clone(),
                existing => {
                    for transition in transitions::between(existing.map(|e| &**e), Some(&record)) {
                        changes.push((transition, record.clone()));
                    }
                    records.insert(record.id.clone(), record.clone());
                    record
                }
            }
        };
        self.announce(changes);
        Some(kept)
    }

    /// Forgets `id`, removed as of `seq`.
    pub(crate) fn remove(&self, seq: u64, id: &str) {
        let mut changes = Vec::new();
        {
            let mut records = self.records.write();
            if records.get(id).is_some_and(|r| r.seq > seq) {
                return;
            }
            if let Some(last) = records.remove(id) {
                for transition in transitions::between(Some(&last), None) {
                    changes.push((transition, last.clone()));
                }
            }
            let mut tombstones = self.tombstones.lock();
            if tombstones.len() >= MAX_TOMBSTONES {
                // The oldest half: their late inspects have long returned.
                let mut seqs: Vec<u64> = tombstones.values().copied().collect();
                seqs.sort_unstable();
                let cut = seqs[seqs.len() / 2];
                tombstones.retain(|_, s| *s > cut);
            }
            tombstones.insert(id.to_string(), seq);
        }
        self.announce(changes);
    }

    /// The shim removed `id` itself.
    pub(crate) fn forget(&self, id: &str) {
        let seq = self.ticket();
        self.remove(seq, id);
    }

    fn announce(&self, changes: Vec<(Transition, Arc<Record>)>) {
        let at_ns = crate::time::system_now_ns();
        for (transition, record) in changes {
            // No subscriber is fine.
            let _ = self.changes.send(Change {
                transition,
                record,
                at_ns,
            });
        }
    }

    /// Lists every container of ours and inspects each: the store becomes
    /// what Docker has, and the differences are announced as changes.
    async fn relist(&self) -> Result<()> {
        let list_seq = self.ticket();
        let listed = self
            .engine
            .list_containers(true, &[("label", vec![labels::CONTAINER_TYPE.to_string()])])
            .await
            .map_err(Error::docker("listing containers"))?;
        let ids: Vec<String> = listed.into_iter().filter_map(|c| c.id).collect();
        let inspected: Vec<Result<()>> = futures::stream::iter(ids.iter().cloned())
            .map(|id| async move { self.fetch(&id).await.map(|_| ()) })
            .buffer_unordered(RELIST_CONCURRENCY)
            .collect()
            .await;
        if let Some(Err(e)) = inspected.into_iter().find(|r| r.is_err()) {
            return Err(e);
        }
        let gone: Vec<String> = self
            .records
            .read()
            .keys()
            .filter(|id| !ids.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.remove(list_seq, &id);
        }
        // Image events may have been missed too.
        self.image_changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_dockerd_engine::model::{ContainerConfig, ContainerState, ContainerStatus};

    fn docker() -> Engine {
        crate::test_support::offline_engine()
    }

    fn inspect(id: &str, running: bool, started: &str) -> ContainerInspect {
        ContainerInspect {
            id: Some(id.into()),
            name: Some(format!("/k8s_c_p_ns_{id}_0")),
            created: Some("2026-01-02T03:04:05Z".into()),
            config: Some(ContainerConfig {
                labels: Some(HashMap::from([(
                    labels::CONTAINER_TYPE.to_string(),
                    labels::CONTAINER_TYPE_CONTAINER.to_string(),
                )])),
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: Some(if running {
                    ContainerStatus::Running
                } else {
                    ContainerStatus::Exited
                }),
                running: Some(running),
                started_at: Some(started.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_later_asked_inspect_wins_and_removals_stay_removed() {
        let store = NodeStore::new(docker());
        let mut changes = store.subscribe();
        let early = store.ticket();
        let late = store.ticket();
        store.put(late, inspect("a", true, "2026-01-02T03:04:06Z"));
        // An inspect asked for earlier that returns later must not win.
        store.put(early, inspect("a", false, "2026-01-02T03:04:06Z"));
        assert_eq!(store.get("a").unwrap().phase, Phase::Running);
        let seen: Vec<Transition> = std::iter::from_fn(|| changes.try_recv().ok())
            .map(|c| c.transition)
            .collect();
        assert_eq!(seen, vec![Transition::Created, Transition::Started]);

        let before_removal = store.ticket();
        store.forget("a");
        store.put(before_removal, inspect("a", true, "2026-01-02T03:04:06Z"));
        assert!(store.get("a").is_none(), "resurrected by a stale inspect");
        let seen: Vec<Transition> = std::iter::from_fn(|| changes.try_recv().ok())
            .map(|c| c.transition)
            .collect();
        assert_eq!(seen, vec![Transition::Stopped, Transition::Deleted]);
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_the_oldest_and_holds_nobody_up() {
        use tokio::sync::broadcast::error::TryRecvError;
        let store = NodeStore::new(docker());
        let mut fast = store.subscribe();
        let mut slow = store.subscribe();
        let mut fast_seen = 0;
        for i in 0..600 {
            // Each running newcomer is two changes: Created, Started.
            store.put(
                store.ticket(),
                inspect(&format!("c{i}"), true, "2026-01-02T03:04:06Z"),
            );
            while fast.try_recv().is_ok() {
                fast_seen += 1;
            }
        }
        assert_eq!(fast_seen, 1200, "the reader that keeps up sees everything");
        match slow.try_recv() {
            Err(TryRecvError::Lagged(lost)) => assert_eq!(lost, 1200 - CHANGE_BUFFER as u64),
            other => panic!("expected a lag, got {other:?}"),
        }
        let mut kept = 0;
        while slow.try_recv().is_ok() {
            kept += 1;
        }
        assert_eq!(kept, CHANGE_BUFFER, "the newest changes are kept");
    }

    #[tokio::test]
    async fn prefixes_resolve_only_when_unique() {
        let store = NodeStore::new(docker());
        store.put(store.ticket(), inspect("abc1", true, ""));
        store.put(store.ticket(), inspect("abc2", true, ""));
        assert_eq!(store.get("abc1").unwrap().id, "abc1");
        assert!(store.get("abc").is_none(), "ambiguous");
        assert!(store.get("").is_none());
        assert_eq!(store.all(Kind::Container).len(), 2);
        assert!(store.all(Kind::Sandbox).is_empty());
    }
}
