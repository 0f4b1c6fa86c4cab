//! Developer/benchmark driver for the UVH5 module (not shipped; the CLI is `contimgctl`).
//!
//! ```text
//! cargo run --release --example uvh5_merge -- simulate --input-dir DIR --profile dsa110 --start 2025-01-02T03:04:05
//! cargo run --release --example uvh5_merge -- inspect FILE...
//! cargo run --release --example uvh5_merge -- merge OUTPUT FILE...   # subband index from the _sbNN name
//! ```
//! Prints JSON reports on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use contimg::uvh5;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write simulated subband files.
    Simulate(uvh5::simulate::SimulateArgs),
    /// Validate files and print their metadata.
    Inspect { files: Vec<PathBuf> },
    /// Merge subband files into OUTPUT.
    Merge {
        output: PathBuf,
        files: Vec<PathBuf>,
    },
}

fn subband_of(path: &std::path::Path) -> Option<u32> {
    let stem = path.file_stem()?.to_str()?;
    let at = stem.rfind("_sb")?;
    stem.get(at + 3..at + 5)?.parse().ok()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let result = match Cli::parse().command {
        Command::Simulate(args) => {
            uvh5::simulate::run(&args).map(|r| serde_json::to_string_pretty(&r))
        }
        Command::Inspect { files } => {
            let mut failed = false;
            for file in files {
                match uvh5::inspect(&file) {
                    Ok(meta) => println!("{}", serde_json::json!({"file": file, "meta": meta})),
                    Err(e) => {
                        failed = true;
                        println!(
                            "{}",
                            serde_json::json!({"file": file, "error": e.to_string()})
                        );
                    }
                }
            }
            return if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
        Command::Merge { output, files } => {
            let mut inputs = Vec::new();
            for file in files {
                let Some(sb) = subband_of(&file) else {
                    eprintln!("{}: no _sbNN in the name", file.display());
                    return ExitCode::FAILURE;
                };
                inputs.push((sb, file));
            }
            uvh5::merge(&inputs, &output).map(|r| serde_json::to_string_pretty(&r))
        }
    };
    match result {
        Ok(Ok(json)) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
