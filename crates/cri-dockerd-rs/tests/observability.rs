//! What an operator sees: the Prometheus endpoint scraped while pods,
//! pulls, exec sessions, event subscribers and failures happen, and the
//! JSON log read line by line.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::audit::ScenarioNet;
use cri_dockerd_testkit::cri::pod_config;
use cri_dockerd_testkit::docker_proxy::DockerProxy;
use cri_dockerd_testkit::env::{BUSYBOX_IMAGE, PLAIN_REGISTRY};
use cri_dockerd_testkit::images::{push_to_registry, remove_local};
use cri_dockerd_testkit::metrics::{self, Exposition};
use cri_dockerd_testkit::streaming::{self, Options};
use cri_dockerd_testkit::{Shim, test_env, unique};
use serde_json::Value;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const P: &str = "cri_dockerd_rs_";
/// Low enough that RunPodSandbox (a container, its start, two CNI ADDs)
/// always passes it; most single Docker calls stay under it.
const SLOW_MS: f64 = 50.0;

async fn scrape(address: SocketAddr) -> Exposition {
    let (status, content_type, body) = metrics::get(address, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Exposition::parse(&body)
}

/// Scrapes until `check` holds (a value recorded when a response body
/// ends can trail the client's view by a moment).
async fn scrape_until(address: SocketAddr, what: &str, check: impl Fn(&Exposition) -> bool) {
    let started = Instant::now();
    loop {
        if check(&scrape(address).await) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never seen: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_family(e: &Exposition, family: &str, kind: &str) {
    assert_eq!(
        e.type_of(&format!("{P}{family}")),
        Some(kind),
        "{family} must be a {kind}"
    );
}

fn count(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    e.value(&format!("{P}{name}"), labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_json_logs_describe_the_node() {
    let env = test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let net = ScenarioNet::new(dir.path(), 15);
    let mut proxy = DockerProxy::start(&dir.path().join("docker.sock"));
    let mut builder = Shim::builder(BIN)
        .arg("--log-format=json")
        .arg("--metrics-bind-addr=127.0.0.1")
        .arg(format!("--slow-request-threshold={SLOW_MS}ms"))
        .arg(format!("--docker-endpoint={}", proxy.endpoint()));
    for arg in net.shim_args() {
        builder = builder.arg(arg);
    }
    let mut shim = builder.start().await;
    let address = metrics::endpoint_from_json_log(&shim.log).await;
    assert!(address.ip().is_loopback());
    let mut rt = shim.runtime.clone();

    // A subscriber, as the kubelet's Evented PLEG.
    let mut events = rt
        .get_container_events(GetEventsRequest::default())
        .await
        .unwrap()
        .into_inner();

    // A pull from the local registry.
    let image = format!("{PLAIN_REGISTRY}/crid-observe:{}", unique("p"));
    push_to_registry(&env.docker, BUSYBOX_IMAGE, &image, None).await;
    shim.images
        .clone()
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("PullImage");

    // A pod with a container; its events reach the subscriber.
    let (pod, config) = shim.run_pod("observed").await;
    let container = shim.run_sleeper(&pod, &config, "box").await;
    let first = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .expect("the stream is open");
    assert!(!first.container_id.is_empty());

    // A caller's mistake: a container that does not exist.
    let missing = rt
        .container_status(ContainerStatusRequest {
            container_id: "0123456789abcdef0123456789abcdef".into(),
            verbose: false,
        })
        .await
        .expect_err("no such container");
    assert_eq!(missing.code(), Code::NotFound);

    // A failing CNI plugin.
    net.set_fault("fail");
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(pod_config("refused", "default", &shim.pod_uid("refused"))),
        runtime_handler: String::new(),
    })
    .await
    .expect_err("the plugin fails the pod");
    net.set_fault("ok");

    // An exec session, counted while open.
    let url = rt
        .exec(ExecRequest {
            container_id: container.clone(),
            cmd: vec!["sleep".into(), "2".into()],
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .expect("Exec")
        .into_inner()
        .url;
    let session = tokio::spawn(async move {
        streaming::spdy_command(
            &url,
            "v4.channel.k8s.io",
            Options {
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .await
    });
    scrape_until(address, "an open exec session", |e| {
        count(e, "streaming_sessions_open", &[("kind", "exec")]) == 1.0
    })
    .await;
    assert_eq!(session.await.unwrap().exit_code(), Some(0));
    scrape_until(address, "the exec session closed", |e| {
        count(e, "streaming_sessions_open", &[("kind", "exec")]) == 0.0
            && count(e, "streaming_sessions_total", &[("kind", "exec")]) == 1.0
    })
    .await;

    let e = scrape(address).await;
    for (family, kind) in [
        ("grpc_requests_total", "counter"),
        ("grpc_request_duration_seconds", "histogram"),
        ("docker_request_duration_seconds", "histogram"),
        ("docker_request_errors_total", "counter"),
        ("cni_operation_duration_seconds", "histogram"),
        ("cni_operation_failures_total", "counter"),
        ("image_pulls_total", "counter"),
        ("image_pull_bytes_total", "counter"),
        ("image_pull_duration_seconds", "histogram"),
        ("streaming_sessions_open", "gauge"),
        ("streaming_sessions_total", "counter"),
        ("container_events_sent_total", "counter"),
        ("container_events_dropped_total", "counter"),
        ("pod_sandboxes", "gauge"),
        ("containers", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("tokio_tasks", "gauge"),
    ] {
        assert_family(&e, family, kind);
    }
    // gRPC by method and code, the caller's mistake under its code.
    assert_eq!(
        count(
            &e,
            "grpc_requests_total",
            &[("method", "ContainerStatus"), ("code", "NotFound")]
        ),
        1.0
    );
    assert_eq!(
        count(
            &e,
            "grpc_requests_total",
            &[("method", "RunPodSandbox"), ("code", "OK")]
        ),
        1.0
    );
    assert!(
        count(
            &e,
            "grpc_requests_total",
            &[("method", "RunPodSandbox"), ("code", "Unknown")]
        ) + count(
            &e,
            "grpc_requests_total",
            &[("method", "RunPodSandbox"), ("code", "OK")]
        ) < 3.0,
        "the refused pod has a clear code"
    );
    assert_eq!(
        count(
            &e,
            "grpc_request_duration_seconds_count",
            &[("method", "RunPodSandbox")]
        ),
        2.0
    );
    assert_eq!(
        count(
            &e,
            "grpc_request_duration_seconds_bucket",
            &[("method", "RunPodSandbox"), ("le", "+Inf")]
        ),
        2.0
    );
    // Docker calls by operation, no ids among the labels.
    assert!(
        count(
            &e,
            "docker_request_duration_seconds_count",
            &[("operation", "container_create")]
        ) >= 3.0,
        "two pause containers and one container at least"
    );
    assert!(
        count(
            &e,
            "docker_request_duration_seconds_count",
            &[("operation", "image_pull")]
        ) >= 1.0
    );
    assert!(
        count(
            &e,
            "docker_request_errors_total",
            &[("operation", "container_inspect"), ("kind", "client_error")]
        ) >= 1.0,
        "the missing container's 404"
    );
    for sample in e.find(&format!("{P}docker_request_duration_seconds_count"), &[]) {
        let operation = &sample.labels["operation"];
        assert!(
            operation
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'),
            "{operation}"
        );
    }
    // CNI: two ADDs that worked (the pod), one that failed.
    let network = [("operation", "ADD"), ("network", "crid-fault-15")];
    assert_eq!(
        count(&e, "cni_operation_duration_seconds_count", &network),
        2.0
    );
    assert_eq!(count(&e, "cni_operation_failures_total", &network), 1.0);
    // The pull: one success of the image's size.
    assert_eq!(
        count(&e, "image_pulls_total", &[("outcome", "success")]),
        1.0
    );
    assert!(count(&e, "image_pull_bytes_total", &[]) > 1_000_000.0);
    assert_eq!(
        count(
            &e,
            "image_pull_duration_seconds_count",
            &[("outcome", "success")]
        ),
        1.0
    );
    // The subscriber's series.
    let sent = e.find(&format!("{P}container_events_sent_total"), &[]);
    assert_eq!(sent.len(), 1, "one subscriber: {sent:?}");
    assert!(sent[0].value >= 1.0);
    assert_eq!(count(&e, "container_events_dropped_total", &[]), 0.0);
    // Node state (other tests' pods share the daemon: at least ours).
    assert!(count(&e, "pod_sandboxes", &[("state", "SANDBOX_READY")]) >= 1.0);
    assert!(count(&e, "containers", &[("state", "CONTAINER_RUNNING")]) >= 1.0);
    assert!(count(&e, "process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(count(&e, "process_open_fds", &[]) > 3.0);
    assert!(count(&e, "tokio_tasks", &[]) >= 1.0);

    // A scrape asks Docker nothing. Other tests' containers make events the
    // shim inspects; nothing else may pass the proxy while it is scraped.
    proxy.take_requests();
    for _ in 0..30 {
        scrape(address).await;
    }
    let asked: Vec<String> = proxy
        .take_requests()
        .into_iter()
        .filter(|r| !(r.starts_with("GET ") && r.contains("/containers/") && r.ends_with("/json")))
        .collect();
    assert!(asked.is_empty(), "30 scrapes asked Docker: {asked:?}");

    // /healthz follows Docker.
    assert_eq!(metrics::get(address, "/healthz").await.0, 200);
    proxy.cut();
    let (status, _, body) = metrics::get(address, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("docker:"), "{body}");
    proxy.resume();
    let started = Instant::now();
    while metrics::get(address, "/healthz").await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "healthy again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metrics::get(address, "/nothing").await.0, 404);

    shim.cleanup().await;
    scrape_until(address, "the pod's CNI DEL", |e| {
        count(
            e,
            "cni_operation_duration_seconds_count",
            &[("operation", "DEL"), ("network", "crid-fault-15")],
        ) >= 1.0
    })
    .await;
    drop(events);
    scrape_until(address, "the subscriber's series gone", |e| {
        e.find(&format!("{P}container_events_sent_total"), &[])
            .is_empty()
    })
    .await;
    remove_local(&env.docker, &image).await;

    check_json_log(&shim.log_text(), &pod, &container);
}

/// Every line is one JSON object; every CRI call has one record with its
/// method, code and duration at the level its kind and outcome call for.
fn check_json_log(text: &str, pod: &str, container: &str) {
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for record in &records {
        for key in ["timestamp", "level", "target"] {
            assert!(record[key].is_string(), "{key} missing: {record}");
        }
    }
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["target"] == "cri_dockerd_server::observe")
        .collect();
    let of = |method: &str| -> Vec<&Value> {
        calls
            .iter()
            .copied()
            .filter(|r| r["span"]["method"] == method)
            .collect()
    };
    for record in &calls {
        let method = record["span"]["method"].as_str().expect("method");
        let code = record["code"].as_str().expect("code");
        let duration = record["duration_ms"].as_f64().expect("duration_ms");
        let level = record["level"].as_str().unwrap();
        let hot = method.starts_with("List")
            || method.ends_with("Status")
            || method.ends_with("Stats")
            || ["Version", "ImageFsInfo", "ExecSync"].contains(&method);
        let stream = method == "GetContainerEvents";
        let failed = code != "OK" && !(stream && code == "Canceled");
        let expected = if failed || (duration >= SLOW_MS && !stream) {
            "WARN"
        } else if hot {
            "DEBUG"
        } else {
            "INFO"
        };
        assert_eq!(level, expected, "{record}");
        if level == "WARN" && code == "OK" {
            assert_eq!(record["message"], "slow CRI request", "{record}");
        }
    }

    let run = of("RunPodSandbox");
    assert_eq!(run.len(), 2, "{run:?}");
    let ok = run
        .iter()
        .find(|r| r["code"] == "OK")
        .expect("the pod's record");
    assert_eq!(ok["span"]["pod"], "default/observed");
    // Above the threshold with two CNI ADDs and a container start: its steps.
    let steps = ok["steps"].as_str().expect("a slow call lists its steps");
    for step in [
        "docker container_create",
        "docker container_start",
        "cni ADD crid-fault-15",
    ] {
        assert!(steps.contains(step), "{step} in {steps}");
    }
    let refused = run.iter().find(|r| r["code"] != "OK").unwrap();
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("crid-fault: injected failure"),
        "{refused}"
    );
    assert!(
        refused["steps"]
            .as_str()
            .unwrap()
            .contains("cni ADD crid-fault-15")
    );

    let missing = of("ContainerStatus")
        .into_iter()
        .find(|r| r["code"] == "NotFound")
        .expect("the NotFound record");
    assert_eq!(missing["level"], "WARN");
    assert_eq!(
        missing["span"]["container_id"],
        "0123456789abcdef0123456789abcdef"
    );
    assert!(missing["error"].as_str().unwrap().contains("not found"));

    let create = of("CreateContainer");
    assert_eq!(create.len(), 1);
    assert_eq!(create[0]["span"]["pod_sandbox_id"], pod);
    assert_eq!(create[0]["span"]["container"], "box");
    assert_eq!(create[0]["span"]["pod"], "default/observed");
    let start = of("StartContainer");
    assert_eq!(start[0]["span"]["container_id"], container);
    assert_eq!(of("PullImage").len(), 1);
    assert!(
        of("StopPodSandbox")
            .iter()
            .any(|r| r["span"]["pod_sandbox_id"] == pod),
        "the cleanup's stop names its pod"
    );
    // Lines inside a call carry its span too.
    assert!(
        records
            .iter()
            .any(|r| r["target"] != "cri_dockerd_server::observe"
                && r["span"]["method"] == "RunPodSandbox"
                && r["span"]["pod"] == "default/observed"),
        "the pod's own log lines carry the request's span"
    );
}

/// The scrape config the README gives operators, with its target moved to
/// `target` and a one-second interval.
fn readme_scrape_config(target: SocketAddr) -> String {
    let readme =
        std::fs::read_to_string(cri_dockerd_testkit::repo_root().join("README.md")).unwrap();
    let start = readme
        .find("```yaml\n# prometheus.yml\n")
        .expect("the README's Prometheus scrape config");
    let block = &readme[start + "```yaml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    assert!(block.contains("'127.0.0.1:9464'"), "{block}");
    format!(
        "global:\n  scrape_interval: 1s\n{}",
        block.replace("127.0.0.1:9464", &target.to_string())
    )
}

/// A Prometheus server of the test's own, on loopback, killed when dropped.
struct Prometheus {
    child: std::process::Child,
    address: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &std::path::Path, config: &str) -> Self {
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = std::process::Command::new(cri_dockerd_testkit::env::tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("starting prometheus");
        Self { child, address }
    }

    async fn api(&self, path_and_query: &str) -> Value {
        let (status, _, body) = metrics::get(self.address, path_and_query).await;
        assert_eq!(status, 200, "{path_and_query}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The single vector result of `query`, as (labels, value).
    async fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let answer = self.api(&format!("/api/v1/query?query={encoded}")).await;
        assert_eq!(answer["status"], "success", "{answer}");
        answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_endpoint_and_promtool_finds_nothing_to_lint() {
    test_env().await;
    let shim = Shim::builder(BIN)
        .arg("--log-format=json")
        .arg("--metrics-bind-addr=127.0.0.1")
        .start()
        .await;
    let address = metrics::endpoint_from_json_log(&shim.log).await;
    let missing = shim
        .runtime
        .clone()
        .container_status(ContainerStatusRequest {
            container_id: "fedcba9876543210".into(),
            verbose: false,
        })
        .await
        .expect_err("no such container");
    assert_eq!(missing.code(), Code::NotFound);

    // promtool, Prometheus' own linter, on what a scrape gets.
    let promtool = |body: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(cri_dockerd_testkit::env::tool("promtool"))
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let (_, _, body) = metrics::get(address, "/metrics").await;
    let linted = promtool(&body);
    assert!(
        linted.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );
    // It does refuse a bad exposition: a counter without `_total`.
    assert!(
        !promtool("# HELP bad Bad.\n# TYPE bad counter\nbad 1\n")
            .status
            .success()
    );

    // A Prometheus server with the README's scrape config (it asks for
    // OpenMetrics first, so this reads that exposition).
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path(), &readme_scrape_config(address));
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answer = metrics::get(prometheus.address, "/api/v1/targets").await;
        if answer.0 == 200 {
            let targets: Value = serde_json::from_str(&answer.2).unwrap();
            let health = &targets["data"]["activeTargets"][0];
            assert_eq!(health["lastError"].as_str().unwrap_or(""), "", "{health}");
            if health["health"] == "up" {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus never scraped the endpoint:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
    }
    let not_found = prometheus
        .query(r#"cri_dockerd_rs_grpc_requests_total{method="ContainerStatus",code="NotFound"}"#)
        .await;
    assert_eq!(not_found.len(), 1, "{not_found:?}");
    assert_eq!(not_found[0].0["job"], "cri-dockerd-rs");
    assert_eq!(not_found[0].1, 1.0);
    let p99 = prometheus
        .query("histogram_quantile(0.99, sum by (le) (cri_dockerd_rs_grpc_request_duration_seconds_bucket))")
        .await;
    assert_eq!(p99.len(), 1, "{p99:?}");
    assert!(p99[0].1 > 0.0 && p99[0].1 < 120.0, "{p99:?}");
    let ready = prometheus
        .query(r#"cri_dockerd_rs_pod_sandboxes{state="SANDBOX_READY"}"#)
        .await;
    assert_eq!(ready.len(), 1, "{ready:?}");
}
