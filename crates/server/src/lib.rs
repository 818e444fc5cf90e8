//! The CRI v1 gRPC surface. Each handler validates its request, calls the
//! core, and maps the core's error to a status code; nothing else lives here.

mod deadline;
mod errors;
mod image_service;
mod observe;
mod paged;
mod runtime_service;
mod validate;

use std::sync::Arc;

use cri_dockerd_api::v1::image_service_server::ImageServiceServer;
use cri_dockerd_api::v1::runtime_service_server::RuntimeServiceServer;
use cri_dockerd_core::DockerCri;

pub use errors::to_status;
pub use observe::ObserveLayer;

/// cri-dockerd's limit; the kubelet's is the same.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The handlers share the core.
#[derive(Clone)]
pub struct CriService {
    cri: Arc<DockerCri>,
}

impl CriService {
    pub fn new(cri: Arc<DockerCri>) -> Self {
        Self { cri }
    }

    pub fn runtime_server(&self) -> RuntimeServiceServer<CriService> {
        RuntimeServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    pub fn image_server(&self) -> ImageServiceServer<CriService> {
        ImageServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}
