//! The Container Runtime Interface v1 as this project defines it in
//! `proto/runtime/v1/api.proto` (wire-compatible with cri-api v0.36, the
//! CRI of Kubernetes 1.36): messages, the `RuntimeService` and
//! `ImageService` servers and clients.

pub mod codec;

pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

/// The compiled definition, for reflection (the wire-compatibility test).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cri_v1_descriptor.bin"));
