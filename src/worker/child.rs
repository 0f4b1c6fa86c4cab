//! The child side of the subprocess converter mode: `contimg-stream
//! convert-group` reads a job on stdin, runs a builtin converter and prints its
//! result on stdout for the worker.

use crate::convert::{self, ConvertJob, ConverterError};

/// Why `convert-group` exits 1; printed on stderr, which the worker keeps the
/// tail of as the group's error.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("reading the job: {0}")]
    ReadJob(#[source] std::io::Error),
    #[error("invalid job: {0}")]
    InvalidJob(#[source] serde_json::Error),
    #[error("unknown builtin converter {0:?}")]
    UnknownConverter(String),
    #[error(transparent)]
    Convert(#[from] ConverterError),
    #[error("cannot encode the result: {0}")]
    EncodeResult(#[source] serde_json::Error),
}

/// `contimg-stream convert-group`: run a builtin converter on a job read from
/// stdin and report the result on stdout (the subprocess mode's child side).
pub fn convert_group_child(converter: &str) -> Result<(), ChildError> {
    use std::io::Read;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(ChildError::ReadJob)?;
    let job: ConvertJob = serde_json::from_str(&input).map_err(ChildError::InvalidJob)?;
    let converter = match converter {
        "manifest" => contimg_core::config::ConverterConfig::Manifest,
        "builtin" => contimg_core::config::ConverterConfig::Builtin,
        other => return Err(ChildError::UnknownConverter(other.to_string())),
    };
    let output = convert::convert_in_process(&job, &converter)?;
    let json = serde_json::to_string(&output).map_err(ChildError::EncodeResult)?;
    println!("{}{json}", convert::CONVERT_RESULT_PREFIX);
    Ok(())
}
