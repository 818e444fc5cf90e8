//! What a shim that stopped at the wrong moment left behind, put right at
//! start, once the store is built:
//!
//! - A sandbox container running without its pod network (the shim died
//!   between starting it and CNI ADD) is reported NotReady, so the kubelet
//!   stops it and makes a new one.
//! - Pod attachments in the CNI cache, and the IPs host-local holds for
//!   them, whose sandbox container no longer exists and has no checkpoint
//!   (so the kubelet will never ask to stop it) are released with a CNI DEL
//!   from the cached result. An IP lease of an unknown container with no
//!   cached attachment is reported, not touched: without the attachment the
//!   lease may be another CNI user's.
//! - A checkpoint that cannot be read and has no container is removed: the
//!   kubelet cannot see it to remove it.
//!
//! Sandboxes the kubelet still has to stop (checkpoint present, container
//! gone) stay listed as before. Every action is logged once with its reason.

use std::collections::HashSet;

use cri_dockerd_cni::{PodRef, host_local_leases};

use crate::docker_cri::DockerCri;
use crate::store::{Kind, Phase};

/// CNI_ARGS key every pod attachment made by a CRI runtime carries.
const POD_INFRA_ARG: &str = "K8S_POD_INFRA_CONTAINER_ID";

impl DockerCri {
    /// Runs the start-up reconciliation (see the module documentation).
    pub async fn reconcile(&self) {
        self.mark_sandboxes_without_network();
        self.release_orphaned_attachments().await;
        self.remove_unreadable_orphan_checkpoints();
    }

    fn mark_sandboxes_without_network(&self) {
        let Some(cni) = &self.cni else { return };
        for record in self.store.all(Kind::Sandbox) {
            if record.phase != Phase::Running
                || record.host_network()
                || cni.cached_network(&record.id).is_some()
            {
                continue;
            }
            tracing::warn!(
                pod_sandbox_id = %record.id,
                "sandbox runs without its pod network (the shim stopped during its start): reported NotReady so the kubelet replaces it"
            );
            self.networks.mark_missing(&record.id);
        }
    }

    /// Ids the node still knows: Docker containers of ours and checkpoints.
    fn known_ids(&self) -> HashSet<String> {
        let mut known: HashSet<String> = self
            .store
            .all(Kind::Sandbox)
            .into_iter()
            .chain(self.store.all(Kind::Container))
            .map(|r| r.id.clone())
            .collect();
        known.extend(self.checkpoints.list().unwrap_or_default());
        known
    }

    async fn release_orphaned_attachments(&self) {
        let Some(cni) = &self.cni else { return };
        let known = self.known_ids();
        let mut orphans: Vec<String> = cni
            .cache()
            .all()
            .into_iter()
            .filter(|entry| {
                entry
                    .cni_args
                    .iter()
                    .any(|(k, v)| k == POD_INFRA_ARG && *v == entry.container_id)
            })
            .map(|entry| entry.container_id)
            .filter(|id| !known.contains(id))
            .collect();
        orphans.sort();
        orphans.dedup();
        for id in &orphans {
            // Asked again: the container may have come since the listing.
            if !matches!(self.store.fetch(id).await, Ok(None)) {
                continue;
            }
            let pod = PodRef {
                namespace: String::new(),
                name: String::new(),
                uid: String::new(),
                sandbox_id: id.clone(),
            };
            match cni.teardown(&pod, None, &[]).await {
                Ok(()) => tracing::info!(
                    pod_sandbox_id = %id,
                    "released the network of a sandbox that no longer exists (its container and checkpoint are gone)"
                ),
                Err(e) => tracing::warn!(
                    pod_sandbox_id = %id,
                    error = %e,
                    "could not release the network of a sandbox that no longer exists"
                ),
            }
        }
        let Ok(network) = cni.network() else { return };
        let known = self.known_ids();
        for dir in network.host_local_dirs() {
            for (lease, holder) in host_local_leases(&dir) {
                if known.contains(&holder) || orphans.contains(&holder) {
                    continue;
                }
                if !matches!(self.store.fetch(&holder).await, Ok(None)) {
                    continue;
                }
                tracing::warn!(
                    lease = %lease.display(),
                    container_id = %holder,
                    "an IP is held for a container that does not exist, with no cached CNI attachment to release it with: left alone"
                );
            }
        }
    }

    fn remove_unreadable_orphan_checkpoints(&self) {
        for id in self.checkpoints.list().unwrap_or_default() {
            if self.store.get(&id).is_some() {
                continue;
            }
            if let Err(e) = self.checkpoints.read(&id) {
                match self.checkpoints.remove(&id) {
                    Ok(()) => tracing::warn!(
                        pod_sandbox_id = %id,
                        error = %e,
                        "removed an unreadable checkpoint whose sandbox container is gone (the kubelet cannot see it)"
                    ),
                    Err(remove) => tracing::warn!(
                        pod_sandbox_id = %id,
                        error = %remove,
                        "could not remove an unreadable checkpoint"
                    ),
                }
            }
        }
    }
}
