//! Pure decisions: functions of state and `now` that return what to do,
//! tested without I/O.

pub mod admission;
pub mod container_events;
pub mod directory;
pub mod failover;
pub mod failover_phases;
pub mod holds;
pub mod image_sync;
pub mod images;
pub mod liveness;
pub mod planning;
pub mod rollout;
pub mod rollout_events;
pub mod switchover;
pub mod sync;
pub mod volume_events;
pub mod volumes;
pub mod vram_plan;
