//! The handlers through the real router (auth, JSON errors, body limits
//! included), driven with tower's `oneshot`, against `FakeBackend` instead of a
//! systemd, and a real temp state dir (config, token, history and queue DBs).
//! The real-component tests are tests/api_*.rs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::{AppState, Settings, auth::MIN_TOKEN_BYTES, events, router};
use contimg_control::testing::FakeBackend;
use contimg_control::{ControlOptions, alerts::AlertThresholds};

const TOKEN: &str = "unit-test-token-0123456789";

/// A daemon's state without its listener: `FakeBackend`, a temp state dir.
struct TestApi {
    state: Arc<AppState>,
    backend: Arc<FakeBackend>,
    _dir: tempfile::TempDir,
}

impl TestApi {
    fn new() -> Self {
        Self::with_backend(FakeBackend::new())
    }

    fn with_backend(backend: FakeBackend) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).expect("state dir");
        let token_file = state_dir.join("api.token");
        assert!(TOKEN.len() >= MIN_TOKEN_BYTES);
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))
                .expect("chmod token");
        }
        let settings = Settings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            state_dir: state_dir.clone(),
            state_dir_rule: contimg_control::state_dir::StateDirRule::Flag,
            token_file,
            read_requires_token: false,
            control: ControlOptions {
                state_dir,
                ..ControlOptions::default()
            },
            dashboard_dir: None,
            webhook_url: None,
            control_timeout: Duration::from_secs(5),
            // low_disk would depend on this machine's free space.
            alerts: AlertThresholds {
                disk_warning_percent: 0.0,
                disk_critical_percent: 0.0,
                ..AlertThresholds::default()
            },
            bench_routes: false,
        };
        let backend = Arc::new(backend);
        let state = AppState::new(settings, backend.clone()).expect("app state");
        Self {
            state,
            backend,
            _dir: dir,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.state.settings.state_dir.clone()
    }

    /// Starts the producer and waits for its first read of the backend.
    async fn with_producer(self) -> Self {
        events::spawn_producer(self.state.clone());
        self.wait_snapshot(|s| s.backend_seen).await;
        self
    }

    /// Waits (bounded) until the producer's snapshot satisfies `done`.
    async fn wait_snapshot(&self, done: impl Fn(&events::Snapshot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&self.state.snapshot()) {
            assert!(Instant::now() < deadline, "the snapshot never got there");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.call_with(method, path, body, None).await
    }

    /// [`TestApi::call`] with an `If-Match` header.
    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        if_match: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        request = request.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(etag) = if_match {
            request = request.header(header::IF_MATCH, etag);
        }
        let request = request
            .body(Body::from(body.unwrap_or_default().to_string()))
            .expect("request");
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, json)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::POST, path, body).await
    }
}

mod logs {
    use super::*;

    /// `since=300000y` is a valid duration whose start lies before the earliest
    /// time chrono represents. The API's own parse_since subtracted it
    /// unchecked, which panicked inside the handler (no answer at all).
    #[tokio::test]
    async fn a_since_too_far_back_is_a_400_not_a_panic() {
        let api = TestApi::new();
        let (status, body) = api.get("/api/streaming/logs?since=300000y").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "bad_request");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("300000y"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn since_and_level_reach_the_backend_and_bad_ones_are_400() {
        let api = TestApi::new();
        let (status, body) = api.get("/api/streaming/logs?since=10m&level=warn").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let queries: Vec<contimg_control::LogQuery> = api
            .backend
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                contimg_control::testing::Call::Logs(query) => Some(query),
                _ => None,
            })
            .collect();
        assert_eq!(queries.len(), 1);
        assert_eq!(queries[0].min_level.as_deref(), Some("WARNING"));
        let since = queries[0].since.expect("since passed on");
        let ago = chrono::Utc::now() - since;
        assert!(ago >= chrono::Duration::minutes(10) && ago < chrono::Duration::minutes(11));
        for bad in ["since=yesterday-ish", "level=LOUD", "lines=-1", "bogus=1"] {
            let (status, body) = api.get(&format!("/api/streaming/logs?{bad}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert_eq!(body["error"], "bad_request", "{bad}: {body}");
        }
    }
}

mod control {
    use super::*;
    use contimg_control::testing::Method;
    use contimg_control::{
        BackendKind, ControlError, ControlOutcome, JobResult, LogEntry, Operation,
    };

    #[tokio::test]
    async fn start_restart_stop_run_through_the_backend_and_answer_its_outcome() {
        let api = TestApi::new();
        let (status, body) = api.post("/api/streaming/start", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["success"], true);
        let first_pid = body["pid"].as_u64().expect("pid");
        assert!(
            api.state
                .should_run
                .load(std::sync::atomic::Ordering::SeqCst)
        );

        let (status, body) = api.post("/api/streaming/restart", Some("{}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_ne!(
            body["pid"].as_u64(),
            Some(first_pid),
            "a restart gives a new PID"
        );
        // Stop ignores its body, even one that is not JSON.
        let (status, body) = api.post("/api/streaming/stop", Some("not json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            !api.state
                .should_run
                .load(std::sync::atomic::Ordering::SeqCst)
        );
        assert_eq!(
            api.backend.operations(),
            [Operation::Start, Operation::Restart, Operation::Stop]
        );
    }

    /// Every way a backend can fail an operation, and the HTTP answer for it
    /// (docs/api.md, the OpenAPI `ControlErrors`): status and error code.
    #[tokio::test]
    async fn backend_errors_become_their_http_status_and_code() {
        let cases: Vec<(ControlError, StatusCode, &str)> = vec![
            (
                ControlError::Unavailable("no bus".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                ControlError::UnknownUnit("contimg-stream.service".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                ControlError::PermissionDenied("polkit said no".into()),
                StatusCode::FORBIDDEN,
                "permission_denied",
            ),
            (
                ControlError::Timeout(Duration::from_secs(5), "start".into()),
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
            ),
            (
                ControlError::Unsupported(BackendKind::Process, "limits".into()),
                StatusCode::NOT_IMPLEMENTED,
                "not_supported",
            ),
            (
                ControlError::Invalid("bad unit name".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            ),
            (
                ControlError::Manager("job failed".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
            (
                ControlError::WorkerBinaryMissing {
                    path: "/nonexistent/contimg-stream".into(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
            (
                ControlError::Io(std::io::Error::other("disk on fire")),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        let api = TestApi::new();
        for (error, want_status, want_code) in cases {
            let message = error.to_string();
            api.backend
                .fail_next(Method::Operation(Operation::Start), error);
            let (status, body) = api.post("/api/streaming/start", None).await;
            assert_eq!(status, want_status, "{message}: {body}");
            assert_eq!(body["error"], want_code, "{message}: {body}");
            assert_eq!(body["message"], message.as_str(), "{body}");
        }
        // A failed start leaves the service meant to be stopped.
        assert!(
            !api.state
                .should_run
                .load(std::sync::atomic::Ordering::SeqCst)
        );
    }

    #[tokio::test]
    async fn an_operation_that_ran_and_failed_is_500_with_the_units_last_logs() {
        let api = TestApi::new();
        api.backend.queue_outcome(
            Operation::Start,
            ControlOutcome {
                success: false,
                result: JobResult::Failed,
                message: "start failed: exit-code".into(),
                pid: None,
                recent_logs: vec![LogEntry {
                    timestamp: chrono::Utc::now(),
                    level: "ERROR".into(),
                    message: "input_dir is not readable".into(),
                    group_id: None,
                    pid: Some(4242),
                }],
            },
        );
        let (status, body) = api.post("/api/streaming/start", None).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["message"], "start failed: exit-code");
        assert_eq!(body["logs"][0]["message"], "input_dir is not readable");
        assert_eq!(body["logs"][0]["level"], "ERROR");
    }

    #[tokio::test]
    async fn a_start_with_a_config_saves_it_first_and_a_bad_one_starts_nothing() {
        let api = TestApi::new();
        let (status, body) = api
            .post("/api/streaming/start", Some(r#"{"max_workers": 2}"#))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["changed"], serde_json::json!(["max_workers"]));
        let (config, _) = api.state.store.load().expect("config");
        assert_eq!(config.max_workers, 2);

        let (status, body) = api
            .post("/api/streaming/restart", Some(r#"{"max_workers": 0}"#))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["details"][0]["field"], "max_workers", "{body}");
        let (status, body) = api.post("/api/streaming/restart", Some("[1]")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(api.backend.operations(), [Operation::Start]);
    }
}

mod config {
    use super::*;
    use contimg_control::Operation;

    #[tokio::test]
    async fn a_change_restarts_a_running_service_and_waits_for_a_stopped_one() {
        let api = TestApi::new();
        let (status, body) = api
            .post("/api/streaming/config", Some(r#"{"max_workers": 3}"#))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["restarted"], false, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not running"),
            "{body}"
        );
        assert!(api.backend.operations().is_empty());

        api.backend.set_running(777);
        let (status, body) = api
            .post("/api/streaming/config", Some(r#"{"max_workers": 5}"#))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["restarted"], true, "{body}");
        assert_eq!(body["changed"], serde_json::json!(["max_workers"]));
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("configuration saved; "),
            "{body}"
        );
        assert_eq!(api.backend.operations(), [Operation::Restart]);

        // Unchanged: no restart.
        let (status, body) = api
            .post("/api/streaming/config", Some(r#"{"max_workers": 5}"#))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["restarted"], false, "{body}");
        assert_eq!(api.backend.operations(), [Operation::Restart]);
    }

    #[tokio::test]
    async fn a_stale_if_match_is_412_and_changes_nothing() {
        let api = TestApi::new();
        let (status, body) = api
            .call_with(
                Method::POST,
                "/api/streaming/config",
                Some(r#"{"max_workers": 7}"#),
                Some("\"not-the-etag\""),
            )
            .await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
        let (config, _) = api.state.store.load().expect("config");
        assert_ne!(config.max_workers, 7);
    }
}

mod status_and_health {
    use super::*;
    use contimg_control::report;
    use contimg_core::queue::{Queue, unix_now};

    #[tokio::test]
    async fn status_is_what_the_backend_said() {
        let backend = FakeBackend::new();
        backend.set_running(4321);
        let api = TestApi::with_backend(backend).with_producer().await;
        let (status, body) = api.get("/api/streaming/status").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["running"], true, "{body}");
        assert_eq!(body["pid"], 4321);
        assert_eq!(body["backend"], "systemd");
        // In words (issue 14); the fake backend knows no manager, SystemdBackend does.
        assert_eq!(
            body["backend_description"],
            "systemd unit contimg-stream.service"
        );
        assert_eq!(body["active_state"], "active");

        api.backend.set_failed("exit-code");
        api.wait_snapshot(|s| !s.status.running).await;
        let (_, body) = api.get("/api/streaming/status").await;
        assert_eq!(body["running"], false, "{body}");
        assert_eq!(body["active_state"], "failed");
        assert_eq!(body["error"], "exit-code");
    }

    /// The API's verdict is the one `contimgctl health` computes from the same
    /// backend and state dir (one QueueView, one health_verdict): same checks,
    /// same outcomes, same queue_db detail.
    async fn assert_same_verdict_as_the_cli(api: &TestApi) {
        let (status, api_health) = api.get("/api/streaming/health").await;
        assert_eq!(status, StatusCode::OK);
        let cli = report::gather(api.backend.as_ref(), &api.state.store)
            .await
            .expect("gather")
            .health_report(&[]);
        let outcomes = |checks: &Value| -> Vec<(String, bool)> {
            checks
                .as_array()
                .expect("checks")
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_string(),
                        c["ok"].as_bool().unwrap_or_default(),
                    )
                })
                .collect()
        };
        let cli_json = serde_json::to_value(&cli).expect("json");
        assert_eq!(
            outcomes(&api_health["checks"]),
            outcomes(&cli_json["checks"]),
            "API {api_health}\nCLI {cli_json}"
        );
        assert_eq!(api_health["healthy"], cli_json["healthy"]);
        let queue_detail = |health: &Value| {
            health["checks"]
                .as_array()
                .and_then(|checks| checks.iter().find(|c| c["name"] == "queue_db"))
                .map(|c| c["detail"].clone())
        };
        // The free-space figure in the detail can move between the two reads;
        // the reason (unreadable or not, and why) must not.
        let reason = |detail: Option<Value>| {
            detail.and_then(|d| {
                d.as_str()
                    .map(|s| s.split(',').next().unwrap_or(s).to_string())
            })
        };
        assert_eq!(
            reason(queue_detail(&api_health)),
            reason(queue_detail(&cli_json))
        );
    }

    #[tokio::test]
    async fn no_queue_db_yet_is_unhealthy_and_says_so_as_the_cli_does() {
        let backend = FakeBackend::new();
        backend.set_running(4321);
        let api = TestApi::with_backend(backend).with_producer().await;
        api.wait_snapshot(|s| s.queue.view.writable.is_some()).await;
        let (_, health) = api.get("/api/streaming/health").await;
        assert_eq!(health["healthy"], false, "{health}");
        assert_same_verdict_as_the_cli(&api).await;
    }

    #[tokio::test]
    async fn a_running_worker_with_a_fresh_heartbeat_is_healthy_as_the_cli_says() {
        let backend = FakeBackend::new();
        backend.set_running(4321);
        let api = TestApi::with_backend(backend);
        let queue_db = api.state.store.defaults().queue_db;
        assert!(
            queue_db.starts_with(api.state_dir()),
            "{}",
            queue_db.display()
        );
        let mut queue = Queue::open(&queue_db).expect("queue DB");
        queue
            .heartbeat(4321, unix_now(), unix_now())
            .expect("heartbeat");
        let api = api.with_producer().await;
        api.wait_snapshot(|s| s.queue.view.heartbeat.is_some())
            .await;
        let (_, health) = api.get("/api/streaming/health").await;
        assert_eq!(health["healthy"], true, "{health}");
        assert_same_verdict_as_the_cli(&api).await;

        // A failed unit: unhealthy, with the critical service_down alert in it.
        api.backend.set_failed("exit-code");
        api.wait_snapshot(|s| !s.health.healthy).await;
        let (_, health) = api.get("/api/streaming/health").await;
        let failing: Vec<&str> = health["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["ok"] == false)
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(failing.contains(&"service_running"), "{health}");
        assert!(failing.contains(&"alerts"), "{health}");
        drop(queue);
    }
}

mod alerts {
    use super::*;

    #[tokio::test]
    async fn a_failed_unit_raises_service_down_and_prometheus_counts_it() {
        let api = TestApi::new().with_producer().await;
        let (status, body) = api.get("/api/streaming/alerts").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["active"], serde_json::json!([]), "{body}");

        api.backend.set_failed("exit-code");
        api.wait_snapshot(|s| !s.health.healthy && s.status.active_state == "failed")
            .await;
        let (_, body) = api.get("/api/streaming/alerts").await;
        let active = body["active"].as_array().expect("active");
        assert!(
            active
                .iter()
                .any(|a| a["rule"] == "service_down" && a["severity"] == "critical"),
            "{body}"
        );
        let (status, text) = api.get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let text = text.as_str().expect("text");
        assert!(
            text.contains("contimg_alerts_firing{rule=\"service_down\"} 1"),
            "{text}"
        );
    }

    /// `/metrics` has a series for every alert rule, so a quiet rule reads 0
    /// rather than "no data" (and a firing one is counted at all).
    #[tokio::test]
    async fn prometheus_has_a_series_for_every_alert_rule() {
        let api = TestApi::new().with_producer().await;
        let (_, text) = api.get("/metrics").await;
        let text = text.as_str().expect("text");
        for rule in contimg_control::alerts::AlertRule::ALL {
            assert!(
                text.contains(&format!("contimg_alerts_firing{{rule=\"{rule}\"}}")),
                "no series for {rule}:\n{text}"
            );
        }
    }
}

/// The typed errors keep the HTTP status and JSON body they had as strings.
mod error_bodies {
    use super::*;
    use contimg_core::queue::{NewFile, Queue, unix_now};

    #[tokio::test]
    async fn an_unreadable_config_file_is_500_internal_even_for_a_valid_patch() {
        let api = TestApi::new();
        let config_path = api.state.store.path();
        std::fs::write(&config_path, "max_workers = [not toml").expect("write");
        let (status, body) = api.get("/api/streaming/config").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["error"], "internal");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&config_path.display().to_string()),
            "{body}"
        );
        let (status, body) = api
            .post("/api/streaming/start", Some(r#"{"max_workers": 2}"#))
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["error"], "internal");
        assert!(body.get("details").is_none(), "{body}");
        assert!(api.backend.operations().is_empty());
    }

    #[tokio::test]
    async fn retrying_a_group_that_is_not_failed_is_409_and_an_unknown_one_404() {
        let api = TestApi::new();
        let (status, body) = api
            .post("/api/streaming/groups/2026-11-29T10:00:00/retry", None)
            .await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "no queue DB yet: {body}"
        );

        let mut queue = Queue::open(&api.state.store.defaults().queue_db).expect("queue");
        let now = unix_now();
        let file = NewFile {
            path: format!(
                "/in/{}",
                contimg_core::names::subband_file_name(now - 60.0, 0)
            ),
            timestamp: now - 60.0,
            subband_idx: 0,
            size_bytes: Some(10),
            mtime: None,
            meta_json: None,
        };
        queue
            .register_file(&file, 16, 150.0, now)
            .expect("register");
        let (status, body) = api.get("/api/streaming/groups").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let group_id = body["groups"][0]["group_id"]
            .as_str()
            .expect("one group")
            .to_string();
        assert_eq!(body["groups"][0]["state"], "collecting");

        let (status, body) = api
            .post(&format!("/api/streaming/groups/{group_id}/retry"), None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "conflict");
        assert_eq!(
            body["message"],
            format!("group {group_id} is collecting, only failed groups can be retried")
        );
        let (status, body) = api
            .post("/api/streaming/groups/1999-01-01T00:00:00/retry", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"], "not_found");
    }

    #[tokio::test]
    async fn a_stale_if_match_names_both_etags() {
        let api = TestApi::new();
        let (config, _) = api.state.store.load().expect("config");
        let (status, body) = api
            .call_with(
                Method::POST,
                "/api/streaming/restart",
                Some(r#"{"max_workers": 9}"#),
                Some("W/\"old\", \"older\""),
            )
            .await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
        assert_eq!(body["error"], "precondition_failed");
        assert_eq!(
            body["message"],
            format!(
                "the configuration changed since you read it (If-Match W/\"old\", \"older\", \
                 current ETag {}); reload and retry",
                config.etag()
            )
        );
        assert!(api.backend.operations().is_empty());
    }
}

mod sse {
    use super::*;
    use futures_util::StreamExt;

    /// The first events of `GET events`: what a dashboard starts from. The
    /// verdict is among them (as after a lag), so a client that connects (or
    /// falls behind) shows the API's health at once, not after the next change.
    #[tokio::test]
    async fn a_new_client_gets_status_metrics_and_the_health_verdict_first() {
        let backend = FakeBackend::new();
        backend.set_running(99);
        let api = TestApi::with_backend(backend).with_producer().await;
        let request = Request::builder()
            .uri("/api/streaming/events")
            .body(Body::empty())
            .expect("request");
        let response = router(api.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        let mut kinds: Vec<String> = Vec::new();
        // Bounded: the first frames come from the snapshot at once; a missing
        // one would otherwise wait for the 15 s keep-alive or the next change.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while kinds.len() < 3 {
            let data = tokio::time::timeout_at(deadline, body.next())
                .await
                .unwrap_or_else(|_| panic!("only these first events: {kinds:?}\n{text}"))
                .expect("a chunk")
                .expect("no error");
            text.push_str(&String::from_utf8_lossy(&data));
            kinds = text
                .lines()
                .filter_map(|line| line.strip_prefix("event: "))
                .map(str::to_string)
                .collect();
        }
        assert_eq!(kinds[..3], ["status", "metrics", "health"], "{text}");
        let health_data = text
            .split("event: health\n")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .and_then(|line| line.strip_prefix("data: "))
            .expect("health data");
        let verdict: Value = serde_json::from_str(health_data).expect("json");
        let (_, served) = api.get("/api/streaming/health").await;
        assert_eq!(verdict["healthy"], served["healthy"]);
        assert_eq!(verdict["running"], true);
    }
}

/// `GET disk`, the disk gauges of `/metrics` and the free-space trend, from the
/// producer's real statvfs of real directories.
mod disk {
    use super::*;

    /// The config's input, output, scratch and staging dirs, all under the test's
    /// temp dir (so on one filesystem), with staging on.
    fn configure_dirs(api: &TestApi) -> PathBuf {
        let root = api.state_dir().parent().expect("temp root").to_path_buf();
        let mut config = api.state.store.defaults();
        for (name, field) in [
            ("in", &mut config.input_dir),
            ("out", &mut config.output_dir),
            ("scratch", &mut config.scratch_dir),
            ("shm", &mut config.tmpfs_path),
        ] {
            *field = root.join(name);
            std::fs::create_dir_all(&*field).expect("dir");
        }
        config.stage_to_tmpfs = true;
        config.monitor_interval = 1.0;
        api.state.store.save(&config).expect("save config");
        root
    }

    #[tokio::test]
    async fn every_configured_dir_is_reported_exported_and_sampled() {
        let api = TestApi::new();
        let root = configure_dirs(&api);
        let api = api.with_producer().await;
        api.wait_snapshot(|s| s.disks.len() == 5).await;
        events::spawn_history_sampler(api.state.clone());

        let (status, body) = api.get("/api/streaming/disk").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["window"], "24h");
        let dirs = body["dirs"].as_array().expect("dirs");
        let names: Vec<&str> = dirs.iter().filter_map(|d| d["dir"].as_str()).collect();
        assert_eq!(
            names,
            [
                "input_dir",
                "output_dir",
                "scratch_dir",
                "state_dir",
                "tmpfs_path"
            ]
        );
        assert_eq!(dirs[1]["path"], root.join("out").display().to_string());
        for dir in dirs {
            assert!(dir["error"].is_null(), "{dir}");
            assert!(dir["total_bytes"].as_u64().unwrap_or(0) > 0, "{dir}");
            assert!(dir["free_bytes"].as_u64().is_some(), "{dir}");
            assert_eq!(dir["filesystem"], dirs[0]["filesystem"], "{dir}");
        }

        let (_, text) = api.get("/metrics").await;
        let text = text.as_str().expect("text");
        for name in names {
            assert!(
                text.contains(&format!("contimg_disk_free_bytes{{dir=\"{name}\",")),
                "no free series for {name}:\n{text}"
            );
            assert!(text.contains(&format!("contimg_disk_total_bytes{{dir=\"{name}\",")));
        }

        // The sampler's first sample (2 s after it starts) reaches the trend.
        let deadline = Instant::now() + Duration::from_secs(10);
        let trend = loop {
            let (status, body) = api.get("/api/streaming/disk?window=1h").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["trend"].as_array().is_some_and(|t| t.len() == 5) {
                break body["trend"].clone();
            }
            assert!(Instant::now() < deadline, "no trend: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(trend[4]["dir"], "tmpfs_path", "{trend}");
        let free = trend[4]["points"][0]["free_bytes"].as_f64().expect("free");
        assert!(free > 0.0, "{trend}");

        let (status, body) = api.get("/api/streaming/disk?window=2h").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

/// The packaged Prometheus rules and Grafana dashboard use only metric names this
/// API exports, so neither can drift from `/metrics` unnoticed.
mod observability {
    use super::*;
    use std::collections::BTreeSet;

    fn packaging(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../packaging")
            .join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every `contimg_*` identifier in a text (PromQL, YAML, JSON).
    fn contimg_names(text: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("contimg_") {
            let boundary = rest[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if boundary {
                names.insert(tail[..end].to_string());
            }
            rest = &tail[end..];
        }
        names
    }

    /// The names `/metrics` declares (`# TYPE`) or has a sample of.
    fn exported(metrics: &str) -> BTreeSet<String> {
        metrics
            .lines()
            .filter_map(|line| match line.strip_prefix("# TYPE ") {
                Some(declared) => declared.split(' ').next(),
                None if line.starts_with('#') => None,
                None => line.split(['{', ' ']).next(),
            })
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Every `expr` of a Grafana dashboard, panels and nested rows included.
    fn grafana_exprs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition", Value::String(expr)) => out.push(expr.clone()),
                        _ => grafana_exprs(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| grafana_exprs(item, out)),
            _ => {}
        }
    }

    /// A rule added to the API's alert engine gets its Prometheus counterpart,
    /// named by an `# API rule NAME` comment over it.
    #[test]
    fn every_api_alert_rule_has_a_prometheus_rule() {
        let rules = packaging("prometheus/contimg-rules.yml");
        let missing: Vec<&str> = contimg_control::alerts::AlertRule::ALL
            .iter()
            .map(|rule| rule.as_str())
            .filter(|name| {
                !rules.contains(&format!("# API rule {name}"))
                    && !rules.contains(&format!("rule=~\"{name}|"))
                    && !rules.contains(&format!("|{name}|"))
                    && !rules.contains(&format!("|{name}\""))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "API alert rules with no Prometheus rule: {missing:?}"
        );
    }

    #[tokio::test]
    async fn rules_and_dashboard_use_only_exported_metric_names() {
        let api = TestApi::new();
        // Everything that adds series: a readable queue DB, measured dirs, a config.
        let mut config = api.state.store.defaults();
        let root = api.state_dir().parent().expect("root").to_path_buf();
        for (name, field) in [
            ("in", &mut config.input_dir),
            ("out", &mut config.output_dir),
            ("scratch", &mut config.scratch_dir),
        ] {
            *field = root.join(name);
            std::fs::create_dir_all(&*field).expect("dir");
        }
        api.state.store.save(&config).expect("config");
        drop(contimg_core::queue::Queue::open(&config.queue_db).expect("queue DB"));
        let api = api.with_producer().await;
        api.wait_snapshot(|s| s.queue.view.stats.is_some() && !s.disks.is_empty())
            .await;
        let (status, metrics) = api.get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let exported = exported(metrics.as_str().expect("text"));
        assert!(exported.contains("contimg_disk_free_bytes"), "{exported:?}");

        let rules = contimg_names(&packaging("prometheus/contimg-rules.yml"));
        let mut dashboard_exprs = Vec::new();
        let dashboard: Value =
            serde_json::from_str(&packaging("grafana/contimg-dashboard.json")).expect("JSON");
        grafana_exprs(&dashboard, &mut dashboard_exprs);
        let dashboard_names = contimg_names(&dashboard_exprs.join("\n"));

        for (what, used) in [("rules", &rules), ("dashboard", &dashboard_names)] {
            let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
            assert!(
                unknown.is_empty(),
                "the {what} use names /metrics does not export: {unknown:?}\nexported: {exported:?}"
            );
        }
        // Each rule the API raises has a Prometheus counterpart.
        for needed in [
            "contimg_restarts_total",
            "contimg_groups",
            "contimg_groups_completed_total",
            "contimg_disk_free_bytes",
            "contimg_config_min_free_bytes",
            "contimg_alerts_firing",
            "contimg_slurm_scheduler_up",
        ] {
            assert!(rules.contains(needed), "no rule reads {needed}");
        }

        // The dashboard's main panels, each with a query.
        let panels = dashboard["panels"].as_array().expect("panels");
        let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
        for title in [
            "Service up",
            "CPU",
            "Memory",
            "Queue by state",
            "Processing rate",
            "Failed groups",
            "Disk free per directory",
        ] {
            assert!(titles.contains(&title), "no panel {title:?} in {titles:?}");
        }
        for panel in panels {
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(
                targets
                    .iter()
                    .any(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())),
                "panel {} has no query",
                panel["title"]
            );
        }
    }
}
