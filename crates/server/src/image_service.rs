use cri_dockerd_api::v1::image_service_server::ImageService;
use cri_dockerd_api::v1::*;
use tonic::{Request, Response};

use crate::CriService;
use crate::errors::{Reply, reply};
use crate::paged::{self, PagedStream};
use crate::validate;

#[tonic::async_trait]
impl ImageService for CriService {
    async fn list_images(&self, request: Request<ListImagesRequest>) -> Reply<ListImagesResponse> {
        let filter = request.into_inner().filter;
        let wanted = filter
            .as_ref()
            .and_then(|f| f.image.as_ref())
            .map(|i| i.image.as_str());
        reply(
            self.cri
                .list_images(wanted)
                .await
                .map(|images| ListImagesResponse { images }),
        )
    }

    type StreamImagesStream = PagedStream<StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<StreamImagesRequest>,
    ) -> Reply<Self::StreamImagesStream> {
        let filter = request.into_inner().filter;
        let wanted = filter
            .as_ref()
            .and_then(|f| f.image.as_ref())
            .map(|i| i.image.as_str());
        // Docker answers the whole list at once: it is cut into messages.
        let images = self
            .cri
            .list_images(wanted)
            .await
            .map_err(crate::to_status)?;
        Ok(Response::new(paged::paged(
            images,
            paged::ready(),
            |images| StreamImagesResponse { images },
        )))
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Reply<ImageStatusResponse> {
        let request = request.into_inner();
        let image = validate::image_name(request.image.as_ref())?;
        tracing::Span::current().record("image", image);
        reply(self.cri.image_status(image, request.verbose).await)
    }

    async fn pull_image(&self, request: Request<PullImageRequest>) -> Reply<PullImageResponse> {
        let request = request.into_inner();
        let image = validate::image_name(request.image.as_ref())?;
        tracing::Span::current().record("image", image);
        reply(
            self.cri
                .pull_image(image, request.auth.as_ref())
                .await
                .map(|image_ref| PullImageResponse { image_ref }),
        )
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Reply<RemoveImageResponse> {
        let request = request.into_inner();
        let image = validate::image_name(request.image.as_ref())?;
        tracing::Span::current().record("image", image);
        reply(
            self.cri
                .remove_image(image)
                .await
                .map(|()| RemoveImageResponse {}),
        )
    }

    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Reply<ImageFsInfoResponse> {
        reply(self.cri.image_fs_info().await)
    }
}
