//! The topology file: hosts, groups of services, bridges. Names are kept
//! with their byte span in the file so every diagnostic can point at the
//! line and column it is about.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::service::ServiceSpec;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(default)]
    pub hosts: Vec<HostDecl>,
    #[serde(default)]
    pub groups: Vec<GroupDecl>,
    #[serde(default)]
    pub bridges: Vec<BridgeDecl>,
    #[serde(default)]
    pub placement: PlacementSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDecl {
    pub name: Spanned<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Capacity for planning without a live mesh; live inventory wins.
    pub cpus: Option<f64>,
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub gpus: Vec<GpuDecl>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpuDecl {
    #[serde(default)]
    pub name: String,
    pub vram_mib: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDecl {
    pub name: Spanned<String>,
    /// Host labels the group's host must carry (all of them).
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// Hosts to use first, in order.
    #[serde(default)]
    pub prefer: Vec<Spanned<String>>,
    /// Groups that must not share a host with this one.
    #[serde(default)]
    pub anti_affinity: Vec<Spanned<String>>,
    pub failover: Option<FailoverDecl>,
    #[serde(default)]
    pub services: Vec<Spanned<ServiceSpec>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FailoverDecl {
    /// "singleton": at most one instance anywhere, ever (the memory services).
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// How long the primary's lease lasts (ms): the coordinator promotes
    /// the standby only after this long without a heartbeat [2000].
    pub lease_ms: Option<u64>,
    /// "manual" (default: after a failover the group stays where it is
    /// until `meshctl failover`) or "auto": once the group's own host is
    /// back as an UpToDate standby for `failback_hold_ms`, a switchover
    /// takes the group home.
    #[serde(default)]
    pub failback: Option<String>,
    /// How long the home host must stay an UpToDate standby before an
    /// automatic failback (ms) [60000].
    pub failback_hold_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeDecl {
    pub service: Spanned<String>,
    /// The stable endpoint port on every host. On the service's own host it
    /// is the host port the service publishes (so it must publish it);
    /// elsewhere the agent listens on it and tunnels to the service.
    pub port: u16,
    /// The service's socket: rep, router, pub, pull (or push), or tcp.
    #[serde(default)]
    pub pattern: String,
    /// Requests in flight when the service moves: "error" (default) or
    /// "retry-once" (only for idempotent services).
    #[serde(default)]
    pub in_flight: String,
    /// The environment variable containers get the address in; default
    /// MESH_<SERVICE>_ADDR (upper case, '-' as '_').
    #[serde(default)]
    pub env: String,
}

impl BridgeDecl {
    /// The environment variable that carries this bridge's address.
    pub fn env_name(&self) -> String {
        if self.env.is_empty() {
            format!(
                "MESH_{}_ADDR",
                self.service
                    .get_ref()
                    .to_uppercase()
                    .replace(['-', '.'], "_")
            )
        } else {
            self.env.clone()
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlacementSettings {
    /// VRAM kept free on every GPU, MiB.
    #[serde(default = "default_headroom")]
    pub vram_headroom_mib: u64,
    /// Copy a group's images to the host it is placed on, and to its failover standby, from a
    /// host that holds them, whenever they are missing there (`meshctl images copy`, done by
    /// the coordinator).
    #[serde(default)]
    pub copy_images: bool,
}

fn default_headroom() -> u64 {
    512
}

impl Default for PlacementSettings {
    fn default() -> Self {
        PlacementSettings {
            vram_headroom_mib: default_headroom(),
            copy_images: false,
        }
    }
}
