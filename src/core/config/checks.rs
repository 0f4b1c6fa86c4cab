//! The per-field checks behind [`StreamingConfig::validate`](super::StreamingConfig::validate)
//! and the value parsing behind `contimgctl config set`.

use super::*;

pub(super) fn parse_operator_value(raw: &str) -> Value {
    let wrapped = format!("v = {raw}");
    if let Ok(table) = toml::from_str::<toml::Table>(&wrapped)
        && let Some(value) = table.get("v")
        && let Ok(json) = serde_json::to_value(value)
    {
        return json;
    }
    Value::String(raw.to_string())
}

pub(super) fn describe_type_error(message: &str) -> String {
    // serde_json appends " at line 0 column 0" to errors from `from_value`.
    let trimmed = message.split(" at line ").next().unwrap_or(message);
    trimmed.replace("invalid type: ", "wrong type: ")
}

pub(super) fn placeholders_in(arg: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        match after.find('}') {
            Some(end) => {
                found.push(after[..=end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    found
}

pub(super) fn check_dir(errors: &mut ValidationErrors, field: &str, dir: &Path, needs_write: bool) {
    if dir.as_os_str().is_empty() {
        errors.push(field, "must not be empty");
        return;
    }
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            errors.push(field, &format!("{} is not a directory", dir.display()))
        }
        Ok(_) => {
            let mode = if needs_write {
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK
            } else {
                nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::X_OK
            };
            if nix::unistd::access(dir, mode).is_err() {
                let what = if needs_write { "writable" } else { "readable" };
                errors.push(field, &format!("{} is not {what}", dir.display()));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(problem) = uncreatable_reason(dir) {
                errors.push(
                    field,
                    &format!(
                        "{} does not exist and cannot be created: {problem}",
                        dir.display()
                    ),
                );
            }
        }
        Err(err) => errors.push(field, &format!("{}: {err}", dir.display())),
    }
}

/// The first 16 bytes of every SQLite 3 database file.
pub(super) const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses NUL and every other control character (C0, DEL, C1) in `text`: they
/// end C strings early, split log lines and argv, and hide what a name really is.
/// Returns whether `text` is clean.
pub(super) fn check_text(errors: &mut ValidationErrors, field: &str, text: &str) -> bool {
    match text.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => {
            errors.push(
                field,
                &format!(
                    "contains the control character U+{:04X} at byte {at}: {:?}",
                    u32::from(c),
                    text
                ),
            );
            false
        }
        None => true,
    }
}

/// Keys a `converter` table may have, by kind; anything else is reported as
/// `converter.<key>`. Returns whether the table may go on to typed parsing.
pub(super) fn check_converter_keys(errors: &mut ValidationErrors, value: &Value) -> bool {
    let Value::Object(table) = value else {
        return true;
    };
    let allowed: &[&str] = match table.get("kind").and_then(Value::as_str) {
        Some("command") => &["kind", "argv", "env"],
        Some("builtin" | "manifest") => &["kind"],
        // A missing or unknown kind is reported by the typed parse.
        _ => return true,
    };
    let mut clean = true;
    for key in table.keys().filter(|key| !allowed.contains(&key.as_str())) {
        errors.push(
            &format!("converter.{key}"),
            &format!("unknown field; allowed here: {}", allowed.join(", ")),
        );
        clean = false;
    }
    clean
}

/// A database path must be an SQLite 3 file we can read and write, an empty
/// file, or a name that can be created: anything else would only be found when
/// the worker (or the API) opens it, after the config was saved.
pub(super) fn check_database_file(errors: &mut ValidationErrors, field: &str, file: &Path) {
    if file.as_os_str().is_empty() {
        errors.push(field, "must not be empty");
        return;
    }
    match fs::metadata(file) {
        Ok(meta) if meta.is_dir() => {
            errors.push(
                field,
                &format!(
                    "{} is a directory, expected a database file",
                    file.display()
                ),
            );
            return;
        }
        Ok(meta) if !meta.is_file() => {
            errors.push(
                field,
                &format!(
                    "{} is not a regular file (a FIFO, socket or device), expected a database file",
                    file.display()
                ),
            );
            return;
        }
        Ok(meta) => {
            if let Some(problem) = sqlite_file_problem(file, meta.len()) {
                errors.push(field, &format!("{}: {problem}", file.display()));
                return;
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            errors.push(field, &format!("{}: {err}", file.display()));
            return;
        }
    }
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    check_dir(errors, field, parent, true);
}

/// Why an existing regular file cannot serve as an SQLite database, if it cannot.
pub(super) fn sqlite_file_problem(file: &Path, len: u64) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let access = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
    if nix::unistd::access(file, access).is_err() {
        return Some("not readable and writable".to_string());
    }
    if len == 0 {
        return None;
    }
    // Non-blocking, in case the name was swapped for a FIFO since the stat.
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file);
    let mut header = [0u8; 16];
    match opened.and_then(|mut f| f.read_exact(&mut header)) {
        Ok(()) if &header == SQLITE_HEADER => None,
        Ok(()) => Some("not an SQLite 3 database (wrong file header)".to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            Some("not an SQLite 3 database (shorter than its header)".to_string())
        }
        Err(err) => Some(format!("cannot read its header: {err}")),
    }
}

/// The worker locks `<queue_db>.lock`; it must be a regular file or creatable.
pub(super) fn check_lock_file(errors: &mut ValidationErrors, field: &str, queue_db: &Path) {
    let mut lock = queue_db.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    match fs::metadata(&lock) {
        Ok(meta) if !meta.is_file() => errors.push(
            field,
            &format!(
                "its lock file {} exists and is not a regular file",
                lock.display()
            ),
        ),
        Ok(_) => {
            let access = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
            if nix::unistd::access(&lock, access).is_err() {
                errors.push(
                    field,
                    &format!(
                        "its lock file {} is not readable and writable",
                        lock.display()
                    ),
                );
            }
        }
        Err(_) => {}
    }
}

/// Why a missing directory could not be created by us, judged from its nearest
/// existing ancestor; `None` if it can be.
pub(super) fn uncreatable_reason(dir: &Path) -> Option<String> {
    let mut ancestor = dir.parent();
    while let Some(candidate) = ancestor {
        let candidate = if candidate.as_os_str().is_empty() {
            Path::new(".")
        } else {
            candidate
        };
        match fs::metadata(candidate) {
            Ok(meta) if !meta.is_dir() => {
                return Some(format!("{} is not a directory", candidate.display()));
            }
            Ok(_) => {
                let writable = nix::unistd::access(
                    candidate,
                    nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
                )
                .is_ok();
                return (!writable).then(|| format!("{} is not writable", candidate.display()));
            }
            Err(_) => ancestor = candidate.parent(),
        }
    }
    None
}
