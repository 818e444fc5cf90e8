#!/usr/bin/env python3
"""Readers and writers at once, through Python grpcio on its defaults.

Usage: load.py TARGET IMAGE UID_PREFIX WORK_DIR SECONDS

Compiles proto/ into WORK_DIR (as cri_v034_scenario.py does), then for
SECONDS runs 8 readers, each repeating a round of what the kubelet's relist
and status loop asks (ListPodSandbox, ListContainers, PodSandboxStatus of
one pod and ContainerStatus of one container), while 2 writers each run,
start and remove pods (a pod, a container in it, stop, remove) with uids
under UID_PREFIX. Prints one JSON object: rounds, round latencies
(p50/p99/max in ms), pod cycles, and every error; the Rust test
(crates/cri-dockerd-rs/tests/load.rs) judges it.
"""
import json
import os
import random
import sys
import threading
import time

from cri_v034_scenario import compile_stubs

READERS = 8
WRITERS = 2


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[index]


def main():
    target, image, uid_prefix, work, seconds = sys.argv[1:6]
    seconds = float(seconds)
    compile_stubs(work)
    import grpc
    from runtime.v1 import api_pb2 as api
    from runtime.v1 import api_pb2_grpc as rpc

    channel = grpc.insecure_channel(target)
    runtime = rpc.RuntimeServiceStub(channel)
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    rounds = []
    errors = []
    cycles = [0]

    def record_error(where, error):
        code = error.code().name if hasattr(error, "code") else type(error).__name__
        detail = error.details() if hasattr(error, "details") else str(error)
        with lock:
            errors.append("%s: %s %s" % (where, code, detail))

    def status_unless_gone(call, request):
        # A writer may remove the pod or container between the list and the
        # status: NotFound is then the right answer.
        try:
            call(request, timeout=10)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise

    def reader(seed):
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                pods = runtime.ListPodSandbox(api.ListPodSandboxRequest(), timeout=10).items
                containers = runtime.ListContainers(api.ListContainersRequest(), timeout=10).containers
                if pods:
                    status_unless_gone(runtime.PodSandboxStatus, api.PodSandboxStatusRequest(
                        pod_sandbox_id=rng.choice(pods).id))
                if containers:
                    status_unless_gone(runtime.ContainerStatus, api.ContainerStatusRequest(
                        container_id=rng.choice(containers).id))
            except grpc.RpcError as e:
                record_error("reader", e)
                continue
            elapsed = (time.monotonic() - started) * 1000.0
            with lock:
                rounds.append(elapsed)

    def writer(index):
        n = 0
        while time.monotonic() < deadline:
            n += 1
            name = "churn%dx%d" % (index, n)
            uid = "%s-%s" % (uid_prefix, name)
            log_directory = os.path.join(work, "logs", name)
            # The kubelet makes the pod's and the container's log directories.
            os.makedirs(os.path.join(log_directory, "c"), exist_ok=True)
            config = api.PodSandboxConfig(
                metadata=api.PodSandboxMetadata(name=name, namespace="default", uid=uid),
                hostname=name,
                log_directory=log_directory,
                labels={"io.kubernetes.pod.uid": uid},
                linux=api.LinuxPodSandboxConfig(),
            )
            try:
                pod = runtime.RunPodSandbox(
                    api.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
                ctr = runtime.CreateContainer(api.CreateContainerRequest(
                    pod_sandbox_id=pod,
                    config=api.ContainerConfig(
                        metadata=api.ContainerMetadata(name="c"),
                        image=api.ImageSpec(image=image),
                        command=["sleep", "3600"],
                        log_path="c/0.log",
                    ),
                    sandbox_config=config,
                ), timeout=60).container_id
                runtime.StartContainer(api.StartContainerRequest(container_id=ctr), timeout=60)
                runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
                runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
            except grpc.RpcError as e:
                record_error("writer", e)
                continue
            with lock:
                cycles[0] += 1

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    threads += [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ordered = sorted(rounds)
    print(json.dumps({
        "readers": READERS,
        "writers": WRITERS,
        "seconds": seconds,
        "rounds": len(rounds),
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1] if ordered else None,
        "pod_cycles": cycles[0],
        "errors": errors,
    }))


if __name__ == "__main__":
    main()
