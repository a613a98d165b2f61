//! The declarative description of a mesh.
//!
//! For now: host labels, the vocabulary that agents announce and that
//! placement constraints will match against. Pure data and validation; no
//! I/O and no knowledge of how the mesh is run.
#![forbid(unsafe_code)]

pub mod labels;

pub use labels::{parse_label, validate_label, LabelError};
