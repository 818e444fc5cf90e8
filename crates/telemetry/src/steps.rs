//! The timed steps of the CRI request being served: each Docker call and
//! CNI operation made on its behalf adds one, so a slow request's log
//! record can say where its time went without every call site logging.
//!
//! A request's steps live in a task-local; work the request spawns carries
//! them over with [`current`] and [`Steps::scope`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// More than this many steps are counted, not kept.
const KEPT: usize = 32;

tokio::task_local! {
    static STEPS: Steps;
}

/// One request's steps; cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Steps {
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Debug)]
struct Recorded {
    started: Instant,
    kept: Vec<Step>,
    more: usize,
}

#[derive(Debug, Clone)]
struct Step {
    name: Cow<'static, str>,
    /// From the request's start to the step's.
    at: Duration,
    took: Duration,
}

impl Steps {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Recorded {
                started: Instant::now(),
                kept: Vec::new(),
                more: 0,
            })),
        }
    }

    /// Runs `work` with these steps as its request's.
    pub fn scope<F: Future>(&self, work: F) -> impl Future<Output = F::Output> + use<F> {
        STEPS.scope(self.clone(), work)
    }

    fn push(&self, name: Cow<'static, str>, started: Instant, took: Duration) {
        let mut r = self.inner.lock();
        if r.kept.len() < KEPT {
            let at = started.saturating_duration_since(r.started);
            r.kept.push(Step { name, at, took });
        } else {
            r.more += 1;
        }
    }
}

impl Default for Steps {
    fn default() -> Self {
        Self::new()
    }
}

/// `docker container_create +3ms 41ms, cni ADD kubelet0 +45ms 120ms`: each
/// step with when it began (from the request's start) and how long it took.
impl fmt::Display for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.inner.lock();
        for (i, step) in r.kept.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{} +{}ms {}ms",
                step.name,
                step.at.as_millis(),
                step.took.as_millis()
            )?;
        }
        if r.more > 0 {
            write!(f, ", and {} more", r.more)?;
        }
        Ok(())
    }
}

/// The steps of the request this task serves, if it serves one.
pub fn current() -> Option<Steps> {
    STEPS.try_with(Clone::clone).ok()
}

/// Adds a step that began at `started` and ended now to the current
/// request, if there is one.
pub fn record(name: impl Into<Cow<'static, str>>, started: Instant) {
    let took = started.elapsed();
    let _ = STEPS.try_with(|steps| steps.push(name.into(), started, took));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_follow_the_request_into_spawned_work() {
        let steps = Steps::new();
        steps
            .scope(async {
                record("docker container_create", Instant::now());
                let carried = current().unwrap();
                tokio::spawn(carried.scope(async {
                    record("cni ADD kubelet0", Instant::now());
                }))
                .await
                .unwrap();
            })
            .await;
        // Outside any request nothing is kept and nothing fails.
        record("docker ping", Instant::now());
        let text = steps.to_string();
        assert!(
            text.starts_with("docker container_create +0ms 0ms, cni ADD kubelet0 +"),
            "{text}"
        );
        assert!(!text.contains("ping"));
    }

    #[tokio::test]
    async fn a_long_request_keeps_its_first_steps() {
        let steps = Steps::new();
        steps
            .scope(async {
                for _ in 0..40 {
                    record("docker container_inspect", Instant::now());
                }
            })
            .await;
        assert!(steps.to_string().ends_with(", and 8 more"));
    }
}
