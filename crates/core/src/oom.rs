//! OOM score adjustments on daemons that cannot lower them.
//!
//! cri-dockerd gives every pause container `oom_score_adj` -998 and passes
//! the kubelet's (often negative) values for containers. Lowering a score
//! needs CAP_SYS_RESOURCE; under rootless or nested Docker runc then fails
//! with an opaque error. Like containerd's `restrict_oom_score_adj`, negative
//! values are raised to the lowest score this process may set itself.

use std::sync::atomic::{AtomicBool, Ordering};

const CAP_SYS_RESOURCE: u32 = 24;

#[derive(Debug)]
pub struct OomPolicy {
    /// `Some(floor)` when scores below `floor` cannot be set.
    floor: Option<i64>,
    logged: AtomicBool,
}

impl OomPolicy {
    pub fn unrestricted() -> Self {
        Self {
            floor: None,
            logged: AtomicBool::new(false),
        }
    }

    pub fn restricted_to(floor: i64) -> Self {
        Self {
            floor: Some(floor),
            logged: AtomicBool::new(false),
        }
    }

    /// `restrict`: the `--restrict-oom-score-adj` flag, `None` to detect.
    pub fn detect(restrict: Option<bool>) -> Self {
        let floor = current_oom_score_adj().unwrap_or(0);
        let restricted = restrict.unwrap_or_else(|| !has_effective_capability(CAP_SYS_RESOURCE));
        if restricted {
            tracing::info!(
                floor,
                "OOM score adjustments are restricted: values below {floor} will be raised (no CAP_SYS_RESOURCE)"
            );
            Self::restricted_to(floor)
        } else {
            Self::unrestricted()
        }
    }

    pub fn floor(&self) -> Option<i64> {
        self.floor
    }

    /// The score to ask Docker for.
    pub fn clamp(&self, requested: i64) -> i64 {
        match self.floor {
            Some(floor) if requested < floor => {
                if !self.logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        requested,
                        floor,
                        "raising OOM score adjustments below {floor} to {floor}: lowering them needs CAP_SYS_RESOURCE (logged once)"
                    );
                }
                floor
            }
            _ => requested,
        }
    }
}

fn current_oom_score_adj() -> Option<i64> {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads `CapEff` and `CapBnd` of this process: both must hold the
/// capability for the daemon on the same host to have it.
fn has_effective_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let bit = 1u64 << cap;
    mask("CapEff:") & bit != 0 && mask("CapBnd:") & bit != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_policy_raises_only_lower_values() {
        let policy = OomPolicy::restricted_to(0);
        assert_eq!(policy.clamp(-998), 0);
        assert_eq!(policy.clamp(-1), 0);
        assert_eq!(policy.clamp(500), 500);
        let policy = OomPolicy::restricted_to(-500);
        assert_eq!(policy.clamp(-998), -500);
        assert_eq!(policy.clamp(-100), -100);
    }

    #[test]
    fn unrestricted_policy_passes_everything() {
        let policy = OomPolicy::unrestricted();
        assert_eq!(policy.clamp(-998), -998);
        assert_eq!(policy.floor(), None);
    }

    #[test]
    fn forced_flag_wins_over_detection() {
        assert!(OomPolicy::detect(Some(true)).floor().is_some());
        assert!(OomPolicy::detect(Some(false)).floor().is_none());
    }
}
