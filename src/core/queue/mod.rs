//! The SQLite queue DB: schema-compatible with the original pipeline's
//! `ingest.sqlite3`, in WAL mode, with every state transition in one transaction.
//!
//! [`Queue`] is the worker's read-write handle (the worker is the only writer);
//! [`QueueReader`] is the read-only handle the CLI and the API use.
//!
//! States, processing stages and attempt outcomes are enums ([`state`]) bound
//! as SQL parameters and read back strictly: a stored string this build does not
//! know is [`QueueError::UnknownValue`], naming the column and the value.
//!
//! Where things are: [`state`] (the stored enums), [`model`] (rows in and out),
//! `writer` (opening, registering, rejecting), `register` (grouping one file),
//! `transitions` (claim, complete, fail, retry, recover), `inspections` (the
//! validator journal), `reader`, `groups` (list/detail queries both handles
//! share), `stats`, [`retention`] (what is due, removal records), [`retry`] (retry request files), [`schema`] (migrations) and
//! `blocking` (calls from async code).

mod blocking;
mod error;
mod groups;
mod inspections;
mod jobs;
pub mod model;
mod reader;
mod register;
pub mod retention;
pub mod retry;
pub mod schema;
pub mod state;
mod stats;
mod transitions;
pub mod writable;
mod writer;

use std::time::Duration;

use rusqlite::Connection;

pub use blocking::{SharedQueue, open_shared, with_queue, with_reader};
pub use error::QueueError;
pub use jobs::{JOB_STATE_SUBMITTING, OpenJob};
pub use model::*;
pub use reader::QueueReader;
pub use retry::{request_retry, retry_request_dir};
pub use schema::SCHEMA_VERSION;
pub use state::{AttemptOutcome, GroupState, ProcessingStage, RemovalAction, RemovalKind};
pub use stats::QueueStats;
pub use writer::Queue;

/// How long a connection waits for another's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds since the Unix epoch, as the queue DB stores times.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A group id is its earliest file's timestamp, `YYYY-MM-DDTHH:MM:SS`.
pub fn group_id_for(timestamp: f64) -> String {
    crate::names::format_timestamp(timestamp)
}

/// The Unix time a group id stands for (ids written by the original pipeline too).
pub fn group_timestamp_from_id(group_id: &str) -> Option<f64> {
    crate::names::parse_timestamp(group_id)
}

fn table_exists(conn: &Connection, table: &str) -> Result<bool, QueueError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [table],
        |row| row.get(0),
    )?)
}

#[cfg(test)]
mod tests;
