//! HTTP tests against the real `contimg-api` binary controlling the real
//! `contimg-stream` worker through the process backend (the daemon supervises).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::{
    ApiDaemon, DaemonOptions, SseClient, TOKEN, kill_worker_repeatedly, wait_for_raised_alert,
    wait_status, webhook_receiver, worker_pids,
};
use serde_json::{Value, json};

const SEED_STATUS_FIELDS: [&str; 9] = [
    "running",
    "pid",
    "started_at",
    "uptime_seconds",
    "cpu_percent",
    "memory_mb",
    "last_heartbeat",
    "config",
    "error",
];

#[tokio::test]
async fn seed_endpoints_start_with_empty_body_restart_stop() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;

    let status = daemon.get_json("/api/streaming/status").await;
    for field in SEED_STATUS_FIELDS {
        assert!(
            status.get(field).is_some(),
            "status lacks {field}: {status}"
        );
    }
    assert_eq!(status["running"], false);
    let health = daemon.get_json("/api/streaming/health").await;
    for field in [
        "healthy",
        "running",
        "uptime_seconds",
        "cpu_percent",
        "memory_mb",
        "error",
        "checks",
    ] {
        assert!(health.get(field).is_some(), "health lacks {field}");
    }
    assert_eq!(health["healthy"], false);
    let config = daemon.get_json("/api/streaming/config").await;
    for field in [
        "input_dir",
        "output_dir",
        "queue_db",
        "registry_db",
        "scratch_dir",
        "expected_subbands",
        "chunk_duration",
        "log_level",
        "use_subprocess",
        "monitoring",
        "monitor_interval",
        "poll_interval",
        "worker_poll_interval",
        "max_workers",
        "stage_to_tmpfs",
        "tmpfs_path",
    ] {
        assert!(
            config.get(field).is_some(),
            "config lacks seed field {field}"
        );
    }

    // The original dashboard sent `{}` and got 422; here it starts the service.
    let resp = daemon.post("/api/streaming/start", Some("{}")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], true, "{body}");
    let pid = body["pid"].as_u64().expect("pid");
    let status = wait_status(&daemon, Duration::from_secs(10), |s| {
        s["running"] == true && s["last_heartbeat"].is_string()
    })
    .await;
    assert_eq!(status["pid"].as_u64(), Some(pid));
    let metrics = daemon.get_json("/api/streaming/metrics").await;
    assert_eq!(metrics["service_running"], true);
    for state in [
        "collecting",
        "pending",
        "in_progress",
        "completed",
        "failed",
    ] {
        assert!(metrics["queue_stats"][state].is_u64(), "{metrics}");
    }
    assert!(metrics["processing_rate_per_hour"].is_number());
    let health = daemon.get_json("/api/streaming/health").await;
    assert_eq!(health["healthy"], true, "{health}");

    // Restart with no body at all, then with a partial config.
    let resp = daemon.post("/api/streaming/restart", None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_ne!(body["pid"].as_u64(), Some(pid), "{body}");
    let resp = daemon
        .post("/api/streaming/restart", Some(r#"{"max_workers": 2}"#))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["changed"], json!(["max_workers"]));
    assert_eq!(
        daemon.get_json("/api/streaming/config").await["max_workers"],
        2
    );

    // POST config on a running service restarts it.
    let resp = daemon
        .post("/api/streaming/config", Some(r#"{"max_workers": 3}"#))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["restarted"], true, "{body}");

    let resp = daemon.post("/api/streaming/stop", None).await;
    assert_eq!(resp.status(), 200);
    wait_status(&daemon, Duration::from_secs(5), |s| s["running"] == false).await;
    assert!(worker_pids(&daemon.env.state_dir).is_empty());
}

#[tokio::test]
async fn auth_missing_wrong_and_right_token_and_no_token_file() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;
    let url = daemon.url("/api/streaming/stop");
    let client = reqwest::Client::new();
    let resp = client.post(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    let resp = client.post(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client.post(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Reads are open on loopback.
    assert_eq!(
        daemon.get("/api/streaming/status").await.unwrap().status(),
        200
    );

    let no_token = ApiDaemon::start_process(DaemonOptions {
        write_token: false,
        ..Default::default()
    })
    .await;
    let resp = client
        .post(no_token.url("/api/streaming/start"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("token file"),
        "{body}"
    );

    let token_reads = ApiDaemon::start_process(DaemonOptions {
        extra_args: vec!["--read-requires-token".to_string()],
        ..Default::default()
    })
    .await;
    assert_eq!(
        client
            .get(token_reads.url("/api/streaming/status"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(token_reads.url("/api/streaming/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;
    async fn expect(resp: reqwest::Response, status: u16, code: &str) -> Value {
        assert_eq!(resp.status().as_u16(), status);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], code, "{body}");
        assert!(body["message"].is_string());
        body
    }
    expect(
        daemon
            .post("/api/streaming/config", Some("{not json"))
            .await,
        400,
        "bad_request",
    )
    .await;
    expect(
        daemon.post("/api/streaming/start", Some("[1,2]")).await,
        400,
        "bad_request",
    )
    .await;
    let body = expect(
        daemon
            .post(
                "/api/streaming/config",
                Some(r#"{"max_workers": "four", "poll_interval": true, "bogus": 1}"#),
            )
            .await,
        422,
        "validation_failed",
    )
    .await;
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    for field in ["max_workers", "poll_interval", "bogus"] {
        assert!(fields.contains(&field), "{body}");
    }
    // Range errors are all reported too.
    let body = expect(
        daemon
            .post(
                "/api/streaming/config",
                Some(r#"{"max_workers": 0, "expected_subbands": 0}"#),
            )
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(body["details"].as_array().unwrap().len() >= 2, "{body}");
    let big = format!("{{\"input_dir\": \"{}\"}}", "x".repeat(70 * 1024));
    expect(
        daemon.post("/api/streaming/config", Some(&big)).await,
        413,
        "payload_too_large",
    )
    .await;
    let resp = daemon
        .client
        .put(daemon.url("/api/streaming/status"))
        .send()
        .await
        .unwrap();
    expect(resp, 405, "method_not_allowed").await;
    expect(
        daemon.get("/api/streaming/nope").await.unwrap(),
        404,
        "not_found",
    )
    .await;
    expect(
        daemon.get("/api/streaming/groups?limit=abc").await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    expect(
        daemon
            .get("/api/streaming/history?window=3y")
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;

    // ETag / If-Match.
    let resp = daemon.get("/api/streaming/config").await.unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let ok = daemon
        .client
        .post(daemon.url("/api/streaming/config"))
        .bearer_auth(TOKEN)
        .header("if-match", &etag)
        .body(r#"{"max_workers": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let stale = daemon
        .client
        .post(daemon.url("/api/streaming/config"))
        .bearer_auth(TOKEN)
        .header("if-match", &etag)
        .body(r#"{"max_workers": 3}"#)
        .send()
        .await
        .unwrap();
    expect(stale, 412, "precondition_failed").await;
    // No CORS headers by default.
    let resp = daemon
        .client
        .get(daemon.url("/api/streaming/status"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn sse_client_sees_an_external_kill_within_one_second() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;
    assert_eq!(
        daemon.post("/api/streaming/start", None).await.status(),
        200
    );
    let status = wait_status(&daemon, Duration::from_secs(10), |s| s["running"] == true).await;
    let pid = status["pid"].as_u64().unwrap() as i32;
    let mut sse = SseClient::connect(&daemon, "/api/streaming/events").await;
    let (kind, first) = sse
        .next(Duration::from_secs(2))
        .await
        .expect("initial event");
    assert_eq!(kind, "status");
    assert_eq!(first["running"], true);
    // Stop the worker behind the daemon's back (as an operator's `kill` would).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let killed_at = Instant::now();
    loop {
        let left = Duration::from_secs(1).saturating_sub(killed_at.elapsed());
        let (kind, data) = sse
            .next(left)
            .await
            .unwrap_or_else(|| panic!("no stopped status within 1 s\n{}", daemon.log()));
        if kind == "status" && data["running"] == false {
            break;
        }
    }
    assert!(killed_at.elapsed() <= Duration::from_secs(1));
}

#[tokio::test]
async fn fifty_parallel_control_requests_end_consistent() {
    let daemon = Arc::new(ApiDaemon::start_process(DaemonOptions::default()).await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let daemon = daemon.clone();
        tasks.push(tokio::spawn(async move {
            let path = match i % 3 {
                0 => "/api/streaming/start",
                1 => "/api/streaming/stop",
                _ => "/api/streaming/restart",
            };
            daemon.post(path, None).await.status().as_u16()
        }));
    }
    for task in tasks {
        let code = task.await.unwrap();
        assert!(code == 200 || code == 500, "unexpected {code}");
    }
    // Settle, then the API, the PID file and /proc must agree.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = daemon.get_json("/api/streaming/status").await;
    let pids = worker_pids(&daemon.env.state_dir);
    if status["running"] == true {
        assert_eq!(
            pids,
            vec![status["pid"].as_u64().unwrap() as u32],
            "{status}"
        );
    } else {
        assert!(pids.is_empty(), "orphans {pids:?} while stopped");
    }
    // A final stop leaves nothing behind.
    assert_eq!(daemon.post("/api/streaming/stop", None).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(worker_pids(&daemon.env.state_dir).is_empty());
}

#[tokio::test]
async fn webhook_receives_restart_loop_alert_when_worker_is_killed_repeatedly() {
    let (url, received) = webhook_receiver().await;
    let daemon = ApiDaemon::start_process(DaemonOptions {
        extra_args: vec!["--webhook-url".to_string(), url],
        api_toml: "[alerts]\nrestart_count = 2\nrestart_window_s = 300\n".to_string(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        daemon.post("/api/streaming/start", None).await.status(),
        200
    );
    kill_worker_repeatedly(&daemon, 2).await;
    wait_for_raised_alert(&received, "restart_loop", &daemon, Duration::from_secs(20)).await;
    let alerts = daemon.get_json("/api/streaming/alerts").await;
    assert!(
        alerts["active"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "restart_loop"),
        "{alerts}"
    );
    let status = daemon.get_json("/api/streaming/status").await;
    assert!(status["restart_count"].as_u64().unwrap() >= 2, "{status}");
    let prometheus = daemon.get("/metrics").await.unwrap().text().await.unwrap();
    assert!(prometheus.contains("contimg_alerts_firing{rule=\"restart_loop\"} 1"));
}

#[tokio::test]
async fn groups_retry_logs_limits_history_prometheus_openapi() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;
    let control_dir = daemon.env.root.path().join("control");
    std::fs::create_dir_all(&control_dir).unwrap();
    let script = common::worker::write_test_converter(daemon.env.root.path());
    let extra = format!(
        "expected_subbands = 2\nmax_retries = 0\n{}",
        common::worker::test_converter_toml(&script, &control_dir)
    );
    daemon.env.write_config(&extra);
    assert_eq!(
        daemon.post("/api/streaming/start", None).await.status(),
        200
    );
    // Two groups: one converts, one always fails.
    // Recent observations: names more than a day in the future are refused, and the
    // 1 h history window below must contain these groups.
    let t0 = (contimg::queue::unix_now() - 900.0).floor();
    let t1 = t0 + 600.0;
    let failing = contimg::queue::group_id_for(t1);
    std::fs::write(control_dir.join(format!("fail-always-{failing}")), "").unwrap();
    for sb in 0..2 {
        daemon.env.drop_subband(t0, sb, b"data");
        daemon.env.drop_subband(t1, sb, b"data");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = daemon.get_json("/api/streaming/metrics").await;
        if metrics["queue_stats"]["failed"] == 1 && metrics["queue_stats"]["completed"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list = daemon.get_json("/api/streaming/groups").await;
    assert_eq!(list["groups"].as_array().unwrap().len(), 2, "{list}");
    let failed = daemon.get_json("/api/streaming/groups?state=failed").await;
    assert_eq!(failed["groups"][0]["group_id"], failing.as_str());
    let page = daemon.get_json("/api/streaming/groups?limit=1").await;
    assert_eq!(page["groups"].as_array().unwrap().len(), 1);
    let next = page["next_before"]
        .as_str()
        .expect("next_before")
        .to_string();
    let page2 = daemon
        .get_json(&format!("/api/streaming/groups?limit=1&before={next}"))
        .await;
    assert_eq!(page2["groups"].as_array().unwrap().len(), 1);
    let detail = daemon
        .get_json(&format!("/api/streaming/groups/{failing}"))
        .await;
    assert_eq!(detail["files"].as_array().unwrap().len(), 2, "{detail}");
    assert!(detail["error"].is_string());
    assert_eq!(
        daemon
            .get(&format!("/api/streaming/groups/{}", "1999-01-01T00:00:00"))
            .await
            .unwrap()
            .status(),
        404
    );

    let completed = contimg::queue::group_id_for(t0);
    assert_eq!(
        daemon
            .post(&format!("/api/streaming/groups/{completed}/retry"), None)
            .await
            .status(),
        409
    );
    assert_eq!(
        daemon
            .post("/api/streaming/groups/1999-01-01T00:00:00/retry", None)
            .await
            .status(),
        404
    );
    std::fs::remove_file(control_dir.join(format!("fail-always-{failing}"))).unwrap();
    let resp = daemon
        .post(&format!("/api/streaming/groups/{failing}/retry"), None)
        .await;
    assert_eq!(resp.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.get_json("/api/streaming/metrics").await["queue_stats"]["completed"] != 2 {
        assert!(
            Instant::now() < deadline,
            "retry not processed\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let logs = daemon.get_json("/api/streaming/logs?lines=50").await;
    assert!(!logs["lines"].as_array().unwrap().is_empty(), "{logs}");
    let errors = daemon
        .get_json("/api/streaming/logs?lines=500&level=ERROR")
        .await;
    for line in errors["lines"].as_array().unwrap() {
        assert_eq!(line["level"], "ERROR");
    }
    // Follow mode: SSE `log` events.
    let mut follow = SseClient::connect(&daemon, "/api/streaming/logs?follow=true&lines=1").await;
    assert_eq!(
        daemon.post("/api/streaming/restart", None).await.status(),
        200
    );
    let (kind, line) = follow
        .next(Duration::from_secs(10))
        .await
        .expect("a followed log line");
    assert_eq!(kind, "log");
    assert!(line["message"].is_string());

    let limits = daemon.get("/api/streaming/limits").await.unwrap();
    assert!(
        limits.status() == 200 || limits.status() == 501,
        "{}",
        limits.status()
    );

    // The daemon takes its first history sample 2 s after start; this test can get
    // here sooner.
    let deadline = Instant::now() + Duration::from_secs(15);
    let history = loop {
        let history = daemon.get_json("/api/streaming/history?window=1h").await;
        if !history["points"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(history["step_seconds"], 60);
    assert!(
        !history["points"].as_array().unwrap().is_empty(),
        "{history}\n{}",
        daemon.log()
    );
    for window in ["24h", "7d"] {
        daemon
            .get_json(&format!("/api/streaming/history?window={window}"))
            .await;
    }

    let text = daemon.get("/metrics").await.unwrap().text().await.unwrap();
    for series in [
        "contimg_up 1",
        "contimg_cpu_seconds_total",
        "contimg_memory_bytes",
        "contimg_restarts_total",
        "contimg_groups{state=\"completed\"} 2",
        "contimg_groups_completed_total 2",
        "contimg_group_duration_seconds_count 2",
        "contimg_alerts_firing{rule=\"service_down\"} 0",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }

    let doc = daemon.get_json("/api/openapi.json").await;
    for path in [
        "/api/streaming/status",
        "/api/streaming/health",
        "/api/streaming/config",
        "/api/streaming/metrics",
        "/api/streaming/start",
        "/api/streaming/stop",
        "/api/streaming/restart",
        "/api/streaming/events",
        "/api/streaming/logs",
        "/api/streaming/history",
        "/api/streaming/disk",
        "/api/streaming/groups",
        "/api/streaming/groups/{id}",
        "/api/streaming/groups/{id}/retry",
        "/api/streaming/limits",
        "/api/streaming/alerts",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"].get("StatusResponse").is_some());
}

#[tokio::test]
async fn serves_the_dashboard_with_spa_fallback() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dist.path().join("assets")).unwrap();
    std::fs::write(dist.path().join("index.html"), "<html>dashboard</html>").unwrap();
    std::fs::write(dist.path().join("assets/app.js"), "console.log(1)").unwrap();
    let daemon = ApiDaemon::start_process(DaemonOptions {
        extra_args: vec![
            "--dashboard-dir".to_string(),
            dist.path().to_string_lossy().into_owned(),
        ],
        ..Default::default()
    })
    .await;
    for path in ["/streaming", "/streaming/", "/streaming/groups/abc"] {
        let resp = daemon.get(path).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.text().await.unwrap().contains("dashboard"), "{path}");
    }
    for path in ["/assets/app.js", "/streaming/assets/app.js"] {
        let resp = daemon.get(path).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.text().await.unwrap(), "console.log(1)");
    }
    // API paths never fall back to the SPA.
    assert_eq!(daemon.get("/api/nope").await.unwrap().status(), 404);
}
