//! Network configuration files, loaded as libcni loads them.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::Error;

/// One plugin of a list: its raw JSON object and the fields libcni reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub plugin_type: String,
    pub capabilities: Vec<String>,
    pub raw: Map<String, Value>,
}

/// A `.conflist`, or a `.conf` wrapped as a one-plugin list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<NetworkConfig>,
    /// The list's own bytes: what libcni caches and what a later DEL re-reads.
    pub bytes: Vec<u8>,
    pub source: Option<PathBuf>,
}

/// cri-dockerd's loopback network, byte for byte (the libcni cache stores
/// these bytes; keeping them identical keeps caches interchangeable).
const LOOPBACK_CONFIG: &str = "{\n  \"cniVersion\": \"0.2.0\",\n  \"name\": \"cni-loopback\",\n  \"plugins\":[{\n    \"type\": \"loopback\"\n  }]\n}";

/// Where host-local keeps its leases when the config does not say.
const HOST_LOCAL_DEFAULT_DIR: &str = "/var/lib/cni/networks";

impl NetworkConfigList {
    /// The directories host-local keeps this network's leases in: one file
    /// per IP, holding the container id.
    pub fn host_local_dirs(&self) -> Vec<PathBuf> {
        self.plugins
            .iter()
            .filter_map(|p| p.raw.get("ipam")?.as_object())
            .filter(|ipam| ipam.get("type").and_then(Value::as_str) == Some("host-local"))
            .map(|ipam| {
                let base = ipam
                    .get("dataDir")
                    .and_then(Value::as_str)
                    .unwrap_or(HOST_LOCAL_DEFAULT_DIR);
                Path::new(base).join(&self.name)
            })
            .collect()
    }
}

/// The (IP file, container id) leases host-local holds in `dir`.
pub fn host_local_leases(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
        })
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let id = text.lines().next()?.trim().to_string();
            (!id.is_empty()).then(|| (e.path(), id))
        })
        .collect()
}

pub fn loopback_network() -> NetworkConfigList {
    NetworkConfigList::from_list_bytes(LOOPBACK_CONFIG.as_bytes(), None)
        .expect("the built-in loopback config is valid")
}

fn parse_plugin(value: &Value) -> Result<NetworkConfig, String> {
    let raw = value
        .as_object()
        .ok_or("a plugin config must be a JSON object")?
        .clone();
    let plugin_type = raw
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("a plugin config needs a \"type\"")?
        .to_string();
    if plugin_type.contains('/') {
        return Err(format!("invalid plugin type {plugin_type:?}"));
    }
    let capabilities = raw
        .get("capabilities")
        .and_then(Value::as_object)
        .map(|caps| {
            caps.iter()
                .filter(|(_, enabled)| enabled.as_bool() == Some(true))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    Ok(NetworkConfig {
        plugin_type,
        capabilities,
        raw,
    })
}

impl NetworkConfigList {
    pub fn from_list_bytes(bytes: &[u8], source: Option<PathBuf>) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let object = value
            .as_object()
            .ok_or("the config must be a JSON object")?;
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("the network list needs a \"name\"")?
            .to_string();
        let cni_version = object
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let plugins = object
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or("the network list needs a \"plugins\" array")?;
        if plugins.is_empty() {
            return Err("the network list has no plugins".into());
        }
        let plugins = plugins
            .iter()
            .map(parse_plugin)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name,
            cni_version,
            plugins,
            bytes: bytes.to_vec(),
            source,
        })
    }

    /// libcni's ConfListFromConf: the single plugin wrapped in a list whose
    /// bytes are re-marshalled (Go sorts map keys; so does serde_json).
    pub fn from_conf_bytes(bytes: &[u8], source: Option<PathBuf>) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let plugin = parse_plugin(&value)?;
        let name = plugin
            .raw
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("the network config needs a \"name\"")?
            .to_string();
        let cni_version = plugin
            .raw
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let list = serde_json::json!({
            "cniVersion": cni_version,
            "name": name,
            "plugins": [Value::Object(plugin.raw)],
        });
        let bytes = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
        Self::from_list_bytes(&bytes, source)
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        if path.extension().and_then(|e| e.to_str()) == Some("conflist") {
            Self::from_list_bytes(&bytes, Some(path.to_path_buf()))
        } else {
            Self::from_conf_bytes(&bytes, Some(path.to_path_buf()))
        }
    }

    /// The per-plugin config libcni hands to plugin `index`: name and
    /// cniVersion injected, the previous result chained, and the runtime
    /// values of the capabilities the plugin declares.
    pub fn plugin_config(
        &self,
        index: usize,
        prev_result: Option<&Value>,
        capability_args: &Map<String, Value>,
    ) -> Vec<u8> {
        let plugin = &self.plugins[index];
        let mut raw = plugin.raw.clone();
        raw.insert("name".into(), Value::String(self.name.clone()));
        raw.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        if let Some(prev) = prev_result {
            raw.insert("prevResult".into(), prev.clone());
        }
        let runtime_config: Map<String, Value> = plugin
            .capabilities
            .iter()
            .filter_map(|cap| capability_args.get(cap).map(|v| (cap.clone(), v.clone())))
            .collect();
        if !runtime_config.is_empty() {
            raw.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        serde_json::to_vec(&Value::Object(raw)).expect("JSON values serialise")
    }
}

fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("conf" | "conflist" | "json")
    )
}

/// The lexically first valid network in `dir` whose plugins all exist in
/// `bin_dirs`, as cri-dockerd picks it. Invalid files are skipped, each
/// reason kept for the error when nothing valid is left.
pub fn load_default_network(dir: &Path, bin_dirs: &[PathBuf]) -> Result<NetworkConfigList, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(Error::NoNetwork {
                dir: dir.to_path_buf(),
                detail: Some(e.to_string()),
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_config_file(p))
        .collect();
    files.sort();
    let mut reasons = Vec::new();
    for file in files {
        let list = match NetworkConfigList::from_file(&file) {
            Ok(list) => list,
            Err(reason) => {
                reasons.push(format!("{}: {reason}", file.display()));
                continue;
            }
        };
        let missing: Vec<&str> = list
            .plugins
            .iter()
            .filter(|p| crate::exec::find_plugin(&p.plugin_type, bin_dirs).is_none())
            .map(|p| p.plugin_type.as_str())
            .collect();
        if !missing.is_empty() {
            reasons.push(format!(
                "{}: plugin binaries not found: {}",
                file.display(),
                missing.join(", ")
            ));
            continue;
        }
        return Ok(list);
    }
    Err(Error::NoNetwork {
        dir: dir.to_path_buf(),
        detail: (!reasons.is_empty()).then(|| reasons.join("; ")),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_local_leases_by_network() {
        let list = NetworkConfigList::from_list_bytes(
            br#"{"cniVersion":"0.4.0","name":"bridge","plugins":[
                {"type":"bridge","ipam":{"type":"host-local","subnet":"10.88.0.0/16"}},
                {"type":"portmap"}]}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            list.host_local_dirs(),
            vec![std::path::PathBuf::from("/var/lib/cni/networks/bridge")]
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10.88.0.7"), "abc123\r\neth0").unwrap();
        std::fs::write(dir.path().join("last_reserved_ip.0"), "10.88.0.7").unwrap();
        std::fs::write(dir.path().join("lock"), "").unwrap();
        let leases = host_local_leases(dir.path());
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].1, "abc123");
    }

    use super::*;

    const BRIDGE_CONF: &str = r#"{"cniVersion":"0.4.0","name":"bridge","type":"bridge","bridge":"kubelet0","isGateway":true,"isDefaultGateway":true,"ipMasq":true,"hairpinMode":true,"ipam":{"type":"host-local","subnet":"10.88.0.0/16"}}"#;

    #[test]
    fn conf_is_wrapped_like_libcni_does_it() {
        let list = NetworkConfigList::from_conf_bytes(BRIDGE_CONF.as_bytes(), None).unwrap();
        // Bytes from testdata/cri-dockerd-v0.3.21/cni-cache (base64 "config").
        assert_eq!(
            String::from_utf8(list.bytes).unwrap(),
            r#"{"cniVersion":"0.4.0","name":"bridge","plugins":[{"bridge":"kubelet0","cniVersion":"0.4.0","hairpinMode":true,"ipMasq":true,"ipam":{"subnet":"10.88.0.0/16","type":"host-local"},"isDefaultGateway":true,"isGateway":true,"name":"bridge","type":"bridge"}]}"#
        );
        assert_eq!(list.plugins[0].plugin_type, "bridge");
    }

    #[test]
    fn plugin_config_injects_prev_result_and_declared_capabilities() {
        let list = NetworkConfigList::from_list_bytes(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
            None,
        )
        .unwrap();
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            serde_json::json!([{"hostPort": 8080}]),
        );
        caps.insert("bandwidth".into(), serde_json::json!({}));
        let first: Value = serde_json::from_slice(&list.plugin_config(0, None, &caps)).unwrap();
        assert_eq!(first["name"], "net");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("runtimeConfig").is_none());
        let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[]});
        let second: Value =
            serde_json::from_slice(&list.plugin_config(1, Some(&prev), &caps)).unwrap();
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"],
            serde_json::json!({"portMappings":[{"hostPort":8080}]})
        );
    }

    #[test]
    fn loopback_matches_the_reference_cache() {
        let lo = loopback_network();
        assert_eq!(lo.name, "cni-loopback");
        assert_eq!(lo.cni_version, "0.2.0");
    }

    #[test]
    fn first_valid_file_wins_and_bad_ones_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let fake = bin.path().join("bridge");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let bins = vec![bin.path().to_path_buf()];

        let err = load_default_network(dir.path(), &bins)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");

        std::fs::write(dir.path().join("00-broken.conf"), "{").unwrap();
        std::fs::write(dir.path().join("05-notype.conf"), r#"{"name":"x"}"#).unwrap();
        std::fs::write(
            dir.path().join("07-missing.conflist"),
            r#"{"name":"m","plugins":[{"type":"nosuchplugin"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        let err = load_default_network(dir.path(), &bins)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("00-broken.conf") && err.contains("nosuchplugin"),
            "{err}"
        );

        std::fs::write(dir.path().join("10-bridge.conf"), BRIDGE_CONF).unwrap();
        std::fs::write(
            dir.path().join("20-other.conf"),
            BRIDGE_CONF.replace("\"bridge\",\"type\"", "\"other\",\"type\""),
        )
        .unwrap();
        let list = load_default_network(dir.path(), &bins).unwrap();
        assert_eq!(list.name, "bridge");
        assert!(list.source.unwrap().ends_with("10-bridge.conf"));
    }
}
