#!/usr/bin/env python3
"""The CRI of Kubernetes 1.36 through Python grpcio stubs compiled from proto/.

Usage: cri_v036_scenario.py TARGET IMAGE WORK_DIR

As a client of cri-api v0.36 would (grpcio on its defaults, not the
project's own client): sends an env value that is not UTF-8 as bytes, reads
it back from the container, lists the pod's containers and the images
through the server-streaming Stream* calls next to their unary twins, and
reads Status's runtime features. Prints one JSON object of what it saw; the
Rust test (crates/cri-dockerd-rs/tests/grpc_clients.rs) judges it.
"""
import json
import os
import sys
import uuid

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cri_v034_scenario import compile_stubs  # noqa: E402


def main():
    target, image, work = sys.argv[1:4]
    compile_stubs(os.path.join(work, "stubs"))
    from runtime.v1 import api_pb2 as api
    from runtime.v1 import api_pb2_grpc as api_grpc

    seen = {}
    with grpc.insecure_channel(target) as channel:
        runtime = api_grpc.RuntimeServiceStub(channel)
        images = api_grpc.ImageServiceStub(channel)
        uid = str(uuid.uuid4())
        pod_config = api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name="py-v036", namespace="default", uid=uid),
            hostname="py-v036",
            log_directory=os.path.join(work, "logs"),
        )
        pod = runtime.RunPodSandbox(api.RunPodSandboxRequest(config=pod_config)).pod_sandbox_id
        cid = None
        try:
            config = api.ContainerConfig(
                metadata=api.ContainerMetadata(name="env"),
                image=api.ImageSpec(image=image),
                command=["sleep", "3600"],
                log_path="env.log",
                envs=[
                    api.KeyValue(key="BINARY", value=b"a\xff\xfez"),
                    api.KeyValue(key="TEXT", value="grüße".encode()),
                ],
            )
            cid = runtime.CreateContainer(api.CreateContainerRequest(
                pod_sandbox_id=pod, config=config, sandbox_config=pod_config)).container_id
            runtime.StartContainer(api.StartContainerRequest(container_id=cid))
            out = runtime.ExecSync(api.ExecSyncRequest(
                container_id=cid, cmd=["sh", "-c", 'printf "%s|%s" "$BINARY" "$TEXT"'], timeout=10))
            seen["env"] = out.stdout.decode("utf-8", errors="strict")

            by_pod = api.ContainerFilter(pod_sandbox_id=pod)
            streamed = [c.id for m in runtime.StreamContainers(
                api.StreamContainersRequest(filter=by_pod)) for c in m.containers]
            listed = [c.id for c in runtime.ListContainers(
                api.ListContainersRequest(filter=by_pod)).containers]
            seen["stream_containers"] = streamed
            seen["list_containers"] = listed
            seen["container_id"] = cid
            seen["stream_pods"] = [p.id for m in runtime.StreamPodSandboxes(
                api.StreamPodSandboxesRequest(filter=api.PodSandboxFilter(id=pod)))
                for p in m.pod_sandboxes]
            seen["pod_id"] = pod
            # By the test's image: other clients may pull and remove
            # others meanwhile.
            ours = api.ImageFilter(image=api.ImageSpec(image=image))
            seen["stream_images"] = sorted(i.id for m in images.StreamImages(
                api.StreamImagesRequest(filter=ours)) for i in m.images)
            seen["list_images"] = sorted(i.id for i in images.ListImages(
                api.ListImagesRequest(filter=ours)).images)

            status = runtime.Status(api.StatusRequest(verbose=True))
            seen["features_set"] = status.HasField("features")
            seen["supplemental_groups_policy"] = status.features.supplemental_groups_policy
            seen["user_namespaces_host_network"] = status.features.user_namespaces_host_network
            seen["handler_user_namespaces"] = [
                h.features.user_namespaces for h in status.runtime_handlers]
            seen["feature_answers"] = json.loads(status.info["features"])
        finally:
            if cid:
                runtime.StopContainer(api.StopContainerRequest(container_id=cid, timeout=0))
            runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod))
            runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
