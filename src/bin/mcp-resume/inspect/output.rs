//! What `inspect` prints: aligned tables for people, JSON for scripts
//! (times in RFC 3339 UTC, durations in milliseconds, ids in full).

use std::fmt::Write;
use std::time::SystemTime;

use mcp_resume::store::history::{HistorySummary, SessionSummary};
use mcp_resume::store::{StoredEvent, StreamKind, StreamRecord};
use serde_json::{Value, json};

use super::time::{Utc, short_duration};

/// Columns padded to their widest cell, two spaces apart; the last one is
/// not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn time(time: SystemTime) -> String {
    Utc(time).to_string()
}

fn json_time(time: Option<SystemTime>) -> Value {
    time.map_or(Value::Null, |time| Value::String(Utc(time).to_string()))
}

/// `text` cut to `width` characters (0: never), with what was left out.
fn cut(text: &str, width: usize) -> String {
    if width == 0 || text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width).collect();
    format!("{kept}… ({} more chars)", text.chars().count() - width)
}

fn or_dash(text: Option<&str>) -> String {
    text.unwrap_or("-").to_owned()
}

/// The sessions listing.
pub fn sessions(sessions: &[SessionSummary], json: bool) -> String {
    if json {
        let sessions: Vec<Value> = sessions
            .iter()
            .map(|s| {
                json!({
                    "session": s.session,
                    "identity": s.identity,
                    "streams": s.streams,
                    "tool_calls": s.tool_calls,
                    "running": s.running,
                    "first_activity": json_time(Some(s.first_activity)),
                    "last_activity": json_time(Some(s.last_activity)),
                })
            })
            .collect();
        return pretty(&json!({ "sessions": sessions }));
    }
    if sessions.is_empty() {
        return "no sessions\n".to_owned();
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.session.clone(),
                s.streams.to_string(),
                s.tool_calls.to_string(),
                s.running.to_string(),
                time(s.first_activity),
                time(s.last_activity),
                or_dash(s.identity.as_deref().map(|id| cut(id, 16)).as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "SESSION",
            "STREAMS",
            "TOOL CALLS",
            "RUNNING",
            "FIRST ACTIVITY",
            "LAST ACTIVITY",
            "IDENTITY",
        ],
        &rows,
    )
}

fn method_of(record: &StreamRecord) -> String {
    match (&record.call, record.info.kind) {
        (Some(call), _) => call.method.clone(),
        (None, StreamKind::Standalone) => "GET".to_owned(),
        (None, StreamKind::PostResponse) => "unknown".to_owned(),
    }
}

fn record_json(record: &StreamRecord) -> Value {
    let call = record.call.as_ref();
    json!({
        "stream": record.info.id.to_string(),
        "kind": match record.info.kind {
            StreamKind::PostResponse => "post",
            StreamKind::Standalone => "get",
        },
        "session": record.info.session,
        "identity": record.info.identity,
        "method": call.map(|c| c.method.clone()),
        "tool": call.and_then(|c| c.tool.clone()),
        "request_id": call.and_then(|c| c.request_id.clone()),
        "state": record.info.state.to_string(),
        "outcome": record.outcome.as_str(),
        "started": json_time(Some(record.info.created_at)),
        "ended": json_time(record.ended_at),
        "duration_ms": record.duration().map(|d| d.as_millis() as u64),
        "events": record.events(),
        "events_retained": record.info.event_count,
        "first_retained_seq": record.info.first_seq,
        "bytes": record.bytes,
        "resumes": record.resumes,
    })
}

/// The calls listing.
pub fn calls(records: &[StreamRecord], json: bool) -> String {
    if json {
        let calls: Vec<Value> = records.iter().map(record_json).collect();
        return pretty(&json!({ "calls": calls }));
    }
    if records.is_empty() {
        return "no calls\n".to_owned();
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let call = r.call.as_ref();
            vec![
                time(r.info.created_at),
                or_dash(r.info.session.as_deref()),
                method_of(r),
                or_dash(call.and_then(|c| c.tool.as_deref())),
                or_dash(call.and_then(|c| c.request_id.as_deref())),
                r.outcome.to_string(),
                r.duration().map_or("-".to_owned(), short_duration),
                r.events().to_string(),
                r.bytes.to_string(),
                r.resumes.to_string(),
                r.info.id.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "STARTED", "SESSION", "METHOD", "TOOL", "ID", "OUTCOME", "DURATION", "EVENTS", "BYTES",
            "RESUMES", "STREAM",
        ],
        &rows,
    )
}

/// One stream and its events.
pub fn events(record: &StreamRecord, events: &[StoredEvent], width: usize, json: bool) -> String {
    if json {
        let events: Vec<Value> = events
            .iter()
            .map(|event| {
                let data = serde_json::from_slice::<Value>(&event.data).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&event.data).into_owned())
                });
                json!({
                    "seq": event.seq,
                    "event_type": event.event_type.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
                    "bytes": event.data.len(),
                    "data": data,
                })
            })
            .collect();
        return pretty(&json!({ "stream": record_json(record), "events": events }));
    }
    let mut out = String::new();
    let call = record.call.as_ref();
    let _ = writeln!(
        out,
        "stream {}: {}{}{}, session {}, {}, {} events ({} retained), {} bytes, resumed {} times",
        record.info.id,
        method_of(record),
        call.and_then(|c| c.tool.as_deref())
            .map(|tool| format!(" {tool}"))
            .unwrap_or_default(),
        call.and_then(|c| c.request_id.as_deref())
            .map(|id| format!(" (id {id})"))
            .unwrap_or_default(),
        or_dash(record.info.session.as_deref()),
        record.outcome,
        record.events(),
        record.info.event_count,
        record.bytes,
        record.resumes,
    );
    if record.info.first_seq > 1 {
        let _ = writeln!(
            out,
            "events 1 to {} were trimmed by retention",
            record.info.first_seq - 1
        );
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            // Compact JSON on one line; anything else as text.
            let text = match serde_json::from_slice::<Value>(&event.data) {
                Ok(value) => value.to_string(),
                Err(_) => String::from_utf8_lossy(&event.data).replace('\n', "\\n"),
            };
            vec![
                event.seq.to_string(),
                event.event_type.as_ref().map_or("message".to_owned(), |t| {
                    String::from_utf8_lossy(t).into_owned()
                }),
                event.data.len().to_string(),
                cut(&text, width),
            ]
        })
        .collect();
    out.push_str(&table(&["SEQ", "TYPE", "BYTES", "DATA"], &rows));
    out
}

/// The summary statistics.
pub fn summary(summary: &HistorySummary, json: bool) -> String {
    let millis = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
    if json {
        let calls: Vec<Value> = summary
            .calls
            .iter()
            .map(|c| {
                json!({
                    "method": c.method,
                    "tool": c.tool,
                    "calls": c.calls,
                    "running": c.running,
                    "errors": c.errors,
                    "resumed": c.resumed,
                    "cut_off": c.cut_off,
                    "p50_ms": millis(c.p50),
                    "p99_ms": millis(c.p99),
                })
            })
            .collect();
        return pretty(&json!({
            "streams": summary.streams,
            "tool_calls": summary.tool_calls,
            "share_resumed": summary.share_resumed,
            "share_cut_off": summary.share_cut_off,
            "calls": calls,
        }));
    }
    let mut out = format!(
        "{} streams, {} tool calls; of the ended streams {:.1}% were resumed, {:.1}% cut off\n",
        summary.streams,
        summary.tool_calls,
        summary.share_resumed * 100.0,
        summary.share_cut_off * 100.0
    );
    if summary.calls.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = summary
        .calls
        .iter()
        .map(|c| {
            vec![
                c.method.clone(),
                or_dash(c.tool.as_deref()),
                c.calls.to_string(),
                c.running.to_string(),
                c.errors.to_string(),
                c.resumed.to_string(),
                c.cut_off.to_string(),
                c.p50.map_or("-".to_owned(), short_duration),
                c.p99.map_or("-".to_owned(), short_duration),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &[
            "METHOD", "TOOL", "CALLS", "RUNNING", "ERRORS", "RESUMED", "CUT OFF", "P50", "P99",
        ],
        &rows,
    ));
    out
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let text = table(
            &["A", "LONG HEADER", "LAST"],
            &[
                vec!["wide cell".into(), "x".into(), "end".into()],
                vec!["y".into(), "z".into(), "longer end".into()],
            ],
        );
        assert_eq!(
            text,
            "A          LONG HEADER  LAST\nwide cell  x            end\ny          z            longer end\n"
        );
    }

    #[test]
    fn long_data_is_cut_with_a_count() {
        assert_eq!(cut("abcdef", 4), "abcd… (2 more chars)");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(cut("abcdef", 0), "abcdef");
        assert_eq!(cut("éééé", 2), "éé… (2 more chars)");
    }
}
