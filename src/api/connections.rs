//! Serving HTTP/1.1 connections with limits a slow or idle client cannot outlast.
//!
//! `axum::serve` reads headers without a deadline and accepts without bound, so
//! a handful of silent clients could keep sockets open forever, and ~1,000 of them
//! exhausted the daemon's file descriptors. Here every connection is served by
//! hyper directly with:
//!
//! - [`HEADER_READ_TIMEOUT`]: the whole request head must arrive within it. hyper
//!   arms this timer as soon as a connection waits for a request, so it is also the
//!   idle keep-alive timeout.
//! - [`REQUEST_BODY_DEADLINE`] (a router layer, see [`super::router`]): the whole
//!   request body must arrive within it; after that the handler sees a body error,
//!   answers 400, and hyper closes the connection because the body is unfinished.
//! - a cap on concurrent connections ([`connection_cap`]): beyond it, new
//!   connections wait in the listen backlog instead of taking a file descriptor.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// The request line and headers must arrive within this; it also closes idle
/// keep-alive connections.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The complete request body must arrive within this (bodies are at most
/// [`super::BODY_LIMIT_BYTES`], so an honest client needs milliseconds).
pub const REQUEST_BODY_DEADLINE: Duration = Duration::from_secs(10);
/// The most client connections served at once (open SSE streams included).
pub const MAX_CONNECTIONS: usize = 4096;
/// File descriptors kept for everything that is not a client connection: the
/// listener, SQLite (queue DB, history, WAL files), the worker's pipes, D-Bus,
/// journald, the dashboard's files.
pub const RESERVED_FDS: u64 = 256;
/// Never fewer than this many connections, even under a tiny file limit.
const MIN_CONNECTIONS: usize = 16;
/// Pause after a failed `accept` (e.g. EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection cap for this process: [`MAX_CONNECTIONS`], lowered so that the
/// cap plus [`RESERVED_FDS`] fits the open-file limit. Raises the soft
/// `RLIMIT_NOFILE` to the hard one first (the unit sets both with `LimitNOFILE=`).
pub fn connection_cap() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(err) => {
                tracing::debug!(%err, "cannot raise RLIMIT_NOFILE");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(err) => {
            tracing::warn!(%err, "cannot read RLIMIT_NOFILE; assuming 1024");
            1024
        }
    };
    let cap = cap_for_file_limit(soft);
    if cap < MAX_CONNECTIONS {
        tracing::warn!(
            open_file_limit = soft,
            connections = cap,
            "the open-file limit allows only {cap} concurrent connections (want {MAX_CONNECTIONS}); \
             set LimitNOFILE=65536 in the unit"
        );
    } else {
        tracing::info!(
            open_file_limit = soft,
            connections = cap,
            header_read_timeout_s = HEADER_READ_TIMEOUT.as_secs(),
            body_deadline_s = REQUEST_BODY_DEADLINE.as_secs(),
            "connection limits"
        );
    }
    cap
}

fn cap_for_file_limit(open_file_limit: u64) -> usize {
    let available = open_file_limit.saturating_sub(RESERVED_FDS);
    usize::try_from(available)
        .unwrap_or(usize::MAX)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// Accepts and serves connections until `stop` turns true, then lets open
/// connections finish their current request and returns once all have ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    loop {
        // Take a slot before accepting: while every slot is in use, new clients
        // wait in the kernel's backlog and cost this process nothing.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let http = http.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let app = app.clone();
                async move { app.oneshot(request.map(Body::new)).await }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
    // Every slot back means every connection has ended.
    let _ = permits.acquire_many(max_connections as u32).await;
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = stop.wait_for(|stopping| *stopping).await.is_ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_reserved_descriptors_and_stays_in_bounds() {
        assert_eq!(cap_for_file_limit(65_536), MAX_CONNECTIONS);
        assert_eq!(cap_for_file_limit(1024), 1024 - RESERVED_FDS as usize);
        assert_eq!(cap_for_file_limit(100), MIN_CONNECTIONS);
        assert_eq!(cap_for_file_limit(0), MIN_CONNECTIONS);
    }
}
