//! Checks made from outside a pod: entering its network namespace from a
//! thread (listeners), or running host tools under nsenter.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Output};
use std::time::Duration;

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

/// One ICMP echo from inside `pid`'s network namespace.
pub fn ping_from(pid: i64, ip: &str) -> bool {
    in_netns(pid, &["busybox", "ping", "-c", "1", "-W", "3", ip])
        .status
        .success()
}

/// One ICMP echo from the host.
pub fn ping_from_host(ip: &str) -> bool {
    Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "3", ip])
        .status()
        .expect("busybox ping")
        .success()
}

/// A TCP server inside `pid`'s network namespace that answers every
/// connection with `reply`, for at most `connections` connections.
pub fn serve_in_netns(
    pid: i64,
    port: u16,
    reply: &'static [u8],
    connections: usize,
) -> std::thread::JoinHandle<()> {
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("pod netns");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind in pod netns");
        ready_tx.send(()).unwrap();
        for mut stream in listener.incoming().take(connections).flatten() {
            let _ = stream.write_all(reply);
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listener in pod netns");
    handle
}

/// Connects and reads until the peer closes (5 s limit).
pub fn fetch(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

/// The host end of the pod's veth: eth0's peer index (`eth0@if12`),
/// looked up on the host. (sysfs would still show the host's devices.)
pub fn host_veth_of(pid: i64) -> Option<String> {
    let link = stdout(&in_netns(pid, &["ip", "-o", "link", "show", "eth0"]));
    let index = link.split("eth0@if").nth(1)?.split(':').next()?.to_string();
    interface_with_index(&index)
}

pub fn interface_with_index(index: &str) -> Option<String> {
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let ifindex = std::fs::read_to_string(entry.path().join("ifindex")).ok()?;
            (ifindex.trim() == index).then(|| entry.file_name().to_string_lossy().into_owned())
        })
}

/// host-local's reservations for `network`: (ip, owning container id).
pub fn ip_reservations(network: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new("/var/lib/cni/networks").join(network);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("last_reserved") || name == "lock" {
                return None;
            }
            let owner = std::fs::read_to_string(e.path()).ok()?;
            Some((name, owner.lines().next().unwrap_or("").to_string()))
        })
        .collect()
}

/// `ip -4 -o addr show <interface>` on the host.
pub fn host_ipv4_addresses(interface: &str) -> String {
    stdout(
        &std::process::Command::new("ip")
            .args(["-4", "-o", "addr", "show", interface])
            .output()
            .expect("running ip"),
    )
}

/// The bridge port's hairpin flag ("1" when set) of a host veth.
pub fn hairpin_mode(veth: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{veth}/brport/hairpin_mode"))
        .unwrap_or_else(|e| panic!("{veth} is not a bridge port: {e}"))
        .trim()
        .to_string()
}

/// Whether an address is in the repository's CNI subnet, 10.88.0.0/16.
pub fn in_pod_subnet(ip: &str) -> bool {
    let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 pod address");
    ip.octets()[0] == 10 && ip.octets()[1] == 88
}
