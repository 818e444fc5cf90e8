//! Request checks that need no Docker round trip.

use cri_dockerd_api::v1::ImageSpec;
use tonic::Status;

pub(crate) fn required<'a, T>(field: Option<&'a T>, name: &str) -> Result<&'a T, Status> {
    field.ok_or_else(|| Status::invalid_argument(format!("{name} is required")))
}

pub(crate) fn non_empty<'a>(value: &'a str, name: &str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!(
            "{name} must not be empty"
        )))
    } else {
        Ok(value)
    }
}

pub(crate) fn image_name(spec: Option<&ImageSpec>) -> Result<&str, Status> {
    let spec = required(spec, "image")?;
    non_empty(&spec.image, "image.image")
}

/// A container id, recorded on the handler's span.
pub(crate) fn container_id(id: &str) -> Result<&str, Status> {
    non_empty(id, "container_id")?;
    tracing::Span::current().record("container_id", id);
    Ok(id)
}
