//! The leak audit every fault scenario ends with, and the private pod
//! network it audits: a scenario's pods get their own bridge, subnet,
//! host-local store and plugin directory, so what is left over can be told
//! from what concurrently running tests hold.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bollard::query_parameters::ListContainersOptions;

use crate::Shim;

/// A CNI network of one scenario: bridge `crid-f<n>`, subnet
/// 10.77.<n>.0/24, host-local's leases in `<dir>/ipam`, plugins from a
/// private directory (links to the system's, plus the fault plugin).
pub struct ScenarioNet {
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub ipam_dir: PathBuf,
    pub bridge: String,
    pub network: String,
    /// The fault plugin's behaviour on ADD, read at each call: "ok", "fail"
    /// or "hang".
    pub fault_file: PathBuf,
}

/// A chained CNI plugin that does nothing (passes the previous result on)
/// unless its fault file says to fail or to hang on ADD. `exec sleep` makes
/// the hanging process the plugin itself, so killing the plugin ends it.
const FAULT_PLUGIN: &str = r#"#!/bin/sh
conf=$(cat)
case "$CNI_COMMAND" in
  VERSION) echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}'; exit 0 ;;
  ADD) ;;
  *) exit 0 ;;
esac
mode=$(cat "$CRID_FAULT_FILE" 2>/dev/null || echo ok)
case "$mode" in
  fail) echo '{"cniVersion":"0.4.0","code":11,"msg":"crid-fault: injected failure"}'; exit 1 ;;
  hang) exec sleep 3600 ;;
esac
printf '%s' "$conf" | jq -c .prevResult
"#;

impl ScenarioNet {
    /// `index` (1..=250) keeps concurrent scenarios' subnets apart.
    pub fn new(dir: &Path, index: u8) -> Self {
        let conf_dir = dir.join("net.d");
        let bin_dir = dir.join("cni-bin");
        let ipam_dir = dir.join("ipam");
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::create_dir_all(&bin_dir).unwrap();
        for entry in std::fs::read_dir("/usr/lib/cni").expect("CNI plugins in /usr/lib/cni") {
            let entry = entry.unwrap();
            std::os::unix::fs::symlink(entry.path(), bin_dir.join(entry.file_name())).unwrap();
        }
        let fault_file = dir.join("fault");
        std::fs::write(&fault_file, "ok").unwrap();
        let plugin = bin_dir.join("crid-fault");
        // The plugin is given its fault file through a wrapper, since CNI
        // passes plugins no environment of our choosing.
        std::fs::write(
            &plugin,
            format!(
                "#!/bin/sh\nCRID_FAULT_FILE={} exec /bin/sh {}/crid-fault.sh\n",
                fault_file.display(),
                bin_dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin_dir.join("crid-fault.sh"), FAULT_PLUGIN).unwrap();
        let bridge = format!("crid-f{index}");
        let network = format!("crid-fault-{index}");
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "subnet": format!("10.77.{index}.0/24"),
                        "dataDir": ipam_dir.display().to_string(),
                    }
                },
                { "type": "crid-fault" }
            ]
        });
        std::fs::write(
            conf_dir.join("10-fault.conflist"),
            serde_json::to_vec_pretty(&conflist).unwrap(),
        )
        .unwrap();
        Self {
            conf_dir,
            bin_dir,
            ipam_dir,
            bridge,
            network,
            fault_file,
        }
    }

    /// The flags that point a shim at this network (later flags win).
    pub fn shim_args(&self) -> Vec<String> {
        vec![
            format!("--cni-conf-dir={}", self.conf_dir.display()),
            format!("--cni-bin-dir={}", self.bin_dir.display()),
        ]
    }

    pub fn set_fault(&self, mode: &str) {
        std::fs::write(&self.fault_file, mode).unwrap();
    }

    /// IPs host-local holds, with the container id each is held for.
    pub fn leases(&self) -> Vec<(String, String)> {
        let dir = self.ipam_dir.join(&self.network);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let holder = std::fs::read_to_string(e.path()).ok()?;
                name.parse::<std::net::IpAddr>()
                    .ok()
                    .map(|_| (name, holder.lines().next().unwrap_or_default().to_string()))
            })
            .collect()
    }

    /// Interfaces enslaved to the bridge (one veth per attached sandbox).
    pub fn veths(&self) -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|s| s.trim().split('@').next().unwrap_or_default().to_string())
            .collect()
    }

    /// Processes started from this network's plugin directory (CNI passes
    /// it to every plugin as CNI_PATH).
    pub fn plugin_processes(&self) -> Vec<String> {
        let marker = format!("CNI_PATH={}", self.bin_dir.display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|var| var.starts_with(marker.as_bytes()))
            {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!(
                    "pid {name}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
        found
    }

    /// Removes the bridge (once no sandbox uses it).
    pub fn remove_bridge(&self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

impl Drop for ScenarioNet {
    fn drop(&mut self) {
        self.remove_bridge();
    }
}

/// Everything of the scenario's pods still on the node once the scenario
/// has stopped and removed them all: empty when clean. `docker` is the
/// daemon the shim drives; `net` the scenario's network if it has one.
pub async fn leaks(
    shim: &Shim,
    docker: &bollard::Docker,
    net: Option<&ScenarioNet>,
) -> Vec<String> {
    let mut leaks = Vec::new();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![shim.uid_prefix.clone()],
            )])),
            ..Default::default()
        }))
        .await
        .expect("listing Docker's containers");
    for c in containers {
        leaks.push(format!(
            "Docker container {} {:?} ({:?})",
            c.id.unwrap_or_default(),
            c.names.unwrap_or_default(),
            c.state
        ));
    }
    let existing: std::collections::HashSet<String> = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .expect("listing Docker's containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    for (dir, what) in [
        (shim.root.join("sandbox"), "checkpoint"),
        (shim.cni_cache_dir.join("results"), "CNI cache entry"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                leaks.push(format!("{what} {}", e.path().display()));
            }
        }
    }
    if let Some(net) = net {
        for (ip, holder) in net.leases() {
            let state = if existing.contains(&holder) {
                "exists"
            } else {
                "does not exist"
            };
            leaks.push(format!("IP {ip} held for {holder}, which {state}"));
        }
        let veths = net.veths();
        if !veths.is_empty() {
            leaks.push(format!("veths on {}: {veths:?}", net.bridge));
        }
        for p in net.plugin_processes() {
            leaks.push(format!("plugin process {p}"));
        }
    }
    leaks
}
