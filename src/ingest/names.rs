//! Correlator file names: `YYYY-MM-DDTHH:MM:SS_sbNN.hdf5` (UTC, NN = 00..15, sb00
//! the highest frequency). Anything else, temp names included, is not a subband file.

use chrono::NaiveDateTime;

/// A parsed subband file name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubbandName {
    /// Unix seconds (UTC).
    pub timestamp: f64,
    pub subband_idx: u32,
}

/// Parses a file name (not a path). Returns `None` for temp names such as
/// `*_incomplete.hdf5`, dot-files and partial downloads.
pub fn parse_subband_name(file_name: &str) -> Option<SubbandName> {
    if file_name.starts_with('.') {
        return None;
    }
    let stem = file_name.strip_suffix(".hdf5")?;
    let (time_part, subband_part) = stem.rsplit_once("_sb")?;
    if subband_part.len() != 2 || !subband_part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let subband_idx: u32 = subband_part.parse().ok()?;
    let timestamp = parse_timestamp(time_part)?;
    Some(SubbandName {
        timestamp,
        subband_idx,
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS` (optionally with fractional seconds, or a space
/// instead of `T`) as UTC Unix seconds.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    const FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ];
    FORMATS.iter().find_map(|format| {
        NaiveDateTime::parse_from_str(text, format).ok().map(|t| {
            let utc = t.and_utc();
            utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_nanos()) / 1e9
        })
    })
}

/// Formats Unix seconds the way the correlator names files.
pub fn format_timestamp(timestamp: f64) -> String {
    crate::queue::group_id_for(timestamp)
}

/// The final file name for a subband.
pub fn subband_file_name(timestamp: f64, subband_idx: u32) -> String {
    format!("{}_sb{subband_idx:02}.hdf5", format_timestamp(timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_correlator_names() {
        let name = parse_subband_name("2025-10-13T13:28:03_sb07.hdf5").unwrap();
        assert_eq!(name.subband_idx, 7);
        assert_eq!(name.timestamp, 1_760_362_083.0);
        assert_eq!(
            subband_file_name(name.timestamp, 7),
            "2025-10-13T13:28:03_sb07.hdf5"
        );
    }

    #[test]
    fn rejects_temp_and_foreign_names() {
        for name in [
            "2025-10-13T13:28:03_sb07_incomplete.hdf5",
            "2025-10-13T13:28:03_incomplete.hdf5",
            ".2025-10-13T13:28:03_sb07.hdf5",
            "2025-10-13T13:28:03_sb07.hdf5.part",
            "2025-10-13T13:28:03_sb7.hdf5",
            "2025-10-13T13:28:03_sb007.hdf5",
            "2025-13-13T13:28:03_sb07.hdf5",
            "notes.txt",
            "_sb01.hdf5",
            "2025-10-13T13:28:03_sbxx.hdf5",
        ] {
            assert!(parse_subband_name(name).is_none(), "{name}");
        }
    }

    #[test]
    fn parses_fractional_and_space_separated_timestamps() {
        assert_eq!(
            parse_timestamp("2025-10-13 13:28:03"),
            Some(1_760_362_083.0)
        );
        assert_eq!(
            parse_timestamp("2025-10-13T13:28:03.5"),
            Some(1_760_362_083.5)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
