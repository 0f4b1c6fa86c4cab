//! `contimgctl`: parses arguments and hands over to `contimg_cli`; exit codes are
//! documented in `contimgctl --help` and docs/operations.md.

use clap::Parser;
use contimg_cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTIMGCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("contimgctl: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(contimg_cli::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            let err = anyhow::Error::new(err);
            eprintln!("contimgctl: {err}");
            err.downcast_ref::<contimg_cli::CliError>()
                .map(|e| e.exit_code())
                .unwrap_or(1)
        }
    };
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
