//! The builtin converter: merge the group's UVH5 subbands into one UVH5 file with
//! [`contimg_uvh5::merge`], which checks the subbands agree before writing.

use crate::job::{ConvertJob, ConvertOutput, ConverterError};
use contimg_core::queue::Timings;
use contimg_uvh5 as uvh5;

/// Merges the group into `<output_dir>/<group_id>.uvh5`.
pub fn merge_group(job: &ConvertJob) -> Result<ConvertOutput, ConverterError> {
    let output = job.output_dir.join(format!("{}.uvh5", job.group_id));
    let report = uvh5::merge(&job.files, &output)?;
    Ok(ConvertOutput {
        timings: Timings {
            load_time: Some(report.load_time_s),
            phase_time: None,
            write_time: Some(report.write_time_s),
            total_time: Some(report.total_time_s),
            writer_type: Some(report.writer_type),
        },
        output_path: Some(output),
    })
}
