//! contimg-core: what every part of contimg shares — the configuration, the
//! SQLite queue DB, correlator file names, resource metrics (cgroups, /proc),
//! converter process records and logging setup.
//!
//! It depends on no other contimg crate, and on neither HDF5, D-Bus nor HTTP:
//! the worker, the control backends, the API and the CLI all build on it.

pub mod config;
pub mod converter_records;
pub mod fsutil;
pub mod hash;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod process;
pub mod queue;
pub mod retention;
pub mod units;
