//! Everything the agent reports about its host in each heartbeat.

pub mod gpu;
pub mod host;

use std::path::PathBuf;

use mesh_proto::v1::HostInventory;

use gpu::GpuProbe;

pub struct InventorySource {
    pub storage_path: PathBuf,
    pub gpus: Box<dyn GpuProbe>,
}

impl InventorySource {
    pub fn collect(&mut self) -> HostInventory {
        let mut inv = host::collect(&self.storage_path);
        inv.gpus = Some(self.gpus.report());
        inv
    }
}
