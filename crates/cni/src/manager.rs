//! Pod network setup and teardown, the way cri-dockerd's CNI network plugin
//! drives libcni: the loopback network first, then the configured network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime};

use cri_dockerd_telemetry::{metrics, steps};
use serde::Serialize;
use serde_json::Value;

use crate::cache::{ResultCache, config_text};
use crate::config::{NetworkConfigList, load_default_network, loopback_network};
use crate::error::Error;
use crate::exec::{Command, PluginRunner, RuntimeConf};
use crate::hairpin::{self, HairpinMode};
use crate::result::CniResult;

pub const DEFAULT_IFNAME: &str = "eth0";
const LOOPBACK_NETWORK: &str = "cni-loopback";

#[derive(Debug, Clone)]
pub struct CniSettings {
    pub bin_dirs: Vec<PathBuf>,
    pub conf_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub plugin_timeout: Duration,
    pub hairpin_mode: HairpinMode,
}

/// Which pod an attachment belongs to.
#[derive(Debug, Clone)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
}

/// The `portMappings` capability as the portmap plugin reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: i32,
    #[serde(rename = "containerPort")]
    pub container_port: i32,
    pub protocol: String,
    #[serde(rename = "hostIP")]
    pub host_ip: String,
}

#[derive(Debug, Clone)]
pub struct PodNetwork {
    pub network_name: String,
    /// Primary address first.
    pub ips: Vec<IpAddr>,
    pub result: CniResult,
}

type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;
/// The network loaded for a fingerprint, or why none could be.
type Loaded = Option<(Fingerprint, Result<Arc<NetworkConfigList>, String>)>;

/// Parsed attachments remembered per sandbox; past this many the memo
/// starts over.
const MAX_REMEMBERED_NETWORKS: usize = 4096;

pub struct CniManager {
    settings: CniSettings,
    runner: PluginRunner,
    cache: ResultCache,
    sysfs: PathBuf,
    pod_cidr: Mutex<String>,
    loaded: Mutex<Loaded>,
    /// `cached_network` answers by sandbox id: PodSandboxStatus asks every
    /// second per pod, and the cache changes only through ADD and DEL here.
    networks: Mutex<NetworkMemo>,
}

/// Answers by sandbox id, and a generation bumped by every ADD and DEL: an
/// answer read while one ran is not kept.
#[derive(Default)]
struct NetworkMemo {
    generation: u64,
    answers: HashMap<String, Option<PodNetwork>>,
}

impl CniManager {
    pub fn new(settings: CniSettings) -> Self {
        let runner = PluginRunner {
            bin_dirs: settings.bin_dirs.clone(),
            timeout: settings.plugin_timeout,
        };
        let cache = ResultCache::new(&settings.cache_dir);
        cache.remove_interrupted_writes();
        Self {
            settings,
            runner,
            cache,
            sysfs: PathBuf::from("/sys"),
            pod_cidr: Mutex::new(String::new()),
            loaded: Mutex::new(None),
            networks: Mutex::default(),
        }
    }

    pub fn settings(&self) -> &CniSettings {
        &self.settings
    }

    pub fn set_pod_cidr(&self, cidr: &str) {
        *self.pod_cidr.lock() = cidr.to_string();
    }

    /// What identifies the state of the config and plugin directories, so
    /// that the kubelet's Status call every few seconds costs a readdir and a
    /// few stats instead of re-parsing every file.
    fn fingerprint(&self) -> Fingerprint {
        let mut print = Vec::new();
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| (m.modified().ok(), m.len()))
                .unwrap_or((None, 0))
        };
        if let Ok(entries) = std::fs::read_dir(&self.settings.conf_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let (mtime, len) = stat(&path);
                print.push((path, mtime, len));
            }
        }
        for dir in &self.settings.bin_dirs {
            let (mtime, len) = stat(dir);
            print.push((dir.clone(), mtime, len));
        }
        let (mtime, len) = stat(&self.settings.conf_dir);
        print.push((self.settings.conf_dir.clone(), mtime, len));
        print.sort();
        print
    }

    /// The network pods are attached to, re-checked on every call.
    pub fn network(&self) -> Result<Arc<NetworkConfigList>, Error> {
        let fingerprint = self.fingerprint();
        let mut loaded = self.loaded.lock();
        let fresh = matches!(&*loaded, Some((print, _)) if *print == fingerprint);
        if !fresh {
            let result = load_default_network(&self.settings.conf_dir, &self.settings.bin_dirs)
                .map(Arc::new)
                .map_err(|e| e.to_string());
            match &result {
                Ok(list) => tracing::info!(
                    network = %list.name,
                    file = %list.source.as_deref().unwrap_or(Path::new("")).display(),
                    "using CNI network"
                ),
                Err(e) => tracing::warn!(error = %e, "no usable CNI network"),
            }
            *loaded = Some((fingerprint, result));
        }
        match &loaded.as_ref().expect("just loaded").1 {
            Ok(list) => Ok(list.clone()),
            Err(_) => Err(
                load_default_network(&self.settings.conf_dir, &self.settings.bin_dirs)
                    .err()
                    .unwrap_or_else(|| Error::NoNetwork {
                        dir: self.settings.conf_dir.clone(),
                        detail: None,
                    }),
            ),
        }
    }

    fn runtime_conf(&self, pod: &PodRef, netns: &str, ports: &[PortMapping]) -> RuntimeConf {
        let mut capability_args = serde_json::Map::new();
        let ports: Vec<&PortMapping> = ports.iter().filter(|p| p.host_port > 0).collect();
        capability_args.insert(
            "portMappings".into(),
            serde_json::to_value(ports).expect("port mappings serialise"),
        );
        let cidr = self.pod_cidr.lock().clone();
        capability_args.insert("ipRanges".into(), serde_json::json!([[{ "subnet": cidr }]]));
        RuntimeConf {
            container_id: pod.sandbox_id.clone(),
            netns: netns.to_string(),
            ifname: DEFAULT_IFNAME.to_string(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), pod.namespace.clone()),
                ("K8S_POD_NAME".into(), pod.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), pod.sandbox_id.clone()),
                ("K8S_POD_UID".into(), pod.uid.clone()),
            ],
            capability_args,
        }
    }

    async fn add(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<Value, Error> {
        let started = Instant::now();
        let outcome = self.add_untimed(list, rt).await;
        observe("ADD", list, started, outcome.is_ok());
        outcome
    }

    async fn add_untimed(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Value, Error> {
        let mut prev: Option<Value> = None;
        for index in 0..list.plugins.len() {
            prev = self
                .runner
                .run(Command::Add, list, index, prev.as_ref(), rt)
                .await?;
        }
        let result = prev.expect("ADD of a non-empty list yields a result");
        let written = self.cache.write(&ResultCache::entry(
            &list.name,
            &list.bytes,
            rt,
            Some(result.clone()),
        ));
        self.forget_network(&rt.container_id);
        written?;
        Ok(result)
    }

    /// DEL runs the plugins in reverse; from spec 0.4.0 on they get the
    /// cached ADD result as prevResult.
    async fn del(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
        cached: Option<&Value>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let outcome = self.del_untimed(list, rt, cached).await;
        observe("DEL", list, started, outcome.is_ok());
        outcome
    }

    async fn del_untimed(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
        cached: Option<&Value>,
    ) -> Result<(), Error> {
        let prev = cached.filter(|_| version_at_least(&list.cni_version, (0, 4, 0)));
        for index in (0..list.plugins.len()).rev() {
            self.runner.run(Command::Del, list, index, prev, rt).await?;
        }
        self.cache.remove(&list.name, &rt.container_id, &rt.ifname);
        self.forget_network(&rt.container_id);
        Ok(())
    }

    fn forget_network(&self, sandbox_id: &str) {
        let mut memo = self.networks.lock();
        memo.generation += 1;
        memo.answers.remove(sandbox_id);
    }

    /// Attaches the pod whose network namespace is `netns`. On failure
    /// whatever was set up is torn down again.
    pub async fn setup(
        &self,
        pod: &PodRef,
        netns: &str,
        ports: &[PortMapping],
    ) -> Result<PodNetwork, Error> {
        let network = self.network()?;
        let rt = self.runtime_conf(pod, netns, ports);
        let loopback = loopback_network();
        let attached = async {
            // The two touch different interfaces of the namespace, so they
            // run at once: the pod waits for the slower, not for the sum.
            let (lo, main) = tokio::join!(self.add(&loopback, &rt), self.add(&network, &rt));
            lo?;
            let result = main?;
            let parsed = CniResult::parse(&result).map_err(|reason| Error::BadResult {
                plugin: network.name.clone(),
                reason,
            })?;
            hairpin::apply(
                self.settings.hairpin_mode,
                &self.sysfs,
                parsed.host_interfaces(),
            )
            .map_err(Error::io(format!(
                "applying hairpin mode {}",
                self.settings.hairpin_mode
            )))?;
            Ok::<_, Error>(parsed)
        }
        .await;
        match attached {
            Ok(result) => Ok(PodNetwork {
                network_name: network.name.clone(),
                ips: result.pod_ips(DEFAULT_IFNAME),
                result,
            }),
            Err(e) => {
                for list in [&*network, &loopback] {
                    let cached = self.cache.read(&list.name, &rt.container_id, &rt.ifname);
                    if let Err(del) = self
                        .del(list, &rt, cached.and_then(|c| c.result).as_ref())
                        .await
                    {
                        tracing::warn!(sandbox_id = %pod.sandbox_id, network = %list.name, error = %del, "cleanup after failed CNI ADD failed");
                    }
                }
                Err(e)
            }
        }
    }

    /// Detaches the pod. Uses what ADD cached (config, args, result) so it
    /// works after the config changed and after the namespace is gone;
    /// `netns` is `None` then. Safe to repeat.
    pub async fn teardown(
        &self,
        pod: &PodRef,
        netns: Option<&str>,
        ports: &[PortMapping],
    ) -> Result<(), Error> {
        let netns = netns.unwrap_or("");
        let mut attached = self.cache.for_container(&pod.sandbox_id, DEFAULT_IFNAME);
        // cri-dockerd deletes the loopback attachment first.
        attached.sort_by_key(|entry| entry.network_name != LOOPBACK_NETWORK);
        let mut main_done = false;
        for entry in &attached {
            let list = match NetworkConfigList::from_list_bytes(&entry.config, None) {
                Ok(list) => list,
                Err(reason) => {
                    tracing::warn!(sandbox_id = %pod.sandbox_id, config = %config_text(entry), %reason, "unusable cached CNI config");
                    continue;
                }
            };
            let rt = RuntimeConf {
                container_id: pod.sandbox_id.clone(),
                netns: netns.to_string(),
                ifname: entry.if_name.clone(),
                args: entry.cni_args.clone(),
                capability_args: entry.capability_args.clone(),
            };
            let outcome = self.del(&list, &rt, entry.result.as_ref()).await;
            if entry.network_name == LOOPBACK_NETWORK {
                if let Err(e) = outcome {
                    tracing::warn!(sandbox_id = %pod.sandbox_id, error = %e, "loopback teardown failed");
                }
            } else {
                outcome?;
                main_done = true;
            }
        }
        if !main_done {
            // Nothing cached: ADD never completed, or another runtime wrote
            // no cache. A DEL with today's config releases what the plugins
            // keep by container id (IPAM leases, port mappings).
            match self.network() {
                Ok(network) => {
                    let rt = self.runtime_conf(pod, netns, ports);
                    self.del(&network, &rt, None).await?;
                }
                Err(e) => {
                    tracing::debug!(sandbox_id = %pod.sandbox_id, error = %e, "no CNI network to tear down from");
                }
            }
        }
        Ok(())
    }

    /// The pod's attachment as ADD reported it, from the cache: no namespace
    /// is entered to find the pod's IPs.
    pub fn cached_network(&self, sandbox_id: &str) -> Option<PodNetwork> {
        let generation = {
            let memo = self.networks.lock();
            if let Some(known) = memo.answers.get(sandbox_id) {
                return known.clone();
            }
            memo.generation
        };
        let network = self.read_cached_network(sandbox_id);
        let mut memo = self.networks.lock();
        if memo.generation == generation {
            if memo.answers.len() >= MAX_REMEMBERED_NETWORKS {
                memo.answers.clear();
            }
            memo.answers.insert(sandbox_id.to_string(), network.clone());
        }
        network
    }

    fn read_cached_network(&self, sandbox_id: &str) -> Option<PodNetwork> {
        self.cache
            .for_container(sandbox_id, DEFAULT_IFNAME)
            .into_iter()
            .filter(|entry| entry.network_name != LOOPBACK_NETWORK)
            .find_map(|entry| {
                let result = CniResult::parse(entry.result.as_ref()?).ok()?;
                Some(PodNetwork {
                    network_name: entry.network_name,
                    ips: result.pod_ips(DEFAULT_IFNAME),
                    result,
                })
            })
    }

    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }
}

fn version_at_least(version: &str, wanted: (u64, u64, u64)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= wanted
}

/// Metrics and the current request's steps for one operation on a network.
fn observe(operation: &'static str, list: &NetworkConfigList, started: Instant, ok: bool) {
    metrics::cni_operation(operation, &list.name, started.elapsed(), ok);
    steps::record(format!("cni {operation} {}", list.name), started);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("0.4.0", (0, 4, 0)));
        assert!(version_at_least("1.0.0", (0, 4, 0)));
        assert!(!version_at_least("0.3.1", (0, 4, 0)));
        assert!(!version_at_least("", (0, 4, 0)));
    }

    #[test]
    fn runtime_conf_carries_pod_identity_and_host_ports_only() {
        let manager = CniManager::new(CniSettings {
            bin_dirs: vec![],
            conf_dir: "/nonexistent".into(),
            cache_dir: "/nonexistent".into(),
            plugin_timeout: Duration::from_secs(1),
            hairpin_mode: HairpinMode::None,
        });
        let pod = PodRef {
            namespace: "demo".into(),
            name: "web".into(),
            uid: "u1".into(),
            sandbox_id: "abc".into(),
        };
        let ports = [
            PortMapping {
                host_port: 18080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            },
            PortMapping {
                host_port: 0,
                container_port: 53,
                protocol: "udp".into(),
                host_ip: String::new(),
            },
        ];
        let rt = manager.runtime_conf(&pod, "/proc/1/ns/net", &ports);
        assert_eq!(
            rt.cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u1"
        );
        assert_eq!(
            rt.capability_args["portMappings"],
            serde_json::json!([{"hostPort":18080,"containerPort":80,"protocol":"tcp","hostIP":""}])
        );
        assert!(manager.network().is_err());
    }
}
