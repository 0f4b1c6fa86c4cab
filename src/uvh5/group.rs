//! Consistency checks across the subbands of one group.

use std::fmt::Display;

use super::{GroupProblem, SubbandMeta, TIME_TOLERANCE_DAYS, Uvh5Error, subband_name};

/// Checks that the subbands of a group can be merged: the same Ntimes, Nbls,
/// Nblts, Npols, polarizations, integration time and time stamps everywhere,
/// no subband index twice, and frequency ranges that do not overlap.
///
/// A value that differs is blamed on the subbands that disagree with the
/// majority, so the error names the odd ones out ("subbands sb03, sb07:
/// Ntimes 23 != 24"). All problems found are reported, not just the first.
pub fn check_group(members: &[(u32, SubbandMeta)]) -> Result<(), Uvh5Error> {
    let mut problems = Vec::new();
    if members.is_empty() {
        problems.push(GroupProblem {
            subbands: Vec::new(),
            detail: "group has no subbands".into(),
        });
        return Err(Uvh5Error::GroupMismatch { problems });
    }

    let mut indices: Vec<u32> = members.iter().map(|(idx, _)| *idx).collect();
    indices.sort_unstable();
    let duplicates: Vec<u32> = indices
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    if !duplicates.is_empty() {
        problems.push(GroupProblem {
            subbands: duplicates,
            detail: "present more than once".into(),
        });
    }

    let exact = |a: &u64, b: &u64| a == b;
    majority_check(members, "Ntimes", |m| m.ntimes, exact, &mut problems);
    majority_check(members, "Nbls", |m| m.nbls, exact, &mut problems);
    majority_check(members, "Nblts", |m| m.nblts, exact, &mut problems);
    majority_check(members, "Npols", |m| m.npols, exact, &mut problems);
    majority_check(
        members,
        "polarizations",
        |m| Polarizations(m.polarization_array.clone()),
        |a, b| a == b,
        &mut problems,
    );
    majority_check(
        members,
        "data axes",
        |m| DataAxes(m.data_shape.len()),
        |a, b| a == b,
        &mut problems,
    );
    majority_check(
        members,
        "integration time",
        |m| Seconds(m.integration_time_s),
        |a, b| (a.0 - b.0).abs() <= 1e-6 * a.0.abs().max(1.0),
        &mut problems,
    );
    // Only compare time stamps when the counts agree; otherwise the Ntimes
    // problem above already says what is wrong.
    let ntimes_agree = members.iter().all(|(_, m)| m.ntimes == members[0].1.ntimes);
    if ntimes_agree {
        majority_check(
            members,
            "time stamps",
            |m| TimeStamps(m.unique_times_jd.clone()),
            |a, b| {
                a.0.len() == b.0.len()
                    && a.0
                        .iter()
                        .zip(&b.0)
                        .all(|(x, y)| (x - y).abs() <= TIME_TOLERANCE_DAYS)
            },
            &mut problems,
        );
    }
    problems.extend(frequency_overlaps(members));

    if problems.is_empty() {
        Ok(())
    } else {
        Err(Uvh5Error::GroupMismatch { problems })
    }
}

/// Reports, for every value that is not the most common one, the subbands
/// carrying it. Ties go to the value of the first subband listed.
fn majority_check<T: Display>(
    members: &[(u32, SubbandMeta)],
    label: &str,
    value_of: impl Fn(&SubbandMeta) -> T,
    same: impl Fn(&T, &T) -> bool,
    problems: &mut Vec<GroupProblem>,
) {
    // (value, subbands having it), in first-seen order.
    let mut classes: Vec<(T, Vec<u32>)> = Vec::new();
    for (idx, meta) in members {
        let value = value_of(meta);
        match classes.iter_mut().find(|(v, _)| same(v, &value)) {
            Some((_, subbands)) => subbands.push(*idx),
            None => classes.push((value, vec![*idx])),
        }
    }
    if classes.len() < 2 {
        return;
    }
    let mut majority = 0;
    for (i, (_, subbands)) in classes.iter().enumerate() {
        if subbands.len() > classes[majority].1.len() {
            majority = i;
        }
    }
    let expected = classes[majority].0.to_string();
    for (i, (value, subbands)) in classes.iter().enumerate() {
        if i == majority {
            continue;
        }
        let mut subbands = subbands.clone();
        subbands.sort_unstable();
        problems.push(GroupProblem {
            subbands,
            detail: format!("{label} {value} != {expected}"),
        });
    }
}

/// Subbands sorted by frequency whose channel ranges overlap a lower band.
fn frequency_overlaps(members: &[(u32, SubbandMeta)]) -> Vec<GroupProblem> {
    let mut by_freq: Vec<&(u32, SubbandMeta)> = members.iter().collect();
    by_freq.sort_by(|a, b| a.1.freq_min_hz.total_cmp(&b.1.freq_min_hz));
    let mut problems = Vec::new();
    // The band reaching highest so far: a narrow band inside a wide one overlaps
    // the wide one even when it is not its direct neighbour.
    let mut reach: Option<&(u32, SubbandMeta)> = None;
    for member in by_freq {
        if let Some(previous) = reach
            && member.1.freq_min_hz <= previous.1.freq_max_hz
        {
            problems.push(GroupProblem {
                subbands: vec![previous.0.min(member.0), previous.0.max(member.0)],
                detail: format!(
                    "frequency ranges overlap ({}: {}, {}: {})",
                    subband_name(previous.0),
                    mhz_range(&previous.1),
                    subband_name(member.0),
                    mhz_range(&member.1)
                ),
            });
        }
        if reach.is_none_or(|r| member.1.freq_max_hz > r.1.freq_max_hz) {
            reach = Some(member);
        }
    }
    problems
}

fn mhz_range(meta: &SubbandMeta) -> String {
    format!(
        "{:.4}-{:.4} MHz",
        meta.freq_min_hz / 1e6,
        meta.freq_max_hz / 1e6
    )
}

#[derive(PartialEq)]
struct Polarizations(Vec<i64>);

impl Display for Polarizations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[derive(PartialEq)]
struct DataAxes(usize);

impl Display for DataAxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 4 {
            write!(f, "(Nblts, 1, Nfreqs, Npols)")
        } else {
            write!(f, "(Nblts, Nfreqs, Npols)")
        }
    }
}

struct Seconds(f64);

impl Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} s", self.0)
    }
}

struct TimeStamps(Vec<f64>);

impl Display for TimeStamps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0.first(), self.0.last()) {
            (Some(first), Some(last)) => {
                write!(f, "{}..{}", jd_to_iso(*first), jd_to_iso(*last))
            }
            _ => write!(f, "(none)"),
        }
    }
}

/// Julian date to an ISO time with milliseconds (UTC, leap seconds ignored as pyuvdata's
/// file names do).
pub(crate) fn jd_to_iso(jd: f64) -> String {
    let unix_ms = ((jd - 2_440_587.5) * 86_400_000.0).round();
    if !unix_ms.is_finite() || unix_ms.abs() > 1e15 {
        return format!("JD {jd}");
    }
    match chrono::DateTime::from_timestamp_millis(unix_ms as i64) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),
        None => format!("JD {jd}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(subband: u32) -> SubbandMeta {
        let channel = 244_140.625;
        let top = 1_498.75e6 - f64::from(subband) * 48.0 * channel;
        let start = 2_460_676.5;
        let step = 12.884_901_888 / 86_400.0;
        SubbandMeta {
            nbls: 21,
            nblts: 21 * 4,
            nfreqs: 48,
            npols: 2,
            ntimes: 4,
            nspws: 1,
            freq_min_hz: top - 48.0 * channel + 0.5 * channel,
            freq_max_hz: top - 0.5 * channel,
            channel_width_hz: channel,
            time_min_jd: start,
            time_max_jd: start + 3.0 * step,
            integration_time_s: 12.884_901_888,
            unique_times_jd: (0..4).map(|i| start + f64::from(i) * step).collect(),
            polarization_array: vec![-5, -6],
            freq_ascending: true,
            data_shape: vec![84, 48, 2],
            telescope_name: Some("DSA-110".into()),
            file_size_bytes: 1000,
        }
    }

    fn group() -> Vec<(u32, SubbandMeta)> {
        (0..16).map(|i| (i, meta(i))).collect()
    }

    fn problems(result: Result<(), Uvh5Error>) -> Vec<GroupProblem> {
        match result {
            Err(Uvh5Error::GroupMismatch { problems }) => problems,
            other => panic!("expected a group mismatch, got {other:?}"),
        }
    }

    #[test]
    fn consistent_group_passes() {
        check_group(&group()).unwrap();
    }

    #[test]
    fn subset_of_subbands_passes() {
        let members: Vec<_> = group().into_iter().filter(|(i, _)| i % 3 == 0).collect();
        check_group(&members).unwrap();
    }

    #[test]
    fn empty_group_is_rejected() {
        let err = check_group(&[]).unwrap_err();
        assert_eq!(err.to_string(), "group has no subbands");
    }

    #[test]
    fn ntimes_mismatch_names_the_minority() {
        let mut members = group();
        for (idx, meta) in members.iter_mut() {
            if *idx == 3 || *idx == 7 {
                meta.ntimes = 3;
                meta.unique_times_jd.pop();
            }
        }
        let err = check_group(&members).unwrap_err();
        assert_eq!(err.to_string(), "subbands sb03, sb07: Ntimes 3 != 4");
        assert_eq!(err.offending_subbands(), vec![3, 7]);
    }

    #[test]
    fn nbls_and_npols_mismatches_are_all_reported() {
        let mut members = group();
        members[5].1.nbls = 20;
        members[9].1.npols = 4;
        members[9].1.polarization_array = vec![-5, -6, -7, -8];
        let err = check_group(&members).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("subband sb05: Nbls 20 != 21"), "{text}");
        assert!(text.contains("subband sb09: Npols 4 != 2"), "{text}");
        assert!(
            text.contains("subband sb09: polarizations [-5, -6, -7, -8] != [-5, -6]"),
            "{text}"
        );
        assert_eq!(err.offending_subbands(), vec![5, 9]);
    }

    #[test]
    fn shifted_time_stamps_are_rejected() {
        let mut members = group();
        for t in members[12].1.unique_times_jd.iter_mut() {
            *t += 1.0 / 86_400.0;
        }
        let p = problems(check_group(&members));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].subbands, vec![12]);
        assert!(p[0].detail.starts_with("time stamps "), "{}", p[0].detail);
    }

    #[test]
    fn sub_millisecond_time_differences_are_tolerated() {
        let mut members = group();
        for t in members[2].1.unique_times_jd.iter_mut() {
            *t += 0.0001 / 86_400.0;
        }
        check_group(&members).unwrap();
    }

    #[test]
    fn overlapping_frequencies_name_both_subbands() {
        let mut members = group();
        // sb04 claims part of sb03's band.
        members[4].1.freq_max_hz = members[3].1.freq_min_hz + 1.0;
        let p = problems(check_group(&members));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].subbands, vec![3, 4]);
        assert!(p[0].detail.contains("frequency ranges overlap"));
    }

    #[test]
    fn band_inside_a_wide_band_overlaps() {
        let mut members = group();
        members[0].1.freq_min_hz = members[6].1.freq_min_hz;
        let p = problems(check_group(&members));
        let blamed: Vec<Vec<u32>> = p.iter().map(|p| p.subbands.clone()).collect();
        assert!(blamed.contains(&vec![0, 5]), "{blamed:?}");
        assert!(blamed.contains(&vec![0, 1]), "{blamed:?}");
    }

    #[test]
    fn duplicate_subband_is_rejected() {
        let mut members = group();
        members.push((4, meta(4)));
        let text = check_group(&members).unwrap_err().to_string();
        assert!(
            text.contains("subband sb04: present more than once"),
            "{text}"
        );
    }

    #[test]
    fn integration_time_mismatch_is_rejected() {
        let mut members = group();
        members[1].1.integration_time_s = 10.0;
        let text = check_group(&members).unwrap_err().to_string();
        assert_eq!(
            text,
            "subband sb01: integration time 10 s != 12.884901888 s"
        );
    }

    #[test]
    fn tie_blames_the_later_value() {
        let members = vec![
            (0, meta(0)),
            (1, {
                let mut m = meta(1);
                m.nbls = 10;
                m
            }),
        ];
        let text = check_group(&members).unwrap_err().to_string();
        assert_eq!(text, "subband sb01: Nbls 10 != 21");
    }

    #[test]
    fn jd_to_iso_formats_utc() {
        assert_eq!(jd_to_iso(2_451_545.0), "2000-01-01T12:00:00.000");
    }
}
