//! Issue 12, the dashboard's disk usage: the real `contimg-api` measures each
//! configured directory on real filesystems. `output_dir` and `archive_dir` sit
//! on one small tmpfs that the test fills, `input_dir` on the temp dir's disk.
//! `GET disk` and `/metrics` must give that tmpfs's exact size, tell the two
//! filesystems apart, list both dirs on the shared one, raise `low_disk` for it,
//! and follow the free space back up once the filler is gone (trend included).

mod common;

use std::time::Duration;

use common::api::{ApiDaemon, DaemonOptions, wait_json};
use common::tmpfs::Tmpfs;
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

fn dir<'a>(disk: &'a Value, name: &str) -> &'a Value {
    disk["dirs"]
        .as_array()
        .and_then(|dirs| dirs.iter().find(|d| d["dir"] == name))
        .unwrap_or_else(|| panic!("no {name} in {disk}"))
}

fn metric_line<'a>(metrics: &'a str, prefix: &str) -> &'a str {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}… in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_usage_of_each_configured_dir_on_real_filesystems() {
    let tmpfs = Tmpfs::mount("64m");
    let output = tmpfs.path().join("ms");
    let archive = tmpfs.path().join("archive");
    std::fs::create_dir_all(&output).expect("output dir");
    std::fs::create_dir_all(&archive).expect("archive dir");
    // Under 5 % of 64 MiB free: the low_disk alert's critical level.
    let filler = tmpfs.fill_leaving("filler", 2 * MIB);
    let api = ApiDaemon::start_process(DaemonOptions {
        streaming_toml: format!(
            "output_dir = {output:?}\narchive_dir = {archive:?}\nmin_free_gb = 0.05\n"
        ),
        host_disk_alerts: true,
        ..DaemonOptions::default()
    })
    .await;

    let disk = api.get_json("/api/streaming/disk").await;
    let (out, arch, input) = (
        dir(&disk, "output_dir"),
        dir(&disk, "archive_dir"),
        dir(&disk, "input_dir"),
    );
    assert_eq!(out["path"], output.display().to_string(), "{disk}");
    assert_eq!(out["total_bytes"], 64 * MIB, "{disk}");
    let free = out["free_bytes"].as_u64().expect("free");
    assert!(free <= 2 * MIB, "{disk}");
    assert!(
        out["used_bytes"].as_u64().expect("used") >= 62 * MIB,
        "{disk}"
    );
    assert_eq!(arch["filesystem"], out["filesystem"], "one tmpfs: {disk}");
    assert_eq!(arch["total_bytes"], out["total_bytes"]);
    assert_ne!(input["filesystem"], out["filesystem"], "{disk}");
    assert!(input["error"].is_null(), "{disk}");

    let metrics = api
        .get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let total = metric_line(&metrics, "contimg_disk_total_bytes{dir=\"output_dir\",");
    assert!(total.ends_with(&format!(" {}", 64 * MIB)), "{total}");
    assert!(
        total.contains(&format!("path=\"{}\"", output.display())),
        "{total}"
    );
    let free_line = metric_line(&metrics, "contimg_disk_free_bytes{dir=\"archive_dir\",");
    assert!(
        free_line.ends_with(&format!(" {free}")),
        "{free_line} vs {free}"
    );
    assert!(
        metrics.contains("\ncontimg_config_min_free_bytes 50000000\n"),
        "{metrics}"
    );

    let alerts = api.get_json("/api/streaming/alerts").await;
    for id in ["low_disk:output_dir", "low_disk:archive_dir"] {
        assert!(
            alerts["active"].as_array().is_some_and(|a| a
                .iter()
                .any(|x| x["id"] == id && x["severity"] == "critical")),
            "no critical {id}: {alerts}"
        );
    }

    // Space returns: the next measurement (every 30 s) sees it and the alert clears.
    std::fs::remove_file(&filler).expect("remove filler");
    let disk = wait_json(
        &api,
        "/api/streaming/disk?window=1h",
        Duration::from_secs(45),
        |disk| {
            dir(disk, "output_dir")["free_bytes"]
                .as_u64()
                .is_some_and(|f| f > 60 * MIB)
        },
    )
    .await;
    let trend = disk["trend"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["dir"] == "output_dir"))
        .unwrap_or_else(|| panic!("no output_dir trend: {disk}"));
    let points: Vec<f64> = trend["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p["free_bytes"].as_f64())
        .collect();
    // Sampled every monitor_interval (1 s), averaged per minute: the full spell shows.
    let lowest = points.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        lowest < (32 * MIB) as f64,
        "the full spell is not in the trend: {trend}"
    );
    let alerts = api.get_json("/api/streaming/alerts").await;
    assert!(
        !alerts["active"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["id"] == "low_disk:output_dir")),
        "{alerts}"
    );
    drop(api);
    drop(tmpfs);
}
