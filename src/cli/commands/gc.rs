//! `contimgctl gc [--dry-run]`: the worker's retention sweep, on demand (the
//! policy and its safety rules are `contimg_core::retention`'s, shared with
//! the worker, so both remove exactly the same files).
//!
//! Safe beside a running worker: each batch of removals is checked and
//! recorded in its own short `BEGIN IMMEDIATE` transaction on the queue DB,
//! which SQLite serialises with the worker's own (they wait, at most a batch).
//!
//! Who may run it: `--dry-run` only reads, so anyone who can read the queue DB.
//! The real run writes the queue DB, so it must run as the DB's owner (the
//! worker's user): another user, root included, could leave SQLite's `-wal` and
//! `-shm` files behind that the worker then cannot open. It is refused with
//! exit 1, naming the owner. A file the owner cannot delete (another user's file
//! in a directory it may not write) is reported on stderr by path with the OS
//! error; it is not recorded, its group stays due for the next sweep, and the
//! exit code is 1.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use contimg_control::exit_code;
use contimg_core::queue::{Queue, RemovalAction, unix_now};
use contimg_core::retention::{RetentionError, Sweep, SweepReport};

use super::{existing_config_store, print_json};
use crate::{Cli, CliError, output};

pub fn run(cli: &Cli, dry_run: bool) -> Result<i32, CliError> {
    let (config, _) = existing_config_store(cli)?.load()?;
    // Opened read-only first: a missing DB is reported with the state dir's rule.
    let reader = super::queue::open_reader(cli, &config.queue_db)?;
    let mut sweep = Sweep::new(&config, unix_now());
    sweep.keep_removals = true;
    let report = if dry_run {
        sweep.plan(&reader).map_err(retention_error)?
    } else {
        drop(reader);
        if let Some(refusal) = not_the_owner(&config.queue_db)? {
            eprintln!("contimgctl gc: {refusal}");
            return Ok(exit_code::FAILED);
        }
        let queue = Mutex::new(Queue::open(&config.queue_db)?);
        sweep
            .run(&queue, &AtomicBool::new(false))
            .map_err(retention_error)?
    };
    if cli.json {
        print_json(&report)?;
    } else {
        print!("{}", text(&report));
    }
    for failure in &report.failures {
        eprintln!("contimgctl gc: {}", failure.error);
    }
    Ok(if report.failures.is_empty() {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}

/// Why this user may not write the queue DB, if it may not.
fn not_the_owner(queue_db: &Path) -> Result<Option<String>, CliError> {
    let owner = std::fs::metadata(queue_db)?.uid();
    let me = nix::unistd::geteuid().as_raw();
    if owner == me {
        return Ok(None);
    }
    let name = nix::unistd::User::from_uid(owner.into())
        .ok()
        .flatten()
        .map_or_else(|| owner.to_string(), |user| user.name);
    Ok(Some(format!(
        "run gc as the owner of the queue DB {} ({name}), e.g. `sudo -u {name} contimgctl gc`: \
         another user could leave database files the worker cannot open \
         (--dry-run works as any user who can read it)",
        queue_db.display()
    )))
}

fn retention_error(err: RetentionError) -> CliError {
    match err {
        RetentionError::Queue(err) => CliError::Queue(err),
        RetentionError::Poisoned => CliError::Io(std::io::Error::other(err.to_string())),
    }
}

/// Totals per kind, then (dry run) each file.
fn text(report: &SweepReport) -> String {
    let total = report.total();
    let mut out = format!(
        "{}: {} files, {}{}\n",
        if report.dry_run {
            "would remove (dry run)"
        } else {
            "removed"
        },
        total.files,
        output::human_bytes(total.bytes),
        if report.failures.is_empty() {
            String::new()
        } else {
            format!("; {} could not be removed", report.failures.len())
        }
    );
    for (kind, kind_total) in &report.totals {
        out.push_str(&format!(
            "  {:<11} {:>6} files  {:>7}\n",
            kind.as_str(),
            kind_total.files,
            output::human_bytes(kind_total.bytes)
        ));
    }
    for removal in &report.removals {
        let listed = report.dry_run || removal.action == RemovalAction::Skipped;
        if !listed {
            continue;
        }
        out.push_str(&format!(
            "  {:<8} {:<11} {:>7}  {}{}{}\n",
            removal.action.as_str(),
            removal.kind.as_str(),
            output::human_bytes(removal.bytes),
            removal.path,
            removal
                .archived_to
                .as_deref()
                .map(|to| format!(" -> {to}"))
                .unwrap_or_default(),
            if removal.action == RemovalAction::Skipped {
                format!(" ({})", removal.reason)
            } else {
                String::new()
            }
        ));
    }
    out
}
