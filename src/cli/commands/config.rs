//! `contimgctl config show|set|edit|validate`: the streaming configuration.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;

use contimg_control::{Backend, exit_code};
use contimg_core::config::{ConfigError, ConfigStore, StreamingConfig};

use super::{config_store, connect_backend, existing_config_store, print_json};
use crate::{Cli, CliError, output};

pub fn show(cli: &Cli) -> Result<i32, CliError> {
    let store = existing_config_store(cli)?;
    let (config, source) = store.load()?;
    if cli.json {
        print_json(&config.to_json())?;
    } else {
        println!("# {} ({source:?})", store.path().display());
        print!("{}", config.to_toml()?);
    }
    Ok(exit_code::OK)
}

/// Applies `KEY=VALUE` assignments (validated, saved atomically, worker restarted).
pub async fn set(cli: &Cli, assignments: &[String], no_restart: bool) -> Result<i32, CliError> {
    let (backend, store, current) = prepare_change(cli).await?;
    let updated =
        current
            .apply_assignments(assignments)
            .map_err(|errors| ConfigError::Invalid {
                path: store.path(),
                errors,
            })?;
    apply(
        cli,
        backend.as_ref(),
        &store,
        &current,
        &updated,
        no_restart,
    )
    .await
}

pub async fn edit(cli: &Cli, no_restart: bool) -> Result<i32, CliError> {
    let (backend, store, current) = prepare_change(cli).await?;
    match edit_in_editor(&store, &current)? {
        Some(updated) => {
            apply(
                cli,
                backend.as_ref(),
                &store,
                &current,
                &updated,
                no_restart,
            )
            .await
        }
        None => {
            println!("no changes");
            Ok(exit_code::OK)
        }
    }
}

pub fn validate(cli: &Cli, file: &Path) -> Result<i32, CliError> {
    // Relative paths resolve against the state dir the file would go to, or
    // without one against the file's own directory.
    let store = config_store(cli).unwrap_or_else(|_| {
        ConfigStore::new(
            file.parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
    });
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

/// What a change needs: the backend (to restart the worker), the store and the
/// current config.
async fn prepare_change(
    cli: &Cli,
) -> Result<(Arc<dyn Backend>, ConfigStore, StreamingConfig), CliError> {
    // A state dir that does not exist yet is created by the save (deploy.sh
    // seeds a fresh one this way).
    let store = config_store(cli)?;
    let backend = connect_backend(cli).await?;
    let (current, _) = store.load()?;
    Ok((backend, store, current))
}

/// Saves `updated` and restarts a running worker unless `no_restart`.
async fn apply(
    cli: &Cli,
    backend: &dyn Backend,
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
fn edit_in_editor(
    store: &ConfigStore,
    current: &StreamingConfig,
) -> Result<Option<StreamingConfig>, CliError> {
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|e| !e.is_empty()))
        .unwrap_or_else(|| "vi".into());
    let dir = edit_dir()?;
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
            break Err(CliError::Editor(status));
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

fn edit_dir() -> Result<PathBuf, CliError> {
    let dir = std::env::temp_dir().join(format!(
        "contimgctl-edit-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
