//! `/status.json`: what the status page shows, as one JSON document.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_resume::layer::{LiveStream, RecentResume, RefusalReason, ResumeOutcome, StatusSnapshot};
use mcp_resume::metrics;
use serde_json::{Map, Value, json};

use super::exposition::sum;
use super::history::{Point, Rate};

/// Every reason a resume is refused with `400`, in the page's order.
const REFUSAL_REASONS: [RefusalReason; 5] = [
    RefusalReason::Malformed,
    RefusalReason::Unknown,
    RefusalReason::Foreign,
    RefusalReason::Trimmed,
    RefusalReason::Ended,
];

/// Ids on the page are cut to this many characters: enough to tell
/// streams and sessions apart, not enough to resume one.
const SHOWN_ID_CHARS: usize = 8;

/// The counters and gauges the page shows, read from the recorder's
/// rendering, the text `/metrics` serves.
pub fn totals(exposition: &str) -> Map<String, Value> {
    let get = |name: &str, labels: &[(&str, &str)]| number(sum(exposition, name, labels));
    let mut refusals = Map::new();
    for reason in REFUSAL_REASONS {
        let outcome = [("outcome", reason.as_str())];
        refusals.insert(reason.as_str().into(), get(metrics::RESUMES, &outcome));
    }
    let mut totals = Map::new();
    let mut put = |key: &str, value: Value| {
        totals.insert(key.into(), value);
    };
    put("streams_opened", get(metrics::STREAMS_OPENED, &[]));
    put("streams_live", get(metrics::STREAMS_LIVE, &[]));
    put("streams_detached", get(metrics::STREAMS_DETACHED, &[]));
    let completed = [("end", "completed")];
    put("streams_completed", get(metrics::STREAMS_ENDED, &completed));
    let abandoned = [("end", "abandoned")];
    put("streams_abandoned", get(metrics::STREAMS_ENDED, &abandoned));
    put(
        "streams_unresumable",
        get(metrics::STREAMS_UNRESUMABLE, &[]),
    );
    put("events_committed", get(metrics::EVENTS_COMMITTED, &[]));
    let bytes = get(metrics::EVENTS_COMMITTED_BYTES, &[]);
    put("events_committed_bytes", bytes);
    let replayed = [("outcome", "replayed")];
    put("resumes_replayed", get(metrics::RESUMES, &replayed));
    let refused = refusals.values().filter_map(Value::as_f64);
    put("resumes_refused", number(refused.fold(0.0, |a, b| a + b)));
    put("refusals", Value::Object(refusals));
    put("store_errors", get(metrics::STORE_ERRORS, &[]));
    put(
        "connections_open",
        get(metrics::PROXY_CONNECTIONS_OPEN, &[]),
    );
    put("upstream_errors", get(metrics::PROXY_UPSTREAM_ERRORS, &[]));
    totals
}

/// A whole number as an integer (counts are), anything else as it is.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && (0.0..9.0e15).contains(&value) {
        json!(value as u64)
    } else {
        json!(value)
    }
}

/// The chart's point for now, from the same rendering as [`totals`].
pub fn point(exposition: &str, at: SystemTime) -> Point {
    let refusals = REFUSAL_REASONS
        .iter()
        .map(|reason| {
            sum(
                exposition,
                metrics::RESUMES,
                &[("outcome", reason.as_str())],
            )
        })
        .fold(0.0, |total, value| total + value);
    Point {
        unix_ms: unix_ms(at),
        events: sum(exposition, metrics::EVENTS_COMMITTED, &[]),
        resumes: sum(exposition, metrics::RESUMES, &[("outcome", "replayed")]),
        refusals,
    }
}

/// What the page needs besides the counters.
pub struct Context<'a> {
    pub store: &'a str,
    pub uptime: Duration,
    pub stream_limit: usize,
    pub sample_interval: Duration,
    /// How far back the chart's ring reaches.
    pub history_window: Duration,
}

/// The whole document.
pub fn document(
    context: &Context<'_>,
    totals: Map<String, Value>,
    snapshot: &StatusSnapshot,
    rates: &[Rate],
) -> Value {
    json!({
        "now_ms": unix_ms(SystemTime::now()),
        "uptime_seconds": context.uptime.as_secs(),
        "store": context.store,
        "totals": totals,
        "live": {
            "streams": snapshot.live_streams,
            "attached": snapshot.attached_streams,
            "listed": snapshot.streams.len(),
            "list_limit": context.stream_limit,
        },
        "streams": snapshot.streams.iter().map(stream).collect::<Vec<_>>(),
        "recent_resumes": snapshot.recent_resumes.iter().map(resume).collect::<Vec<_>>(),
        "history": {
            "interval_seconds": context.sample_interval.as_secs_f64(),
            "window_seconds": context.history_window.as_secs_f64(),
            "rates": rates.iter().map(|rate| json!({
                "t_ms": rate.unix_ms,
                "events": rate.events_per_second,
                "resumes": rate.resumes_per_second,
                "refusals": rate.refusals_per_second,
            })).collect::<Vec<_>>(),
        },
    })
}

fn stream(stream: &LiveStream) -> Value {
    json!({
        "stream": shown(&stream.stream.to_string()),
        "session": stream.session.as_deref().map(shown),
        "method": stream.method,
        "tool": stream.tool,
        "age_seconds": stream.age.as_secs_f64(),
        "attached": stream.attached,
        "events": stream.events,
    })
}

fn resume(resume: &RecentResume) -> Value {
    let (outcome, reason, behind) = match resume.outcome {
        ResumeOutcome::Replayed { behind } => ("replayed", None, Some(behind)),
        ResumeOutcome::Refused(reason) => ("refused", Some(reason.as_str()), None),
        // A later kind of outcome: shown by its debug name.
        other => return json!({ "at_ms": unix_ms(resume.at), "outcome": format!("{other:?}") }),
    };
    json!({
        "at_ms": unix_ms(resume.at),
        "stream": resume.stream.map(|stream| shown(&stream.to_string())),
        "outcome": outcome,
        "reason": reason,
        "behind": behind,
    })
}

/// The first characters of an id, enough to tell it from others.
fn shown(id: &str) -> String {
    id.chars().take(SHOWN_ID_CHARS).collect()
}

fn unix_ms(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_read_the_metrics_by_name_and_label() {
        let exposition = format!(
            "{resumes}{{outcome=\"replayed\"}} 4\n\
             {resumes}{{outcome=\"malformed\"}} 2\n\
             {resumes}{{outcome=\"foreign\"}} 1\n\
             {resumes}{{outcome=\"store_failed\"}} 7\n\
             {ended}{{end=\"completed\"}} 5\n\
             {ended}{{end=\"abandoned\"}} 1\n\
             {events} 120\n",
            resumes = metrics::RESUMES,
            ended = metrics::STREAMS_ENDED,
            events = metrics::EVENTS_COMMITTED,
        );
        let totals = totals(&exposition);
        assert_eq!(totals["resumes_replayed"], json!(4));
        assert_eq!(totals["resumes_refused"], json!(3));
        assert_eq!(totals["refusals"]["malformed"], json!(2));
        assert_eq!(totals["refusals"]["trimmed"], json!(0));
        assert_eq!(totals["streams_completed"], json!(5));
        assert_eq!(totals["streams_abandoned"], json!(1));
        assert_eq!(totals["events_committed"], json!(120));
        assert_eq!(totals["streams_live"], json!(0));
        let point = point(&exposition, UNIX_EPOCH + Duration::from_secs(3));
        assert_eq!((point.unix_ms, point.events), (3000, 120.0));
        assert_eq!((point.resumes, point.refusals), (4.0, 3.0));
    }
}
