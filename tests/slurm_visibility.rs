//! What operators see of Slurm jobs (issue 13, "Visibility"), against a real
//! one-node Slurm cluster (ops/testenv/slurm.sh) and the real `contimg-api`
//! supervising the real worker with `executor = "slurm"`: one group finished, one
//! running on the node, one waiting in Slurm (the node has one CPU). The API's
//! groups, group log, status and /metrics and `contimgctl queue`/`status`/`health`
//! show the job id, node and state; with slurmctld stopped health says the
//! scheduler is unreachable, the gauge is 0 and the alert is raised; after its
//! restart all of that clears.

mod common;

use std::process::Output;
use std::time::Duration;

use common::api::{ApiDaemon, DaemonOptions, process_backend_args};
use common::slurm::SlurmCluster;
use common::worker::{WorkerEnv, ctl_process as ctl};
use serde_json::Value;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// 2025-10-13T10:00:00 UTC plus `n` times 2 minutes: one group each.
fn group_ts(n: u32) -> f64 {
    1_760_349_600.0 + f64::from(n) * 120.0
}

/// A converter that sleeps as long as `<ctl>/slow-<group>` says, then writes
/// `<out>/<group>.done`.
fn converter_toml(env: &WorkerEnv) -> (String, std::path::PathBuf) {
    let control = env.root.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = env.root.path().join("converter.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nctl=\"$1\"; group=\"$2\"; out=\"$3\"\n\
         echo \"converting $group on ${SLURMD_NODENAME:-local}\"\n\
         [ -f \"$ctl/slow-$group\" ] && sleep \"$(cat \"$ctl/slow-$group\")\"\n\
         echo \"done $group\"; touch \"$out/$group.done\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let toml = format!(
        "[converter]\nkind = \"command\"\nargv = [{:?}, {:?}, \"{{group_id}}\", \"{{output_dir}}\", \"{{files}}\"]\n",
        script.to_string_lossy(),
        control.to_string_lossy()
    );
    (toml, control)
}

async fn wait_json(
    api: &ApiDaemon,
    path: &str,
    what: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let body = api.get_json(path).await;
        if done(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: last {path}: {body:#}\napi log:\n{}",
            api.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn group_of<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["group_id"] == id))
        .unwrap_or_else(|| panic!("no group {id} in {list:#}"))
}

fn metric(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|line| line.split(' ').next() == Some(name))
        .and_then(|line| line.split(' ').nth(1))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_visible_and_an_unreachable_scheduler_shows_everywhere() {
    let Some(cluster) = SlurmCluster::start_nodes(1) else {
        return;
    };
    let env = WorkerEnv::new();
    let (converter, control) = converter_toml(&env);
    let streaming = format!(
        "executor = \"slurm\"\nexpected_subbands = 2\nmax_retries = 2\nretry_backoff_s = 1.0\n\
         [slurm]\npartition = \"debug\"\npoll_interval_s = 0.3\nmax_jobs = 8\n{converter}"
    );
    env.write_config(&streaming);
    let conf = cluster.conf();
    let api = ApiDaemon::start_configured(
        env,
        &DaemonOptions::default(),
        &process_backend_args(),
        &|command| {
            command.env("SLURM_CONF", &conf);
        },
    )
    .await;
    let state_dir = api.env.state_dir.clone();
    let started = api.post("/api/streaming/start", Some("{}")).await;
    assert!(started.status().is_success(), "{}", api.log());
    let drop_group = |n: u32, slow: Option<u32>| {
        let id = contimg::queue::group_id_for(group_ts(n));
        if let Some(seconds) = slow {
            std::fs::write(control.join(format!("slow-{id}")), seconds.to_string()).unwrap();
        }
        for subband in 0..2 {
            api.env.drop_subband(group_ts(n), subband, b"not checked");
        }
        id
    };

    // One group finished, then one running for minutes, then one that must wait
    // (the only node has one CPU).
    let finished = drop_group(0, None);
    wait_json(
        &api,
        "/api/streaming/groups",
        "first group completed",
        |list| {
            list["groups"].as_array().is_some_and(|g| {
                g.iter()
                    .any(|g| g["group_id"] == finished.as_str() && g["state"] == "completed")
            })
        },
    )
    .await;
    let running = drop_group(1, Some(300));
    wait_json(
        &api,
        "/api/streaming/groups",
        "second group running",
        |list| {
            list["groups"].as_array().is_some_and(|g| {
                g.iter()
                    .any(|g| g["group_id"] == running.as_str() && g["job"]["state"] == "RUNNING")
            })
        },
    )
    .await;
    let waiting = drop_group(2, None);
    let list = wait_json(
        &api,
        "/api/streaming/groups",
        "third group pending in Slurm",
        |list| {
            list["groups"].as_array().is_some_and(|g| {
                g.iter().any(|g| {
                    g["group_id"] == waiting.as_str()
                        && g["job"]["state"] == "PENDING"
                        && g["job"]["job_id"].is_string()
                })
            })
        },
    )
    .await;

    let done_job = &group_of(&list, &finished)["job"];
    assert_eq!(done_job["executor"], "slurm", "{list:#}");
    assert_eq!(done_job["state"], "COMPLETED", "{list:#}");
    assert_eq!(done_job["node"], "n1", "{list:#}");
    assert_eq!(done_job["exit_code"], 0, "{list:#}");
    let run_job = &group_of(&list, &running)["job"];
    assert_eq!(run_job["node"], "n1", "{list:#}");
    let ids: Vec<String> = [&finished, &running, &waiting]
        .iter()
        .map(|id| {
            group_of(&list, id)["job"]["job_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    // Slurm's own view agrees on the ids and states.
    let squeue = cluster
        .command("squeue")
        .args(["-h", "-o", "%i %T"])
        .output()
        .unwrap();
    let squeue = String::from_utf8_lossy(&squeue.stdout);
    assert!(squeue.contains(&format!("{} RUNNING", ids[1])), "{squeue}");
    assert!(squeue.contains(&format!("{} PENDING", ids[2])), "{squeue}");

    // The detail and the job log of the finished group.
    let detail = api
        .get_json(&format!("/api/streaming/groups/{finished}"))
        .await;
    assert_eq!(
        detail["attempts"][0]["job"]["job_id"],
        ids[0].as_str(),
        "{detail:#}"
    );
    let log = api
        .get_json(&format!("/api/streaming/groups/{finished}/log"))
        .await;
    assert!(
        log["text"]
            .as_str()
            .unwrap()
            .contains(&format!("done {finished}")),
        "{log:#}"
    );
    assert_eq!(log["job_id"], ids[0].as_str(), "{log:#}");
    let missing = api
        .get(&format!("/api/streaming/groups/{finished}/log?attempt=9"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Status and /metrics: executor, jobs in flight, scheduler reachable.
    let status = wait_json(&api, "/api/streaming/status", "jobs in flight", |s| {
        s["jobs_in_flight"]["running"] == 1 && s["jobs_in_flight"]["queued"] == 1
    })
    .await;
    assert_eq!(status["executor"], "slurm", "{status:#}");
    assert_eq!(status["executor_description"], "Slurm, partition debug");
    assert_eq!(status["scheduler_reachable"], true, "{status:#}");
    let metrics = api.get("/metrics").await.unwrap().text().await.unwrap();
    assert_eq!(
        metric(&metrics, "contimg_slurm_scheduler_up").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "contimg_slurm_jobs{state=\"running\"}").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "contimg_slurm_jobs{state=\"pending\"}").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "contimg_executor_info{executor=\"slurm\"}").as_deref(),
        Some("1")
    );

    // The CLI says the same.
    let queue = stdout(&ctl(&state_dir, &["queue"]));
    for (id, words) in [
        (&finished, format!("{} COMPLETED on n1, exit 0", ids[0])),
        (&running, format!("{} RUNNING on n1", ids[1])),
        (&waiting, format!("{} PENDING (waiting in Slurm)", ids[2])),
    ] {
        let line = queue
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or("");
        assert!(line.contains(&words), "{words:?} not in:\n{queue}");
    }
    let status_text = stdout(&ctl(&state_dir, &["status"]));
    assert!(
        status_text.contains("Executor: Slurm, partition debug"),
        "{status_text}"
    );
    assert!(
        status_text.contains("Jobs: 1 queued, 1 running"),
        "{status_text}"
    );
    assert!(
        status_text.contains("Scheduler: reachable"),
        "{status_text}"
    );
    let logs = stdout(&ctl(&state_dir, &["logs", "--group", &finished]));
    assert!(logs.contains(&format!("Slurm job {}", ids[0])), "{logs}");
    assert!(logs.contains(&format!("done {finished}")), "{logs}");

    // slurmctld goes away: health, the gauge and the alert say so.
    cluster.stop_controller();
    let health = wait_json(
        &api,
        "/api/streaming/health",
        "scheduler check fails",
        |h| {
            h["checks"].as_array().is_some_and(|checks| {
                checks
                    .iter()
                    .any(|c| c["name"] == "scheduler" && c["ok"] == false)
            })
        },
    )
    .await;
    assert_eq!(health["healthy"], false, "{health:#}");
    let metrics = api.get("/metrics").await.unwrap().text().await.unwrap();
    assert_eq!(
        metric(&metrics, "contimg_slurm_scheduler_up").as_deref(),
        Some("0"),
        "{metrics}"
    );
    wait_json(
        &api,
        "/api/streaming/alerts",
        "scheduler_unreachable raised",
        |alerts| {
            alerts["active"]
                .to_string()
                .contains("\"scheduler_unreachable\"")
        },
    )
    .await;
    let cli_health = ctl(&state_dir, &["health"]);
    assert_eq!(cli_health.status.code(), Some(1), "{cli_health:?}");
    assert!(
        stdout(&cli_health).contains("FAIL scheduler"),
        "{}",
        stdout(&cli_health)
    );
    let status = api.get_json("/api/streaming/status").await;
    assert_eq!(status["scheduler_reachable"], false, "{status:#}");

    // It answers again: everything clears.
    cluster.start_controller();
    wait_json(
        &api,
        "/api/streaming/health",
        "scheduler check passes",
        |h| {
            h["checks"].as_array().is_some_and(|checks| {
                checks
                    .iter()
                    .any(|c| c["name"] == "scheduler" && c["ok"] == true)
            })
        },
    )
    .await;
    wait_json(
        &api,
        "/api/streaming/alerts",
        "scheduler_unreachable cleared",
        |alerts| {
            !alerts["active"]
                .to_string()
                .contains("\"scheduler_unreachable\"")
        },
    )
    .await;
    let metrics = api.get("/metrics").await.unwrap().text().await.unwrap();
    assert_eq!(
        metric(&metrics, "contimg_slurm_scheduler_up").as_deref(),
        Some("1"),
        "{metrics}"
    );
}
