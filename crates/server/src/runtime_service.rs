use std::pin::Pin;

use cri_dockerd_api::v1::runtime_service_server::RuntimeService;
use cri_dockerd_api::v1::*;
use cri_dockerd_telemetry::steps;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::CriService;
use crate::deadline;
use crate::errors::{Reply, reply};
use crate::paged::{self, PagedStream};
use crate::validate;

type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for CriService {
    async fn version(&self, _request: Request<VersionRequest>) -> Reply<VersionResponse> {
        reply(self.cri.version().await)
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Reply<RunPodSandboxResponse> {
        let deadline = deadline::of(request.metadata()).map(|d| tokio::time::Instant::now() + d);
        let request = request.into_inner();
        let config = validate::required(request.config.as_ref(), "config")?.clone();
        if let Some(m) = &config.metadata {
            tracing::Span::current().record("pod", format!("{}/{}", m.namespace, m.name));
        }
        // Its own task: when the client gives up (deadline, disconnect) this
        // handler is dropped, but a half-made sandbox must still be finished
        // or undone. The core stops at the deadline and undoes what it made.
        let cri = self.cri.clone();
        let steps = steps::current().unwrap_or_default();
        let work = tokio::spawn(
            steps
                .scope(async move {
                    cri.run_pod_sandbox(&config, &request.runtime_handler, deadline)
                        .await
                })
                .in_current_span(),
        );
        let result = work
            .await
            .map_err(|e| Status::internal(format!("RunPodSandbox did not finish: {e}")))?;
        reply(result.map(|pod_sandbox_id| RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Reply<StopPodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        validate::non_empty(&id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", id.as_str());
        reply(
            self.cri
                .stop_pod_sandbox(&id)
                .await
                .map(|()| StopPodSandboxResponse {}),
        )
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        validate::non_empty(&id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", id.as_str());
        reply(
            self.cri
                .remove_pod_sandbox(&id)
                .await
                .map(|()| RemovePodSandboxResponse {}),
        )
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Reply<PodSandboxStatusResponse> {
        let request = request.into_inner();
        validate::non_empty(&request.pod_sandbox_id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", request.pod_sandbox_id.as_str());
        reply(
            self.cri
                .pod_sandbox_status(&request.pod_sandbox_id, request.verbose)
                .await,
        )
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxResponse> {
        let filter = request.into_inner().filter;
        reply(
            self.cri
                .list_pod_sandbox(filter.as_ref())
                .await
                .map(|items| ListPodSandboxResponse { items }),
        )
    }

    type StreamPodSandboxesStream = PagedStream<StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<StreamPodSandboxesRequest>,
    ) -> Reply<Self::StreamPodSandboxesStream> {
        let filter = request.into_inner().filter;
        let items = self
            .cri
            .list_pod_sandbox(filter.as_ref())
            .await
            .map_err(crate::to_status)?;
        Ok(Response::new(paged::paged(
            items,
            paged::ready(),
            |pod_sandboxes| StreamPodSandboxesResponse { pod_sandboxes },
        )))
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        let request = request.into_inner();
        validate::non_empty(&request.pod_sandbox_id, "pod_sandbox_id")?;
        let config = validate::required(request.config.as_ref(), "config")?;
        let sandbox_config = validate::required(request.sandbox_config.as_ref(), "sandbox_config")?;
        let span = tracing::Span::current();
        span.record("pod_sandbox_id", request.pod_sandbox_id.as_str());
        if let Some(m) = &config.metadata {
            span.record("container", m.name.as_str());
        }
        if let Some(m) = &sandbox_config.metadata {
            span.record("pod", format!("{}/{}", m.namespace, m.name));
        }
        reply(
            self.cri
                .create_container(&request.pod_sandbox_id, config, sandbox_config)
                .await
                .map(|container_id| CreateContainerResponse { container_id }),
        )
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        let id = request.into_inner().container_id;
        validate::container_id(&id)?;
        reply(
            self.cri
                .start_container(&id)
                .await
                .map(|()| StartContainerResponse {}),
        )
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        let request = request.into_inner();
        validate::container_id(&request.container_id)?;
        reply(
            self.cri
                .stop_container(&request.container_id, request.timeout)
                .await
                .map(|()| StopContainerResponse {}),
        )
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        let id = request.into_inner().container_id;
        validate::container_id(&id)?;
        reply(
            self.cri
                .remove_container(&id)
                .await
                .map(|()| RemoveContainerResponse {}),
        )
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        let filter = request.into_inner().filter;
        reply(
            self.cri
                .list_containers(filter.as_ref())
                .await
                .map(|containers| ListContainersResponse { containers }),
        )
    }

    type StreamContainersStream = PagedStream<StreamContainersResponse>;

    async fn stream_containers(
        &self,
        request: Request<StreamContainersRequest>,
    ) -> Reply<Self::StreamContainersStream> {
        let filter = request.into_inner().filter;
        let items = self
            .cri
            .list_containers(filter.as_ref())
            .await
            .map_err(crate::to_status)?;
        Ok(Response::new(paged::paged(
            items,
            paged::ready(),
            |containers| StreamContainersResponse { containers },
        )))
    }

    async fn container_status(
        &self,
        request: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        let request = request.into_inner();
        validate::container_id(&request.container_id)?;
        reply(
            self.cri
                .container_status(&request.container_id, request.verbose)
                .await,
        )
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateContainerResourcesRequest>,
    ) -> Reply<UpdateContainerResourcesResponse> {
        let request = request.into_inner();
        validate::container_id(&request.container_id)?;
        let resources = validate::required(request.linux.as_ref(), "linux")?;
        reply(
            self.cri
                .update_container_resources(&request.container_id, resources)
                .await
                .map(|()| UpdateContainerResourcesResponse {}),
        )
    }

    async fn reopen_container_log(
        &self,
        request: Request<ReopenContainerLogRequest>,
    ) -> Reply<ReopenContainerLogResponse> {
        let id = request.into_inner().container_id;
        validate::container_id(&id)?;
        reply(
            self.cri
                .reopen_container_log(&id)
                .await
                .map(|()| ReopenContainerLogResponse {}),
        )
    }

    async fn exec_sync(&self, request: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        let request = request.into_inner();
        validate::container_id(&request.container_id)?;
        reply(
            self.cri
                .exec_sync(&request.container_id, &request.cmd, request.timeout)
                .await,
        )
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Reply<ExecResponse> {
        let request = request.into_inner();
        validate::container_id(&request.container_id)?;
        reply(
            self.cri
                .exec_url(&request)
                .await
                .map(|url| ExecResponse { url }),
        )
    }

    async fn attach(&self, request: Request<AttachRequest>) -> Reply<AttachResponse> {
        let request = request.into_inner();
        validate::container_id(&request.container_id)?;
        reply(
            self.cri
                .attach_url(&request)
                .await
                .map(|url| AttachResponse { url }),
        )
    }

    async fn port_forward(
        &self,
        request: Request<PortForwardRequest>,
    ) -> Reply<PortForwardResponse> {
        let request = request.into_inner();
        validate::non_empty(&request.pod_sandbox_id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", request.pod_sandbox_id.as_str());
        reply(
            self.cri
                .port_forward_url(&request)
                .await
                .map(|url| PortForwardResponse { url }),
        )
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Reply<ContainerStatsResponse> {
        let id = request.into_inner().container_id;
        validate::container_id(&id)?;
        reply(
            self.cri
                .container_stats(&id)
                .await
                .map(|stats| ContainerStatsResponse { stats: Some(stats) }),
        )
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Reply<ListContainerStatsResponse> {
        let filter = request.into_inner().filter;
        reply(
            self.cri
                .list_container_stats(filter.as_ref())
                .await
                .map(|stats| ListContainerStatsResponse { stats }),
        )
    }

    type StreamContainerStatsStream = PagedStream<StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        request: Request<StreamContainerStatsRequest>,
    ) -> Reply<Self::StreamContainerStatsStream> {
        let filter = request.into_inner().filter;
        let entries = self
            .cri
            .container_stats_entries(filter.as_ref())
            .await
            .map_err(crate::to_status)?;
        let cri = self.cri.clone();
        let build: paged::Build<_, _> = Box::new(move |attributes| {
            let cri = cri.clone();
            Box::pin(async move {
                paged::gone_is_none(cri.container_stats_of(attributes).await).map(Option::flatten)
            })
        });
        Ok(Response::new(paged::paged(
            entries,
            build,
            |container_stats| StreamContainerStatsResponse { container_stats },
        )))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<PodSandboxStatsRequest>,
    ) -> Reply<PodSandboxStatsResponse> {
        let id = request.into_inner().pod_sandbox_id;
        validate::non_empty(&id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", id.as_str());
        reply(
            self.cri
                .pod_sandbox_stats(&id)
                .await
                .map(|stats| PodSandboxStatsResponse { stats: Some(stats) }),
        )
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Reply<ListPodSandboxStatsResponse> {
        let filter = request.into_inner().filter;
        reply(
            self.cri
                .list_pod_sandbox_stats(filter.as_ref())
                .await
                .map(|stats| ListPodSandboxStatsResponse { stats }),
        )
    }

    type StreamPodSandboxStatsStream = PagedStream<StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<StreamPodSandboxStatsRequest>,
    ) -> Reply<Self::StreamPodSandboxStatsStream> {
        let filter = request.into_inner().filter;
        let entries = self
            .cri
            .pod_stats_entries(filter.as_ref())
            .await
            .map_err(crate::to_status)?;
        let cri = self.cri.clone();
        let build: paged::Build<_, _> = Box::new(move |entry| {
            let cri = cri.clone();
            Box::pin(async move { paged::gone_is_none(cri.pod_stats_of(entry).await) })
        });
        Ok(Response::new(paged::paged(
            entries,
            build,
            |pod_sandbox_stats| StreamPodSandboxStatsResponse { pod_sandbox_stats },
        )))
    }

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
            self.cri.update_pod_cidr(cidr);
        }
        Ok(tonic::Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Reply<StatusResponse> {
        reply(self.cri.status(request.into_inner().verbose).await)
    }

    async fn checkpoint_container(
        &self,
        request: Request<CheckpointContainerRequest>,
    ) -> Reply<CheckpointContainerResponse> {
        let request = request.into_inner();
        validate::container_id(&request.container_id)?;
        reply(
            self.cri
                .checkpoint_container(&request.container_id)
                .await
                .map(|()| CheckpointContainerResponse {}),
        )
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Reply<UpdatePodSandboxResourcesResponse> {
        let request = request.into_inner();
        validate::non_empty(&request.pod_sandbox_id, "pod_sandbox_id")?;
        tracing::Span::current().record("pod_sandbox_id", request.pod_sandbox_id.as_str());
        reply(
            self.cri
                .update_pod_sandbox_resources(
                    &request.pod_sandbox_id,
                    request.overhead.as_ref(),
                    request.resources.as_ref(),
                )
                .await
                .map(|()| UpdatePodSandboxResourcesResponse {}),
        )
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _request: Request<GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        let events = self.cri.container_events().map(Ok);
        Ok(Response::new(Box::pin(events)))
    }

    type StreamPodSandboxMetricsStream = PagedStream<StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<StreamPodSandboxMetricsRequest>,
    ) -> Reply<Self::StreamPodSandboxMetricsStream> {
        let entries = self
            .cri
            .pod_metrics_entries()
            .await
            .map_err(crate::to_status)?;
        let cri = self.cri.clone();
        let build: paged::Build<_, _> = Box::new(move |entry| {
            let cri = cri.clone();
            Box::pin(async move { cri.pod_metrics_of(entry).await })
        });
        Ok(Response::new(paged::paged(
            entries,
            build,
            |pod_sandbox_metrics| StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            },
        )))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<ListMetricDescriptorsRequest>,
    ) -> Reply<ListMetricDescriptorsResponse> {
        Ok(Response::new(ListMetricDescriptorsResponse {
            descriptors: self.cri.list_metric_descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<ListPodSandboxMetricsRequest>,
    ) -> Reply<ListPodSandboxMetricsResponse> {
        reply(
            self.cri
                .list_pod_sandbox_metrics()
                .await
                .map(|pod_metrics| ListPodSandboxMetricsResponse { pod_metrics }),
        )
    }

    async fn runtime_config(
        &self,
        _request: Request<RuntimeConfigRequest>,
    ) -> Reply<RuntimeConfigResponse> {
        Ok(tonic::Response::new(self.cri.runtime_config()))
    }
}
