//! The `countdown` tool's SSE answer, produced lazily by the response body
//! itself: no task runs behind it, so when the layer drops the body (after
//! its detach timeout) the tool simply stops.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use mcp_resume::store::Retention;
use serde_json::{Value, json};
use tokio::time::{Instant, Sleep};

/// The most steps one call may ask for: as many events as the store keeps
/// of one stream by default; a demo has no use for more.
pub(super) const MAX_STEPS: u64 = Retention::DEFAULT_MAX_EVENTS_PER_STREAM;
/// The longest interval one call may ask for, in milliseconds.
pub(super) const MAX_INTERVAL_MS: u64 = 60_000;
/// The steps of a call that does not say: 20, half a second apart (10 s in
/// all), long enough to cut and resume by hand.
pub(super) const DEFAULT_STEPS: u64 = 20;
/// The interval of a call that does not say, in milliseconds.
pub(super) const DEFAULT_INTERVAL_MS: u64 = 500;

/// One `countdown` call: its JSON-RPC id, progress token and pace.
#[derive(Debug)]
pub(super) struct Countdown {
    pub(super) id: Value,
    pub(super) progress_token: Value,
    pub(super) steps: u64,
    pub(super) interval: Duration,
}

/// The response body of a [`DemoServer`](super::DemoServer).
///
/// Either a complete answer (JSON, or nothing), or the `countdown` tool's
/// `text/event-stream`: one `notifications/progress` event per step, each
/// `interval_ms` after the previous one, then the result.
#[derive(Debug)]
pub struct DemoBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Countdown {
        call: Countdown,
        /// The next step to announce, from 1; past `steps`, the result is next.
        next: u64,
        sleep: Pin<Box<Sleep>>,
        done: bool,
    },
}

impl DemoBody {
    pub(super) fn full(data: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(data.into())),
        }
    }

    pub(super) fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    pub(super) fn countdown(call: Countdown) -> Self {
        let sleep = Box::pin(tokio::time::sleep(call.interval));
        Self {
            kind: Kind::Countdown {
                call,
                next: 1,
                sleep,
                done: false,
            },
        }
    }
}

impl Body for DemoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let (call, next, sleep, done) = match &mut self.get_mut().kind {
            Kind::Full(data) => return Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            Kind::Countdown {
                call,
                next,
                sleep,
                done,
            } => (call, next, sleep, done),
        };
        if *done {
            return Poll::Ready(None);
        }
        let message = if *next <= call.steps {
            ready!(sleep.as_mut().poll(cx));
            let step = *next;
            *next += 1;
            // The next step is one interval after this one was produced.
            sleep.as_mut().reset(Instant::now() + call.interval);
            progress(call, step)
        } else {
            *done = true;
            result(call)
        };
        Poll::Ready(Some(Ok(Frame::data(sse_event(&message)))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Countdown { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Countdown { .. } => SizeHint::default(),
        }
    }
}

/// Step `step` of `call`, as a `notifications/progress` message.
fn progress(call: &Countdown, step: u64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {
            "progressToken": call.progress_token,
            "progress": step,
            "total": call.steps,
            "message": format!("step {step} of {}", call.steps),
        },
    })
}

/// The tool's result, answering the call's request.
fn result(call: &Countdown) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": call.id,
        "result": {
            "content": [{ "type": "text", "text": format!("counted down {} steps", call.steps) }],
            "isError": false,
        },
    })
}

/// One SSE event carrying `message`. Compact JSON has no line breaks, so one
/// `data:` line holds it.
fn sse_event(message: &Value) -> Bytes {
    Bytes::from(format!("data: {message}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_countdown_sends_every_step_then_the_result() {
        let body = DemoBody::countdown(Countdown {
            id: json!(7),
            progress_token: json!("tok"),
            steps: 3,
            interval: Duration::from_millis(20),
        });
        let started = Instant::now();
        let bytes = body.collect().await.unwrap().to_bytes();
        // One interval before each step (never less; more on a busy machine).
        assert!(started.elapsed() >= Duration::from_millis(60));
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let events: Vec<Value> = text
            .split_terminator("\n\n")
            .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(events.len(), 4);
        for (step, event) in events[..3].iter().enumerate() {
            assert_eq!(event["params"]["progress"], json!(step + 1));
            assert_eq!(event["params"]["total"], json!(3));
            assert_eq!(event["params"]["progressToken"], json!("tok"));
        }
        assert_eq!(events[3]["id"], json!(7));
        assert_eq!(events[3]["result"]["isError"], json!(false));
    }

    #[tokio::test]
    async fn zero_steps_is_just_the_result() {
        let body = DemoBody::countdown(Countdown {
            id: json!("a"),
            progress_token: json!("a"),
            steps: 0,
            interval: Duration::from_secs(5),
        });
        let bytes = body.collect().await.unwrap().to_bytes();
        assert!(bytes.starts_with(b"data: {"));
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 2);
    }
}
