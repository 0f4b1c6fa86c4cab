//! Logging setup shared by the binaries: the journal (with structured fields) when
//! running under systemd, else stderr with timestamps. The level can be changed at
//! run time (the worker's SIGHUP reload).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// Changes the active log level after [`init`].
#[derive(Clone)]
pub struct LogLevelHandle {
    handle: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
}

impl LogLevelHandle {
    /// Applies a pipeline log level (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`).
    pub fn set_level(&self, level: &str) {
        let _ = self.handle.modify(|filter| *filter = filter_for(level));
    }
}

/// Maps the original pipeline's level names onto tracing's. `RUST_LOG`, when set,
/// wins, so a developer can turn on one module's debug output.
pub fn filter_for(level: &str) -> EnvFilter {
    if let Ok(filter) = EnvFilter::try_from_env("RUST_LOG") {
        return filter;
    }
    let directive = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    };
    // Our crate at the chosen level; dependencies one notch quieter.
    EnvFilter::new(format!(
        "warn,contimg={directive},contimg_core={directive},contimg_uvh5={directive},contimg_control={directive},contimg_worker={directive},contimg_cli={directive},contimg_stream={directive},contimgctl={directive},contimg_api={directive}"
    ))
}

/// Whether stderr is connected to the journal (systemd sets `JOURNAL_STREAM`).
pub fn stderr_is_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// Installs the global subscriber. Journald when `JOURNAL_STREAM` says our stderr
/// goes there and the journal socket answers; stderr otherwise.
pub fn init(level: &str, syslog_identifier: &str) -> LogLevelHandle {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let registry = tracing_subscriber::registry().with(filter);
    let journald = if stderr_is_journal() {
        tracing_journald::layer().ok().map(|layer| {
            layer
                .with_syslog_identifier(syslog_identifier.to_string())
                // Fields as GROUP_ID, STATE: what `journalctl GROUP_ID=…` expects.
                .with_field_prefix(None)
        })
    } else {
        None
    };
    match journald {
        Some(layer) => {
            let _ = registry.with(layer).try_init();
        }
        None => {
            let _ = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_target(false)
                        .with_ansi(false),
                )
                .try_init();
        }
    }
    LogLevelHandle { handle }
}
