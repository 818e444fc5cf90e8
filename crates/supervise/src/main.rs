//! `crid-supervise -- PROGRAM [ARGS...]`: runs the program and, whenever it
//! exits, starts it again after a fixed delay (a second by default),
//! forever. Docker's own restart policy backs off up to a minute while a
//! program keeps failing: a kubelet that starts before its runtime would
//! then wait that long after the runtime came up. SIGTERM and SIGINT go to
//! the program; once it has exited the supervisor exits with its status and
//! restarts nothing.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser, Debug)]
#[command(name = "crid-supervise", version)]
struct Cli {
    /// How long to wait before starting the program again.
    #[arg(long, default_value_t = 1000)]
    restart_delay_ms: u64,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

enum Event {
    Exited(std::io::Result<std::process::ExitStatus>),
    Signal(Signal),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    match runtime.block_on(supervise(&cli)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("crid-supervise: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn supervise(cli: &Cli) -> anyhow::Result<ExitCode> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let delay = Duration::from_millis(cli.restart_delay_ms);
    let (program, args) = cli.command.split_first().expect("clap requires a command");
    loop {
        let child = Command::new(program).args(args).kill_on_drop(false).spawn();
        match child {
            Ok(mut child) => {
                tracing::info!(program, pid = child.id(), "started");
                let event = tokio::select! {
                    status = child.wait() => Event::Exited(status),
                    _ = term.recv() => Event::Signal(Signal::SIGTERM),
                    _ = int.recv() => Event::Signal(Signal::SIGINT),
                };
                match event {
                    Event::Exited(status) => {
                        tracing::warn!(program, status = ?status, "exited; starting it again in {delay:?}");
                    }
                    Event::Signal(signal) => {
                        return Ok(stop(&mut child, signal, &mut term, &mut int).await);
                    }
                }
            }
            Err(e) => {
                tracing::error!(program, error = %e, "cannot start; trying again in {delay:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = term.recv() => return Ok(ExitCode::SUCCESS),
            _ = int.recv() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Passes the signal (and any later one) on, and waits for the program.
async fn stop(
    child: &mut Child,
    first: Signal,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> ExitCode {
    let pid = child.id();
    let forward = |signal: Signal| {
        if let Some(pid) = pid {
            tracing::info!(pid, ?signal, "passing the signal on");
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    };
    forward(first);
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(status) => {
                        tracing::info!(?status, "stopped");
                        exit_code(status)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "lost the program");
                        ExitCode::FAILURE
                    }
                };
            }
            _ = term.recv() => forward(Signal::SIGTERM),
            _ = int.recv() => forward(Signal::SIGINT),
        }
    }
}

/// The program's own exit code; 128 + the signal's number when a signal
/// ended it, as a shell reports it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(code.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_keeps_its_own_flags() {
        let cli = Cli::try_parse_from([
            "crid-supervise",
            "--restart-delay-ms=250",
            "--",
            "kubelet",
            "--config=/etc/kubernetes/standalone.yaml",
            "-v",
        ])
        .unwrap();
        assert_eq!(cli.restart_delay_ms, 250);
        assert_eq!(
            cli.command,
            ["kubelet", "--config=/etc/kubernetes/standalone.yaml", "-v"]
        );
        let bare =
            Cli::try_parse_from(["crid-supervise", "cri-dockerd-rs", "--log-level=debug"]).unwrap();
        assert_eq!(bare.restart_delay_ms, 1000);
        assert_eq!(bare.command, ["cri-dockerd-rs", "--log-level=debug"]);
        assert!(Cli::try_parse_from(["crid-supervise"]).is_err());
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(3 << 8)),
            ExitCode::from(3)
        );
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(15)),
            ExitCode::from(143)
        );
    }
}
