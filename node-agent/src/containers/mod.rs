//! Containers on this host: specs, lifecycle, restart policy, reconcile.
//! Everything here is pure; the runtime seam (`runtime`) does the I/O.

pub mod lifecycle;
pub mod reconcile;
pub mod restart;
pub mod spec;
