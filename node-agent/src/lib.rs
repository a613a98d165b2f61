//! The mesh node agent: one per machine. Connects to the coordinator over
//! mutual TLS under the name in its certificate, reports host health, GPUs
//! and its containers in heartbeats, runs the containers the coordinator
//! desires on this host (Podman), and the bridges between hosts.
//!
//! Decisions are pure and take the time as an input: the container
//! lifecycle machine (`containers::machine`), restart policy, health
//! verdicts, `config`, the inventory parsers; backoff comes from the
//! shared `mesh-backoff` crate. I/O sits behind small seams
//! (`runtime::ContainerRuntime`, with a recording fake under the
//! `test-util` feature; `inventory::gpu::GpuProbe`), and clocks are
//! `tokio::time`, so the manager is tested in paused time.
//!
//! What it must not do: stop or change what runs on its host because the
//! coordinator is unreachable; start a container an operator holds; touch
//! containers of another mesh or not labelled as its own.
#![forbid(unsafe_code)]

pub mod bridges;
pub mod config;
pub mod containers;
pub mod health;
pub mod images;
pub mod inventory;
pub mod manager;
pub mod metrics_http;
pub mod runtime;
pub mod session;
pub mod usage;
pub mod volumes;

pub use session::Agent;
