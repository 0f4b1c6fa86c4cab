//! HTTP tests against the real `contimg-api` controlling the real worker unit in a
//! real (isolated) systemd user manager (`ops/testenv/user-manager.sh`). These fail,
//! never skip, when systemd/dbus are missing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::{
    ApiDaemon, DaemonOptions, SseClient, kill_worker_repeatedly, wait_for_raised_alert,
    wait_status, webhook_receiver,
};
use common::systemd::UserManager;

const UNIT: &str = "contimg-stream.service";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_sees_systemctl_user_stop_within_one_second() {
    let manager = UserManager::start();
    let daemon = ApiDaemon::start_systemd(&manager, UNIT, DaemonOptions::default()).await;
    let resp = daemon.post("/api/streaming/start", Some("{}")).await;
    assert_eq!(resp.status(), 200, "{}", daemon.log());
    let status = wait_status(&daemon, Duration::from_secs(10), |s| s["running"] == true).await;
    assert_eq!(status["backend"], "systemd");
    assert_eq!(manager.property(UNIT, "MainPID"), status["pid"].to_string());

    let mut sse = SseClient::connect(&daemon, "/api/streaming/events").await;
    let (kind, first) = sse
        .next(Duration::from_secs(2))
        .await
        .expect("initial status");
    assert_eq!(kind, "status");
    assert_eq!(first["running"], true);

    let stopper = {
        let bus = manager.bus.clone();
        let runtime = manager.runtime_dir.clone();
        std::thread::spawn(move || {
            let out = std::process::Command::new("systemctl")
                .args(["--user", "stop", UNIT])
                .env("DBUS_SESSION_BUS_ADDRESS", bus)
                .env("XDG_RUNTIME_DIR", runtime)
                .output()
                .expect("systemctl");
            (Instant::now(), out.status.success())
        })
    };
    let seen_at = loop {
        let (kind, data) = sse
            .next(Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("no stopped status over SSE\n{}", daemon.log()));
        if kind == "status" && data["running"] == false {
            break Instant::now();
        }
    };
    let (stopped_at, ok) = stopper.join().expect("stopper thread");
    assert!(ok, "systemctl --user stop failed");
    assert!(
        seen_at <= stopped_at + Duration::from_secs(1),
        "SSE saw the stop {:?} after systemctl returned",
        seen_at.saturating_duration_since(stopped_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_limits_and_fifty_parallel_operations_under_systemd() {
    let manager = UserManager::start();
    let daemon = Arc::new(ApiDaemon::start_systemd(&manager, UNIT, DaemonOptions::default()).await);
    assert_eq!(
        daemon.post("/api/streaming/start", None).await.status(),
        200
    );
    wait_status(&daemon, Duration::from_secs(10), |s| s["running"] == true).await;
    let health = daemon.get_json("/api/streaming/health").await;
    assert!(health["checks"].as_array().unwrap().len() >= 4, "{health}");
    let metrics = daemon.get_json("/api/streaming/metrics").await;
    assert_eq!(metrics["service_running"], true);

    // Limits through SetUnitProperties.
    let resp = daemon
        .post(
            "/api/streaming/limits",
            Some(r#"{"memory_max_bytes": 536870912, "cpu_quota_percent": 150}"#),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", daemon.log());
    let limits = daemon.get_json("/api/streaming/limits").await;
    assert_eq!(limits["memory_max_bytes"], 536870912u64, "{limits}");
    assert_eq!(manager.property(UNIT, "MemoryMax"), "536870912");
    let resp = daemon
        .post("/api/streaming/limits", Some(r#"{"bogus": 1}"#))
        .await;
    assert_eq!(resp.status(), 422);

    let logs = daemon.get_json("/api/streaming/logs?lines=20").await;
    assert!(logs["lines"].is_array());

    let mut tasks = Vec::new();
    for i in 0..50 {
        let daemon = daemon.clone();
        tasks.push(tokio::spawn(async move {
            let path = [
                "/api/streaming/start",
                "/api/streaming/stop",
                "/api/streaming/restart",
            ][i % 3];
            daemon.post(path, None).await.status().as_u16()
        }));
    }
    for task in tasks {
        let code = task.await.unwrap();
        assert!(code == 200 || code == 500, "unexpected {code}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = daemon.get_json("/api/streaming/status").await;
    let active = manager.property(UNIT, "ActiveState");
    let main_pid = manager.property(UNIT, "MainPID");
    let pids = common::api::worker_pids(&daemon.env.state_dir);
    if status["running"] == true {
        assert_eq!(active, "active");
        assert_eq!(status["pid"].to_string(), main_pid);
        assert_eq!(pids.len(), 1, "{pids:?}");
    } else {
        assert_ne!(active, "active");
        assert!(pids.is_empty(), "orphans {pids:?}");
    }
    assert_eq!(daemon.post("/api/streaming/stop", None).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(common::api::worker_pids(&daemon.env.state_dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_restart_loop_when_systemd_restarts_a_killed_worker() {
    let (url, received) = webhook_receiver().await;

    let manager = UserManager::start();
    let daemon = ApiDaemon::start_systemd(
        &manager,
        UNIT,
        DaemonOptions {
            extra_args: vec!["--webhook-url".to_string(), url],
            api_toml: "[alerts]\nrestart_count = 2\n".to_string(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        daemon.post("/api/streaming/start", None).await.status(),
        200
    );
    kill_worker_repeatedly(&daemon, 2).await;
    wait_for_raised_alert(&received, "restart_loop", &daemon, Duration::from_secs(20)).await;
    let status = daemon.get_json("/api/streaming/status").await;
    assert!(status["restart_count"].as_u64().unwrap() >= 2, "{status}");
}
