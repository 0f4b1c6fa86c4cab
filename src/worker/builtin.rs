//! The builtin converter: check the group's subbands agree, then merge them into
//! one UVH5 file with [`crate::uvh5::merge`].

use std::time::Instant;

use super::convert::{ConvertJob, ConvertOutput};
use crate::queue::Timings;
use crate::uvh5;

/// Merges the group into `<output_dir>/<group_id>.uvh5`.
pub fn merge_group(job: &ConvertJob) -> Result<ConvertOutput, String> {
    let started = Instant::now();
    let mut members = Vec::with_capacity(job.files.len());
    for (subband_idx, path) in &job.files {
        let meta = uvh5::inspect(path).map_err(|err| err.to_string())?;
        members.push((*subband_idx, meta));
    }
    uvh5::check_group(&members).map_err(|err| err.to_string())?;
    let checked = started.elapsed().as_secs_f64();
    let output = job.output_dir.join(format!("{}.uvh5", job.group_id));
    let report = uvh5::merge(&job.files, &output).map_err(|err| err.to_string())?;
    Ok(ConvertOutput {
        timings: Timings {
            load_time: Some(checked + report.load_time_s),
            phase_time: None,
            write_time: Some(report.write_time_s),
            total_time: Some(started.elapsed().as_secs_f64()),
            writer_type: Some("contimg-merge".to_string()),
        },
        output_path: Some(output),
    })
}
