//! Correlator file names: exactly `YYYY-MM-DDTHH:MM:SS_sbNN.hdf5` (UTC, `NN` below
//! `expected_subbands`, sb00 the highest frequency).
//!
//! Everything in `input_dir` is classified by [`classify_file_name`]: a subband
//! name, a temp name the correlator is still writing (ignored silently), or an
//! unrecognised name with the reason it was refused (recorded and counted).

use std::ffi::OsStr;

use chrono::NaiveDateTime;

/// The exact shape of a correlator timestamp, `YYYY-MM-DDTHH:MM:SS`.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
const TIMESTAMP_SHAPE: &[u8; 19] = b"dddd-dd-ddTdd:dd:dd";
const SUFFIX: &str = ".hdf5";
/// What the correlator writes before renaming a finished file into place.
const TEMP_SUFFIX: &str = "_incomplete.hdf5";
/// 2000-01-01T00:00:00Z. DSA-110 data is from the 2020s; an earlier name comes
/// from a broken clock or was not written by the correlator.
pub const EARLIEST_PLAUSIBLE_TIMESTAMP: f64 = 946_684_800.0;
/// How far ahead of the worker's clock a name may be. Clock skew between the
/// correlator and the worker is seconds; a day leaves room for a bad NTP day.
pub const MAX_FUTURE_SKEW_S: f64 = 86_400.0;

/// A parsed subband file name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubbandName {
    /// Unix seconds (UTC).
    pub timestamp: f64,
    pub subband_idx: u32,
}

/// What a name must satisfy beyond its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NameRules {
    pub expected_subbands: u32,
    /// The worker's clock (Unix seconds), for the "not in the future" rule.
    pub now: f64,
}

/// The verdict on one directory entry's name.
#[derive(Debug, Clone, PartialEq)]
pub enum NameVerdict {
    Subband(SubbandName),
    /// A dot-file or a `*_incomplete.hdf5` temp name: not ours yet, ignored silently.
    Temporary,
    /// Anything else, with the reason.
    Unrecognised(String),
}

/// Classifies a file name (one path component, not a path).
pub fn classify_file_name(name: &OsStr, rules: &NameRules) -> NameVerdict {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return NameVerdict::Unrecognised(format!("{name:?} is not a file name"));
    }
    let Some(text) = name.to_str() else {
        return NameVerdict::Unrecognised("the name is not valid UTF-8".to_string());
    };
    if let Some(bad) = text.chars().find(|c| c.is_control()) {
        return NameVerdict::Unrecognised(format!(
            "the name contains the control character U+{:04X}",
            u32::from(bad)
        ));
    }
    if text.trim() != text {
        return NameVerdict::Unrecognised(
            "the name has leading or trailing whitespace".to_string(),
        );
    }
    if is_temp_name(text) {
        return NameVerdict::Temporary;
    }
    let name = match parse_subband_name(text) {
        Some(name) => name,
        None => {
            return NameVerdict::Unrecognised(
                "not a correlator file name (YYYY-MM-DDTHH:MM:SS_sbNN.hdf5)".to_string(),
            );
        }
    };
    if name.subband_idx >= rules.expected_subbands {
        return NameVerdict::Unrecognised(format!(
            "subband sb{:02} is not below expected_subbands ({})",
            name.subband_idx, rules.expected_subbands
        ));
    }
    if name.timestamp < EARLIEST_PLAUSIBLE_TIMESTAMP {
        return NameVerdict::Unrecognised("the timestamp is before the year 2000".to_string());
    }
    if name.timestamp > rules.now + MAX_FUTURE_SKEW_S {
        return NameVerdict::Unrecognised(
            "the timestamp is more than a day in the future".to_string(),
        );
    }
    NameVerdict::Subband(name)
}

/// Dot-files and the correlator's `*_incomplete.hdf5`.
fn is_temp_name(text: &str) -> bool {
    text.starts_with('.') || text.ends_with(TEMP_SUFFIX)
}

/// Whether [`classify_file_name`] would call `name` a temp name, whatever the rules.
pub fn is_temporary_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|text| {
        text.trim() == text && !text.contains(char::is_control) && is_temp_name(text)
    })
}

/// Parses the exact correlator name, `YYYY-MM-DDTHH:MM:SS_sbNN.hdf5`, and nothing
/// else: no fractional seconds, no space separator, no sign, no other suffix.
/// Checks the shape only; [`classify_file_name`] applies the subband and time rules.
pub fn parse_subband_name(file_name: &str) -> Option<SubbandName> {
    let stem = file_name.strip_suffix(SUFFIX)?;
    let (time_part, subband_part) = stem.split_once("_sb")?;
    if subband_part.len() != 2 || !subband_part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let subband_idx: u32 = subband_part.parse().ok()?;
    let timestamp = parse_exact_timestamp(time_part)?;
    Some(SubbandName {
        timestamp,
        subband_idx,
    })
}

/// `YYYY-MM-DDTHH:MM:SS` byte for byte (chrono alone accepts one-digit fields and
/// signs), then checked as a real date.
fn parse_exact_timestamp(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    if bytes.len() != TIMESTAMP_SHAPE.len() {
        return None;
    }
    let shaped = bytes
        .iter()
        .zip(TIMESTAMP_SHAPE)
        .all(|(byte, shape)| match shape {
            b'd' => byte.is_ascii_digit(),
            literal => byte == literal,
        });
    if !shaped {
        return None;
    }
    let time = NaiveDateTime::parse_from_str(text, TIMESTAMP_FORMAT).ok()?;
    Some(time.and_utc().timestamp() as f64)
}

/// Parses a group id or an original pipeline's timestamp: `YYYY-MM-DDTHH:MM:SS`,
/// optionally with fractional seconds or a space instead of `T`, as UTC Unix
/// seconds. For ids already in a queue DB; file names use the exact form only.
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
    chrono::DateTime::from_timestamp(timestamp.floor() as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_else(|| format!("{timestamp}"))
}

/// The final file name for a subband.
pub fn subband_file_name(timestamp: f64, subband_idx: u32) -> String {
    format!("{}_sb{subband_idx:02}.hdf5", format_timestamp(timestamp))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    const NOW: f64 = 1_760_400_000.0;
    const RULES: NameRules = NameRules {
        expected_subbands: 16,
        now: NOW,
    };

    fn classify(name: &[u8]) -> NameVerdict {
        classify_file_name(OsStr::from_bytes(name), &RULES)
    }

    #[test]
    fn parses_correlator_names() {
        let name = parse_subband_name("2025-10-13T13:28:03_sb07.hdf5").unwrap();
        assert_eq!(name.subband_idx, 7);
        assert_eq!(name.timestamp, 1_760_362_083.0);
        assert_eq!(
            subband_file_name(name.timestamp, 7),
            "2025-10-13T13:28:03_sb07.hdf5"
        );
        assert_eq!(
            classify(b"2025-10-13T13:28:03_sb15.hdf5"),
            NameVerdict::Subband(SubbandName {
                timestamp: 1_760_362_083.0,
                subband_idx: 15
            })
        );
    }

    #[test]
    fn temp_names_are_ignored_silently() {
        for name in [
            "2025-10-13T13:28:03_sb07_incomplete.hdf5",
            "2025-10-13T13:28:03_incomplete.hdf5",
            ".2025-10-13T13:28:03_sb07.hdf5",
            ".nfs000000000001",
        ] {
            assert_eq!(classify(name.as_bytes()), NameVerdict::Temporary, "{name}");
        }
    }

    #[test]
    fn near_misses_are_unrecognised_with_a_reason() {
        let cases: [(&[u8], &str); 18] = [
            (
                b"2025-10-13T13:28:03_sb07.hdf5.part",
                "not a correlator file name",
            ),
            (
                b"2025-10-13T13:28:03_sb7.hdf5",
                "not a correlator file name",
            ),
            (
                b"2025-10-13T13:28:03_sb007.hdf5",
                "not a correlator file name",
            ),
            (
                b"2025-13-13T13:28:03_sb07.hdf5",
                "not a correlator file name",
            ),
            (
                b"2025-10-13T13:28:03.5_sb07.hdf5",
                "not a correlator file name",
            ),
            (
                b"2025-10-13 13:28:03_sb07.hdf5",
                "not a correlator file name",
            ),
            (
                b"+2025-10-13T13:28:03_sb07.hdf5",
                "not a correlator file name",
            ),
            (
                b"2025-1-13T13:28:03_sb07.hdf5",
                "not a correlator file name",
            ),
            (b"2025-10-13T13:28:03_sb07.h5", "not a correlator file name"),
            (
                b"2025-10-13T13:28:03_sb07_sb01.hdf5",
                "not a correlator file name",
            ),
            (b"notes.txt", "not a correlator file name"),
            (
                b"2025-10-13T13:28:03_sb42.hdf5",
                "sb42 is not below expected_subbands (16)",
            ),
            (b"2025-10-13T13:28:03_sb16.hdf5", "sb16 is not below"),
            (
                b" 2025-10-13T13:28:03_sb07.hdf5",
                "leading or trailing whitespace",
            ),
            (
                b"2025-10-13T13:28:03_sb07.hdf5\n",
                "control character U+000A",
            ),
            (
                b"2025-10-13T13:28:03_sb07.hdf5\x1b",
                "control character U+001B",
            ),
            (b"2025-10-13T13:28:03_sb0\xff.hdf5", "not valid UTF-8"),
            (b"1999-12-31T23:59:59_sb07.hdf5", "before the year 2000"),
        ];
        for (name, reason) in cases {
            match classify(name) {
                NameVerdict::Unrecognised(got) => {
                    assert!(got.contains(reason), "{name:?}: {got}")
                }
                other => panic!("{name:?} gave {other:?}"),
            }
        }
        // A name up to a day ahead of the clock is fine; further is not.
        let soon = subband_file_name(NOW + 3600.0, 0);
        assert!(matches!(classify(soon.as_bytes()), NameVerdict::Subband(_)));
        let later = subband_file_name(NOW + 2.0 * 86_400.0, 0);
        assert_eq!(
            classify(later.as_bytes()),
            NameVerdict::Unrecognised("the timestamp is more than a day in the future".into())
        );
    }

    #[test]
    fn group_ids_keep_the_tolerant_timestamp_parser() {
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
