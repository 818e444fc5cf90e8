//! The packaging files, checked without the internet: the Dockerfile with
//! hadolint and against the offline DooD image's layout, docker-compose.yml
//! through `docker compose config`, standalone.yaml against kubelet v1.34's
//! configuration fields, the static pod manifests, the checksum-verifying
//! download script against a local server, and the Makefile's `up`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use cri_dockerd_testkit::dood::{
    CNI_PLUGINS, ONLINE_ONLY, RUNTIME_LAYOUT, SOCKET_LINK, compose_command,
};
use cri_dockerd_testkit::repo_root;
use serde_yaml_ng::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

// --- standalone.yaml ------------------------------------------------------

/// Every leaf of a YAML document as a path: `a.b` for mappings, `a[]` for
/// the items of a sequence. Empty mappings and sequences are leaves too.
fn field_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = key.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                field_paths(child, &path, out);
            }
        }
        Value::Sequence(items) if !items.is_empty() => {
            for item in items {
                field_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// The paths the field list does not allow. A listed `a.*` allows any key
/// under `a`; a listed `a[]` any scalar item of list `a`; a listed field
/// also takes an empty list or mapping (`enforceNodeAllocatable: []`).
fn unknown_fields(document: &Value, allowed: &BTreeSet<String>) -> Vec<String> {
    let mut paths = BTreeSet::new();
    field_paths(document, "", &mut paths);
    paths
        .into_iter()
        .filter(|path| {
            let bare = path.trim_end_matches("[]");
            let known = allowed.contains(path.as_str())
                || allowed.contains(&format!("{bare}[]"))
                || allowed
                    .iter()
                    .filter_map(|a| a.strip_suffix(".*"))
                    .any(|map| path == map || path.starts_with(&format!("{map}.")))
                || allowed.iter().any(|a| {
                    a.starts_with(&format!("{path}.")) || a.starts_with(&format!("{path}[]"))
                });
            !known
        })
        .collect()
}

fn kubelet_v1_34_fields() -> BTreeSet<String> {
    read("testdata/kubelet-v1.34/kubelet-config-fields.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_field_check_rejects_what_kubelet_v1_34_does_not_know() {
    let allowed = kubelet_v1_34_fields();
    let document: Value = serde_yaml_ng::from_str(
        "kind: KubeletConfiguration\nrootDir: /var/run/kubelet\nauthentication:\n  anonymous:\n    enabled: true\n    typo: 1\nevictionHard:\n  memory.available: 1Mi\nclusterDNS: [10.0.0.10]\nenforceNodeAllocatable: []\nmemoryReservationPolicy: None\n",
    )
    .unwrap();
    assert_eq!(
        unknown_fields(&document, &allowed),
        vec![
            "authentication.anonymous.typo",
            "memoryReservationPolicy",
            "rootDir"
        ]
    );
}

#[test]
fn standalone_yaml_is_a_kubelet_v1_34_configuration_for_a_standalone_node() {
    let config = yaml("standalone.yaml");
    assert_eq!(
        unknown_fields(&config, &kubelet_v1_34_fields()),
        Vec::<String>::new(),
        "fields kubelet v1.34 does not know"
    );
    let get = |path: &str| -> Value {
        path.split('.')
            .try_fold(&config, |v, key| v.get(key))
            .unwrap_or_else(|| panic!("standalone.yaml has no {path}"))
            .clone()
    };
    let s = |v: &str| Value::String(v.into());
    let expected = [
        ("apiVersion", s("kubelet.config.k8s.io/v1beta1")),
        ("kind", s("KubeletConfiguration")),
        (
            "containerRuntimeEndpoint",
            s("unix:///var/run/cri-dockerd.sock"),
        ),
        ("staticPodPath", s("/etc/kubernetes/manifests")),
        ("authentication.anonymous.enabled", Value::Bool(true)),
        ("authentication.webhook.enabled", Value::Bool(false)),
        ("authorization.mode", s("AlwaysAllow")),
        ("cgroupsPerQOS", Value::Bool(false)),
        ("enforceNodeAllocatable", Value::Sequence(vec![])),
        ("localStorageCapacityIsolation", Value::Bool(false)),
        ("evictionHard", Value::Mapping(Default::default())),
        ("imageGCHighThresholdPercent", Value::Number(100.into())),
        ("failSwapOn", Value::Bool(false)),
        ("failCgroupV1", Value::Bool(false)),
    ];
    for (path, value) in expected {
        assert_eq!(get(path), value, "{path}");
    }
    let driver = get("cgroupDriver");
    assert!(
        driver == s("cgroupfs") || driver == s("systemd"),
        "{driver:?}"
    );
}

// --- docker-compose.yml ---------------------------------------------------

/// The compose file as Compose v2 resolves it (defaults interpolated).
fn compose_config() -> serde_json::Value {
    let program = compose_command();
    let out = Command::new(&program[0])
        .args(&program[1..])
        .arg("-f")
        .arg(repo_root().join("docker-compose.yml"))
        .args(["config", "--format", "json"])
        .env_remove("CRID_IMAGE")
        .env_remove("CRID_RUN_DIR")
        .env_remove("PAUSE_IMAGE")
        .output()
        .expect("running compose config");
    assert!(
        out.status.success(),
        "compose config rejects docker-compose.yml:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("compose config JSON")
}

fn mounts(service: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    service["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|m| (m["target"].as_str().unwrap().to_string(), m.clone()))
        .collect()
}

/// A service's program, which runs under `crid-supervise --` (restarted a
/// second after it exits), as shipped in the image.
fn supervised_command(service: &serde_json::Value) -> Vec<String> {
    let command: Vec<String> = serde_json::from_value(service["command"].clone()).unwrap();
    assert_eq!(command[..2], ["crid-supervise", "--"], "{command:?}");
    assert!(
        RUNTIME_LAYOUT
            .iter()
            .any(|(at, _)| *at == "/usr/local/bin/crid-supervise")
    );
    command[2..].to_vec()
}

fn flag<'a>(command: &'a [String], name: &str) -> &'a str {
    command
        .iter()
        .find_map(|arg| arg.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {command:?}"))
}

#[test]
fn the_compose_file_gives_both_services_the_dood_privileges_and_state() {
    let config = compose_config();
    let services = config["services"].as_object().expect("services");
    assert_eq!(
        services.keys().collect::<Vec<_>>(),
        ["cri-dockerd", "kubelet"]
    );
    for (name, service) in services {
        assert_eq!(service["image"], "cri-dockerd-rs:local", "{name}");
        assert_eq!(service["privileged"], true, "{name}");
        for key in ["network_mode", "pid", "ipc", "uts", "cgroup"] {
            assert_eq!(service[key], "host", "{name}: {key}");
        }
        assert_eq!(service["restart"], "always", "{name}");
        let mounts = mounts(service);
        for (target, source) in [
            ("/var/run/docker.sock", "/var/run/docker.sock"),
            ("/var/lib/docker", "/var/lib/docker"),
            ("/sys/fs/cgroup", "/sys/fs/cgroup"),
            ("/var/run/kubelet", "/var/run/kubelet"),
            ("/var/run/cri-dockerd", "/var/run/cri-dockerd"),
            ("/var/lib/cni", "/var/lib/cni"),
            ("/var/log/pods", "/var/log/pods"),
        ] {
            let mount = mounts
                .get(target)
                .unwrap_or_else(|| panic!("{name} lacks {target}"));
            assert_eq!(mount["type"], "bind", "{name} {target}");
            assert_eq!(mount["source"], source, "{name} {target}");
        }
        assert_ne!(
            mounts["/sys/fs/cgroup"]["read_only"], true,
            "{name}: cgroups rw"
        );
    }

    let kubelet = &services["kubelet"];
    let kubelet_mounts = mounts(kubelet);
    assert_eq!(
        kubelet_mounts["/var/run/kubelet"]["bind"]["propagation"], "rshared",
        "the kubelet's volume mounts reach the host's Docker"
    );
    let manifests = &kubelet_mounts["/etc/kubernetes/manifests"];
    assert_eq!(
        Path::new(manifests["source"].as_str().unwrap()),
        repo_root().join("manifests")
    );
    let command = supervised_command(kubelet);
    assert_eq!(command[0], "kubelet");
    assert_eq!(flag(&command, "--root-dir"), "/var/run/kubelet");
    assert_eq!(flag(&command, "--cert-dir"), "/var/run/kubelet/pki");
    assert_eq!(
        flag(&command, "--config"),
        "/etc/kubernetes/standalone.yaml"
    );
    assert!(
        RUNTIME_LAYOUT
            .iter()
            .any(|(at, _)| *at == flag(&command, "--config")),
        "the image holds the kubelet config where the command reads it"
    );

    // The shim serves where the image's link, standalone.yaml and
    // /etc/crictl.yaml point.
    let shim = supervised_command(&services["cri-dockerd"]);
    assert_eq!(shim[0], "cri-dockerd-rs");
    let endpoint = flag(&shim, "--container-runtime-endpoint");
    assert_eq!(endpoint, format!("unix://{}", SOCKET_LINK.1));
    assert!(
        SOCKET_LINK
            .1
            .starts_with(&format!("{}/", flag(&shim, "--cri-dockerd-root-directory"))),
        "the socket lives in the mounted state directory"
    );
    let (link, _) = SOCKET_LINK;
    let usual = "unix:///var/run/cri-dockerd.sock";
    assert_eq!(format!("unix:///var{link}"), usual);
    assert_eq!(
        yaml("standalone.yaml")["containerRuntimeEndpoint"].as_str(),
        Some(usual)
    );
    let crictl = yaml("packaging/crictl.yaml");
    assert_eq!(crictl["runtime-endpoint"].as_str(), Some(usual));
    assert_eq!(crictl["image-endpoint"].as_str(), Some(usual));
    assert_eq!(flag(&shim, "--hairpin-mode"), "hairpin-veth");
    assert_eq!(flag(&shim, "--network-plugin"), "cni");
    assert_eq!(
        flag(&shim, "--pod-infra-container-image"),
        "cri-dockerd-rs/pause:local"
    );
}

// --- Dockerfile -----------------------------------------------------------

/// The Dockerfile's instructions with continuation lines joined.
fn dockerfile_instructions() -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn stage(instructions: &[String], name: &str) -> Vec<String> {
    let start = instructions
        .iter()
        .position(|i| i.starts_with("FROM ") && i.ends_with(&format!(" AS {name}")))
        .unwrap_or_else(|| panic!("no stage {name}"));
    instructions[start + 1..]
        .iter()
        .take_while(|i| !i.starts_with("FROM "))
        .cloned()
        .collect()
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let out = Command::new("hadolint")
        .arg(repo_root().join("Dockerfile"))
        .output()
        .expect("hadolint is missing: scripts/test-env.sh installs it");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dockerfile_takes_every_version_as_an_argument_with_the_reference_defaults() {
    let instructions = dockerfile_instructions();
    let global_args: BTreeMap<&str, &str> = instructions
        .iter()
        .take_while(|i| !i.starts_with("FROM "))
        .filter_map(|i| i.strip_prefix("ARG ")?.split_once('='))
        .collect();
    let makefile = read("Makefile");
    for (arg, default) in [
        ("KUBE_VERSION", "1.34"),
        ("KUBE_VERSION_PATCH", "0"),
        ("CNI_PLUGINS_VERSION", "1.7.1"),
        ("CRICTL_VERSION", "1.33.0"),
        ("KUBELET_FROM_SOURCE", "0"),
    ] {
        assert_eq!(global_args.get(arg), Some(&default), "ARG {arg}");
        assert!(
            makefile.contains(&format!("{arg} ?= {default}\n"))
                && makefile.contains(&format!("--build-arg {arg}=$({arg})")),
            "the Makefile passes {arg} with the same default"
        );
    }

    // Every download is checked against its published checksum, for the
    // architecture being built.
    for name in ["kubelet-release", "crictl", "cni-plugins"] {
        let run = stage(&instructions, name)
            .into_iter()
            .find(|i| i.starts_with("RUN "))
            .unwrap_or_else(|| panic!("{name} downloads nothing"));
        assert!(run.contains("fetch-verified "), "{name}: {run}");
        assert!(run.contains("${arch}"), "{name} follows TARGETARCH: {run}");
    }
    let fetch = stage(&instructions, "fetch");
    assert!(fetch.contains(&"ARG TARGETARCH".to_string()));
    let source = stage(&instructions, "kubelet-source").join("\n");
    assert!(source.contains("CGO_ENABLED=0"), "{source}");
    assert!(
        instructions.contains(&"FROM kubelet-from-source-${KUBELET_FROM_SOURCE} AS kubelet".into())
    );
    let cni = stage(&instructions, "cni-plugins").join("\n");
    for plugin in CNI_PLUGINS {
        assert!(
            cni.contains(&format!("/tmp/cni/{plugin}")),
            "CNI plugin {plugin}"
        );
    }
    let pause = stage(&instructions, "pause");
    assert!(pause.contains(&"COPY --from=build /out/pause /pause".to_string()));
    let build = stage(&instructions, "build").join("\n");
    assert!(build.contains("--release -p cri-dockerd-rs"));
    assert!(build.contains("target-feature=+crt-static"));
}

#[test]
fn the_offline_dood_image_has_the_runtime_stage_layout() {
    let runtime = stage(&dockerfile_instructions(), "runtime");
    let destinations: BTreeSet<String> = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("COPY "))
        .map(|copy| copy.split_whitespace().last().unwrap().to_string())
        .collect();
    let offline: BTreeSet<String> = RUNTIME_LAYOUT
        .iter()
        .map(|(at, _)| at.to_string())
        .chain(ONLINE_ONLY.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(destinations, offline);
    for (at, source) in RUNTIME_LAYOUT {
        if let cri_dockerd_testkit::dood::Source::Repo(path) = source {
            assert!(
                runtime.contains(&format!("COPY {path} {at}")),
                "COPY {path} {at}"
            );
        }
    }
    let (link, target) = SOCKET_LINK;
    assert!(
        runtime
            .iter()
            .any(|i| i.contains(&format!("ln -s {target} /var{link}"))),
        "the socket link"
    );
}

// --- manifests --------------------------------------------------------------

#[test]
fn the_manifests_are_static_pods_on_the_host_and_on_the_pod_network() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("manifests"))
        .expect("manifests/")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut host_network = Vec::new();
    let mut host_ports = Vec::new();
    for file in &files {
        let pod: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(pod["apiVersion"].as_str(), Some("v1"), "{}", file.display());
        assert_eq!(pod["kind"].as_str(), Some("Pod"), "{}", file.display());
        let name = pod["metadata"]["name"].as_str().expect("metadata.name");
        let containers = pod["spec"]["containers"].as_sequence().expect("containers");
        assert!(!containers.is_empty());
        for c in containers {
            assert!(
                c["name"].as_str().is_some() && c["image"].as_str().is_some(),
                "{name}"
            );
            for port in c["ports"].as_sequence().into_iter().flatten() {
                if let Some(p) = port["hostPort"].as_u64() {
                    host_ports.push((name.to_string(), p));
                }
            }
        }
        if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
            host_network.push(name.to_string());
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("hello-world.yaml")),
        "{files:?}"
    );
    assert_eq!(host_network, ["hello-world"]);
    let hello = yaml("manifests/hello-world.yaml");
    assert!(
        hello["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .starts_with("nginx"),
        "hello-world is nginx"
    );
    // The pod-network example reaches itself through its hostPort on the
    // bridge gateway: hairpin traffic.
    let (demo, port) = host_ports.first().expect("a pod with a hostPort");
    let text = read(&format!("manifests/{demo}.yaml"));
    assert!(
        text.contains(&format!("10.88.0.1:{port}")),
        "{demo} fetches its own hostPort through the gateway"
    );
}

// --- packaging/fetch-verified -------------------------------------------------

/// Serves `files` over HTTP/1.0 on 127.0.0.1 for `requests` requests.
fn serve(
    files: Vec<(&'static str, Vec<u8>)>,
    requests: usize,
) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    write!(
                        stream,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .unwrap();
                    stream.write_all(body).unwrap();
                }
                None => {
                    write!(
                        stream,
                        "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                    )
                    .unwrap();
                }
            }
        }
    });
    (port, handle)
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn fetch_verified_accepts_a_matching_checksum_and_refuses_the_rest() {
    let script = repo_root().join("packaging/fetch-verified");
    let payload = b"a release binary\n".to_vec();
    let good = format!("{}  kubelet\n", sha256_hex(&payload)).into_bytes();
    let bad = format!("{}\n", sha256_hex(b"something else")).into_bytes();
    let dir = tempfile::tempdir().unwrap();
    let fetch = |port: u16, name: &str| {
        Command::new("sh")
            .arg(&script)
            .arg(format!("http://127.0.0.1:{port}/{name}"))
            .arg(dir.path().join(name))
            .output()
            .unwrap()
    };

    let (port, server) = serve(vec![("/good", payload.clone()), ("/good.sha256", good)], 2);
    let out = fetch(port, "good");
    server.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.path().join("good")).unwrap(), payload);

    let (port, server) = serve(vec![("/bad", payload.clone()), ("/bad.sha256", bad)], 2);
    let out = fetch(port, "bad");
    server.join().unwrap();
    assert!(!out.status.success(), "a checksum mismatch fails");

    let (port, server) = serve(vec![("/unsigned", payload)], 2);
    let out = fetch(port, "unsigned");
    server.join().unwrap();
    assert!(!out.status.success(), "a missing checksum fails");
}

// --- Makefile ---------------------------------------------------------------

#[test]
fn make_up_builds_both_images_then_starts_and_waits_for_the_compose_project() {
    let out = Command::new("make")
        .args(["-n", "up"])
        .current_dir(repo_root())
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    let steps: Vec<&str> = plan.lines().collect();
    let position = |needle: &str| {
        steps
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`make up` never runs {needle:?}:\n{plan}"))
    };
    let pause = position("--target pause -t cri-dockerd-rs/pause:local");
    let runtime = position("--target runtime -t cri-dockerd-rs:local");
    let up = position("up --detach --no-build");
    let wait = position("scripts/wait-ready.sh");
    assert!(pause < up && runtime < up && up < wait, "{plan}");
    assert!(steps[up].contains("CRID_IMAGE=cri-dockerd-rs:local"));
    assert!(steps[up].contains("PAUSE_IMAGE=cri-dockerd-rs/pause:local"));
}

#[test]
fn make_up_gives_the_kubelet_root_the_shared_propagation_its_rshared_bind_needs() {
    // In a mount namespace of its own, whose mounts are all private (as on
    // hosts without systemd), so the host's mounts are left alone.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "bash scripts/check-host.sh && findmnt -no PROPAGATION --target /var/run/kubelet \
             && bash scripts/check-host.sh",
        )
        .current_dir(repo_root())
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("making it a shared bind mount"),
        "{stdout}"
    );
    assert_eq!(lines[1], "shared", "{stdout}");
    assert_eq!(lines.len(), 2, "a second run changes nothing: {stdout}");
}

// --- GitHub workflows -------------------------------------------------------

fn workflow(name: &str) -> Value {
    yaml(&format!(".github/workflows/{name}"))
}

fn steps(workflow: &Value, job: &str) -> Vec<Value> {
    workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job} has steps"))
        .clone()
}

fn uses(step: &Value) -> &str {
    step["uses"].as_str().unwrap_or("")
}

#[test]
fn the_workflows_follow_githubs_workflow_schema() {
    let check = |paths: &[PathBuf]| {
        Command::new(cri_dockerd_testkit::env::check_jsonschema())
            .args(["--builtin-schema", "vendor.github-workflows"])
            .args(paths)
            .output()
            .expect("running check-jsonschema")
    };
    let dir = repo_root().join(".github/workflows");
    let files: Vec<PathBuf> = ["ci.yml", "release.yml"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let out = check(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a job without `runs-on` is refused.
    let broken = tempfile::tempdir().unwrap();
    let path = broken.path().join("ci.yml");
    std::fs::write(
        &path,
        read(".github/workflows/ci.yml").replace("runs-on:", "runs_on:"),
    )
    .unwrap();
    assert!(!check(&[path]).status.success());
}

#[test]
fn ci_workflow_runs_ci_run_on_pushes_and_pull_requests() {
    let ci = workflow("ci.yml");
    assert!(!ci["on"]["push"].is_null(), "runs on pushes");
    assert!(
        ci["on"].get("pull_request").is_some(),
        "runs on pull requests"
    );
    let steps = steps(&ci, "ci");
    assert!(
        steps
            .iter()
            .any(|s| uses(s).starts_with("actions/checkout@"))
    );
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(
        runs.iter().any(|r| r.contains("bash .ci/run")),
        "the job runs .ci/run: {runs:?}"
    );
    assert!(
        repo_root().join(".ci/run").is_file(),
        "the script the workflow runs exists"
    );
}

#[test]
fn release_workflow_builds_both_platforms_with_the_makefiles_version_arguments() {
    let release = workflow("release.yml");
    let tags = release["on"]["push"]["tags"]
        .as_sequence()
        .expect("runs on pushed tags");
    assert!(!tags.is_empty());
    let steps = steps(&release, "image");
    for action in [
        "docker/setup-qemu-action@",
        "docker/setup-buildx-action@",
        "docker/login-action@",
    ] {
        assert!(
            steps.iter().any(|s| uses(s).starts_with(action)),
            "{action} missing"
        );
    }
    let args_step = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("args"))
        .expect("a step with id args");
    assert!(
        args_step["run"]
            .as_str()
            .unwrap()
            .contains("make -s print-build-args")
    );
    let builds: Vec<&Value> = steps
        .iter()
        .filter(|s| uses(s).starts_with("docker/build-push-action@"))
        .collect();
    let targets: BTreeSet<&str> = builds
        .iter()
        .map(|s| s["with"]["target"].as_str().expect("a target"))
        .collect();
    assert_eq!(targets, BTreeSet::from(["runtime", "pause"]));
    let instructions = dockerfile_instructions();
    for build in &builds {
        let with = &build["with"];
        let platforms: BTreeSet<&str> = with["platforms"]
            .as_str()
            .expect("platforms")
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!(
            platforms,
            BTreeSet::from(["linux/amd64", "linux/arm64"]),
            "{build:?}"
        );
        assert_eq!(
            with["build-args"].as_str(),
            Some("${{ steps.args.outputs.list }}")
        );
        stage(&instructions, with["target"].as_str().unwrap());
    }

    // What the workflow passes is what `make build` passes, and every one
    // is an ARG of the Dockerfile.
    let printed = Command::new("make")
        .args(["-s", "print-build-args"])
        .current_dir(repo_root())
        .output()
        .expect("make print-build-args");
    assert!(printed.status.success());
    let printed: BTreeSet<String> = String::from_utf8(printed.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_once('=').expect("KEY=VALUE").0.to_string())
        .collect();
    let makefile = read("Makefile");
    let build_args: BTreeSet<String> = makefile
        .split("--build-arg ")
        .skip(1)
        .map(|rest| rest.split('=').next().unwrap().to_string())
        .collect();
    assert_eq!(printed, build_args);
    for arg in &printed {
        assert!(
            instructions
                .iter()
                .any(|i| i.starts_with(&format!("ARG {arg}="))),
            "ARG {arg} in the Dockerfile"
        );
    }
}
