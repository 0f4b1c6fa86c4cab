//! The typed values the queue DB stores as text: a group's lifecycle state, its
//! processing stage and the outcome of a conversion attempt.
//!
//! Each is written through [`ToSql`] and read through [`FromSql`] with the same
//! strings the original pipeline used, and serialized by serde with those strings
//! too, so the DB, the CLI's JSON and the API's JSON agree by construction. A
//! stored string that names no variant is [`QueueError::UnknownValue`](super::QueueError::UnknownValue),
//! never a guess.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// A stored string that names no variant of the enum read from `column`.
#[derive(Debug, thiserror::Error)]
#[error("column {column} holds {value:?}, which this build does not know")]
pub(super) struct UnknownStored {
    pub(super) column: &'static str,
    pub(super) value: String,
}

/// One enum of unit variants, each with its stored string, and the column it is
/// read from (for the error that names an unknown value).
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident in $column:literal {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every variant, in lifecycle order.
            pub const ALL: [$name; <[&str]>::len(&[$($text),+])] = [$($name::$variant),+];

            /// The column this is read from, as named in errors.
            pub const COLUMN: &'static str = $column;

            /// The string stored in the DB and used in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                Self::parse(text).ok_or_else(|| {
                    FromSqlError::Other(Box::new(UnknownStored {
                        column: $column,
                        value: text.to_string(),
                    }))
                })
            }
        }
    };
}

stored_enum! {
    /// The states of a group (`ingest_queue.state`), with the original pipeline's names.
    pub enum GroupState in "state" {
        Collecting = "collecting",
        Pending = "pending",
        InProgress = "in_progress",
        Completed = "completed",
        Failed = "failed",
    }
}

stored_enum! {
    /// What a group is doing or why it is where it is (`ingest_queue.processing_stage`):
    /// finer than its state, shown by the CLI and the dashboard.
    pub enum ProcessingStage in "processing_stage" {
        /// Waiting for its subbands (also the column's default in the original schema).
        Collecting = "collecting",
        /// Complete and waiting for a conversion slot.
        Queued = "queued",
        Converting = "converting",
        Completed = "completed",
        /// Pending again after a failed attempt, until its back-off ends.
        RetryWait = "retry_wait",
        /// Failed for good: its retries are used up.
        Failed = "failed",
        /// Failed because subbands were still missing at the timeout; a straggler reopens it.
        Incomplete = "incomplete",
        /// Put back by a shutdown during conversion (not counted as a retry).
        Requeued = "requeued",
        /// Put back at start-up after a worker died during its conversion.
        Recovered = "recovered",
        /// Pending again because an operator asked for a retry.
        RetryRequested = "retry_requested",
        /// Accepted for legacy rows whose stage mirrors their state (the original
        /// pipeline writes only the column default, `collecting`, but the
        /// compatibility fixture in tests/compat_original.rs and hand-edited DBs
        /// carry the state); contimg never writes it.
        Pending = "pending",
        /// As [`ProcessingStage::Pending`], for a legacy row that was claimed.
        InProgress = "in_progress",
    }
}

stored_enum! {
    /// How one conversion attempt ended (`group_attempts.outcome`; NULL while it runs).
    pub enum AttemptOutcome in "outcome" {
        Completed = "completed",
        Failed = "failed",
        /// Stopped by a shutdown or a worker crash: not the group's fault.
        Interrupted = "interrupted",
    }
}

stored_enum! {
    /// What retention removed (`removals.kind`).
    pub enum RemovalKind in "kind" {
        /// A subband file of a group (`subband_files.path`).
        Input = "input",
        /// A group's converted output (`ingest_queue.output_path`).
        Output = "output",
        /// A leftover under `scratch_dir` or the worker's staging dir.
        Scratch = "scratch",
        /// A file in `input_dir` that is no group's member: a duplicate, a late
        /// or rejected file, or an unrecognised name.
        StrayInput = "stray_input",
        /// A Slurm job's log or exit record in `slurm.log_dir`.
        JobLog = "job_log",
    }
}

stored_enum! {
    /// What retention did with a file (`removals.action`).
    pub enum RemovalAction in "action" {
        Deleted = "deleted",
        /// Moved to `archive_dir`.
        Archived = "archived",
        /// Left in place, with the reason (a path outside our directories).
        Skipped = "skipped",
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::queue::{Queue, QueueError};

    fn stored_strings_round_trip<T>(all: &[T])
    where
        T: ToSql + FromSql + Serialize + std::fmt::Display + PartialEq + std::fmt::Debug,
    {
        let conn = Connection::open_in_memory().unwrap();
        for value in all {
            let text = value.to_string();
            let stored: String = conn.query_row("SELECT ?1", [value], |r| r.get(0)).unwrap();
            assert_eq!(stored, text);
            let read: T = conn.query_row("SELECT ?1", [&text], |r| r.get(0)).unwrap();
            assert_eq!(&read, value);
            assert_eq!(serde_json::to_value(value).unwrap(), text);
        }
    }

    #[test]
    fn db_strings_json_strings_and_display_are_one_string_per_variant() {
        stored_strings_round_trip(&GroupState::ALL);
        stored_strings_round_trip(&ProcessingStage::ALL);
        stored_strings_round_trip(&AttemptOutcome::ALL);
        // The original pipeline's names.
        let names: Vec<&str> = GroupState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "collecting",
                "pending",
                "in_progress",
                "completed",
                "failed"
            ]
        );
    }

    #[test]
    fn an_unknown_stored_string_names_its_column_and_value() {
        let conn = Connection::open_in_memory().unwrap();
        let read = conn.query_row("SELECT 'archived'", [], |r| r.get::<_, AttemptOutcome>(0));
        match QueueError::from(read.unwrap_err()) {
            QueueError::UnknownValue { column, value } => {
                assert_eq!((column.as_str(), value.as_str()), ("outcome", "archived"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// Every quoted string in the migrated schema (column defaults, triggers,
    /// indexes) is a stored value the enums know, so a DDL that spells a state
    /// the enums lack (or an enum renamed without its DDL) fails here.
    #[test]
    fn every_string_literal_in_the_schema_ddl_is_a_known_stored_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite3");
        drop(Queue::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
            .unwrap();
        let ddl: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut literals = 0;
        for (name, sql) in &ddl {
            for literal in sql.split('\'').skip(1).step_by(2) {
                literals += 1;
                let known = GroupState::parse(literal).is_some()
                    || ProcessingStage::parse(literal).is_some()
                    || AttemptOutcome::parse(literal).is_some()
                    || RemovalAction::parse(literal).is_some();
                assert!(
                    known,
                    "{name} spells {literal:?}, which no stored enum knows"
                );
            }
        }
        assert!(literals > 0, "the schema has its processing_stage default");
        let default: String = conn
            .query_row(
                "SELECT dflt_value FROM pragma_table_info('ingest_queue') WHERE name = 'processing_stage'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            default.trim_matches('\''),
            ProcessingStage::Collecting.as_str()
        );
    }

    /// The triggers keep `queue_state_counts` keyed by the stored strings: one
    /// group in each state is counted once under that state.
    #[test]
    fn the_state_count_triggers_count_every_state_under_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite3");
        let queue = Queue::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        for (i, state) in GroupState::ALL.iter().enumerate() {
            conn.execute(
                "INSERT INTO ingest_queue(group_id, state, received_at, last_update) VALUES (?1, ?2, 0, 0)",
                rusqlite::params![format!("g{i}"), state],
            )
            .unwrap();
        }
        // Moving one group through every state leaves each count where it was.
        for state in GroupState::ALL.iter().rev() {
            conn.execute(
                "UPDATE ingest_queue SET state = ?1 WHERE group_id = 'g0'",
                [state],
            )
            .unwrap();
        }
        let stats = queue.stats(0.0).unwrap();
        for state in GroupState::ALL {
            assert_eq!(stats.count(state), 1, "{state}");
        }
        assert_eq!(stats.counts.len(), GroupState::ALL.len());
    }
}
