//! Pod sandboxes and containers by state, read from the runtime's memory
//! when scraped.

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// How many of the node's pod sandboxes and containers are in each state,
/// named as the CRI names them (`SANDBOX_READY`, `CONTAINER_RUNNING`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounts {
    pub sandboxes: Vec<(&'static str, u64)>,
    pub containers: Vec<(&'static str, u64)>,
}

type Source = Box<dyn Fn() -> NodeCounts + Send + Sync>;

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Names where the counts come from; the first call wins. It runs on every
/// scrape, so it must answer from memory.
pub fn set_node_state_source(source: impl Fn() -> NodeCounts + Send + Sync + 'static) {
    let _ = SOURCE.set(Box::new(source));
}

#[derive(Debug)]
pub(super) struct NodeStateCollector;

impl Collector for NodeStateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = SOURCE.get() else {
            return Ok(());
        };
        let counts = source();
        for (name, help, by_state) in [
            (
                "pod_sandboxes",
                "Pod sandboxes of this runtime, by CRI state",
                &counts.sandboxes,
            ),
            (
                "containers",
                "Containers of this runtime, by CRI state",
                &counts.containers,
            ),
        ] {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (state, n) in by_state {
                let gauge = ConstGauge::new(*n as i64);
                let labels = [("state", *state)];
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
