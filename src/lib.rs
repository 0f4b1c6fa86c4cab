//! contimg: control plane and streaming worker for the DSA-110 continuum-imaging pipeline.
//!
//! This root crate only gathers the workspace's libraries under one name for the
//! integration tests and benchmarks (`contimg::queue`, `contimg::worker`, …). The
//! binaries in `src/bin/` use the member crates directly, so each links only what
//! it needs (`contimgctl` links neither libhdf5 nor axum); see docs/architecture.md.

pub use contimg_api as api;
pub use contimg_cli as cli;
pub use contimg_control as control;
pub use contimg_core::{
    config, converter_records, logging, metrics, names, process, queue, retention, units,
};
pub use contimg_uvh5 as uvh5;
pub use contimg_worker as worker;
pub use contimg_worker::ingest;
