//! Around every CRI call: a span the handlers record pod and container ids
//! into, the call's steps (Docker calls, CNI runs), and when the call ends,
//! its metrics and one log record with method, gRPC code and duration.
//!
//! A call ends with its response body, not its handler: gRPC sends the
//! status of a successful call in trailers after the message, and a
//! GetContainerEvents stream lasts as long as its subscriber.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cri_dockerd_telemetry::metrics;
use cri_dockerd_telemetry::steps::Steps;
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};
use tower::{Layer, Service};
use tracing::Instrument;

/// Slow calls are logged at warn with their steps; zero turns that off.
#[derive(Clone, Copy, Debug)]
pub struct ObserveLayer {
    slow: Duration,
}

impl ObserveLayer {
    pub fn new(slow_request_threshold: Duration) -> Self {
        Self {
            slow: slow_request_threshold,
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            slow: self.slow,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Observed<S> {
    inner: S,
    slow: Duration,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Observed<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The clone that was made ready is the one that serves this call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let method = method_name(request.uri().path());
        let span = tracing::info_span!(
            "cri",
            method,
            pod = tracing::field::Empty,
            pod_sandbox_id = tracing::field::Empty,
            container = tracing::field::Empty,
            container_id = tracing::field::Empty,
            image = tracing::field::Empty,
        );
        let steps = Steps::new();
        let mut call = Call {
            method,
            started: Instant::now(),
            span: span.clone(),
            steps: steps.clone(),
            slow: self.slow,
            early: None,
            ended: false,
        };
        let handled = AssertUnwindSafe(steps.scope(inner.call(request)).instrument(span));
        Box::pin(async move {
            let response = match handled.catch_unwind().await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    call.end(Code::Unknown, "the transport failed the call");
                    return Err(e);
                }
                // A bug, not the caller's doing: the client gets Internal
                // rather than a reset stream, and the log says which call.
                // (The panic's message and place went to stderr already.)
                Err(_) => {
                    let status = Status::internal(format!("{method} failed: the handler panicked"));
                    call.end(status.code(), status.message());
                    let mut response = http::Response::new(ObservedBody {
                        inner: None,
                        call: None,
                    });
                    let headers = response.headers_mut();
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    let _ = status.add_header(headers);
                    return Ok(response);
                }
            };
            // An error is sent as a trailers-only response: its status is
            // in the headers, and the body brings nothing more.
            call.early = Status::from_header_map(response.headers())
                .map(|s| (s.code(), s.message().to_string()));
            Ok(response.map(|inner| ObservedBody {
                inner: Some(inner),
                call: Some(call),
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// The response body, passed through; the call ends with its status.
    pub struct ObservedBody<B> {
        // None: a response made here (a panicked handler's), headers only.
        #[pin]
        inner: Option<B>,
        call: Option<Call>,
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let polled = inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut call) = this.call.take()
                {
                    match Status::from_header_map(trailers) {
                        Some(status) => call.end(status.code(), status.message()),
                        None => call.end(Code::Unknown, "no grpc-status in the trailers"),
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut call) = this.call.take() {
                    call.end(Code::Internal, "the response body failed");
                }
            }
            Poll::Ready(None) => {
                if let Some(mut call) = this.call.take() {
                    match call.early.take() {
                        Some((code, message)) => call.end(code, &message),
                        None => call.end(Code::Unknown, "the response ended without a status"),
                    }
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// One call in flight.
struct Call {
    method: &'static str,
    started: Instant,
    span: tracing::Span,
    steps: Steps,
    slow: Duration,
    /// The status a trailers-only response carried in its headers.
    early: Option<(Code, String)>,
    ended: bool,
}

impl Call {
    fn end(&mut self, code: Code, message: &str) {
        self.ended = true;
        let elapsed = self.started.elapsed();
        metrics::grpc_request(self.method, code_name(code), elapsed);
        let _in = self.span.enter();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let code = code_name(code);
        // A subscriber hanging up is how an event stream ends.
        let stream_closed = is_stream(self.method) && code == "Canceled";
        if code != "OK" && !stream_closed {
            tracing::warn!(code, duration_ms, error = message, steps = %self.steps, "CRI request failed");
        } else if !self.slow.is_zero() && elapsed >= self.slow && !is_stream(self.method) {
            tracing::warn!(code, duration_ms, steps = %self.steps, "slow CRI request");
        } else if is_hot(self.method) {
            tracing::debug!(code, duration_ms, "CRI request");
        } else {
            tracing::info!(code, duration_ms, "CRI request");
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        match self.early.take() {
            // A trailers-only response is complete with its headers: hyper
            // drops its empty body without polling it.
            Some((code, message)) => self.end(code, &message),
            // The client went away (or the connection broke) before the end.
            None => self.end(
                Code::Cancelled,
                "the client went away before the call ended",
            ),
        }
    }
}

/// The CRI v1 methods, as label values; anything else is `unknown`, so a
/// client cannot grow the metrics with made-up paths.
const METHODS: [&str; 35] = [
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
    "ListImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
];

fn method_name(path: &str) -> &'static str {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    if service != "runtime.v1.RuntimeService" && service != "runtime.v1.ImageService" {
        return "unknown";
    }
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("unknown")
}

/// The calls the kubelet makes every second or so: their successes are
/// logged at debug so that info shows what changed on the node. ExecSync
/// is here too: exec probes call it every period.
fn is_hot(method: &str) -> bool {
    method.starts_with("List")
        || method.ends_with("Status")
        || method.ends_with("Stats")
        || matches!(
            method,
            "Version" | "ImageFsInfo" | "RuntimeConfig" | "ExecSync" | "unknown"
        )
}

/// Calls that last as long as their client wants: never "slow".
fn is_stream(method: &str) -> bool {
    method == "GetContainerEvents"
}

/// The code's name as gRPC spells it (`OK`, `NotFound`), for labels and logs.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_named_from_the_path_only_when_known() {
        assert_eq!(
            method_name("/runtime.v1.RuntimeService/ListContainers"),
            "ListContainers"
        );
        assert_eq!(
            method_name("/runtime.v1.ImageService/PullImage"),
            "PullImage"
        );
        assert_eq!(
            method_name("/runtime.v1.RuntimeService/DropTables"),
            "unknown"
        );
        assert_eq!(
            method_name("/runtime.v1alpha2.RuntimeService/Version"),
            "unknown"
        );
        assert_eq!(method_name("/"), "unknown");
    }

    #[test]
    fn hot_calls_are_the_kubelets_polling() {
        for hot in [
            "ListPodSandbox",
            "PodSandboxStatus",
            "ContainerStatus",
            "ListContainerStats",
            "ImageStatus",
            "Status",
            "ExecSync",
            "Version",
        ] {
            assert!(is_hot(hot), "{hot}");
        }
        for lifecycle in [
            "RunPodSandbox",
            "CreateContainer",
            "StartContainer",
            "StopContainer",
            "RemovePodSandbox",
            "PullImage",
            "UpdateContainerResources",
            "Exec",
        ] {
            assert!(!is_hot(lifecycle), "{lifecycle}");
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_and_is_counted() {
        let handler = tower::service_fn(|_: http::Request<()>| async move {
            let response: Result<http::Response<http_body_util::Empty<bytes::Bytes>>, Status> =
                Err(Status::internal("never"));
            if response.is_err() {
                panic!("a bug in a handler");
            }
            response
        });
        let mut service = ObserveLayer::new(Duration::ZERO).layer(handler);
        let request = http::Request::builder()
            .uri("/runtime.v1.RuntimeService/ListPodSandboxStats")
            .body(())
            .unwrap();
        let response = service.call(request).await.expect("a response");
        let status = Status::from_header_map(response.headers()).expect("a trailers-only status");
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("ListPodSandboxStats"),
            "{status:?}"
        );
        assert!(response.body().is_end_stream());
        drop(response);
        let exposition = metrics::render(metrics::Format::PrometheusText);
        assert!(
            exposition.contains(
                r#"cri_dockerd_rs_grpc_requests_total{method="ListPodSandboxStats",code="Internal"} 1"#
            ),
            "{exposition}"
        );
    }

    #[test]
    fn code_names_are_grpcs() {
        assert_eq!(code_name(Code::NotFound), "NotFound");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::DeadlineExceeded), "DeadlineExceeded");
    }
}
