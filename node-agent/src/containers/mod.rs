//! Containers on this host: specs, lifecycle, the per-container state
//! machine, restart policy, reconcile.
//! Everything here is pure; the runtime seam (`runtime`) does the I/O.

pub mod lifecycle;
pub mod machine;
pub mod reconcile;
pub mod restart;
pub mod spec;
