//! What Docker answers, as the shim reads it: every field optional, and a
//! field Docker leaves out, sends as `null`, or shapes in a way this build
//! does not expect reads as unknown (see [`lenient`]).

pub(crate) mod lenient;

pub mod container;
pub mod event;
pub mod exec;
pub mod image;
pub mod system;

pub use container::{
    BindOptions, ContainerConfig, ContainerInspect, ContainerState, ContainerStatus,
    ContainerSummary, DriverData, EndpointSettings, Health, HostConfig, ImageOptions, Mount,
    MountPoint, MountType, NetworkSettings,
};
pub use event::{EventActor, EventMessage, EventType};
pub use exec::ExecInspect;
pub use image::{ImageConfig, ImageInspect, ImageMetadata, ImageSummary, OciDescriptor, RootFs};
pub use system::{
    ComponentVersion, ContainerdInfo, Runtime, RuntimeFeatures, SystemInfo, SystemVersion,
};
