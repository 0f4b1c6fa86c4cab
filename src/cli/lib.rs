//! `contimgctl`: the operator's CLI. The binary only parses arguments and calls
//! [`run`]; everything here is library code so tests and the API share it.

pub mod args;
pub mod output;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::CommandFactory;
use futures_util::StreamExt;

pub use args::Cli;
use args::{BackendArg, Command, ConfigCommand, LimitsCommand, LogsArgs, QueueAction, QueueArgs};

use contimg_control::detect::Detected;
use contimg_control::report::{self, Snapshot};
use contimg_control::{
    Backend, BackendChoice, ControlError, ControlOptions, ControlOutcome, LogQuery, ResourceLimits,
    exit_code,
};
use contimg_core::config::{ConfigError, ConfigStore, StreamingConfig};
use contimg_core::queue::{
    GroupFilter, GroupState, QueueError, QueueReader, request_retry, unix_now,
};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Control(err) => err.exit_code(),
            CliError::Config(ConfigError::Invalid { .. } | ConfigError::Parse { .. })
            | CliError::Usage(_) => exit_code::USAGE,
            _ => exit_code::FAILED,
        }
    }
}

impl Cli {
    pub fn state_dir(&self) -> PathBuf {
        ConfigStore::state_dir_from(self.state_dir.as_deref())
    }

    pub fn control_options(&self) -> ControlOptions {
        ControlOptions {
            backend: match self.backend {
                BackendArg::Auto => BackendChoice::Auto,
                BackendArg::Systemd => BackendChoice::Systemd,
                BackendArg::Docker => BackendChoice::Docker,
                BackendArg::Process => BackendChoice::Process,
            },
            user: self.user,
            unit: self.unit.clone(),
            instance: self.instance.clone(),
            state_dir: self.state_dir(),
            worker_bin: self.worker_bin.clone(),
            log_file: self.log_file.clone(),
            docker_socket: self.docker_socket.clone(),
            docker_image: self.docker_image.clone(),
            docker_container: self.docker_container.clone(),
            docker_mounts: self.docker_mounts.clone(),
            stop_timeout: seconds(self.stop_timeout),
            ..ControlOptions::default()
        }
    }

    fn job_timeout(&self) -> Duration {
        seconds(self.timeout)
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::from_secs(90))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| CliError::Failed(format!("cannot serialize: {err}")))?;
    println!("{text}");
    Ok(())
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32, CliError> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            // Into a buffer: clap_complete panics on write errors (e.g. `| head`).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "contimgctl", &mut script);
            write_stdout(&script)?;
            Ok(exit_code::OK)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            write_stdout(&page)?;
            Ok(exit_code::OK)
        }
        Command::Simulate(passthrough) => simulate(&cli, &passthrough.args).await,
        Command::Config(ConfigCommand::Show) => config_show(&cli),
        Command::Config(ConfigCommand::Validate { file }) => config_validate(&cli, file),
        Command::Queue(args) if args.action.is_none() => queue_list(&cli, args),
        Command::Queue(QueueArgs {
            action: Some(QueueAction::Show { group }),
            ..
        }) => queue_show(&cli, group),
        _ => run_with_backend(&cli).await,
    }
}

/// Runs the simulator in `contimg-stream` (next to this binary, or `--worker-bin`)
/// with the operator's arguments, its output going straight to ours. Not
/// in-process: the simulator writes HDF5, and linking libhdf5 (which pulls in
/// curl, GnuTLS, Kerberos, LDAP, …) into `contimgctl` cost ~3.4 ms of dynamic
/// loading on every invocation, most of `status`'s budget.
async fn simulate(cli: &Cli, args: &[std::ffi::OsString]) -> Result<i32, CliError> {
    let worker = cli
        .worker_bin
        .clone()
        .unwrap_or_else(contimg_control::process::default_worker_bin);
    let mut command = tokio::process::Command::new(&worker);
    command.arg("simulate").args(args);
    if cli.json {
        command.arg("--json");
    }
    let status = command
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(|err| {
            CliError::Failed(format!(
                "cannot run the simulator in {}: {err} (pass --worker-bin)",
                worker.display()
            ))
        })?;
    Ok(status.code().unwrap_or(exit_code::FAILED))
}

async fn connect(cli: &Cli) -> Result<Detected, CliError> {
    Ok(contimg_control::detect::detect(&cli.control_options()).await?)
}

fn backend_detail(backend: &dyn Backend, detected_reason: &str) -> String {
    format!("{} ({detected_reason})", backend.kind())
}

async fn run_with_backend(cli: &Cli) -> Result<i32, CliError> {
    let detected = connect(cli).await?;
    let backend = detected.backend.clone();
    let store = ConfigStore::new(cli.state_dir());
    match &cli.command {
        Command::Start => job(cli, &backend, "start").await,
        Command::Stop => job(cli, &backend, "stop").await,
        Command::Restart => job(cli, &backend, "restart").await,
        Command::Status => {
            let snapshot = report::gather(backend.as_ref(), &store).await?;
            if cli.json {
                print_json(&snapshot.status_report())?;
            } else {
                print!(
                    "{}",
                    output::status_text(
                        &snapshot,
                        &backend_detail(backend.as_ref(), &detected.reason)
                    )
                );
            }
            Ok(if snapshot.status.running {
                exit_code::OK
            } else {
                exit_code::NOT_RUNNING
            })
        }
        Command::Health => {
            let snapshot = report::gather(backend.as_ref(), &store).await?;
            let critical = contimg_control::alerts::critical_for_snapshot(&snapshot);
            let health = snapshot.health_report(&critical);
            if cli.json {
                print_json(&health)?;
            } else {
                let word = if health.healthy {
                    "healthy"
                } else {
                    "unhealthy"
                };
                println!(
                    "{} {} is {word}",
                    output::dot(&snapshot.status.active_state),
                    backend.target()
                );
                for check in &health.checks {
                    let mark = if check.ok { "ok  " } else { "FAIL" };
                    println!("  {mark} {:<16} {}", check.name, check.detail);
                }
            }
            Ok(if !health.running {
                exit_code::NOT_RUNNING
            } else if health.healthy {
                exit_code::OK
            } else {
                exit_code::FAILED
            })
        }
        Command::Metrics => {
            let snapshot = report::gather(backend.as_ref(), &store).await?;
            let metrics = snapshot.metrics_report();
            if cli.json {
                print_json(&metrics)?;
            } else {
                print_metrics(&snapshot);
            }
            Ok(exit_code::OK)
        }
        Command::Logs(args) => logs(cli, backend.as_ref(), args).await,
        Command::Limits(LimitsCommand::Show) => {
            let limits = backend.limits().await?;
            print_limits(cli, &limits)?;
            Ok(exit_code::OK)
        }
        Command::Limits(LimitsCommand::Set {
            memory_max,
            cpu_quota,
            persistent,
        }) => {
            let mut limits = backend.limits().await?;
            if memory_max.is_none() && cpu_quota.is_none() {
                return Err(CliError::Usage(
                    "limits set needs --memory-max and/or --cpu-quota".into(),
                ));
            }
            if let Some(text) = memory_max {
                limits.memory_max_bytes = parse_size(text)?;
            }
            if let Some(text) = cpu_quota {
                limits.cpu_quota_percent = parse_percent(text)?;
            }
            let applied = backend.set_limits(&limits, *persistent).await?;
            print_limits(cli, &applied)?;
            Ok(exit_code::OK)
        }
        Command::Config(ConfigCommand::Set {
            assignments,
            no_restart,
        }) => {
            let (current, _) = store.load()?;
            let updated =
                current
                    .apply_assignments(assignments)
                    .map_err(|errors| ConfigError::Invalid {
                        path: store.path(),
                        errors,
                    })?;
            apply_config(cli, &backend, &store, &current, &updated, *no_restart).await
        }
        Command::Config(ConfigCommand::Edit { no_restart }) => {
            let (current, _) = store.load()?;
            match edit_config(&store, &current)? {
                Some(updated) => {
                    apply_config(cli, &backend, &store, &current, &updated, *no_restart).await
                }
                None => {
                    println!("no changes");
                    Ok(exit_code::OK)
                }
            }
        }
        Command::Queue(QueueArgs {
            action: Some(QueueAction::Retry { group, wait }),
            ..
        }) => queue_retry(cli, backend.as_ref(), &store, group, *wait).await,
        // Handled before connecting.
        _ => Ok(exit_code::OK),
    }
}

async fn job(cli: &Cli, backend: &Arc<dyn Backend>, verb: &str) -> Result<i32, CliError> {
    let spinner = (!cli.json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("{verb} {} …", backend.target()));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let timeout = cli.job_timeout();
    let result = match verb {
        "start" => backend.start(timeout).await,
        "stop" => backend.stop(timeout).await,
        _ => backend.restart(timeout).await,
    };
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let outcome = result?;
    report_outcome(cli, &outcome)?;
    Ok(if outcome.success {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}

fn report_outcome(cli: &Cli, outcome: &ControlOutcome) -> Result<(), CliError> {
    if cli.json {
        // The API's control shape plus the job result and, on failure, the logs.
        print_json(&serde_json::json!({
            "success": outcome.success,
            "message": outcome.message,
            "pid": outcome.pid,
            "result": outcome.result,
            "logs": outcome.recent_logs,
        }))
    } else {
        println!("{}", output::outcome_text(outcome));
        Ok(())
    }
}

async fn apply_config(
    cli: &Cli,
    backend: &Arc<dyn Backend>,
    store: &ConfigStore,
    current: &StreamingConfig,
    updated: &StreamingConfig,
    no_restart: bool,
) -> Result<i32, CliError> {
    let changes = current.diff(updated);
    if changes.is_empty() {
        if cli.json {
            print_json(&serde_json::json!({"success": true, "changed": [], "restarted": false}))?;
        } else {
            println!("no changes");
        }
        return Ok(exit_code::OK);
    }
    store.save(updated)?;
    let running = backend.status().await.map(|s| s.running).unwrap_or(false);
    let restart = running && !no_restart;
    if !cli.json {
        println!("saved {}", store.path().display());
        for (field, old, new) in &changes {
            println!("  {field}: {old} → {new}");
        }
    }
    let mut code = exit_code::OK;
    let mut outcome = None;
    if restart {
        let result = backend.restart(cli.job_timeout()).await?;
        if !result.success {
            code = exit_code::FAILED;
        }
        if !cli.json {
            println!("{}", output::outcome_text(&result));
        }
        outcome = Some(result);
    } else if running && !cli.json {
        println!("the worker keeps running with the old configuration (--no-restart)");
    }
    if cli.json {
        print_json(&serde_json::json!({
            "success": code == exit_code::OK,
            "changed": changes.iter().map(|(f, _, _)| f).collect::<Vec<_>>(),
            "restarted": restart,
            "message": outcome.as_ref().map(|o| o.message.clone()),
            "pid": outcome.as_ref().and_then(|o| o.pid),
        }))?;
    }
    Ok(code)
}

/// Opens the config in the editor on a temp copy; re-opens it on validation errors
/// (or aborts when the operator says so or stdin is not a terminal).
fn edit_config(
    store: &ConfigStore,
    current: &StreamingConfig,
) -> Result<Option<StreamingConfig>, CliError> {
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|e| !e.is_empty()))
        .unwrap_or_else(|| "vi".into());
    let dir = tempfile_dir()?;
    let path = dir.join("streaming.toml");
    std::fs::write(&path, current.to_toml()?)?;
    let result = loop {
        // Through the shell so EDITOR may carry arguments ("code --wait").
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("contimgctl-editor")
            .arg(&path)
            .status()?;
        if !status.success() {
            break Err(CliError::Failed(format!("the editor exited with {status}")));
        }
        let text = std::fs::read_to_string(&path)?;
        match store.parse_toml(&store.path(), &text) {
            Ok(config) if config == *current => break Ok(None),
            Ok(config) => break Ok(Some(config)),
            Err(err) => {
                eprintln!("{err}");
                if !std::io::stdin().is_terminal() {
                    break Err(err.into());
                }
                eprint!("Re-open the editor? [Y/n] ");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if answer.trim().eq_ignore_ascii_case("n") {
                    break Err(err.into());
                }
            }
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempfile_dir() -> Result<PathBuf, CliError> {
    let dir = std::env::temp_dir().join(format!(
        "contimgctl-edit-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn config_show(cli: &Cli) -> Result<i32, CliError> {
    let store = ConfigStore::new(cli.state_dir());
    let (config, source) = store.load()?;
    if cli.json {
        print_json(&config.to_json())?;
    } else {
        println!("# {} ({source:?})", store.path().display());
        print!("{}", config.to_toml()?);
    }
    Ok(exit_code::OK)
}

fn config_validate(cli: &Cli, file: &Path) -> Result<i32, CliError> {
    let store = ConfigStore::new(cli.state_dir());
    let text = std::fs::read_to_string(file)?;
    match store.parse_toml(file, &text) {
        Ok(_) => {
            if cli.json {
                print_json(&serde_json::json!({"valid": true, "errors": []}))?;
            } else {
                println!("{}: valid", file.display());
            }
            Ok(exit_code::OK)
        }
        Err(err) => {
            if cli.json {
                let errors = err
                    .validation_errors()
                    .map(|e| serde_json::to_value(e).unwrap_or_default())
                    .unwrap_or_else(
                        || serde_json::json!([{"field": "", "message": err.to_string()}]),
                    );
                print_json(&serde_json::json!({"valid": false, "errors": errors}))?;
                Ok(exit_code::USAGE)
            } else {
                Err(err.into())
            }
        }
    }
}

fn open_queue(cli: &Cli) -> Result<QueueReader, CliError> {
    let store = ConfigStore::new(cli.state_dir());
    let (config, _) = store.load()?;
    Ok(QueueReader::open(&config.queue_db)?)
}

fn format_time(seconds: f64) -> String {
    DateTime::<Utc>::from_timestamp_millis((seconds * 1000.0) as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn queue_list(cli: &Cli, args: &QueueArgs) -> Result<i32, CliError> {
    let state = match &args.state {
        Some(text) => Some(GroupState::parse(text).ok_or_else(|| {
            CliError::Usage(format!(
                "unknown state {text:?} (collecting, pending, in_progress, completed, failed)"
            ))
        })?),
        None => None,
    };
    let reader = open_queue(cli)?;
    let stats = reader.stats(unix_now())?;
    let groups = reader.groups(&GroupFilter {
        state,
        limit: Some(args.limit),
        before: None,
    })?;
    let unrecognised = reader.unrecognised_files(args.limit)?;
    let late = reader.late_files(args.limit)?;
    if cli.json {
        return print_json(&serde_json::json!({"queue_stats": stats.counts, "processing_rate_per_hour": stats.processing_rate_per_hour, "groups": groups,
            "unrecognised_files_total": stats.unrecognised_files, "unrecognised_files": unrecognised,
            "late_files_total": stats.late_files, "late_files": late}))
            .map(|_| exit_code::OK);
    }
    println!("{}", stats.summary_line());
    print_input_problems(&stats, &unrecognised, &late);
    if groups.is_empty() {
        println!("(no groups)");
        return Ok(exit_code::OK);
    }
    println!(
        "{:<21} {:<12} {:>8} {:>7}  {:<19}  ERROR",
        "GROUP", "STATE", "SUBBANDS", "RETRIES", "UPDATED"
    );
    for group in &groups {
        let expected = group
            .expected_subbands
            .map(|e| e.to_string())
            .unwrap_or_else(|| "?".into());
        println!(
            "{:<21} {:<12} {:>8} {:>7}  {:<19}  {}",
            group.group_id,
            group.state,
            format!("{}/{expected}", group.subbands),
            group.retry_count,
            format_time(group.last_update),
            group
                .error
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    Ok(exit_code::OK)
}

/// The newest unrecognised and late input files (paths Debug-quoted: a hostile
/// name cannot forge terminal output).
fn print_input_problems(
    stats: &contimg_core::queue::QueueStats,
    unrecognised: &[contimg_core::queue::UnrecognisedFile],
    late: &[contimg_core::queue::LateFile],
) {
    const SHOWN: usize = 5;
    if stats.unrecognised_files > 0 {
        println!(
            "unrecognised files: {} (newest first)",
            stats.unrecognised_files
        );
        for file in unrecognised.iter().take(SHOWN) {
            println!(
                "  {}  {:?}  {}",
                format_time(file.last_seen_at),
                file.path,
                file.reason
            );
        }
    }
    if stats.late_files > 0 {
        println!(
            "late files: {} (newest first, not attached)",
            stats.late_files
        );
        for file in late.iter().take(SHOWN) {
            println!(
                "  {}  {:?}  sb{:02} for {} ({})",
                format_time(file.seen_at),
                file.path,
                file.subband_idx,
                file.group_id,
                file.group_state
            );
        }
    }
}

fn queue_show(cli: &Cli, group_id: &str) -> Result<i32, CliError> {
    let reader = open_queue(cli)?;
    let Some(detail) = reader.group(group_id)? else {
        return Err(QueueError::UnknownGroup(group_id.to_string()).into());
    };
    if cli.json {
        return print_json(&detail).map(|_| exit_code::OK);
    }
    let s = &detail.summary;
    println!(
        "{} {}",
        output::dot(match s.state.as_str() {
            "completed" => "active",
            "failed" => "failed",
            "in_progress" => "activating",
            _ => "inactive",
        }),
        s.group_id
    );
    println!("{:>12}: {}", "State", s.state);
    if let Some(stage) = &s.processing_stage {
        println!("{:>12}: {stage}", "Stage");
    }
    println!("{:>12}: {}", "Received", format_time(s.received_at));
    println!("{:>12}: {}", "Updated", format_time(s.last_update));
    println!("{:>12}: {}", "Retries", s.retry_count);
    if let Some(output) = &s.output_path {
        println!("{:>12}: {output}", "Output");
    }
    if let Some(error) = &s.error {
        println!("{:>12}: {error}", "Error");
    }
    println!("{:>12}: {}", "Files", detail.files.len());
    for file in &detail.files {
        println!("    sb{:02} {}", file.subband_idx, file.path);
    }
    for attempt in &detail.attempts {
        println!(
            "{:>12}: #{} {} {}",
            "Attempt",
            attempt.attempt,
            attempt.outcome.as_deref().unwrap_or("running"),
            attempt.error.as_deref().unwrap_or("")
        );
    }
    Ok(exit_code::OK)
}

async fn queue_retry(
    cli: &Cli,
    backend: &dyn Backend,
    store: &ConfigStore,
    group_id: &str,
    wait: f64,
) -> Result<i32, CliError> {
    let (config, _) = store.load()?;
    let queue_db = config.queue_db.clone();
    let read_state = move |queue_db: PathBuf, group: String| {
        QueueReader::open(&queue_db)
            .and_then(|reader| reader.group(&group))
            .map(|detail| detail.map(|d| d.summary.state))
    };
    let state = read_state(queue_db.clone(), group_id.to_string())?;
    match state.as_deref() {
        None => return Err(QueueError::UnknownGroup(group_id.to_string()).into()),
        Some("failed") => {}
        Some(other) => {
            return Err(CliError::Failed(format!(
                "group {group_id} is {other}, not failed: nothing to retry"
            )));
        }
    }
    request_retry(store.state_dir(), group_id)?;
    let running = backend.status().await.map(|s| s.running).unwrap_or(false);
    let mut new_state = "failed".to_string();
    if running {
        let deadline = tokio::time::Instant::now() + seconds(wait);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(Some(state)) = read_state(queue_db.clone(), group_id.to_string())
                && state != "failed"
            {
                new_state = state;
                break;
            }
        }
    }
    let message = if !running {
        format!(
            "retry of {group_id} requested; the worker is not running, it will pick it up when started"
        )
    } else if new_state == "failed" {
        format!("retry of {group_id} requested; the worker has not picked it up yet")
    } else {
        format!("{group_id} is now {new_state}")
    };
    if cli.json {
        print_json(&serde_json::json!({"success": true, "message": message, "state": new_state}))?;
    } else {
        println!("{message}");
    }
    Ok(exit_code::OK)
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, CliError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let duration = humantime::parse_duration(text)
        .map_err(|err| CliError::Usage(format!("--since {text:?}: {err}")))?;
    let duration = chrono::Duration::from_std(duration)
        .map_err(|err| CliError::Usage(format!("--since {text:?}: {err}")))?;
    Ok(Utc::now() - duration)
}

async fn logs(cli: &Cli, backend: &dyn Backend, args: &LogsArgs) -> Result<i32, CliError> {
    let query = LogQuery {
        lines: args.lines,
        since: args.since.as_deref().map(parse_since).transpose()?,
        grep: args.grep.clone(),
        group_id: args.group.clone(),
        min_level: args.level.clone(),
    };
    let print = |entry: &contimg_control::LogEntry| -> Result<(), CliError> {
        if cli.json {
            let text =
                serde_json::to_string(entry).map_err(|err| CliError::Failed(err.to_string()))?;
            println!("{text}");
        } else {
            println!("{}", output::log_line(entry));
        }
        Ok(())
    };
    if args.follow {
        let mut stream = backend.follow_logs(&query).await?;
        while let Some(entry) = stream.next().await {
            print(&entry?)?;
        }
    } else {
        for entry in backend.logs(&query).await? {
            print(&entry)?;
        }
    }
    Ok(exit_code::OK)
}

fn print_limits(cli: &Cli, limits: &ResourceLimits) -> Result<(), CliError> {
    if cli.json {
        return print_json(limits);
    }
    println!(
        "{:>12}: {}",
        "MemoryMax",
        limits
            .memory_max_bytes
            .map(output::human_bytes)
            .unwrap_or_else(|| "infinity".into())
    );
    println!(
        "{:>12}: {}",
        "CPUQuota",
        limits
            .cpu_quota_percent
            .map(|p| format!("{p:.0}%"))
            .unwrap_or_else(|| "none".into())
    );
    Ok(())
}

fn print_metrics(snapshot: &Snapshot) {
    let m = snapshot.metrics_report();
    println!(
        "{} running: {}",
        output::dot(&snapshot.status.active_state),
        m.service_running
    );
    if let Some(cpu) = m.cpu_percent {
        println!("{:>12}: {cpu:.1}%", "CPU");
    }
    if let Some(memory) = m.memory_mb {
        println!("{:>12}: {memory:.1} MB", "Memory");
    }
    for (state, count) in &m.queue_stats {
        println!("{state:>12}: {count}");
    }
    println!("{:>12}: {:.1} groups/h", "Rate", m.processing_rate_per_hour);
    println!("{:>12}: {}", "Rejected", m.rejected_files);
    println!("{:>12}: {}", "Unrecognised", m.unrecognised_files);
    println!("{:>12}: {}", "Late", m.late_files);
    if let Some(error) = &m.queue_error {
        println!("{:>12}: {error}", "Queue error");
    }
}

/// `8G`, `512M`, `1.5G`, `1073741824`, `max`/`infinity`/`none` (no limit). Powers of 1024.
pub fn parse_size(text: &str) -> Result<Option<u64>, CliError> {
    let text = text.trim();
    if matches!(
        text.to_ascii_lowercase().as_str(),
        "max" | "infinity" | "none"
    ) {
        return Ok(None);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| CliError::Usage(format!("invalid size {text:?} (e.g. 8G, 512M, max)")))?;
    let multiplier: u64 = match suffix.trim().to_ascii_uppercase().trim_end_matches('B') {
        "" => 1,
        "K" | "KI" => 1 << 10,
        "M" | "MI" => 1 << 20,
        "G" | "GI" => 1 << 30,
        "T" | "TI" => 1 << 40,
        _ => {
            return Err(CliError::Usage(format!(
                "invalid size suffix in {text:?} (K, M, G, T)"
            )));
        }
    };
    let bytes = number * multiplier as f64;
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(CliError::Usage(format!("size {text:?} must be positive")));
    }
    Ok(Some(bytes.round() as u64))
}

/// `200%`, `200`, `max`/`none` (no quota).
pub fn parse_percent(text: &str) -> Result<Option<f64>, CliError> {
    let text = text.trim();
    if matches!(
        text.to_ascii_lowercase().as_str(),
        "max" | "infinity" | "none"
    ) {
        return Ok(None);
    }
    let value: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| CliError::Usage(format!("invalid CPU quota {text:?} (e.g. 200%, max)")))?;
    if !(value > 0.0 && value.is_finite()) {
        return Err(CliError::Usage(format!(
            "CPU quota {text:?} must be positive"
        )));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_percentages() {
        assert_eq!(parse_size("8G").unwrap(), Some(8 << 30));
        assert_eq!(parse_size("512M").unwrap(), Some(512 << 20));
        assert_eq!(parse_size("max").unwrap(), None);
        assert!(parse_size("8X").is_err());
        assert_eq!(parse_percent("200%").unwrap(), Some(200.0));
        assert_eq!(parse_percent("none").unwrap(), None);
        assert!(parse_percent("-5").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
