//! The declarative description of a mesh.
//!
//! For now: host labels, the vocabulary that agents announce and that
//! placement constraints will match against, and the TOML file loading
//! with diagnostics that configs and topologies share. Data and
//! validation only; no knowledge of how the mesh is run.
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
