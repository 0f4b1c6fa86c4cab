//! Shared helpers for the integration tests. Each test crate uses only some of them.
#![allow(dead_code)]

pub mod api;
pub mod docker;
pub mod harness;
pub mod slurm;
pub mod systemd;
pub mod tmpfs;
pub mod worker;
