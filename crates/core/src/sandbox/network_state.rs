//! What the shim knows of each sandbox's pod network beyond the CNI cache:
//! whether this process set it up or tore it down, and which sandboxes were
//! found running without it at start.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub(crate) struct NetworkState {
    /// Sandbox id -> set up (`true`) or torn down (`false`) by this
    /// process. Unknown after a restart, which makes teardown run again (it
    /// is idempotent).
    attached: Mutex<HashMap<String, bool>>,
    /// Running without their network when the shim started: NotReady
    /// until the kubelet stops them.
    missing: Mutex<HashSet<String>>,
}

impl NetworkState {
    /// Whether a teardown may still have something to undo.
    pub fn needs_teardown(&self, id: &str) -> bool {
        self.attached.lock().get(id) != Some(&false)
    }

    /// Whether setup was begun by this process (it may have failed half way).
    pub fn setup_begun(&self, id: &str) -> bool {
        self.attached.lock().contains_key(id)
    }

    pub fn set_attached(&self, id: &str, attached: bool) {
        self.attached.lock().insert(id.to_string(), attached);
    }

    pub fn mark_missing(&self, id: &str) {
        self.missing.lock().insert(id.to_string());
    }

    pub fn is_missing(&self, id: &str) -> bool {
        self.missing.lock().contains(id)
    }

    /// The kubelet stopped the sandbox: whatever was missing is moot.
    pub fn stopped(&self, id: &str) {
        self.missing.lock().remove(id);
    }

    /// The sandbox is gone.
    pub fn forget(&self, id: &str) {
        self.attached.lock().remove(id);
        self.missing.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teardown_is_skipped_only_after_a_teardown_here() {
        let state = NetworkState::default();
        assert!(state.needs_teardown("a"), "unknown: tear down to be sure");
        assert!(!state.setup_begun("a"));
        state.set_attached("a", true);
        assert!(state.needs_teardown("a") && state.setup_begun("a"));
        state.set_attached("a", false);
        assert!(!state.needs_teardown("a"));
        state.mark_missing("b");
        assert!(state.is_missing("b"));
        state.stopped("b");
        assert!(!state.is_missing("b"));
        state.forget("a");
        assert!(state.needs_teardown("a"));
    }
}
