//! `contimgctl limits show|set`: the worker's memory max and CPU quota.

use contimg_control::{ResourceLimits, exit_code};

use super::{connect_backend, print_json};
use crate::{Cli, CliError, output};

pub async fn show(cli: &Cli) -> Result<i32, CliError> {
    let backend = connect_backend(cli).await?;
    let limits = backend.limits().await?;
    print_limits(cli, &limits)?;
    Ok(exit_code::OK)
}

/// Changes the mentioned limits; the others stay as they are.
pub async fn set(
    cli: &Cli,
    memory_max: Option<&str>,
    cpu_quota: Option<&str>,
    persistent: bool,
) -> Result<i32, CliError> {
    let backend = connect_backend(cli).await?;
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
    let applied = backend.set_limits(&limits, persistent).await?;
    print_limits(cli, &applied)?;
    Ok(exit_code::OK)
}

fn print_limits(cli: &Cli, limits: &ResourceLimits) -> Result<(), CliError> {
    if cli.json {
        print_json(limits)
    } else {
        print!("{}", output::limits_text(limits));
        Ok(())
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
}
