//! `tasks/get`, `tasks/update` and `tasks/cancel`: answered from the task's
//! stream in the store, on whichever instance receives them.

use serde_json::Value;

use super::layer::TasksConfig;
use super::rpc::{self, Call};
use super::state::{CANCEL, Status, TaskInfo, TaskState, UPDATE};
use crate::metrics::StoreOperation;
use crate::store::{self, NewEvent, ReadLimit, StoreError, StreamId, StreamInfo};

/// Answers a tasks request of a client that declared the extension, under
/// `identity`.
pub(crate) async fn task_request(
    call: &Call,
    identity: Option<String>,
    config: &TasksConfig,
) -> http::Response<bytes::Bytes> {
    let task = call
        .str_param("taskId")
        .and_then(|id| id.parse::<StreamId>().ok());
    let found = match task {
        Some(task) => find(config, task, identity.as_deref()).await,
        None => Ok(None),
    };
    let found = match found {
        Ok(found) => found,
        Err(error) => {
            config.shared.store_failed(StoreOperation::Lookup, &error);
            tracing::error!(%error, "event store failed to read a task");
            let message = "Internal error: the task store is failing; retry later";
            return rpc::error(&call.id, rpc::INTERNAL_ERROR, message, None);
        }
    };
    match call.method.as_str() {
        "tasks/get" => match found {
            Some((info, state)) => {
                let info = TaskInfo::of(&info, config.ttl_ms(), config.poll_interval_ms());
                rpc::result(&call.id, state.encode(&info, false))
            }
            None => rpc::error(&call.id, rpc::INVALID_PARAMS, rpc::TASK_NOT_FOUND, None),
        },
        // Acknowledged whatever the id (SEP-2663), so that the answer tells
        // nothing about which tasks exist; acted on for a live task only.
        "tasks/cancel" => {
            if let Some((info, state)) = found
                && !state.status.is_terminal()
            {
                record(config, info.id, NewEvent::typed(CANCEL, "{}")).await;
            }
            rpc::ack(&call.id)
        }
        _ => {
            if let Some((info, state)) = found
                && state.status == Status::InputRequired
                && let Some(Value::Object(responses)) = call.params.get("inputResponses")
            {
                let responses = Value::Object(responses.clone()).to_string();
                record(config, info.id, NewEvent::typed(UPDATE, responses)).await;
            }
            rpc::ack(&call.id)
        }
    }
}

/// The task `task` as `identity` may see it: `None` when it does not exist,
/// is not a task, has expired, or belongs to another identity.
pub(crate) async fn find(
    config: &TasksConfig,
    task: StreamId,
    identity: Option<&str>,
) -> Result<Option<(StreamInfo, TaskState)>, StoreError> {
    let store = &config.shared.store;
    let Some((info, first)) = store.read_stream(task, ReadLimit::default()).await? else {
        return Ok(None);
    };
    if info.identity.as_deref() != identity {
        return Ok(None);
    }
    let created = rpc::unix_millis(info.created_at);
    let now = rpc::unix_millis(std::time::SystemTime::now());
    if now.saturating_sub(created) > config.ttl_ms() {
        return Ok(None);
    }
    let mut state = TaskState::default();
    first.events.iter().for_each(|event| state.apply(event));
    // A task's stream fits in one page; a longer one is read on to the
    // head of that first read.
    let read_to = first
        .events
        .last()
        .map_or(info.first_seq.saturating_sub(1), |event| event.seq);
    if read_to < first.head.last_seq {
        let mut events = store::replay(store.clone(), task, read_to);
        while let Some(batch) = events.next_batch().await {
            batch?.iter().for_each(|event| state.apply(event));
        }
    }
    if !state.is_task {
        return Ok(None);
    }
    // The end read with or before the events: an ended stream's events are all in.
    state.settle(info.state);
    Ok(Some((info, state)))
}

/// Appends a client's input or cancellation to a task's stream; the
/// task's driver, on whichever instance, acts on it. A stream that ended
/// meanwhile needs nothing.
async fn record(config: &TasksConfig, task: StreamId, event: NewEvent) {
    match config.shared.store.append(task, vec![event]).await {
        Ok(_) | Err(StoreError::StreamEnded { .. } | StoreError::StreamNotFound(_)) => {}
        Err(error) => {
            config.shared.store_failed(StoreOperation::Append, &error);
            tracing::error!(%task, %error, "event store failed to record a task request");
        }
    }
}
