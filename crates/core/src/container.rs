//! Containers of a pod.

use bollard::query_parameters::{RemoveContainerOptions, StopContainerOptions};

use crate::error::{Error, Result, is_docker_not_found, is_docker_not_modified};
use crate::runtime::Runtime;

impl Runtime {
    /// Honours `timeout` seconds, then Docker sends SIGKILL. A container
    /// that is already stopped, or gone, is fine.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let t = timeout.clamp(0, i32::MAX as i64) as i32;
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(t),
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_docker_not_modified(&e) || is_docker_not_found(&e) => Ok(()),
            Err(e) => Err(Error::docker(format!("stopping container {id}"))(e)),
        }
    }

    /// Removes the container; one that is gone is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_docker_not_found(&e) => Ok(()),
            Err(e) => Err(Error::docker(format!("removing container {id}"))(e)),
        }
    }
}
