//! contimg: control plane and streaming worker for the DSA-110 continuum-imaging pipeline.
//!
//! The binaries in `src/bin/` are thin wrappers; everything they do lives here so
//! tests can reach it.

pub mod api;
pub mod cli;
pub mod config;
pub mod control;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod queue;
pub mod uvh5;
pub mod worker;
