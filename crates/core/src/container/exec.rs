//! ExecSync: run a command in a container and collect its output.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use cri_dockerd_api::v1::ExecSyncResponse;
use cri_dockerd_engine::Engine;
use futures::StreamExt;
use std::time::Duration;

use crate::docker_cri::DockerCri;
use crate::error::{Error, Result};
use crate::store::running_pid;

/// stdout and stderr together must fit the kubelet's 16 MiB gRPC messages.
pub const MAX_EXEC_SYNC_OUTPUT: usize = 16 * 1024 * 1024 - 64 * 1024;

/// Appends to `buf` what fits in what is left of the shared budget.
fn capped_extend(buf: &mut Vec<u8>, data: &[u8], budget: &mut usize) {
    let take = data.len().min(*budget);
    buf.extend_from_slice(&data[..take]);
    *budget -= take;
}

/// `pid` and every process below it, deepest first.
fn process_tree(pid: i64) -> Vec<i64> {
    let mut children: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command may contain spaces and parentheses; the ppid follows the last ')'.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if let Some(ppid) = after.split(' ').nth(1).and_then(|p| p.parse::<i64>().ok()) {
            children.entry(ppid).or_default().push(child);
        }
    }
    let mut order = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        order.push(p);
        stack.extend(children.get(&p).into_iter().flatten());
    }
    order.reverse();
    order
}

/// SIGKILL to `pid` and everything below it. The tree may still be
/// growing (a shell about to fork its next command): each process is
/// stopped first, so that none can fork after the tree was read, and the
/// tree read again until no new process shows; then all are killed. Killing
/// a parent that forks between the reading and the kill would leave its new
/// child running, reparented away from the tree.
pub(crate) fn kill_process_tree(pid: i64) {
    use nix::sys::signal::{Signal, kill};
    let signal = |p: i64, s: Signal| {
        let _ = kill(nix::unistd::Pid::from_raw(p as i32), s);
    };
    let mut stopped: Vec<i64> = Vec::new();
    for _ in 0..16 {
        let new: Vec<i64> = process_tree(pid)
            .into_iter()
            .filter(|p| !stopped.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for p in new {
            signal(p, Signal::SIGSTOP);
            stopped.push(p);
        }
    }
    for p in stopped {
        signal(p, Signal::SIGKILL);
    }
}

/// The host pid of a running exec, once Docker has recorded it: Docker
/// reports an exec running with pid 0 until its start has returned, which
/// can be after the command already wrote output. `None` once it ended.
pub(crate) async fn running_exec_pid(engine: &Engine, exec_id: &str) -> Option<i64> {
    for _ in 0..100 {
        let inspect = engine.inspect_exec(exec_id).await.ok()?;
        if inspect.running != Some(true) {
            return None;
        }
        if let Some(pid) = inspect.pid.filter(|p| *p > 0) {
            return Some(pid);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

impl DockerCri {
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout_secs: i64,
    ) -> Result<ExecSyncResponse> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(Error::InvalidArgument("cmd must not be empty".into()));
        }
        let inspect = self.inspect_container_checked(id).await?;
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        if running_pid(&inspect).is_none() {
            return Err(Error::FailedPrecondition(format!(
                "container {full_id} is not running"
            )));
        }
        let exec = self
            .engine
            .api()
            .create_exec(
                &full_id,
                CreateExecOptions::<String> {
                    cmd: Some(cmd.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(false),
                    tty: Some(false),
                    ..Default::default()
                },
            )
            .await
            .map_err(Error::docker("creating the exec"))?;
        let started = self
            .engine
            .api()
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(Error::docker("starting the exec"))?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(Error::Internal("the exec did not attach".into()));
        };
        drop(input);
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut budget = MAX_EXEC_SYNC_OUTPUT;
        let collect = async {
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdErr { message }) => {
                        capped_extend(&mut stderr, &message, &mut budget)
                    }
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        capped_extend(&mut stdout, &message, &mut budget)
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => return Err(Error::docker("reading the exec output")(e)),
                }
            }
            Ok(())
        };
        if timeout_secs > 0 {
            let limit = Duration::from_secs(timeout_secs as u64);
            match tokio::time::timeout(limit, collect).await {
                Ok(result) => result?,
                Err(_) => {
                    self.kill_exec(&exec.id).await;
                    return Err(Error::DeadlineExceeded(format!(
                        "command {cmd:?} timed out after {timeout_secs}s"
                    )));
                }
            }
        } else {
            collect.await?;
        }
        let exit_code = self.exec_exit_code(&exec.id).await?;
        Ok(ExecSyncResponse {
            stdout,
            stderr,
            exit_code,
        })
    }

    /// Docker has no API to stop an exec: its process tree is killed from
    /// the host (the shim sees host PIDs, also under Docker-out-of-Docker).
    pub(crate) async fn kill_exec(&self, exec_id: &str) {
        let Some(pid) = running_exec_pid(&self.engine, exec_id).await else {
            return;
        };
        for p in process_tree(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        tracing::info!(exec_id, pid, "killed a timed-out exec");
    }

    /// The exit code, once Docker has recorded it (briefly after the
    /// output stream closes).
    pub(crate) async fn exec_exit_code(&self, exec_id: &str) -> Result<i32> {
        for _ in 0..100 {
            let inspect = self
                .engine
                .inspect_exec(exec_id)
                .await
                .map_err(Error::docker("inspecting the exec"))?;
            if inspect.running != Some(true) {
                return Ok(inspect.exit_code.unwrap_or(0) as i32);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Internal(format!(
            "exec {exec_id} still running after its output closed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_across_both_streams() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut budget = 10;
        capped_extend(&mut out, b"123456", &mut budget);
        capped_extend(&mut err, b"abcdef", &mut budget);
        capped_extend(&mut out, b"zz", &mut budget);
        assert_eq!(
            (out.as_slice(), err.as_slice(), budget),
            (&b"123456"[..], &b"abcd"[..], 0)
        );
    }

    #[test]
    fn process_tree_includes_the_root() {
        let me = std::process::id() as i64;
        assert_eq!(process_tree(me).last(), Some(&me));
    }
}
