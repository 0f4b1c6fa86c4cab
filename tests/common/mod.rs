//! Shared helpers for the integration tests. Each test crate uses only some of them.
#![allow(dead_code)]

pub mod worker;
