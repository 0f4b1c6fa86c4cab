//! `contimg-api`: the HTTP API daemon. Everything lives in `contimg_api`.

use anyhow::Context;
use clap::Parser;
use contimg_api::{ApiArgs, Settings, run, take_activation_socket};

fn main() -> anyhow::Result<()> {
    // SAFETY: first thing in main: no other thread exists yet (the variables it
    // unsets are read by nothing else).
    let activation = unsafe { take_activation_socket() }.context("socket activation")?;
    let args = ApiArgs::parse();
    let _log = contimg_core::logging::init(
        &std::env::var("CONTIMG_API_LOG_LEVEL").unwrap_or_else(|_| "INFO".to_string()),
        "contimg-api",
    );
    // Two cores on the target hosts: a small worker pool keeps RSS low.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Finding the state dir may ask a systemd manager over D-Bus.
        let settings = Settings::resolve(&args).await.context("invalid settings")?;
        run(settings, activation)
            .await
            .context("contimg-api failed")
    })
}
