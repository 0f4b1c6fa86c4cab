//! Formatting of quantities shared by the CLI, the API and health details.

/// `bytes` in powers of 1024 with one decimal, in the given unit names (first: bytes)
/// and with `separator` between number and unit: "41.2 GiB" for health details,
/// "41.2G" for `systemctl`-style CLI lines.
pub fn scaled_bytes(bytes: u64, units: &[&str; 5], separator: &str) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}{separator}{}", units[0])
    } else {
        format!("{value:.1}{separator}{}", units[unit])
    }
}
