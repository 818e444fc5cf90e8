//! `GET /exec/{id}/json`.

use super::lenient::docker_model;

docker_model! {
    pub struct ExecInspect {
        "ID" => id: String,
        "Running" => running: bool,
        "ExitCode" => exit_code: i64,
        "OpenStdin" => open_stdin: bool,
        "ContainerID" => container_id: String,
        "Pid" => pid: i64,
    }
}
