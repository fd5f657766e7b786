//! Streams' history in Redis: extra fields of a stream's metadata hash,
//! written with plain commands beside the scripts (`h_method`, `h_tool`,
//! `h_request_id` at creation, `h_resumes` counted at each resume), and the
//! listing that reads them back.
//!
//! A stream's end time is its last activity once it ended (appends stop
//! there). Listing all streams reads the fleet's indexes (the streams each
//! instance owns, and the ended ones); a session's come from its set. The bytes of a stream are counted from its retained
//! events, so a listing reads them (in pages): fine for an operator's look,
//! not for a hot path.

use std::collections::{HashMap, HashSet};

use ::redis::Value;

use super::conn::join_all;
use super::{META_FIELDS, RedisEventStore, Shared, decode_events, decode_info};
use crate::store::{
    StoreError, StreamCall, StreamId, StreamOutcome, StreamQuery, StreamRecord, StreamState,
};

/// The history fields, after [`META_FIELDS`] in a listing's read.
const HISTORY_FIELDS: [&str; 5] = ["h_method", "h_tool", "h_request_id", "h_resumes", "owner"];

/// Events read per round trip when a listing counts a stream's bytes.
const BYTES_PAGE: usize = 1024;

/// Streams whose metadata is read at once (one command each: on a cluster
/// they are in different slots, which one pipeline cannot span).
const METAS_AT_ONCE: usize = 1000;

impl Shared {
    /// Writes the call a stream answers into its metadata hash (just
    /// created by the script, so it exists).
    pub(super) async fn record_call(
        &self,
        stream: StreamId,
        call: &StreamCall,
    ) -> Result<(), StoreError> {
        let mut command = ::redis::cmd("HSET");
        command
            .arg(self.keys.meta(stream))
            .arg("h_method")
            .arg(&call.method);
        if let Some(tool) = &call.tool {
            command.arg("h_tool").arg(tool);
        }
        if let Some(id) = &call.request_id {
            command.arg("h_request_id").arg(id);
        }
        command
            .query_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(self.backend("recording a stream's call in Redis"))
    }

    /// Counts a resume. A stream removed meanwhile must not come back as a
    /// hash holding only the count (it would never expire): the count is
    /// taken back if the stream's state is gone.
    pub(super) async fn record_resume(&self, stream: StreamId) -> Result<(), StoreError> {
        let context = "counting a resume in Redis";
        let meta = self.keys.meta(stream);
        let (_, exists): (i64, bool) = ::redis::pipe()
            .cmd("HINCRBY")
            .arg(&meta)
            .arg("h_resumes")
            .arg(1)
            .cmd("HEXISTS")
            .arg(&meta)
            .arg("state")
            .query_async(&mut self.conn())
            .await
            .map_err(self.backend(context))?;
        if !exists {
            ::redis::cmd("HDEL")
                .arg(&meta)
                .arg("h_resumes")
                .query_async::<i64>(&mut self.conn())
                .await
                .map_err(self.backend(context))?;
        }
        Ok(())
    }

    /// The ids of one session's streams, or of every stream: those the
    /// instances own (live) and those indexed as ended. The index keys
    /// share one hash slot, so one pipeline reads them on a cluster too.
    async fn candidate_streams(&self, session: Option<&str>) -> Result<Vec<StreamId>, StoreError> {
        let context = "listing streams in Redis";
        let ids: Vec<String> = match session {
            Some(session) => ::redis::cmd("SMEMBERS")
                .arg(self.keys.session(session))
                .query_async(&mut self.conn())
                .await
                .map_err(self.backend(context))?,
            None => {
                let instances: Vec<String> = ::redis::cmd("ZRANGE")
                    .arg(self.keys.instances())
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(self.backend(context))?;
                let mut pipe = ::redis::pipe();
                pipe.cmd("ZRANGE").arg(self.keys.ended()).arg(0).arg(-1);
                for instance in &instances {
                    pipe.cmd("SMEMBERS").arg(self.keys.owner(instance));
                }
                let sets: Vec<Vec<String>> = pipe
                    .query_async(&mut self.conn())
                    .await
                    .map_err(self.backend(context))?;
                sets.into_iter().flatten().collect()
            }
        };
        let streams: HashSet<StreamId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        Ok(streams.into_iter().collect())
    }

    /// The bytes of a stream's retained events, and its last event's data.
    async fn retained(&self, stream: StreamId) -> Result<(u64, Option<Vec<u8>>), StoreError> {
        let context = "reading a stream's events in Redis";
        let log = self.keys.log(stream);
        let mut bytes = 0u64;
        let mut start = "-".to_owned();
        loop {
            let entries: Value = ::redis::cmd("XRANGE")
                .arg(&log)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(BYTES_PAGE)
                .query_async(&mut self.conn())
                .await
                .map_err(self.backend(context))?;
            let events = decode_events(entries)?;
            bytes += events
                .iter()
                .map(|e| (e.data.len() + e.event_type.as_ref().map_or(0, |t| t.len())) as u64)
                .sum::<u64>();
            match events.last() {
                Some(last) if events.len() == BYTES_PAGE => {
                    start = format!("{}-0", last.seq + 1);
                }
                _ => break,
            }
        }
        let last: Value = ::redis::cmd("XREVRANGE")
            .arg(&log)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(self.backend(context))?;
        let last = decode_events(last)?.pop().map(|event| event.data.to_vec());
        Ok((bytes, last))
    }

    /// Owners (instances) whose lease has expired, by Redis's clock: their
    /// live streams have no producer any more.
    async fn dead_owners(&self, owners: HashSet<String>) -> Result<HashSet<String>, StoreError> {
        if owners.is_empty() {
            return Ok(HashSet::new());
        }
        let context = "reading instance leases in Redis";
        let owners: Vec<String> = owners.into_iter().collect();
        let mut pipe = ::redis::pipe();
        pipe.cmd("TIME");
        for owner in &owners {
            pipe.cmd("ZSCORE").arg(self.keys.instances()).arg(owner);
        }
        let mut replies: Vec<Value> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(self.backend(context))?;
        let (seconds, _micros): (u64, u64) = ::redis::from_redis_value(replies.remove(0))
            .map_err(|e| StoreError::backend(context, e))?;
        let now_ms = seconds as f64 * 1000.0;
        let mut dead = HashSet::new();
        for (owner, lease) in owners.into_iter().zip(replies) {
            let lease: Option<f64> =
                ::redis::from_redis_value(lease).map_err(|e| StoreError::backend(context, e))?;
            if lease.is_none_or(|expiry| expiry < now_ms) {
                dead.insert(owner);
            }
        }
        Ok(dead)
    }
}

impl RedisEventStore {
    /// [`EventStore::list_streams`](crate::store::EventStore::list_streams).
    pub(super) async fn list_history(
        &self,
        query: &StreamQuery,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let shared = &self.shared;
        shared.check_open()?;
        let context = "listing streams in Redis";
        let streams = match query.stream {
            Some(stream) => vec![stream],
            None => shared.candidate_streams(query.session.as_deref()).await?,
        };
        let mut rows = Vec::new();
        for chunk in streams.chunks(METAS_AT_ONCE) {
            let metas = join_all(
                chunk
                    .iter()
                    .map(|&stream| {
                        let mut conn = shared.conn();
                        let mut command = ::redis::cmd("HMGET");
                        command
                            .arg(shared.keys.meta(stream))
                            .arg(&META_FIELDS[..])
                            .arg(&HISTORY_FIELDS[..]);
                        async move { command.query_async::<Vec<Option<String>>>(&mut conn).await }
                    })
                    .collect(),
            )
            .await;
            for (&stream, fields) in chunk.iter().zip(metas) {
                let mut fields = fields.map_err(shared.backend(context))?;
                let history = fields.split_off(META_FIELDS.len());
                // Streams expired meanwhile are skipped.
                let Some(info) = decode_info(stream, fields)? else {
                    continue;
                };
                let Ok([method, tool, request_id, resumes, owner]) =
                    <[Option<String>; 5]>::try_from(history)
                else {
                    continue;
                };
                let call = method.map(|method| StreamCall {
                    method,
                    tool,
                    request_id,
                });
                if !query.admits(&info, call.as_ref()) {
                    continue;
                }
                let resumes = resumes.and_then(|n| n.parse().ok()).unwrap_or(0u64);
                rows.push((info, call, resumes, owner));
            }
        }
        // Only the streams the query keeps are read further.
        rows.sort_by(|a, b| {
            b.0.created_at
                .cmp(&a.0.created_at)
                .then(b.0.id.cmp(&a.0.id))
        });
        rows.truncate(query.limit);
        let owners: HashSet<String> = rows
            .iter()
            .filter(|row| row.0.state == StreamState::Live)
            .filter_map(|row| row.3.clone())
            .collect();
        let dead = shared.dead_owners(owners).await?;
        let mut records = Vec::with_capacity(rows.len());
        let mut retained: HashMap<StreamId, (u64, Option<Vec<u8>>)> = HashMap::new();
        for (info, _, _, _) in &rows {
            retained.insert(info.id, shared.retained(info.id).await?);
        }
        for (info, call, resumes, owner) in rows {
            let (bytes, last) = retained.remove(&info.id).unwrap_or_default();
            let owner_dead = owner.as_ref().is_some_and(|owner| dead.contains(owner));
            let outcome = if info.state == StreamState::Live && owner_dead {
                StreamOutcome::Abandoned
            } else {
                StreamOutcome::derive(info.kind, info.state, last.as_deref())
            };
            let ended_at = info.state.is_ended().then_some(info.last_activity);
            records.push(StreamRecord {
                info,
                call,
                ended_at,
                outcome,
                bytes,
                resumes,
            });
        }
        Ok(query.finish(records))
    }
}
