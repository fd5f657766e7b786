//! A task's state, derived from its stream: the gateway writes no second
//! record of a task. The events of a task's stream are, in order:
//!
//! - the task's header (event type [`HEADER`]): it marks the stream as a
//!   task;
//! - for each round trip to the upstream, a round marker ([`ROUND`],
//!   [`round_marker`]) with the JSON-RPC id the round was sent under, then
//!   the upstream's messages for it (untyped: progress notifications and
//!   the final answer);
//! - the clients' `tasks/update` input ([`UPDATE`]) and `tasks/cancel`
//!   ([`CANCEL`]), appended by whichever instance received them.
//!
//! The header and the first round's marker are committed with the stream,
//! before the `CreateTaskResult` is answered.
//!
//! The state is the fold of those events, then the stream's end: a stream
//! that ended while the task was still working lost its producer.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::rpc::{self, Message};
use crate::store::{StoredEvent, StreamInfo, StreamState};

/// Event type of a task's header.
pub(crate) const HEADER: &str = "mcp-resume-task";
/// Event type of a round marker.
pub(crate) const ROUND: &str = "mcp-resume-task-round";
/// Event type of a client's `tasks/update` input.
pub(crate) const UPDATE: &str = "mcp-resume-task-update";
/// Event type of a client's `tasks/cancel`.
pub(crate) const CANCEL: &str = "mcp-resume-task-cancel";

/// The data of the [`ROUND`] marker of a round sent under `id`.
pub(crate) fn round_marker(id: &Value) -> String {
    json!({ "id": id }).to_string()
}

/// Where a task is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Status {
    Working,
    /// Waiting for the client's answers to the outstanding input requests.
    InputRequired,
    Completed(Map<String, Value>),
    Failed(Value),
    Cancelled,
}

impl Status {
    fn name(&self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::InputRequired => "input_required",
            Self::Completed(_) => "completed",
            Self::Failed(_) => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed(_) | Self::Failed(_) | Self::Cancelled)
    }
}

/// An input request of the upstream's, as the client sees it.
#[derive(Clone, Debug, PartialEq)]
struct Outstanding {
    /// The key the client answers under: the upstream's key, unless an
    /// earlier round already used it (keys stay unique over a task's life).
    exposed: String,
    /// The upstream's key, under which the answer is re-issued.
    upstream: String,
    request: Value,
}

/// The fold of a task's events.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TaskState {
    /// Whether the header was seen: the stream is a task.
    pub(crate) is_task: bool,
    pub(crate) status: Status,
    pub(crate) status_message: Option<String>,
    /// The round in progress (1 after the first marker).
    pub(crate) round: u32,
    /// The JSON-RPC id of the round in progress.
    round_id: Value,
    outstanding: Vec<Outstanding>,
    /// Answers collected for the current round, by upstream key.
    answered: Map<String, Value>,
    /// The upstream's `requestState` of the current round.
    request_state: Option<Value>,
    /// Every key shown to the client so far.
    issued: HashSet<String>,
    /// Set when every outstanding request was answered: the call is to be
    /// re-issued with [`answers`](Self::answers).
    pub(crate) ready_to_reissue: bool,
}

impl Default for TaskState {
    fn default() -> Self {
        Self {
            is_task: false,
            status: Status::Working,
            status_message: None,
            round: 0,
            round_id: Value::Null,
            outstanding: Vec::new(),
            answered: Map::new(),
            request_state: None,
            issued: HashSet::new(),
            ready_to_reissue: false,
        }
    }
}

impl TaskState {
    /// The state after `events` (in stream order).
    #[cfg(test)]
    pub(crate) fn of<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }

    /// Folds in one event.
    pub(crate) fn apply(&mut self, event: &StoredEvent) {
        match event.event_type.as_deref() {
            Some(t) if t == HEADER.as_bytes() => self.is_task = true,
            Some(t) if t == ROUND.as_bytes() => self.start_round(&event.data),
            Some(t) if t == UPDATE.as_bytes() => self.take_input(&event.data),
            Some(t) if t == CANCEL.as_bytes() => {
                if !self.status.is_terminal() {
                    self.status = Status::Cancelled;
                    self.ready_to_reissue = false;
                }
            }
            None => self.upstream_message(&event.data),
            Some(t) if t == b"message" => self.upstream_message(&event.data),
            Some(_) => {}
        }
    }

    fn start_round(&mut self, data: &[u8]) {
        if self.status.is_terminal() {
            return;
        }
        let marker: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
        self.round += 1;
        self.round_id = marker.get("id").cloned().unwrap_or(Value::Null);
        self.status = Status::Working;
        self.outstanding.clear();
        self.answered.clear();
        self.request_state = None;
        self.ready_to_reissue = false;
    }

    fn upstream_message(&mut self, data: &[u8]) {
        if self.status.is_terminal() || self.status == Status::InputRequired {
            return;
        }
        match Message::of(data, &self.round_id) {
            Message::Progress(Some(message)) => self.status_message = Some(message),
            Message::Progress(None) | Message::Other => {}
            Message::Result(result) if rpc::is_input_required(&result) => {
                self.status = Status::InputRequired;
                self.request_state = result.get("requestState").cloned();
                let requests = match result.get("inputRequests") {
                    Some(Value::Object(requests)) => requests.clone(),
                    _ => Map::new(),
                };
                for (key, request) in requests {
                    let mut exposed = key.clone();
                    let mut n = self.round;
                    while self.issued.contains(&exposed) {
                        exposed = format!("{key}#{n}");
                        n += 1;
                    }
                    self.issued.insert(exposed.clone());
                    self.outstanding.push(Outstanding {
                        exposed,
                        upstream: key,
                        request,
                    });
                }
            }
            Message::Result(result) => self.status = Status::Completed(result),
            Message::Error(error) => self.status = Status::Failed(error),
        }
    }

    fn take_input(&mut self, data: &[u8]) {
        if self.status != Status::InputRequired {
            return;
        }
        let Ok(Value::Object(responses)) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        // Keys not outstanding (never issued, answered, superseded) are ignored.
        for (key, response) in responses {
            if let Some(at) = self.outstanding.iter().position(|o| o.exposed == key) {
                let answered = self.outstanding.remove(at);
                self.answered.insert(answered.upstream, response);
            }
        }
        if self.outstanding.is_empty() {
            self.status = Status::Working;
            self.ready_to_reissue = true;
        }
    }

    /// Settles a task whose stream ended while it was not finished: its
    /// producer is gone, so it failed.
    pub(crate) fn settle(&mut self, stream: StreamState) {
        if self.status.is_terminal() || !stream.is_ended() {
            return;
        }
        let message = if stream == StreamState::Abandoned {
            "the task's producer stopped before the tool call finished \
             (mcp-resume restarted, the task's time to live passed, or the upstream stream broke); \
             call the tool again"
        } else {
            "the upstream closed the tool call's stream without a result; call the tool again"
        };
        self.status_message = Some(message.to_owned());
        self.status = Status::Failed(json!({"code": rpc::INTERNAL_ERROR, "message": message}));
    }

    /// The answers to re-issue the call with, and the upstream's request state.
    pub(crate) fn answers(&self) -> (Map<String, Value>, Option<Value>) {
        (self.answered.clone(), self.request_state.clone())
    }

    /// The task as `tasks/get` answers it (a `DetailedTask`) or, with
    /// `created`, as a `CreateTaskResult`.
    pub(crate) fn encode(&self, task: &TaskInfo, created: bool) -> Value {
        let mut object = json!({
            "resultType": if created { "task" } else { "complete" },
            "taskId": task.id,
            "status": self.status.name(),
            "createdAt": rpc::iso8601(task.created_at_ms),
            "lastUpdatedAt": rpc::iso8601(task.updated_at_ms),
            "ttlMs": task.ttl_ms,
            "pollIntervalMs": task.poll_interval_ms,
        });
        if let Some(message) = &self.status_message {
            object["statusMessage"] = Value::String(message.clone());
        }
        if created {
            return object;
        }
        match &self.status {
            Status::InputRequired => {
                let requests: Map<String, Value> = self
                    .outstanding
                    .iter()
                    .map(|o| (o.exposed.clone(), o.request.clone()))
                    .collect();
                object["inputRequests"] = Value::Object(requests);
            }
            Status::Completed(result) => object["result"] = Value::Object(result.clone()),
            Status::Failed(error) => object["error"] = error.clone(),
            Status::Working | Status::Cancelled => {}
        }
        object
    }
}

/// What a task's answers carry besides its state.
#[derive(Clone, Debug)]
pub(crate) struct TaskInfo {
    pub(crate) id: String,
    pub(crate) created_at_ms: u64,
    pub(crate) updated_at_ms: u64,
    pub(crate) ttl_ms: u64,
    pub(crate) poll_interval_ms: u64,
}

impl TaskInfo {
    /// The task's times from its stream's.
    pub(crate) fn of(info: &StreamInfo, ttl_ms: u64, poll_interval_ms: u64) -> Self {
        Self {
            id: info.id.to_string(),
            created_at_ms: rpc::unix_millis(info.created_at),
            updated_at_ms: rpc::unix_millis(info.last_activity),
            ttl_ms,
            poll_interval_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn event(seq: u64, event_type: Option<&str>, data: Value) -> StoredEvent {
        StoredEvent {
            seq,
            event_type: event_type.map(|t| Bytes::copy_from_slice(t.as_bytes())),
            data: Bytes::from(data.to_string()),
        }
    }

    fn started() -> Vec<StoredEvent> {
        vec![
            event(1, Some(HEADER), json!({})),
            event(2, Some(ROUND), json!({"id": 5})),
        ]
    }

    #[test]
    fn progress_then_a_result_completes_the_task_even_with_is_error() {
        let mut events = started();
        events.push(event(3, None, json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"message":"half way"}})));
        let state = TaskState::of(&events);
        assert!(state.is_task);
        assert_eq!(state.status, Status::Working);
        assert_eq!(state.status_message.as_deref(), Some("half way"));
        events.push(event(
            4,
            None,
            json!({"jsonrpc":"2.0","id":5,"result":{"content":[],"isError":true}}),
        ));
        let state = TaskState::of(&events);
        assert!(matches!(&state.status, Status::Completed(r) if r["isError"] == json!(true)));
    }

    #[test]
    fn an_error_fails_it_and_a_later_cancel_changes_nothing() {
        let mut events = started();
        events.push(event(
            3,
            None,
            json!({"jsonrpc":"2.0","id":5,"error":{"code":-32603,"message":"boom"}}),
        ));
        events.push(event(4, Some(CANCEL), json!({})));
        let state = TaskState::of(&events);
        assert!(matches!(&state.status, Status::Failed(e) if e["message"] == "boom"));
    }

    #[test]
    fn a_cancel_while_working_cancels_and_the_result_after_it_is_ignored() {
        let mut events = started();
        events.push(event(3, Some(CANCEL), json!({})));
        events.push(event(
            4,
            None,
            json!({"jsonrpc":"2.0","id":5,"result":{"content":[]}}),
        ));
        assert_eq!(TaskState::of(&events).status, Status::Cancelled);
    }

    #[test]
    fn input_is_collected_until_every_key_is_answered_and_keys_stay_unique() {
        let mut events = started();
        events.push(event(3, None, json!({"jsonrpc":"2.0","id":5,"result":{
            "resultType":"input_required","requestState":"s1",
            "inputRequests":{"a":{"method":"elicitation/create"},"b":{"method":"elicitation/create"}}}})));
        events.push(event(
            4,
            Some(UPDATE),
            json!({"a":{"action":"accept"},"zzz":{}}),
        ));
        let state = TaskState::of(&events);
        assert_eq!(state.status, Status::InputRequired);
        let encoded = state.encode(&info(), false);
        assert_eq!(encoded["inputRequests"].as_object().unwrap().len(), 1);
        assert!(encoded["inputRequests"].get("b").is_some());
        events.push(event(5, Some(UPDATE), json!({"b":{"action":"decline"}})));
        let state = TaskState::of(&events);
        assert!(state.ready_to_reissue);
        let (answers, request_state) = state.answers();
        assert_eq!(answers.len(), 2);
        assert_eq!(request_state, Some(json!("s1")));
        // The second round asks under a key the first used: shown under a new one.
        events.push(event(6, Some(ROUND), json!({"id": "r2"})));
        events.push(event(
            7,
            None,
            json!({"jsonrpc":"2.0","id":"r2","result":{
            "resultType":"input_required","inputRequests":{"a":{"method":"elicitation/create"}}}}),
        ));
        let state = TaskState::of(&events);
        let encoded = state.encode(&info(), false);
        let keys: Vec<&String> = encoded["inputRequests"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["a#2"]);
        events.push(event(8, Some(UPDATE), json!({"a#2":{"action":"accept"}})));
        let (answers, _) = TaskState::of(&events).answers();
        assert!(answers.contains_key("a"));
    }

    #[test]
    fn a_stream_that_ended_while_working_is_a_failed_task() {
        let mut state = TaskState::of(&started());
        state.settle(StreamState::Abandoned);
        assert!(
            matches!(&state.status, Status::Failed(e) if e["message"].as_str().unwrap().contains("restarted"))
        );
        let encoded = state.encode(&info(), false);
        assert_eq!(encoded["status"], "failed");
        assert!(encoded.get("result").is_none());
    }

    #[test]
    fn a_create_task_result_has_no_payload() {
        let mut events = started();
        events.push(event(
            3,
            None,
            json!({"jsonrpc":"2.0","id":5,"result":{"content":[]}}),
        ));
        let encoded = TaskState::of(&events).encode(&info(), true);
        assert_eq!(encoded["resultType"], "task");
        assert!(encoded.get("result").is_none());
        assert_eq!(encoded["ttlMs"], 60_000);
    }

    fn info() -> TaskInfo {
        TaskInfo {
            id: "t".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
            ttl_ms: 60_000,
            poll_interval_ms: 500,
        }
    }
}
