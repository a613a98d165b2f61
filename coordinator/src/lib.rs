//! The mesh coordinator: mutual-TLS gRPC endpoint for node agents and
//! admins, the live inventory of nodes and their liveness.
//!
//! Decisions (liveness, authorisation) are pure functions in `liveness`,
//! `registry` and `auth`; `server` and the `*_service` modules only move
//! messages. This crate never trusts a name in a message over the identity
//! in the caller's certificate.
#![forbid(unsafe_code)]

pub mod admin_service;
pub mod agent_service;
pub mod auth;
pub mod config;
pub mod desired;
pub mod directory;
pub mod holds;
pub mod liveness;
pub mod metrics;
pub mod numbering;
pub mod planning;
pub mod registry;
pub mod rollout;
pub mod server;
pub mod sessions;
pub mod state;
pub mod store;
pub mod sync;
pub mod topology_api;
pub mod topology_state;

pub use server::{Coordinator, Settings};
