//! The child side of the subprocess converter mode: `contimg-stream
//! convert-group` reads a job on stdin, runs a builtin converter and prints its
//! result on stdout for the worker.

use crate::convert::{self, ConvertJob};

/// `contimg-stream convert-group`: run a builtin converter on a job read from
/// stdin and report the result on stdout (the subprocess mode's child side).
pub fn convert_group_child(converter: &str) -> Result<(), String> {
    use std::io::Read;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|err| format!("reading the job: {err}"))?;
    let job: ConvertJob =
        serde_json::from_str(&input).map_err(|err| format!("invalid job: {err}"))?;
    let converter = match converter {
        "manifest" => contimg_core::config::ConverterConfig::Manifest,
        "builtin" => contimg_core::config::ConverterConfig::Builtin,
        other => return Err(format!("unknown builtin converter {other:?}")),
    };
    let output = convert::convert_in_process(&job, &converter)?;
    let json = serde_json::to_string(&output).map_err(|err| err.to_string())?;
    println!("{}{json}", convert::CONVERT_RESULT_PREFIX);
    Ok(())
}
