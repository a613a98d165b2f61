//! The mesh node agent: one per machine. Connects to the coordinator over
//! mutual TLS under the name in its certificate, and reports host health
//! and GPUs in heartbeats.
//!
//! Decisions are pure (`config`, the inventory parsers); I/O
//! sits behind small seams (`inventory::gpu::GpuProbe`). The agent must
//! never stop or change what runs on its host because the coordinator is
//! unreachable.
#![forbid(unsafe_code)]

pub mod bridges;
pub mod config;
pub mod containers;
pub mod health;
pub mod inventory;
pub mod manager;
pub mod runtime;
pub mod session;

pub use session::Agent;
