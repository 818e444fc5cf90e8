//! Flags with cri-dockerd's names, meanings and defaults, so a unit or
//! compose file only swaps the binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use cri_dockerd_core::config::{
    CniSettings, DEFAULT_POD_INFRA_IMAGE, DEFAULT_ROOT_DIR, HairpinMode, NetworkPlugin,
    RuntimeSettings,
};

use crate::duration::parse_go_duration;

#[derive(Debug, Parser)]
#[command(
    name = "cri-dockerd-rs",
    about = "CRI that connects to the Docker Daemon",
    disable_version_flag = true,
    // pflag keeps the last of repeated flags, and systemd drop-ins append
    // flags to an ExecStart that may already name them.
    args_override_self = true
)]
pub struct Cli {
    /// Prints the build information about cri-dockerd-rs
    #[arg(long, action = ArgAction::SetTrue)]
    pub buildinfo: bool,

    /// A comma-separated list of full paths of directories in which to search for CNI plugin binaries.
    #[arg(long, default_value = "/opt/cni/bin", value_name = "string")]
    pub cni_bin_dir: String,

    /// The full path of the directory in which CNI should store cache files.
    #[arg(long, default_value = "/var/lib/cni/cache", value_name = "string")]
    pub cni_cache_dir: PathBuf,

    /// The full path of the directory in which to search for CNI config files
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "string")]
    pub cni_conf_dir: PathBuf,

    /// The endpoint of backend runtime service. unix:// and tcp:// endpoints are supported.
    #[arg(
        long,
        default_value = "unix:///var/run/cri-dockerd.sock",
        value_name = "string"
    )]
    pub container_runtime_endpoint: String,

    /// Path to the cri-dockerd root directory.
    #[arg(long, default_value = DEFAULT_ROOT_DIR, value_name = "string")]
    pub cri_dockerd_root_directory: PathBuf,

    /// Use this for the docker endpoint to communicate with.
    #[arg(
        long,
        default_value = "unix:///var/run/docker.sock",
        value_name = "string"
    )]
    pub docker_endpoint: String,

    /// The mode of hairpin to use: hairpin-veth, promiscuous-bridge or none.
    #[arg(long, default_value = "none", value_name = "HairpinMode", value_parser = parse_hairpin)]
    pub hairpin_mode: HairpinMode,

    /// If no pulling progress is made before this deadline, the image pulling will be cancelled.
    #[arg(long, default_value = "1m0s", value_name = "duration", value_parser = parse_go_duration)]
    pub image_pull_progress_deadline: Duration,

    /// Enable IPv6 dual stack support
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub ipv6_dual_stack: bool,

    /// The log level: trace, debug, info, warn, error, fatal, panic. RUST_LOG, when set, wins.
    #[arg(long, default_value = "info", value_name = "string", value_parser = parse_log_level)]
    pub log_level: LogLevel,

    /// How log lines are written: text (one readable line) or json (one object a line with
    /// timestamp, level, target, message and the request's span fields).
    #[arg(long, value_enum, default_value = "text", value_name = "string")]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /healthz:
    /// IP:PORT (for example 127.0.0.1:9090) or an IP alone for a free port. Off when empty.
    #[arg(long, default_value = "", value_name = "string", value_parser = parse_metrics_bind_addr)]
    pub metrics_bind_addr: MetricsBindAddr,

    /// The name of the network plugin to be invoked for various events in kubelet/pod lifecycle: "cni", or empty for Docker's bridge.
    #[arg(long, default_value = "cni", value_name = "string")]
    pub network_plugin: String,

    /// The MTU to be passed to the network plugin. Set to 0 to use the default.
    #[arg(long, default_value_t = 0, value_name = "int32")]
    pub network_plugin_mtu: i32,

    /// The CIDR to use for pod IP addresses, only used in standalone mode.
    #[arg(long, value_name = "string")]
    pub pod_cidr: Option<String>,

    /// The image whose network/ipc namespaces containers in each pod will use
    #[arg(long, default_value = DEFAULT_POD_INFRA_IMAGE, value_name = "string")]
    pub pod_infra_container_image: String,

    /// Optional absolute name of cgroups to create and run the runtime in.
    #[arg(long, value_name = "string")]
    pub runtime_cgroups: Option<String>,

    /// If no runtime progress is made before this deadline, the operation will be cancelled.
    #[arg(long, value_name = "duration", value_parser = parse_go_duration)]
    pub runtime_request_timeout: Option<Duration>,

    /// Log CRI calls that take longer than this at warn, with their steps (Docker calls, CNI
    /// plugins). 0 turns it off.
    #[arg(long, default_value = "1s", value_name = "duration", value_parser = parse_go_duration)]
    pub slow_request_threshold: Duration,

    /// The address to bind the CRI streaming server to: IP:PORT, or an IP alone for a free port
    /// on it (default: 127.0.0.1 with a free port).
    #[arg(long, value_name = "string", value_parser = parse_streaming_bind_addr)]
    pub streaming_bind_addr: Option<BindAddr>,

    /// Close an exec, attach or port-forward session after this long without traffic (the
    /// kubelet's flag of the same name, and its default).
    #[arg(long, value_name = "duration", default_value = "4h0m0s", value_parser = parse_go_duration)]
    pub streaming_connection_idle_timeout: Duration,

    /// How long a streaming client may take to send its request headers (hidden: for tests).
    #[arg(long, default_value = "30s", value_parser = parse_go_duration, hide = true)]
    pub streaming_read_header_timeout: Duration,

    /// How long a streaming URL stays valid (hidden: for tests).
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration, hide = true)]
    pub streaming_token_ttl: Duration,

    /// Raise negative OOM score adjustments to this process's own score, as containerd's
    /// restrict_oom_score_adj does. Detected from CAP_SYS_RESOURCE when not given.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub restrict_oom_score_adj: Option<bool>,

    /// Prints the version of cri-dockerd-rs
    #[arg(long, action = ArgAction::SetTrue)]
    pub version: bool,
}

fn parse_hairpin(s: &str) -> Result<HairpinMode, String> {
    s.parse()
}

/// logrus's levels, as cri-dockerd accepts them; fatal and panic log as error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn filter(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

fn parse_log_level(s: &str) -> Result<LogLevel, String> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(LogLevel::Trace),
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "error" | "fatal" | "panic" => Ok(LogLevel::Error),
        _ => Err(format!(
            "not a log level: {s:?} (one of trace, debug, info, warn, error, fatal, panic)"
        )),
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where a server of ours listens, as a `host:port` TcpListener takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAddr(String);

impl BindAddr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// cri-dockerd's rules: `IP:PORT`, or a bare IP for a free port on it (as
/// in its docs and many unit files); also `[v6]:PORT`, a bare IPv6 address,
/// `:PORT` for every address and `host:PORT`.
fn parse_streaming_bind_addr(s: &str) -> Result<BindAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        return Ok(BindAddr(addr.to_string()));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(BindAddr(std::net::SocketAddr::new(ip, 0).to_string()));
    }
    let invalid = || {
        format!("invalid address {s:?} (examples: 127.0.0.1, 127.0.0.1:10010, [::1]:10010, :10010)")
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(invalid)?;
    port.parse::<u16>().map_err(|_| invalid())?;
    if host.is_empty() {
        return Ok(BindAddr(format!("0.0.0.0:{port}")));
    }
    let host_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !host_ok {
        return Err(invalid());
    }
    Ok(BindAddr(s.to_string()))
}

/// `--metrics-bind-addr`: the streaming address's rules, or empty for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsBindAddr(Option<BindAddr>);

impl MetricsBindAddr {
    pub fn get(&self) -> Option<&BindAddr> {
        self.0.as_ref()
    }
}

fn parse_metrics_bind_addr(s: &str) -> Result<MetricsBindAddr, String> {
    if s.trim().is_empty() {
        return Ok(MetricsBindAddr(None));
    }
    parse_streaming_bind_addr(s).map(|a| MetricsBindAddr(Some(a)))
}

/// cri-dockerd's default Docker request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// cri-dockerd's CNI plugin call timeout (network.CNITimeoutSec).
pub const CNI_TIMEOUT: Duration = Duration::from_secs(220);

impl Cli {
    pub fn runtime_settings(&self) -> Result<RuntimeSettings, String> {
        let network_plugin = match self.network_plugin.as_str() {
            "cni" => NetworkPlugin::Cni,
            "" => NetworkPlugin::DockerBridge,
            "kubenet" => {
                return Err(
                    "--network-plugin=kubenet is not supported; use cni with a bridge config"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "unknown --network-plugin {other:?} (cni, or empty)"
                ));
            }
        };
        let bin_dirs: Vec<PathBuf> = self
            .cni_bin_dir
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(RuntimeSettings {
            root_dir: self.cri_dockerd_root_directory.clone(),
            pod_infra_image: self.pod_infra_container_image.clone(),
            network_plugin,
            cni: CniSettings {
                bin_dirs,
                conf_dir: self.cni_conf_dir.clone(),
                cache_dir: self.cni_cache_dir.clone(),
                plugin_timeout: CNI_TIMEOUT,
                hairpin_mode: self.hairpin_mode,
            },
            image_pull_progress_deadline: self.image_pull_progress_deadline,
            restrict_oom_score_adj: self.restrict_oom_score_adj,
            pod_cidr: self.pod_cidr.clone().filter(|c| !c.is_empty()),
            ipv6_dual_stack: self.ipv6_dual_stack,
            runtime_cgroups: self.runtime_cgroups.clone(),
        })
    }

    pub fn request_timeout(&self) -> Duration {
        self.runtime_request_timeout
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }

    /// Flags cri-dockerd acts on that this build accepts but ignores.
    pub fn ignored_flags(&self) -> Vec<String> {
        let mut ignored = Vec::new();
        if self.network_plugin_mtu != 0 {
            ignored.push(format!(
                "--network-plugin-mtu={} (set the MTU in the CNI config instead)",
                self.network_plugin_mtu
            ));
        }
        if let Some(cgroups) = &self.runtime_cgroups {
            ignored.push(format!(
                "--runtime-cgroups={cgroups} (run the shim in that cgroup with your supervisor)"
            ));
        }
        if self.ipv6_dual_stack {
            ignored
                .push("--ipv6-dual-stack (pod IPs come from the CNI result, IPv6 included)".into());
        }
        ignored
    }

    /// The tracing filter: `RUST_LOG` when set, otherwise `--log-level`.
    pub fn log_filter(&self) -> String {
        if let Ok(filter) = std::env::var("RUST_LOG")
            && !filter.is_empty()
        {
            return filter;
        }
        match self.log_level {
            // Our debug lines, not the HTTP/2 stack's frame by frame.
            LogLevel::Debug => "debug,h2=info,hyper=info,hyper_util=info,tower=info".to_string(),
            level => level.filter().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("cri-dockerd-rs").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_match_cri_dockerd() {
        let cli = parse(&[]);
        assert_eq!(
            cli.container_runtime_endpoint,
            "unix:///var/run/cri-dockerd.sock"
        );
        assert_eq!(cli.docker_endpoint, "unix:///var/run/docker.sock");
        assert_eq!(
            cli.cri_dockerd_root_directory,
            PathBuf::from("/var/lib/cri-dockerd")
        );
        assert_eq!(cli.network_plugin, "cni");
        assert_eq!(cli.cni_bin_dir, "/opt/cni/bin");
        assert_eq!(cli.cni_conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(cli.cni_cache_dir, PathBuf::from("/var/lib/cni/cache"));
        assert_eq!(cli.hairpin_mode, HairpinMode::None);
        assert_eq!(cli.pod_infra_container_image, "registry.k8s.io/pause:3.10");
        assert_eq!(cli.image_pull_progress_deadline, Duration::from_secs(60));
        assert_eq!(cli.log_level, LogLevel::Info);
        assert!(!cli.ipv6_dual_stack);
        assert_eq!(cli.restrict_oom_score_adj, None);
    }

    #[test]
    fn flags_parse_in_both_go_spellings() {
        let cli = parse(&[
            "--cni-bin-dir=/usr/lib/cni,/opt/cni/bin",
            "--hairpin-mode",
            "hairpin-veth",
            "--image-pull-progress-deadline=2m30s",
            "--ipv6-dual-stack",
            "--network-plugin=",
            "--restrict-oom-score-adj=false",
        ]);
        let settings = cli.runtime_settings().unwrap();
        assert_eq!(
            settings.cni.bin_dirs,
            vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")]
        );
        assert_eq!(settings.cni.hairpin_mode, HairpinMode::HairpinVeth);
        assert_eq!(
            settings.image_pull_progress_deadline,
            Duration::from_secs(150)
        );
        assert_eq!(settings.network_plugin, NetworkPlugin::DockerBridge);
        assert_eq!(settings.restrict_oom_score_adj, Some(false));
        assert!(cli.ipv6_dual_stack);
        assert!(!cli.ignored_flags().is_empty());
    }

    #[test]
    fn bad_values_are_rejected() {
        let bad = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).is_err()
        };
        assert!(bad(&["--hairpin-mode=sideways"]));
        assert!(bad(&["--image-pull-progress-deadline=soon"]));
        assert!(bad(&["--no-such-flag"]));
        assert!(
            parse(&["--network-plugin=kubenet"])
                .runtime_settings()
                .is_err()
        );
    }

    #[test]
    fn streaming_bind_addresses_as_cri_dockerd_takes_them() {
        let addr = |s: &str| parse_streaming_bind_addr(s).map(|a| a.0);
        assert_eq!(addr("127.0.0.1"), Ok("127.0.0.1:0".into()));
        assert_eq!(addr("127.0.0.1:10010"), Ok("127.0.0.1:10010".into()));
        assert_eq!(addr("0.0.0.0"), Ok("0.0.0.0:0".into()));
        assert_eq!(addr("::1"), Ok("[::1]:0".into()));
        assert_eq!(addr("[::1]"), Ok("[::1]:0".into()));
        assert_eq!(addr("[::1]:10010"), Ok("[::1]:10010".into()));
        assert_eq!(addr(":10010"), Ok("0.0.0.0:10010".into()));
        assert_eq!(addr("localhost:10010"), Ok("localhost:10010".into()));
        for bad in [
            "",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "a b:1",
            "http://x:1",
            "1.2.3.4.5",
        ] {
            assert!(addr(bad).is_err(), "{bad:?}");
        }
        let cli = parse(&["--streaming-bind-addr=127.0.0.1"]);
        assert_eq!(cli.streaming_bind_addr.unwrap().as_str(), "127.0.0.1:0");
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value() {
        let cli = parse(&[
            "--log-level=info",
            "--network-plugin=cni",
            "--log-level",
            "debug",
            "--network-plugin=",
            "--ipv6-dual-stack",
            "--ipv6-dual-stack=false",
            "--buildinfo",
            "--buildinfo",
        ]);
        assert_eq!(cli.log_level, LogLevel::Debug);
        assert_eq!(cli.network_plugin, "");
        assert!(!cli.ipv6_dual_stack);
        assert!(cli.buildinfo);
    }

    #[test]
    fn log_levels_are_logrus_names_and_nothing_else() {
        for (name, level) in [
            ("trace", LogLevel::Trace),
            ("DEBUG", LogLevel::Debug),
            ("info", LogLevel::Info),
            ("warning", LogLevel::Warn),
            ("fatal", LogLevel::Error),
            ("panic", LogLevel::Error),
        ] {
            assert_eq!(parse(&[&format!("--log-level={name}")]).log_level, level);
        }
        let err = Cli::try_parse_from(["x", "--log-level=verbose"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("verbose"), "{err}");
        assert!(
            err.contains("trace, debug, info, warn, error, fatal, panic"),
            "{err}"
        );
    }

    #[test]
    fn every_reference_flag_is_accepted() {
        // Flag names from testdata/cri-dockerd-v0.3.21/cri-dockerd-help.txt.
        let help = include_str!("../../../testdata/cri-dockerd-v0.3.21/cri-dockerd-help.txt");
        let command = <Cli as clap::CommandFactory>::command();
        for line in help.lines() {
            let Some(flag) = line.split_whitespace().find(|w| w.starts_with("--")) else {
                continue;
            };
            let name = flag.trim_start_matches("--");
            if name == "help" {
                continue;
            }
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(name)),
                "cri-dockerd flag --{name} is missing"
            );
        }
    }
}
