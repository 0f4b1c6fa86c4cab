//! Bearer-token auth. Mutations always need the token; reads only when the daemon
//! is configured so (or listens beyond loopback).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Where the token comes from and when it is required.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub token_file: PathBuf,
    pub read_requires_token: bool,
}

/// A token shorter than this (after trimming whitespace) is refused as guessable.
pub const MIN_TOKEN_BYTES: usize = 16;
/// A token file larger than this is not a token.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Why the token file cannot be used. Every message says, for an operator, what is
/// wrong and how to fix it; mutations are refused (403) until it is fixed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "mutations are disabled: cannot read the token file {path} ({source}); create it \
         (e.g. `(umask 077; head -c 32 /dev/urandom | base64 > {path})`) and retry"
    )]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "mutations are disabled: the token file {path} is a symbolic link; point \
         --token-file at the file itself"
    )]
    Symlink { path: String },
    #[error("mutations are disabled: the token file {path} is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error(
        "mutations are disabled: the token file {path} is {what} (mode {mode:04o}); \
         `chmod 0600 {path}` (or 0640 with a trusted group)"
    )]
    Permissions {
        path: String,
        what: &'static str,
        mode: u32,
    },
    #[error("mutations are disabled: the token file {path} is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error(
        "mutations are disabled: the token in {path} is {len} bytes; it must be at least \
         {min} (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    TooShort {
        path: String,
        len: usize,
        min: usize,
    },
    #[error("mutations are disabled: the token file {path} is not UTF-8")]
    NotText { path: String },
}

fn file_kind(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Reads the token file without ever blocking: it is opened non-blocking and
/// without following a symlink, and read only once `fstat` says it is a regular
/// file that no one but its owner (and group, for reading) can touch.
pub fn load_token(path: &Path) -> Result<String, TokenError> {
    use std::io::Read;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let shown = path.display().to_string();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                TokenError::Symlink {
                    path: shown.clone(),
                }
            } else {
                TokenError::Unreadable {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
    let metadata = file.metadata().map_err(|source| TokenError::Unreadable {
        path: shown.clone(),
        source,
    })?;
    if !metadata.file_type().is_file() {
        return Err(TokenError::NotRegular {
            path: shown,
            kind: file_kind(metadata.file_type()),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    let weakness = if mode & 0o002 != 0 {
        Some("world-writable")
    } else if mode & 0o020 != 0 {
        Some("group-writable")
    } else if mode & 0o004 != 0 {
        Some("world-readable")
    } else {
        None
    };
    if let Some(what) = weakness {
        return Err(TokenError::Permissions {
            path: shown,
            what,
            mode,
        });
    }
    if metadata.len() > MAX_TOKEN_FILE_BYTES {
        return Err(TokenError::TooLarge {
            path: shown,
            max: MAX_TOKEN_FILE_BYTES,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TokenError::Unreadable {
            path: shown.clone(),
            source,
        })?;
    let text = String::from_utf8(bytes).map_err(|_| TokenError::NotText {
        path: shown.clone(),
    })?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_BYTES {
        return Err(TokenError::TooShort {
            path: shown,
            len: token.len(),
            min: MIN_TOKEN_BYTES,
        });
    }
    Ok(token.to_string())
}

/// Compares in time independent of where the first difference is, so the token
/// cannot be guessed byte by byte from response timings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Checks a request against the policy. The token file is re-read each time a
/// check needs it, so rotating the token needs no restart.
pub fn check(policy: &AuthPolicy, request: &Request) -> Result<(), ApiError> {
    // Only POST mutates here; any other method is answered 405 by the router,
    // which needs no token to say so.
    let mutating = *request.method() == Method::POST;
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let needs_token = mutating || (read && policy.read_requires_token);
    if !needs_token {
        return Ok(());
    }
    let expected = match load_token(&policy.token_file) {
        Ok(token) => token,
        Err(why) => return Err(ApiError::Forbidden(why.to_string())),
    };
    match bearer(request) {
        None => Err(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>` header".to_string(),
        )),
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("invalid token".to_string())),
    }
}

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match check(&state.auth, &request) {
        Ok(()) => next.run(request).await,
        Err(err) => {
            let mut response = err.into_response();
            if response.status() == axum::http::StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(dir: &Path, content: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("api.token");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn load_token_accepts_owner_only_and_group_readable_long_tokens() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400, 0o640] {
            let path = token_file(dir.path(), "0123456789abcdef\n", mode);
            assert_eq!(
                load_token(&path).unwrap(),
                "0123456789abcdef",
                "mode {mode:o}"
            );
        }
    }

    #[test]
    fn load_token_refuses_loose_modes_short_tokens_and_non_files() {
        let dir = tempfile::tempdir().unwrap();
        let long = "0123456789abcdef";
        for (mode, what) in [
            (0o644, "world-readable"),
            (0o602, "world-writable"),
            (0o620, "group-writable"),
            (0o666, "world-writable"),
        ] {
            let path = token_file(dir.path(), long, mode);
            let message = load_token(&path).unwrap_err().to_string();
            assert!(message.contains(what), "mode {mode:o}: {message}");
        }
        let path = token_file(dir.path(), "0123456789abcde\n", 0o600);
        assert!(matches!(
            load_token(&path),
            Err(TokenError::TooShort { len: 15, .. })
        ));
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            load_token(&path),
            Err(TokenError::NotRegular { kind: "a FIFO", .. })
        ));
        let link = dir.path().join("link.token");
        std::os::unix::fs::symlink(dir.path().join("missing"), &link).unwrap();
        assert!(matches!(load_token(&link), Err(TokenError::Symlink { .. })));
        assert!(matches!(
            load_token(&dir.path().join("absent")),
            Err(TokenError::Unreadable { .. })
        ));
    }

    #[test]
    fn constant_time_eq_matches_only_equal_inputs() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
