//! Running host tools inside a pod's namespaces (nsenter), for checks the
//! tests make from outside the pod.

use std::process::{Command, Output};

/// Runs `args` in the network namespace of process `pid`.
pub fn in_netns(pid: i64, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .args(args)
        .output()
        .expect("running nsenter")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
