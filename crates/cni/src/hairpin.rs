//! `--hairpin-mode`: how a pod reaches itself through a service IP that
//! NATs back to it. The bridge must send such frames back out of the port
//! they came in on.

use std::path::Path;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HairpinMode {
    /// Set `hairpin_mode` on the pod's bridge port (the host end of its veth).
    HairpinVeth,
    /// Put the bridge in promiscuous mode.
    PromiscuousBridge,
    /// Leave it to the CNI config (`hairpinMode` of the bridge plugin).
    #[default]
    None,
}

impl FromStr for HairpinMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hairpin-veth" => Ok(HairpinMode::HairpinVeth),
            "promiscuous-bridge" => Ok(HairpinMode::PromiscuousBridge),
            "none" | "" => Ok(HairpinMode::None),
            other => Err(format!(
                "unknown hairpin mode {other:?} (hairpin-veth, promiscuous-bridge or none)"
            )),
        }
    }
}

impl std::fmt::Display for HairpinMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HairpinMode::HairpinVeth => "hairpin-veth",
            HairpinMode::PromiscuousBridge => "promiscuous-bridge",
            HairpinMode::None => "none",
        })
    }
}

/// Applies `mode` to the host-side interfaces a CNI ADD reported. `sysfs` is
/// `/sys` outside tests.
pub(crate) fn apply<'a>(
    mode: HairpinMode,
    sysfs: &Path,
    host_interfaces: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    if mode == HairpinMode::None {
        return Ok(());
    }
    for name in host_interfaces {
        let iface = sysfs.join("class/net").join(name);
        match mode {
            HairpinMode::HairpinVeth => {
                let port = iface.join("brport/hairpin_mode");
                if port.exists() {
                    std::fs::write(&port, "1")?;
                    tracing::debug!(interface = name, "hairpin mode enabled on bridge port");
                }
            }
            HairpinMode::PromiscuousBridge => {
                if iface.join("bridge").exists() {
                    set_promiscuous(name)?;
                }
            }
            HairpinMode::None => {}
        }
    }
    Ok(())
}

fn set_promiscuous(name: &str) -> std::io::Result<()> {
    let status = std::process::Command::new("ip")
        .args(["link", "set", name, "promisc", "on"])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "ip link set {name} promisc on: {status}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cri_dockerd_names() {
        assert_eq!("hairpin-veth".parse(), Ok(HairpinMode::HairpinVeth));
        assert_eq!(
            "promiscuous-bridge".parse(),
            Ok(HairpinMode::PromiscuousBridge)
        );
        assert_eq!("none".parse(), Ok(HairpinMode::None));
        assert!("veth".parse::<HairpinMode>().is_err());
        assert_eq!(HairpinMode::HairpinVeth.to_string(), "hairpin-veth");
    }

    #[test]
    fn hairpin_veth_sets_only_bridge_ports() {
        let sys = tempfile::tempdir().unwrap();
        let port = sys.path().join("class/net/veth1/brport");
        std::fs::create_dir_all(&port).unwrap();
        std::fs::write(port.join("hairpin_mode"), "0").unwrap();
        std::fs::create_dir_all(sys.path().join("class/net/kubelet0/bridge")).unwrap();
        apply(
            HairpinMode::HairpinVeth,
            sys.path(),
            ["kubelet0", "veth1"].into_iter(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(port.join("hairpin_mode")).unwrap(),
            "1"
        );
        assert!(!sys.path().join("class/net/kubelet0/brport").exists());
    }
}
