//! The process's Prometheus metrics, all named under [`PREFIX`] and in base
//! units (`_seconds`, `_bytes`, `_total`).
//!
//! Families that change when something happens (requests, Docker calls,
//! CNI runs, pulls, sessions, events) are recorded as it happens; figures
//! that are states (pods and containers by state, memory, descriptors,
//! tasks) are read when scraped, from memory and `/proc/self`, never from
//! Docker.

mod families;
mod node;
mod process;

use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text};

pub use node::{NodeCounts, set_node_state_source};

use families::{
    CniLabels, DockerErrorLabels, DockerLabels, EventLabels, GrpcLabels, MethodLabels, PullLabels,
    SessionLabels, families,
};

/// Every family's name starts with this.
pub const PREFIX: &str = "cri_dockerd_rs";

/// Content type of [`render`]'s default output (Prometheus text 0.0.4).
const PROMETHEUS_TEXT: &str = prometheus_text::CONTENT_TYPE;

/// Which exposition a scraper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4: what `curl` and every Prometheus read.
    PrometheusText,
    /// OpenMetrics 1.0 text, when the scraper's `Accept` names it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => PROMETHEUS_TEXT,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The whole exposition, as a scrape gets it.
pub fn render(format: Format) -> String {
    let registry = families().registry.read();
    let mut out = String::with_capacity(32 * 1024);
    let written = match format {
        Format::PrometheusText => prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => text::encode(&mut out, &registry),
    };
    // Writing into a String fails only if a collector does, and ours do not.
    if let Err(e) = written {
        out.push_str(&format!("# encoding stopped: {e}\n"));
    }
    out
}

/// A finished CRI call: `method` is the RPC's name (`ListContainers`),
/// `code` the gRPC code's canonical name (`OK`, `NotFound`).
pub fn grpc_request(method: &'static str, code: &'static str, elapsed: Duration) {
    let f = families();
    f.grpc_requests
        .get_or_create(&GrpcLabels { method, code })
        .inc();
    f.grpc_duration
        .get_or_create(&MethodLabels { method })
        .observe(elapsed.as_secs_f64());
}

/// How a Docker Engine API call ended, when it did not answer with 2xx/3xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DockerFailure {
    /// No answer: connection refused or reset, socket gone.
    Transport,
    /// 4xx: the request was refused (a gone container's 404 among them).
    ClientError,
    /// 5xx: Docker failed.
    ServerError,
    /// Given up unanswered: the client's timeout, or the caller gone.
    Abandoned,
}

impl DockerFailure {
    fn as_str(self) -> &'static str {
        match self {
            DockerFailure::Transport => "transport",
            DockerFailure::ClientError => "client_error",
            DockerFailure::ServerError => "server_error",
            DockerFailure::Abandoned => "abandoned",
        }
    }
}

/// A Docker Engine API call, timed until Docker's response headers.
pub fn docker_request(operation: &'static str, elapsed: Duration, failure: Option<DockerFailure>) {
    let f = families();
    f.docker_duration
        .get_or_create(&DockerLabels { operation })
        .observe(elapsed.as_secs_f64());
    if let Some(failure) = failure {
        f.docker_errors
            .get_or_create(&DockerErrorLabels {
                operation,
                kind: failure.as_str(),
            })
            .inc();
    }
}

/// A CNI operation on one network list (`ADD`, `DEL`), all its plugins.
pub fn cni_operation(operation: &'static str, network: &str, elapsed: Duration, ok: bool) {
    let f = families();
    let labels = CniLabels {
        operation,
        network: network.to_string(),
    };
    f.cni_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if !ok {
        f.cni_failures.get_or_create(&labels).inc();
    }
}

/// An image pull: `bytes` is the pulled image's size (0 when it failed).
pub fn image_pull(elapsed: Duration, bytes: u64, ok: bool) {
    let f = families();
    let outcome = if ok { "success" } else { "failure" };
    f.image_pulls.get_or_create(&PullLabels { outcome }).inc();
    f.image_pull_duration
        .get_or_create(&PullLabels { outcome })
        .observe(elapsed.as_secs_f64());
    if ok {
        f.image_pull_bytes.inc_by(bytes);
    }
}

/// The kinds of streaming session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    Exec,
    Attach,
    PortForward,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Exec => "exec",
            SessionKind::Attach => "attach",
            SessionKind::PortForward => "portforward",
        }
    }
}

/// An open streaming session: counted when made, open until dropped.
#[must_use = "the session counts as open until this is dropped"]
pub struct OpenSession {
    labels: SessionLabels,
}

/// Counts a session of `kind` as started and open.
pub fn session_opened(kind: SessionKind) -> OpenSession {
    let f = families();
    let labels = SessionLabels {
        kind: kind.as_str(),
    };
    f.sessions_total.get_or_create(&labels).inc();
    f.sessions_open.get_or_create(&labels).inc();
    OpenSession { labels }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        families().sessions_open.get_or_create(&self.labels).dec();
    }
}

/// One GetContainerEvents subscriber's series, labelled with a number
/// unique in this process; removed when the subscriber goes, so a client
/// that reconnects often does not grow the exposition.
pub struct EventSubscriber {
    labels: EventLabels,
}

impl EventSubscriber {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let labels = EventLabels {
            subscriber: NEXT.fetch_add(1, Ordering::Relaxed).to_string(),
        };
        let f = families();
        // Both series exist from the start: a scrape shows 0 dropped.
        let _ = f.events_sent.get_or_create(&labels);
        let _ = f.events_dropped.get_or_create(&labels);
        Self { labels }
    }

    pub fn delivered(&self) {
        families().events_sent.get_or_create(&self.labels).inc();
    }

    pub fn dropped(&self, n: u64) {
        families()
            .events_dropped
            .get_or_create(&self.labels)
            .inc_by(n);
    }
}

impl Default for EventSubscriber {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for EventSubscriber {
    fn drop(&mut self) {
        let f = families();
        f.events_sent.remove(&self.labels);
        f.events_dropped.remove(&self.labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(exposition: &str, line_start: &str) -> Option<f64> {
        exposition
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn families_are_typed_and_prefixed() {
        grpc_request("ListContainers", "OK", Duration::from_millis(2));
        grpc_request("ContainerStatus", "NotFound", Duration::from_micros(300));
        docker_request(
            "container_inspect",
            Duration::from_millis(1),
            Some(DockerFailure::ClientError),
        );
        cni_operation("ADD", "kubelet0", Duration::from_millis(40), false);
        image_pull(Duration::from_secs(1), 4096, true);
        let text = render(Format::PrometheusText);
        for (name, kind) in [
            ("cri_dockerd_rs_grpc_requests_total", "counter"),
            ("cri_dockerd_rs_grpc_request_duration_seconds", "histogram"),
            (
                "cri_dockerd_rs_docker_request_duration_seconds",
                "histogram",
            ),
            ("cri_dockerd_rs_docker_request_errors_total", "counter"),
            ("cri_dockerd_rs_cni_operation_duration_seconds", "histogram"),
            ("cri_dockerd_rs_cni_operation_failures_total", "counter"),
            ("cri_dockerd_rs_image_pulls_total", "counter"),
            ("cri_dockerd_rs_image_pull_bytes_total", "counter"),
            ("cri_dockerd_rs_image_pull_duration_seconds", "histogram"),
            ("cri_dockerd_rs_streaming_sessions_open", "gauge"),
            ("cri_dockerd_rs_streaming_sessions_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} missing from:\n{text}"
            );
        }
        assert!(
            sample(
                &text,
                "cri_dockerd_rs_grpc_requests_total{method=\"ContainerStatus\",code=\"NotFound\"}"
            )
            .unwrap()
                >= 1.0
        );
        assert!(
            sample(&text, "cri_dockerd_rs_image_pull_bytes_total").unwrap() >= 4096.0,
            "{text}"
        );
    }

    #[test]
    fn open_sessions_are_counted_until_dropped() {
        let line = "cri_dockerd_rs_streaming_sessions_open{kind=\"attach\"}";
        let before = sample(&render(Format::PrometheusText), line).unwrap_or(0.0);
        let session = session_opened(SessionKind::Attach);
        assert_eq!(
            sample(&render(Format::PrometheusText), line),
            Some(before + 1.0)
        );
        drop(session);
        assert_eq!(sample(&render(Format::PrometheusText), line), Some(before));
    }

    #[test]
    fn a_gone_subscriber_leaves_no_series() {
        let subscriber = EventSubscriber::new();
        subscriber.delivered();
        subscriber.dropped(3);
        let label = format!("subscriber=\"{}\"", subscriber.labels.subscriber);
        let text = render(Format::PrometheusText);
        let dropped = text
            .lines()
            .find(|l| {
                l.starts_with("cri_dockerd_rs_container_events_dropped_total") && l.contains(&label)
            })
            .unwrap();
        assert!(dropped.ends_with(" 3"), "{dropped}");
        drop(subscriber);
        assert!(!render(Format::PrometheusText).contains(&label));
    }

    #[test]
    fn openmetrics_when_asked() {
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("*/*")), Format::PrometheusText);
        assert!(render(Format::OpenMetrics).ends_with("# EOF\n"));
    }
}
