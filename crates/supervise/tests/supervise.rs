//! The supervisor with real programs: restarts after the delay, forever;
//! signals reach the program and end the supervision.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_crid-supervise");

fn supervise(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .spawn()
        .expect("starting crid-supervise")
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < limit, "no exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_program_that_exits_is_started_again_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let script = format!("date +%s%N >> {}; exit 3", starts.display());
    let mut supervisor = supervise(&["--restart-delay-ms=300", "--", "sh", "-c", &script]);
    assert!(
        wait_for(Duration::from_secs(10), || lines(&starts).len() >= 4),
        "four starts: {:?}",
        lines(&starts)
    );
    kill(Pid::from_raw(supervisor.id() as i32), Signal::SIGTERM).unwrap();
    // Stopped during the delay: success. Stopped while the program ran (a
    // moment of each cycle, longer on a loaded machine): the program's own
    // status, 3, or 143 when the TERM reached it first.
    let status = exit_within(&mut supervisor, Duration::from_secs(5));
    assert!(matches!(status.code(), Some(0 | 3 | 143)), "{status:?}");

    let times: Vec<u128> = lines(&starts).iter().map(|l| l.parse().unwrap()).collect();
    for pair in times.windows(2) {
        let gap_ms = (pair[1] - pair[0]) / 1_000_000;
        assert!(gap_ms >= 290, "restarted after {gap_ms} ms, not the delay");
    }
}

#[test]
fn a_program_that_cannot_start_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("late");
    let marker = dir.path().join("ran");
    let mut supervisor = supervise(&["--restart-delay-ms=200", "--", program.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        supervisor.try_wait().unwrap().is_none(),
        "still supervising"
    );
    std::fs::write(
        &program,
        format!("#!/bin/sh\ntouch {}\nexec sleep 60\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || marker.exists()),
        "the program ran once it existed"
    );
    kill(Pid::from_raw(supervisor.id() as i32), Signal::SIGTERM).unwrap();
    exit_within(&mut supervisor, Duration::from_secs(5));
}

#[test]
fn sigterm_reaches_the_program_and_ends_the_supervision() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let got = dir.path().join("got");
    let script = format!(
        "trap 'echo TERM >> {got}; exit 0' TERM; echo up >> {started}; while :; do sleep 0.05; done",
        got = got.display(),
        started = started.display()
    );
    let mut supervisor = supervise(&["--", "sh", "-c", &script]);
    assert!(wait_for(Duration::from_secs(5), || started.exists()));
    kill(Pid::from_raw(supervisor.id() as i32), Signal::SIGTERM).unwrap();
    let status = exit_within(&mut supervisor, Duration::from_secs(5));
    assert!(status.success(), "the program's clean exit: {status:?}");
    assert_eq!(lines(&got), ["TERM"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lines(&started), ["up"], "nothing is started after a stop");
}

#[test]
fn the_exit_status_of_a_stopped_program_is_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let script = format!(
        "trap 'exit 7' INT; touch {}; while :; do sleep 0.05; done",
        started.display()
    );
    let mut supervisor = supervise(&["--", "sh", "-c", &script]);
    assert!(wait_for(Duration::from_secs(5), || started.exists()));
    kill(Pid::from_raw(supervisor.id() as i32), Signal::SIGINT).unwrap();
    let status = exit_within(&mut supervisor, Duration::from_secs(5));
    assert_eq!(status.code(), Some(7));
}
