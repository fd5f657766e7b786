//! `notifications/tasks` on `subscriptions/listen`: a client that asks for
//! task ids there (`notifications.taskIds`) gets each of its tasks pushed,
//! as `tasks/get` would answer it, whenever it changes, until it ends.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::handlers::find;
use super::layer::TasksConfig;
use super::rpc::Call;
use super::state::{TaskInfo, TaskState};
use crate::sse::{OutgoingEvent, encode_event};
use crate::store::{self, StreamId};

/// The most task ids one listen follows; the others are ignored.
const MAX_TASKS_PER_LISTEN: usize = 100;

/// The stream of a listen that asks for task ids only, answered by the
/// gateway; `None` for any other listen, which is the upstream's (a listen
/// that also asks for other notifications goes to the upstream, whose
/// acknowledgement then leaves the task ids out: not honoured).
pub(crate) fn listen(
    call: &Call,
    identity: Option<String>,
    config: Arc<TasksConfig>,
) -> Option<mpsc::Receiver<Bytes>> {
    let filter = call.params.get("notifications")?.as_object()?;
    let ids = filter.get("taskIds")?.as_array()?.clone();
    if filter.len() != 1 {
        return None;
    }
    let (out, events) = mpsc::channel(16);
    let listen_id = call.id.clone();
    tokio::spawn(async move {
        // First, before any notification: the acknowledgement, echoing every
        // id asked for (which ones exist is nobody's business).
        let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": listen_id},
                "notifications": {"taskIds": ids}}});
        if !send(&out, &ack).await {
            return;
        }
        let mut watchers = JoinSet::new();
        for task in ids
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|id| id.parse::<StreamId>().ok())
            .take(MAX_TASKS_PER_LISTEN)
        {
            watchers.spawn(watch(config.clone(), task, identity.clone(), out.clone()));
        }
        while watchers.join_next().await.is_some() {}
        // Every task ended: the subscription is torn down gracefully.
        let done = json!({"jsonrpc": "2.0", "id": listen_id,
            "result": {"_meta": {"io.modelcontextprotocol/subscriptionId": listen_id}}});
        send(&out, &done).await;
    });
    Some(events)
}

/// Pushes `task` each time it changes, until it ends, the client leaves,
/// or its time to live passes. An unknown or foreign task gets nothing.
async fn watch(
    config: Arc<TasksConfig>,
    task: StreamId,
    identity: Option<String>,
    out: mpsc::Sender<Bytes>,
) {
    if !matches!(find(&config, task, identity.as_deref()).await, Ok(Some(_))) {
        return;
    }
    let store = config.shared.store.clone();
    let deadline = Instant::now() + config.ttl();
    let mut follow = store::follow(store.clone(), task, 0);
    let mut state = TaskState::default();
    let mut last: Option<Value> = None;
    loop {
        let batch = tokio::select! {
            batch = follow.next_batch() => batch,
            () = out.closed() => return,
            () = tokio::time::sleep_until(deadline) => return,
        };
        let ended = match batch {
            Some(Ok(events)) => {
                events.iter().for_each(|event| state.apply(event));
                false
            }
            Some(Err(_)) => return,
            None => true,
        };
        let Ok(Some(info)) = store.stream_info(task).await else {
            return;
        };
        let mut current = state.clone();
        if ended {
            current.settle(info.state);
        }
        let info = TaskInfo::of(&info, config.ttl_ms(), config.poll_interval_ms());
        let mut params = current.encode(&info, false);
        if let Some(params) = params.as_object_mut() {
            params.remove("resultType");
        }
        // What changed, not when: a new timestamp alone is not news.
        let mut seen = params.clone();
        if let Some(seen) = seen.as_object_mut() {
            seen.remove("lastUpdatedAt");
        }
        if last.as_ref() != Some(&seen) {
            last = Some(seen);
            let notification =
                json!({"jsonrpc": "2.0", "method": "notifications/tasks", "params": params});
            if !send(&out, &notification).await {
                return;
            }
        }
        if ended || current.status.is_terminal() {
            return;
        }
    }
}

/// Writes one message as an SSE event; false once the client is gone.
async fn send(out: &mpsc::Sender<Bytes>, message: &Value) -> bool {
    let data = message.to_string();
    let mut bytes = BytesMut::new();
    let event = OutgoingEvent {
        event_type: Some(b"message"),
        data: Some(data.as_bytes()),
        ..OutgoingEvent::new()
    };
    if encode_event(&event, &mut bytes).is_err() {
        return false;
    }
    out.send(bytes.freeze()).await.is_ok()
}
