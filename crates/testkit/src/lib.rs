//! Integration test harness. Everything is real: the Docker daemon on the
//! machine, the local registries `scripts/test-env.sh` starts, the CNI
//! plugins in /usr/lib/cni, and our binary serving the CRI on a temporary
//! unix socket. Tests fail with a clear message when any of it is missing;
//! they never skip.

pub mod audit;
pub mod cri;
pub mod daemon;
pub mod docker_proxy;
pub mod dood;
pub mod env;
pub mod images;
pub mod kubeapi;
pub mod metrics;
pub mod netns;
pub mod pod_cgroup;
pub mod private_docker;
pub mod registry;
pub mod shim;
pub mod streaming;
pub mod terminal;

pub use daemon::{TestDaemon, test_daemon};
pub use env::{TestEnv, test_env};
pub use shim::{Shim, ShimBuilder};

/// Where the repository lives (CNI configs, scripts).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A random lowercase hex string, for names that must not collide between
/// concurrently running tests.
pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    let fd = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut &fd, &mut bytes).expect("random bytes");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}
