//! CNI results of every spec version the plugins in use may answer with.

use std::net::IpAddr;

use serde_json::Value;

/// The parts of a result the shim needs, whatever the spec version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// The netns path for interfaces inside the pod; empty on the host side.
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a CIDR"))?;
    let ip: IpAddr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let prefix: u8 = prefix.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("{s:?}: prefix too long"));
    }
    Ok((ip, prefix))
}

fn parse_gateway(v: Option<&Value>) -> Result<Option<IpAddr>, String> {
    match v.and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|e| format!("gateway {s:?}: {e}")),
    }
}

impl CniResult {
    pub fn parse(value: &Value) -> Result<Self, String> {
        let object = value.as_object().ok_or("a result must be a JSON object")?;
        let cni_version = object
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("0.1.0")
            .to_string();
        if cni_version.starts_with("0.1.") || cni_version.starts_with("0.2.") {
            return Self::parse_legacy(cni_version, object);
        }
        let interfaces = object
            .get("interfaces")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|i| Interface {
                        name: i
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        sandbox: i
                            .get("sandbox")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut ips = Vec::new();
        for ip in object
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or("an ips entry has no address")?;
            let (address, prefix_len) = parse_cidr(address)?;
            let interface = match ip.get("interface") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .ok_or("an ips entry has a non-numeric interface")?
                        as usize,
                ),
            };
            ips.push(IpConfig {
                address,
                prefix_len,
                gateway: parse_gateway(ip.get("gateway"))?,
                interface,
            });
        }
        Ok(Self {
            cni_version,
            interfaces,
            ips,
        })
    }

    /// Spec 0.1/0.2: `{"ip4": {"ip": "10.0.0.2/24", "gateway": ...}, "ip6": ...}`.
    fn parse_legacy(
        cni_version: String,
        object: &serde_json::Map<String, Value>,
    ) -> Result<Self, String> {
        let mut ips = Vec::new();
        for key in ["ip4", "ip6"] {
            if let Some(cfg) = object.get(key).filter(|v| !v.is_null()) {
                let ip = cfg
                    .get("ip")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{key} has no ip"))?;
                let (address, prefix_len) = parse_cidr(ip)?;
                ips.push(IpConfig {
                    address,
                    prefix_len,
                    gateway: parse_gateway(cfg.get("gateway"))?,
                    interface: None,
                });
            }
        }
        Ok(Self {
            cni_version,
            interfaces: Vec::new(),
            ips,
        })
    }

    /// The pod's addresses on `ifname`: IPv4 first, as the kubelet wants the
    /// primary address to be.
    pub fn pod_ips(&self, ifname: &str) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(
                |ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                    Some(interface) => interface.name == ifname && !interface.sandbox.is_empty(),
                    None => true,
                },
            )
            .map(|ip| ip.address)
            .collect();
        ips.sort_by_key(|ip| !ip.is_ipv4());
        ips.dedup();
        ips
    }

    /// Interfaces on the host side (no sandbox): the bridge and the veth.
    pub fn host_interfaces(&self) -> impl Iterator<Item = &str> {
        self.interfaces
            .iter()
            .filter(|i| i.sandbox.is_empty() && !i.name.is_empty())
            .map(|i| i.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_bridge_result_0_4_0() {
        // From testdata/cri-dockerd-v0.3.21/cni-cache/bridge-*.
        let v = json!({"cniVersion":"0.4.0","dns":{},"interfaces":[{"mac":"a6:c9:ab:60:43:e1","name":"kubelet0"},{"mac":"aa:28:5b:4a:d9:8f","name":"veth7051cc84"},{"mac":"9a:aa:a5:a7:7e:00","name":"eth0","sandbox":"/proc/27964/ns/net"}],"ips":[{"address":"10.88.3.42/16","gateway":"10.88.0.1","interface":2,"version":"4"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.88.0.1"}]});
        let r = CniResult::parse(&v).unwrap();
        assert_eq!(
            r.pod_ips("eth0"),
            vec!["10.88.3.42".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(r.ips[0].prefix_len, 16);
        assert_eq!(r.ips[0].gateway, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(
            r.host_interfaces().collect::<Vec<_>>(),
            vec!["kubelet0", "veth7051cc84"]
        );
    }

    #[test]
    fn spec_1_0_dual_stack_puts_ipv4_first() {
        let v = json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/proc/1/ns/net"}],
            "ips":[{"address":"fd00::5/64","interface":0},{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0}]});
        let r = CniResult::parse(&v).unwrap();
        assert_eq!(
            r.pod_ips("eth0"),
            vec![
                "10.1.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn spec_0_3_1_without_interface_index() {
        let v = json!({"cniVersion":"0.3.1","ips":[{"version":"4","address":"192.168.1.9/24"}]});
        assert_eq!(CniResult::parse(&v).unwrap().pod_ips("eth0").len(), 1);
    }

    #[test]
    fn legacy_0_2_0() {
        let v =
            json!({"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/8","gateway":"10.0.0.1"},"dns":{}});
        let r = CniResult::parse(&v).unwrap();
        assert_eq!(
            r.pod_ips("eth0"),
            vec!["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        assert!(
            CniResult::parse(&json!({"cniVersion":"0.2.0","dns":{}}))
                .unwrap()
                .ips
                .is_empty()
        );
    }

    #[test]
    fn malformed_results_are_errors() {
        assert!(CniResult::parse(&json!([])).is_err());
        assert!(
            CniResult::parse(&json!({"cniVersion":"1.0.0","ips":[{"address":"nonsense"}]}))
                .is_err()
        );
        assert!(
            CniResult::parse(&json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/99"}]}))
                .is_err()
        );
        assert!(
            CniResult::parse(
                &json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":"x"}]})
            )
            .is_err()
        );
    }
}
