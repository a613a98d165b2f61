//! The RPC layer: the TLS listener and gRPC services, authorisation, and
//! the glue from admin calls to the planner and rollout. It moves messages
//! and executes decisions; it decides nothing itself.

pub mod admin_service;
pub mod agent_service;
pub mod auth;
pub mod dashboard_http;
pub mod events_api;
pub mod identity_api;
pub mod images_api;
pub mod metrics_http;
pub mod metrics_tls;
pub mod self_renewal;
pub mod server;
pub mod topology_api;
pub mod volumes_api;
