//! `contimg-stream`: the streaming worker daemon. All logic lives in `contimg_worker`.

use clap::Parser;
use contimg_worker::options::{StreamArgs, StreamCommand};

fn main() -> std::process::ExitCode {
    let args = StreamArgs::parse();
    match &args.command {
        Some(StreamCommand::ConvertGroup { converter }) => {
            return match contimg_worker::convert_group_child(converter) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("{err}");
                    std::process::ExitCode::from(1)
                }
            };
        }
        Some(StreamCommand::ValidateServer) => {
            return match contimg_worker::validator::serve() {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("contimg-stream validate-server: {err}");
                    std::process::ExitCode::from(1)
                }
            };
        }
        Some(StreamCommand::Simulate { args, json }) => {
            return match simulate(args, *json) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("contimg-stream simulate: {err}");
                    std::process::ExitCode::from(1)
                }
            };
        }
        Some(StreamCommand::CheckConfig) => {
            return match args.load_config() {
                Ok((config, source)) => {
                    println!(
                        "configuration OK ({source:?}): {}",
                        args.state_dir().display()
                    );
                    println!("{}", config.to_toml().unwrap_or_default());
                    std::process::ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("{err}");
                    std::process::ExitCode::from(2)
                }
            };
        }
        None => {}
    }
    let log = contimg_core::logging::init("INFO", "contimg-stream");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(contimg_worker::run(args, log)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("contimg-stream: {err}");
            std::process::ExitCode::from(err.exit_code() as u8)
        }
    }
}

/// Runs the simulator and prints its report (a summary line, or JSON).
fn simulate(args: &contimg_uvh5::simulate::SimulateArgs, json: bool) -> anyhow::Result<()> {
    let report = contimg_uvh5::simulate::run(args)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "wrote {} files ({}) in {} groups in {:.1} s",
            report.files_written,
            contimg_core::units::scaled_bytes(report.bytes_written, &["B", "K", "M", "G", "T"], ""),
            report.groups.len(),
            report.elapsed_s
        );
    }
    Ok(())
}
