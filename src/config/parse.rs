//! One parser per kind of value a setting takes (host, port, size,
//! duration, list…), each error saying what was expected.

use super::*;

pub fn parse_host(raw: &str) -> Result<IpAddr, String> {
    if raw.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    raw.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| "an IP address such as 127.0.0.1, 0.0.0.0 or ::1 (or localhost)".into())
}

pub fn parse_port(raw: &str) -> Result<u16, String> {
    raw.trim()
        .parse()
        .map_err(|_| "a port number from 0 to 65535 (0 picks a free port)".into())
}

pub(super) fn parse_tracking(raw: &str) -> Result<TrackingChoice, String> {
    match raw.trim() {
        "auto" => Ok(TrackingChoice::Auto),
        "marker" => Ok(TrackingChoice::Marker),
        _ => Err("auto or marker".into()),
    }
}

pub(super) fn parse_count(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number of at least 1".into()),
    }
}

pub(super) fn parse_list(raw: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if items.is_empty() {
        return Err("a comma-separated list with at least one entry".into());
    }
    Ok(items)
}

pub(super) const SIZE_FORMATS: &str =
    "a size in bytes, or with a KiB, MiB or GiB suffix (e.g. 1048576, 512KiB, 10MiB)";

/// Sizes: plain bytes, or `KiB`/`MiB`/`GiB` (binary units; `KB`/`MB` are
/// rejected because they are ambiguous).
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1024,
        "mib" => MIB,
        "gib" => 1024 * MIB,
        _ => return Err(SIZE_FORMATS.into()),
    };
    let n: u64 = digits.parse().map_err(|_| SIZE_FORMATS.to_string())?;
    n.checked_mul(factor).ok_or_else(|| SIZE_FORMATS.into())
}

pub(super) const DURATION_FORMATS: &str =
    "a duration in seconds, or with ms, s, m or h suffixes (e.g. 5, 2.5s, 500ms, 10m, 1h30m)";

/// Durations: seconds (fractions allowed), or one or more numbers each
/// with a unit (`ms`, `s`, `m`, `h`), added up: `500ms`, `2.5s`, `10m`,
/// `1h30m`. Minutes and hours matter: an agent's task runs for minutes.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if let Ok(seconds) = s.parse::<f64>() {
        return seconds_within_range(seconds);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DURATION_FORMATS.to_string())?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(DURATION_FORMATS.into()),
        };
        let value: f64 = number.parse().map_err(|_| DURATION_FORMATS.to_string())?;
        total += value * scale;
        rest = next;
    }
    if s.is_empty() {
        return Err(DURATION_FORMATS.into());
    }
    seconds_within_range(total)
}

pub(super) fn seconds_within_range(seconds: f64) -> Result<Duration, String> {
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(DURATION_FORMATS.into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration greater than zero: every flag and variable that waits for
/// something (deadlines, timeouts, grace periods) takes this.
pub fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        d if d.is_zero() => Err(format!("{DURATION_FORMATS}, greater than zero")),
        d => Ok(d),
    }
}

/// `none` or `0` disable the timeout.
pub(super) fn parse_optional_duration(raw: &str) -> Result<Option<Duration>, String> {
    if raw.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_duration(raw)
        .map(|d| (!d.is_zero()).then_some(d))
        .map_err(|e| format!("{e}, or none"))
}
