//! Times on the command line and in `inspect`'s output: UTC, RFC 3339
//! (`2026-12-07T06:10:02Z`), or relative to now (`--since 15m`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::values::CliDuration;

/// A point in time as `--since` and `--until` take it: an RFC 3339 UTC time
/// (`2026-12-07T06:10:02Z`, or a date alone, `2026-12-07`), or a duration
/// that far before now (`15m`, `2h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CliTime(pub SystemTime);

impl FromStr for CliTime {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(CliDuration(ago)) = text.parse() {
            return SystemTime::now()
                .checked_sub(ago)
                .map(Self)
                .ok_or_else(|| "too long ago".to_owned());
        }
        parse_utc(text).map(Self).ok_or_else(|| {
            format!(
                "expected a UTC time like 2026-12-07T06:10:02Z or 2026-12-07, or a duration before now like 15m or 2h; got `{text}`"
            )
        })
    }
}

/// `YYYY-MM-DD`, optionally followed by `THH:MM:SS` and an optional
/// fraction, then `Z`.
fn parse_utc(text: &str) -> Option<SystemTime> {
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut date = date.splitn(3, '-');
    let year: i64 = date.next()?.parse().ok()?;
    let month: u32 = date.next()?.parse().ok()?;
    let day: u32 = date.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    let mut nanos = 0;
    if let Some(time) = time {
        let (time, fraction) = time.split_once('.').unwrap_or((time, ""));
        let mut parts = time.splitn(3, ':');
        let hour: i64 = parts.next()?.parse().ok()?;
        let minute: i64 = parts.next()?.parse().ok()?;
        let second: i64 = parts.next()?.parse().ok()?;
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        seconds += hour * 3600 + minute * 60 + second;
        if !fraction.is_empty() {
            if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            nanos = format!("{fraction:0<9}").parse().ok()?;
        }
    }
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A time shown in UTC: `2026-12-07T06:10:02.123Z` (RFC 3339, milliseconds).
pub struct Utc(pub SystemTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = since.as_secs() as i64;
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let of_day = seconds.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60,
            since.subsec_millis()
        )
    }
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn short_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        0..1_000 => format!("{millis}ms"),
        1_000..60_000 => format!("{:.1}s", duration.as_secs_f64()),
        60_000..3_600_000 => format!("{}m{:02}s", millis / 60_000, millis / 1_000 % 60),
        _ => format!("{}h{:02}m", millis / 3_600_000, millis / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_round_trip() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2026-12-07T06:10:02.123Z",
            "2000-02-29T23:59:59.999Z",
            "2100-03-01T12:00:00.000Z",
        ] {
            let time = parse_utc(text).unwrap();
            assert_eq!(Utc(time).to_string(), text);
        }
        assert_eq!(parse_utc("2026-12-07"), parse_utc("2026-12-07T00:00:00Z"));
        for bad in [
            "2026-13-01",
            "yesterday",
            "2026-12-07T06:10",
            "2026-12-07T06:10:02+01:00",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn relative_times_are_before_now() {
        let CliTime(time) = "15m".parse().unwrap();
        let ago = SystemTime::now().duration_since(time).unwrap();
        assert!(ago >= Duration::from_secs(900) && ago < Duration::from_secs(960));
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(short_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(short_duration(Duration::from_secs(7800)), "2h10m");
    }
}
