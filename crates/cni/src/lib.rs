//! A libcni work-alike for the shim: it loads the network configuration the
//! way libcni does, runs plugins with the CNI environment, chains results,
//! and keeps libcni's on-disk result cache so that a DEL works after the pod's
//! namespace, or the shim itself, has gone away.

mod cache;
mod config;
mod error;
mod exec;
mod hairpin;
mod manager;
mod result;

pub use cache::{CachedAttachment, ResultCache};
pub use config::{
    NetworkConfig, NetworkConfigList, host_local_leases, load_default_network, loopback_network,
};
pub use error::Error;
pub use exec::{Command, PluginRunner, RuntimeConf};
pub use hairpin::HairpinMode;
pub use manager::{CniManager, CniSettings, PodNetwork, PodRef, PortMapping};
pub use result::{CniResult, IpConfig};
