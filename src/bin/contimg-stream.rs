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
