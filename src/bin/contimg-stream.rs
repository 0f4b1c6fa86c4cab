//! `contimg-stream`: the streaming worker daemon. All logic lives in `contimg::worker`.

use clap::Parser;
use contimg::worker::options::{StreamArgs, StreamCommand};

fn main() -> std::process::ExitCode {
    let args = StreamArgs::parse();
    match &args.command {
        Some(StreamCommand::ConvertGroup { converter }) => {
            return match contimg::worker::convert_group_child(converter) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("{err}");
                    std::process::ExitCode::from(1)
                }
            };
        }
        Some(StreamCommand::ValidateServer) => {
            return match contimg::worker::validator::serve() {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("contimg-stream validate-server: {err}");
                    std::process::ExitCode::from(1)
                }
            };
        }
        Some(StreamCommand::Simulate { args_json }) => {
            return match simulate(args_json) {
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
    let log = contimg::logging::init("INFO", "contimg-stream");
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
    match runtime.block_on(contimg::worker::run(args, log)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("contimg-stream: {err}");
            std::process::ExitCode::from(err.exit_code() as u8)
        }
    }
}

/// Runs the simulator for `contimgctl simulate` and prints its report as JSON.
fn simulate(args_json: &str) -> Result<(), String> {
    let args: contimg::uvh5::simulate::SimulateArgs =
        serde_json::from_str(args_json).map_err(|err| format!("bad arguments: {err}"))?;
    let report = contimg::uvh5::simulate::run(&args).map_err(|err| err.to_string())?;
    let text = serde_json::to_string(&report).map_err(|err| err.to_string())?;
    println!("{text}");
    Ok(())
}
