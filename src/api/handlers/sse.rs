//! `GET events`: the live feed (status, metrics, health, alerts) as server-sent
//! events, fed by the producer's broadcast channel.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{KEEP_ALIVE, sse_event};
use crate::AppState;
use crate::error::ReadAuthErrors;
use crate::events::Snapshot;
use crate::models::ServerSentEvent;

#[utoipa::path(get, path = "/api/streaming/events", tag = "service",
    responses((status = 200, description = "Server-sent events `status`, `metrics`, `health`, `alert` (data: JSON; the first three on connect); a `ping` comment every 15 s", content_type = "text/event-stream", body = ServerSentEvent),
        ReadAuthErrors))]
pub async fn events(
    State(state): State<Arc<AppState>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribe before reading the snapshot so no change falls in between.
    let receiver = state.events.subscribe();
    let initial = stream::iter(current_state(&state.snapshot()));
    let state_for_lag = state.clone();
    let live = BroadcastStream::new(receiver).flat_map(move |item| {
        let events: Vec<Result<SseEvent, Infallible>> = match item {
            Ok(event) => vec![Ok(sse_event(event.kind, &event.data))],
            // A slow client missed events: resend the current state instead.
            Err(BroadcastStreamRecvError::Lagged(_)) => current_state(&state_for_lag.snapshot()),
        };
        stream::iter(events)
    });
    Sse::new(initial.chain(live)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("ping"))
}

/// The `status`, `metrics` and `health` events a client starts from (or
/// resyncs to after falling behind).
fn current_state(snapshot: &Snapshot) -> Vec<Result<SseEvent, Infallible>> {
    let mut events = vec![
        Ok(sse_event(
            "status",
            &String::from_utf8_lossy(&snapshot.status_json),
        )),
        Ok(sse_event(
            "metrics",
            &String::from_utf8_lossy(&snapshot.metrics_json),
        )),
    ];
    // Serializing this plain struct cannot fail; were it to, the client still
    // gets the verdict with the next `health` event.
    if let Ok(health) = serde_json::to_string(&snapshot.health) {
        events.push(Ok(sse_event("health", &health)));
    }
    events
}
