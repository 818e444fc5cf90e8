#!/usr/bin/env python3
"""The CRI of Kubernetes 1.34 through Python grpcio stubs compiled from proto/.

Usage: cri_v034_scenario.py TARGET IMAGE WORK_DIR

Compiles proto/runtime/v1/api.proto with grpcio-tools into WORK_DIR, then
as a client of cri-api v0.34 would: runs a pod, resizes it with
UpdatePodSandboxResources, stops a container whose stop_signal is SIGUSR1,
times ImageFsInfo while a writable layer holds 60,000 files, and lists the
pod's metrics. Prints one JSON object of what it saw; the Rust test
(crates/cri-dockerd-rs/tests/grpc_clients.rs) judges it.
"""
import json
import os
import sys
import time
import uuid

import grpc
import grpc_tools
from grpc_tools import protoc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compile_stubs(out):
    os.makedirs(out, exist_ok=True)
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    code = protoc.main([
        "protoc",
        "-I" + os.path.join(REPO, "proto"),
        "-I" + include,
        "--python_out=" + out,
        "--grpc_python_out=" + out,
        "runtime/v1/api.proto",
    ])
    if code != 0:
        raise SystemExit("protoc failed on proto/runtime/v1/api.proto")
    sys.path.insert(0, out)


def wait_for(what, predicate, seconds):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.05)


def log_has(path, text):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return text in f.read()
    except FileNotFoundError:
        return False


def main():
    target, image, work = sys.argv[1:4]
    compile_stubs(os.path.join(work, "stubs"))
    from runtime.v1 import api_pb2 as api
    from runtime.v1 import api_pb2_grpc as api_grpc

    seen = {}
    with grpc.insecure_channel(target) as channel:
        runtime = api_grpc.RuntimeServiceStub(channel)
        images = api_grpc.ImageServiceStub(channel)
        seen["runtime_api_version"] = runtime.Version(api.VersionRequest()).runtime_api_version

        uid = str(uuid.uuid4())
        logs = os.path.join(work, "logs")
        pod_config = api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name="py-v034", namespace="default", uid=uid),
            hostname="py-v034",
            log_directory=logs,
        )
        pod = runtime.RunPodSandbox(api.RunPodSandboxRequest(config=pod_config)).pod_sandbox_id
        try:
            runtime.UpdatePodSandboxResources(api.UpdatePodSandboxResourcesRequest(
                pod_sandbox_id=pod,
                resources=api.LinuxContainerResources(
                    cpu_shares=512, memory_limit_in_bytes=256 << 20),
            ))
            seen["update_pod_sandbox_resources"] = "OK"

            def run(name, script, **extra):
                config = api.ContainerConfig(
                    metadata=api.ContainerMetadata(name=name),
                    image=api.ImageSpec(image=image),
                    command=["sh", "-c", script],
                    log_path=name + ".log",
                    **extra,
                )
                cid = runtime.CreateContainer(api.CreateContainerRequest(
                    pod_sandbox_id=pod, config=config, sandbox_config=pod_config)).container_id
                runtime.StartContainer(api.StartContainerRequest(container_id=cid))
                return cid, os.path.join(logs, name + ".log")

            usr1, usr1_log = run(
                "usr1",
                "trap 'echo got-usr1; exit 7' USR1; echo ready; while true; do sleep 0.1; done",
                stop_signal=api.SIGUSR1,
            )
            wait_for("the USR1 trap", lambda: log_has(usr1_log, "ready"), 20)
            started = time.monotonic()
            runtime.StopContainer(api.StopContainerRequest(container_id=usr1, timeout=30))
            seen["stop_seconds"] = time.monotonic() - started
            status = runtime.ContainerStatus(api.ContainerStatusRequest(container_id=usr1)).status
            seen["stop_signal"] = api.Signal.Name(status.stop_signal)
            seen["exit_code"] = status.exit_code
            seen["trap_ran"] = log_has(usr1_log, "got-usr1")

            many, many_log = run(
                "many",
                "mkdir /many && cd /many && seq 1 60000 | xargs touch && echo filled; sleep 3600 & wait",
            )
            wait_for("60,000 files", lambda: log_has(many_log, "filled"), 120)
            # The background walk measures a started container's layer at
            # once; wait until it shows the files, then time the calls.
            def layer_inodes():
                stats = runtime.ContainerStats(
                    api.ContainerStatsRequest(container_id=many)).stats
                return stats.writable_layer.inodes_used.value

            wait_for("the writable layer figure", lambda: layer_inodes() >= 60000, 60)
            timings = []
            for _ in range(5):
                started = time.monotonic()
                fs = images.ImageFsInfo(api.ImageFsInfoRequest())
                timings.append((time.monotonic() - started) * 1000)
            seen["image_fs_info_ms"] = timings
            seen["image_filesystems"] = len(fs.image_filesystems)
            seen["container_filesystems"] = len(fs.container_filesystems)
            seen["container_fs_inodes"] = (
                fs.container_filesystems[0].inodes_used.value if fs.container_filesystems else 0)

            descriptors = runtime.ListMetricDescriptors(api.ListMetricDescriptorsRequest()).descriptors
            seen["descriptors"] = {d.name: list(d.label_keys) for d in descriptors}
            metrics = runtime.ListPodSandboxMetrics(api.ListPodSandboxMetricsRequest()).pod_metrics
            mine = [m for m in metrics if m.pod_sandbox_id == pod]
            seen["pod_metric_names"] = sorted({m.name for p in mine for m in p.metrics})
            seen["container_metrics"] = {
                c.container_id: {
                    m.name: {"labels": list(m.label_values), "value": m.value.value}
                    for m in c.metrics
                }
                for p in mine
                for c in p.container_metrics
            }
            seen["many_id"] = many
        finally:
            runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod))
            runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
