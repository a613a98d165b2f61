//! The declarative description of a mesh, and the pure computations on it.
//!
//! - [`model`] and [`validate`]: the topology file (hosts, groups of
//!   services, bridges), read with every problem reported at its line and
//!   column.
//! - [`service`]: a service's container as users write it in TOML, shared
//!   by topologies and containers files.
//! - [`labels`]: host labels, which agents announce and constraints match.
//! - [`placement`]: which host each group runs on, a deterministic
//!   function of needs, capacity and the current placement, with
//!   explanations.
//! - [`compose`]: docker-compose / podman-compose files to topology TOML.
//! - [`toml_file`]: TOML files (agent and coordinator configs, containers
//!   files) into typed values, with errors naming the file and the field.
//!
//! What it must not do: talk to the network, Podman, the coordinator or
//! the agents, or know how the mesh is run (it is data, validation and
//! planning; its only I/O is reading a file it is asked to read); hand on
//! a topology that has an error.
#![forbid(unsafe_code)]

pub mod compose;
pub mod labels;
pub mod model;
pub mod placement;
pub mod service;
pub mod toml_file;
pub mod validate;

pub use labels::{parse_label, validate_label, LabelError};
pub use toml_file::{load_toml, parse_toml, ConfigError};
