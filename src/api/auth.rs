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

/// Reads the token file. `Err` says, for an operator, why mutations are refused.
pub fn load_token(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.is_empty() {
                Err(format!(
                    "mutations are disabled: the token file {} is empty",
                    path.display()
                ))
            } else {
                Ok(token)
            }
        }
        Err(err) => Err(format!(
            "mutations are disabled: cannot read the token file {} ({err}); create it \
             (e.g. `head -c 32 /dev/urandom | base64 > {}`) and retry",
            path.display(),
            path.display()
        )),
    }
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
        Err(why) => return Err(ApiError::Forbidden(why)),
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

    #[test]
    fn constant_time_eq_matches_only_equal_inputs() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
