//! The values of options that are more than a number: durations, `off`, a
//! header name or `none`, the SQLite sync mode and the store failure policy.
//! Each shows the way it is read, so `--help` shows a library default as the
//! command line would take it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use http::HeaderName;
use mcp_resume::StoreFailurePolicy;
use mcp_resume::proxy::ForwardedHeaders;
use mcp_resume::store::SyncMode;

/// A duration as the command line writes it: `250ms`, `2s`, `5m`, `1h`, or a
/// bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CliDuration(pub Duration);

impl FromStr for CliDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(Self)
    }
}

impl fmt::Display for CliDuration {
    /// In the largest unit that keeps it whole (`5m`, not `300s`), down to
    /// milliseconds: what the command line reads back as the same duration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        for (unit, millis_per_unit) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if millis != 0 && millis.is_multiple_of(millis_per_unit) {
                return write!(f, "{}{unit}", millis / millis_per_unit);
            }
        }
        write!(f, "{millis}ms")
    }
}

/// A tool's own task threshold: `NAME=DURATION` (`--task-tool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolThreshold {
    pub tool: String,
    pub after: Duration,
}

impl FromStr for ToolThreshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (tool, after) = text
            .split_once('=')
            .ok_or_else(|| "expected NAME=DURATION, e.g. slow_compute=0s".to_owned())?;
        if tool.is_empty() {
            return Err("the tool name before `=` is empty".to_owned());
        }
        Ok(Self {
            tool: tool.to_owned(),
            after: parse_duration(after)?,
        })
    }
}

/// `250ms`, `2s`, `5m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = "expected a whole number with an optional unit: 250ms, 2s, 5m, 1h (a bare number is seconds)";
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| expected.to_owned())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(expected.to_owned()),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| "too long a duration".to_owned())
}

/// A size in bytes, or `off` (`--max-db-bytes`, `--request-buffer-bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BytesOrOff(pub Option<u64>);

impl FromStr for BytesOrOff {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self(None));
        }
        text.parse().map(|bytes| Self(Some(bytes))).map_err(|_| {
            format!("`off` or a number of bytes, e.g. 1048576 for 1 MiB; got `{text}`")
        })
    }
}

impl fmt::Display for BytesOrOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => write!(f, "{bytes}"),
            None => f.write_str("off"),
        }
    }
}

/// A duration, or `off` (`--poll-after`, `--upstream-header-timeout`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurationOrOff(pub Option<Duration>);

impl FromStr for DurationOrOff {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self(None));
        }
        parse_duration(text)
            .map(|after| Self(Some(after)))
            .map_err(|error| format!("`off` or a duration; {error}"))
    }
}

impl fmt::Display for DurationOrOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(after) => CliDuration(after).fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// `--sync`: [`SyncMode`] by its command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    Normal,
    Full,
}

impl From<SyncMode> for SyncArg {
    fn from(mode: SyncMode) -> Self {
        match mode {
            SyncMode::Normal => Self::Normal,
            SyncMode::Full => Self::Full,
        }
    }
}

impl From<SyncArg> for SyncMode {
    fn from(arg: SyncArg) -> Self {
        match arg {
            SyncArg::Normal => Self::Normal,
            SyncArg::Full => Self::Full,
        }
    }
}

/// `--on-store-failure`: [`StoreFailurePolicy`] by its command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnStoreFailure {
    Open,
    Closed,
}

impl From<StoreFailurePolicy> for OnStoreFailure {
    fn from(policy: StoreFailurePolicy) -> Self {
        match policy {
            StoreFailurePolicy::FailOpen => Self::Open,
            StoreFailurePolicy::FailClosed => Self::Closed,
        }
    }
}

impl From<OnStoreFailure> for StoreFailurePolicy {
    fn from(arg: OnStoreFailure) -> Self {
        match arg {
            OnStoreFailure::Open => Self::FailOpen,
            OnStoreFailure::Closed => Self::FailClosed,
        }
    }
}

/// `--forwarded-headers`: [`ForwardedHeaders`] by its command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForwardedArg {
    XForwarded,
    Forwarded,
    Both,
    None,
}

impl From<ForwardedHeaders> for ForwardedArg {
    fn from(which: ForwardedHeaders) -> Self {
        match which {
            ForwardedHeaders::XForwarded => Self::XForwarded,
            ForwardedHeaders::Forwarded => Self::Forwarded,
            ForwardedHeaders::Both => Self::Both,
            ForwardedHeaders::None => Self::None,
        }
    }
}

impl From<ForwardedArg> for ForwardedHeaders {
    fn from(arg: ForwardedArg) -> Self {
        match arg {
            ForwardedArg::XForwarded => Self::XForwarded,
            ForwardedArg::Forwarded => Self::Forwarded,
            ForwardedArg::Both => Self::Both,
            ForwardedArg::None => Self::None,
        }
    }
}

/// A request header's name, or `none` (`--identity-header`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderOrNone(pub Option<HeaderName>);

impl FromStr for HeaderOrNone {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "none" {
            return Ok(Self(None));
        }
        HeaderName::from_str(text)
            .map(|name| Self(Some(name)))
            .map_err(|_| format!("`none` or a header name, e.g. authorization; got `{text}`"))
    }
}

impl fmt::Display for HeaderOrNone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(name) => f.write_str(name.as_str()),
            None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        for (text, millis) in [
            ("250ms", 250),
            ("2s", 2_000),
            ("2", 2_000),
            ("0", 0),
            ("5m", 300_000),
            ("1h", 3_600_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in [
            "",
            "ms",
            "1.5s",
            "-1s",
            "1 s",
            "1d",
            "1S",
            "s1",
            "99999999999999999999",
        ] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("250ms"), "{bad}: {error}");
        }
        assert!(parse_duration("18446744073709551615h").is_err());
    }

    #[test]
    fn durations_are_shown_in_the_largest_whole_unit_and_read_back() {
        for (millis, shown) in [
            (0, "0ms"),
            (250, "250ms"),
            (1_500, "1500ms"),
            (2_000, "2s"),
            (90_000, "90s"),
            (300_000, "5m"),
            (3_600_000, "1h"),
            (5_400_000, "90m"),
        ] {
            let duration = CliDuration(Duration::from_millis(millis));
            assert_eq!(duration.to_string(), shown);
            assert_eq!(shown.parse(), Ok(duration));
        }
    }

    #[test]
    fn off_or_a_value() {
        assert_eq!("off".parse(), Ok(DurationOrOff(None)));
        assert_eq!(
            "30s".parse(),
            Ok(DurationOrOff(Some(Duration::from_secs(30))))
        );
        assert!("never".parse::<DurationOrOff>().is_err());
        assert_eq!(
            DurationOrOff(Some(Duration::from_secs(30))).to_string(),
            "30s"
        );
        assert_eq!(DurationOrOff(None).to_string(), "off");

        assert_eq!("off".parse(), Ok(BytesOrOff(None)));
        assert_eq!("1073741824".parse(), Ok(BytesOrOff(Some(1 << 30))));
        assert!("1GiB".parse::<BytesOrOff>().is_err());
        assert_eq!(BytesOrOff(Some(1 << 30)).to_string(), "1073741824");
        assert_eq!(BytesOrOff(None).to_string(), "off");

        assert_eq!("none".parse(), Ok(HeaderOrNone(None)));
        let name = HeaderName::from_static("x-api-key");
        assert_eq!("X-Api-Key".parse(), Ok(HeaderOrNone(Some(name.clone()))));
        assert!("not a header".parse::<HeaderOrNone>().is_err());
        assert_eq!(HeaderOrNone(Some(name)).to_string(), "x-api-key");
        assert_eq!(HeaderOrNone(None).to_string(), "none");
    }

    #[test]
    fn named_values_map_both_ways() {
        for mode in [SyncMode::Normal, SyncMode::Full] {
            assert_eq!(SyncMode::from(SyncArg::from(mode)), mode);
        }
        for policy in [StoreFailurePolicy::FailOpen, StoreFailurePolicy::FailClosed] {
            assert_eq!(
                StoreFailurePolicy::from(OnStoreFailure::from(policy)),
                policy
            );
        }
        for which in [
            ForwardedHeaders::XForwarded,
            ForwardedHeaders::Forwarded,
            ForwardedHeaders::Both,
            ForwardedHeaders::None,
        ] {
            assert_eq!(ForwardedHeaders::from(ForwardedArg::from(which)), which);
        }
    }
}
