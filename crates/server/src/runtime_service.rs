use std::pin::Pin;

use futures::Stream;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::{Request, Status};

use crate::CriService;
use crate::errors::{Reply, reply, unimplemented};
use crate::validate;

type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for CriService {
    #[tracing::instrument(skip_all)]
    async fn version(&self, _request: Request<VersionRequest>) -> Reply<VersionResponse> {
        reply(self.runtime.version().await)
    }

    #[tracing::instrument(skip_all, fields(pod))]
    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Reply<RunPodSandboxResponse> {
        let request = request.into_inner();
        let config = validate::required(request.config.as_ref(), "config")?;
        if let Some(m) = &config.metadata {
            tracing::Span::current().record("pod", format!("{}/{}", m.namespace, m.name));
        }
        reply(
            self.runtime
                .run_pod_sandbox(config, &request.runtime_handler)
                .await
                .map(|pod_sandbox_id| RunPodSandboxResponse { pod_sandbox_id }),
        )
    }

    #[tracing::instrument(skip_all, fields(pod_sandbox_id))]
    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Reply<StopPodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        validate::non_empty(&id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", id.as_str());
        reply(
            self.runtime
                .stop_pod_sandbox(&id)
                .await
                .map(|()| StopPodSandboxResponse {}),
        )
    }

    #[tracing::instrument(skip_all, fields(pod_sandbox_id))]
    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        validate::non_empty(&id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", id.as_str());
        reply(
            self.runtime
                .remove_pod_sandbox(&id)
                .await
                .map(|()| RemovePodSandboxResponse {}),
        )
    }

    #[tracing::instrument(skip_all, fields(pod_sandbox_id))]
    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Reply<PodSandboxStatusResponse> {
        let request = request.into_inner();
        validate::non_empty(&request.pod_sandbox_id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", request.pod_sandbox_id.as_str());
        reply(
            self.runtime
                .pod_sandbox_status(&request.pod_sandbox_id, request.verbose)
                .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxResponse> {
        let filter = request.into_inner().filter;
        reply(
            self.runtime
                .list_pod_sandbox(filter.as_ref())
                .await
                .map(|items| ListPodSandboxResponse { items }),
        )
    }

    async fn create_container(
        &self,
        _request: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        unimplemented("CreateContainer")
    }

    async fn start_container(
        &self,
        _request: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        unimplemented("StartContainer")
    }

    async fn stop_container(
        &self,
        _request: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        unimplemented("StopContainer")
    }

    async fn remove_container(
        &self,
        _request: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        unimplemented("RemoveContainer")
    }

    async fn list_containers(
        &self,
        _request: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        unimplemented("ListContainers")
    }

    async fn container_status(
        &self,
        _request: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        unimplemented("ContainerStatus")
    }

    async fn update_container_resources(
        &self,
        _request: Request<UpdateContainerResourcesRequest>,
    ) -> Reply<UpdateContainerResourcesResponse> {
        unimplemented("UpdateContainerResources")
    }

    async fn reopen_container_log(
        &self,
        _request: Request<ReopenContainerLogRequest>,
    ) -> Reply<ReopenContainerLogResponse> {
        unimplemented("ReopenContainerLog")
    }

    async fn exec_sync(&self, _request: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        unimplemented("ExecSync")
    }

    async fn exec(&self, _request: Request<ExecRequest>) -> Reply<ExecResponse> {
        unimplemented("Exec")
    }

    async fn attach(&self, _request: Request<AttachRequest>) -> Reply<AttachResponse> {
        unimplemented("Attach")
    }

    async fn port_forward(
        &self,
        _request: Request<PortForwardRequest>,
    ) -> Reply<PortForwardResponse> {
        unimplemented("PortForward")
    }

    async fn container_stats(
        &self,
        _request: Request<ContainerStatsRequest>,
    ) -> Reply<ContainerStatsResponse> {
        unimplemented("ContainerStats")
    }

    async fn list_container_stats(
        &self,
        _request: Request<ListContainerStatsRequest>,
    ) -> Reply<ListContainerStatsResponse> {
        unimplemented("ListContainerStats")
    }

    async fn pod_sandbox_stats(
        &self,
        _request: Request<PodSandboxStatsRequest>,
    ) -> Reply<PodSandboxStatsResponse> {
        unimplemented("PodSandboxStats")
    }

    async fn list_pod_sandbox_stats(
        &self,
        _request: Request<ListPodSandboxStatsRequest>,
    ) -> Reply<ListPodSandboxStatsResponse> {
        unimplemented("ListPodSandboxStats")
    }

    #[tracing::instrument(skip_all)]
    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Reply<UpdateRuntimeConfigResponse> {
        let request = request.into_inner();
        if let Some(cidr) = request
            .runtime_config
            .as_ref()
            .and_then(|c| c.network_config.as_ref())
            .map(|n| n.pod_cidr.as_str())
        {
            self.runtime.update_pod_cidr(cidr);
        }
        Ok(tonic::Response::new(UpdateRuntimeConfigResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn status(&self, request: Request<StatusRequest>) -> Reply<StatusResponse> {
        reply(self.runtime.status(request.into_inner().verbose).await)
    }

    async fn checkpoint_container(
        &self,
        _request: Request<CheckpointContainerRequest>,
    ) -> Reply<CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _request: Request<GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        unimplemented("GetContainerEvents")
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<ListMetricDescriptorsRequest>,
    ) -> Reply<ListMetricDescriptorsResponse> {
        unimplemented("ListMetricDescriptors")
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<ListPodSandboxMetricsRequest>,
    ) -> Reply<ListPodSandboxMetricsResponse> {
        unimplemented("ListPodSandboxMetrics")
    }

    #[tracing::instrument(skip_all)]
    async fn runtime_config(
        &self,
        _request: Request<RuntimeConfigRequest>,
    ) -> Reply<RuntimeConfigResponse> {
        Ok(tonic::Response::new(self.runtime.runtime_config()))
    }
}
