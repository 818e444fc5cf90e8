//! The registry and its families, made once per process.

use std::sync::OnceLock;

use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::PREFIX;

/// Request and call latencies: 250 µs (a List from memory) to 2 min
/// (bollard's default timeout; a pull or a slow CNI plugin).
const LATENCY_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
    120.0,
];

/// Pulls take seconds to minutes.
const PULL_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Clone, Copy)]
pub(super) struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct GrpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodLabels {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DockerLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DockerErrorLabels {
    pub operation: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CniLabels {
    pub operation: &'static str,
    pub network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PullLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SessionLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EventLabels {
    pub subscriber: String,
}

pub(super) struct Families {
    pub registry: RwLock<Registry>,
    pub grpc_requests: Family<GrpcLabels, Counter>,
    pub grpc_duration: Family<MethodLabels, Histogram, Buckets>,
    pub docker_duration: Family<DockerLabels, Histogram, Buckets>,
    pub docker_errors: Family<DockerErrorLabels, Counter>,
    pub cni_duration: Family<CniLabels, Histogram, Buckets>,
    pub cni_failures: Family<CniLabels, Counter>,
    pub image_pulls: Family<PullLabels, Counter>,
    pub image_pull_duration: Family<PullLabels, Histogram, Buckets>,
    pub image_pull_bytes: Counter,
    pub sessions_open: Family<SessionLabels, Gauge>,
    pub sessions_total: Family<SessionLabels, Counter>,
    pub events_sent: Family<EventLabels, Counter>,
    pub events_dropped: Family<EventLabels, Counter>,
}

pub(super) fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(Families::new)
}

impl Families {
    fn new() -> Self {
        let f = Families {
            registry: RwLock::new(Registry::with_prefix(PREFIX)),
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(Buckets(&LATENCY_BUCKETS)),
            docker_duration: Family::new_with_constructor(Buckets(&LATENCY_BUCKETS)),
            docker_errors: Family::default(),
            cni_duration: Family::new_with_constructor(Buckets(&LATENCY_BUCKETS)),
            cni_failures: Family::default(),
            image_pulls: Family::default(),
            image_pull_duration: Family::new_with_constructor(Buckets(&PULL_BUCKETS)),
            image_pull_bytes: Counter::default(),
            sessions_open: Family::default(),
            sessions_total: Family::default(),
            events_sent: Family::default(),
            events_dropped: Family::default(),
        };
        // Known label values get their series at once, so a scrape shows
        // zeros rather than leaving the family out.
        for kind in ["exec", "attach", "portforward"] {
            let _ = f.sessions_open.get_or_create(&SessionLabels { kind });
            let _ = f.sessions_total.get_or_create(&SessionLabels { kind });
        }
        for outcome in ["success", "failure"] {
            let _ = f.image_pulls.get_or_create(&PullLabels { outcome });
        }
        {
            let mut r = f.registry.write();
            r.register(
                "grpc_requests",
                "CRI calls served, by method and gRPC code",
                f.grpc_requests.clone(),
            );
            r.register_with_unit(
                "grpc_request_duration",
                "CRI call latency, from the request to its last byte, by method",
                Unit::Seconds,
                f.grpc_duration.clone(),
            );
            r.register_with_unit(
                "docker_request_duration",
                "Docker Engine API call latency until Docker's response headers, by operation",
                Unit::Seconds,
                f.docker_duration.clone(),
            );
            r.register(
                "docker_request_errors",
                "Docker Engine API calls that failed: transport (no answer), client_error (4xx), server_error (5xx), abandoned (timed out or caller gone)",
                f.docker_errors.clone(),
            );
            r.register_with_unit(
                "cni_operation_duration",
                "CNI operations on one network (all its plugins), by operation and network",
                Unit::Seconds,
                f.cni_duration.clone(),
            );
            r.register(
                "cni_operation_failures",
                "CNI operations that failed, by operation and network",
                f.cni_failures.clone(),
            );
            r.register(
                "image_pulls",
                "Image pulls, by outcome",
                f.image_pulls.clone(),
            );
            r.register_with_unit(
                "image_pull_duration",
                "Image pull duration, by outcome",
                Unit::Seconds,
                f.image_pull_duration.clone(),
            );
            r.register_with_unit(
                "image_pull",
                "Size of the images pulled",
                Unit::Bytes,
                f.image_pull_bytes.clone(),
            );
            r.register(
                "streaming_sessions_open",
                "Streaming sessions open now, by kind (exec, attach, portforward)",
                f.sessions_open.clone(),
            );
            r.register(
                "streaming_sessions",
                "Streaming sessions started, by kind",
                f.sessions_total.clone(),
            );
            r.register(
                "container_events_sent",
                "Container events delivered, by GetContainerEvents subscriber",
                f.events_sent.clone(),
            );
            r.register(
                "container_events_dropped",
                "Container events a subscriber lost by falling behind, by subscriber",
                f.events_dropped.clone(),
            );
            r.register_collector(Box::new(super::node::NodeStateCollector));
            r.register_collector(Box::new(super::process::ProcessCollector));
        }
        f
    }
}
