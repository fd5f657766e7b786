//! [`TasksLayer`]: the builder, and the [`tower::Layer`] that wraps
//! services in [`Tasks`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::service::Tasks;
use crate::ResumabilityLayer;
use crate::layer::config::Config;
use crate::layer::shared::Shared;

/// A [`tower::Layer`] that answers MCP 2026-07-28 tool calls with durable
/// tasks (the `io.modelcontextprotocol/tasks` extension) on behalf of the
/// service it wraps. See the [module documentation](super).
///
/// Built from a [`ResumabilityLayer`]: tasks live in its store, are bound
/// to its [identity](ResumabilityLayer::identity), count against its
/// [live stream cap](ResumabilityLayer::max_live_streams) and are produced
/// by its pumps. Put it outside that layer (2026-07-28 traffic passes
/// through the resumability layer untouched).
#[derive(Clone)]
pub struct TasksLayer {
    pub(crate) config: Arc<TasksConfig>,
}

/// The gateway's settings, shared by its services.
#[derive(Clone)]
pub(crate) struct TasksConfig {
    pub(crate) task_after: Duration,
    pub(crate) tool_task_after: BTreeMap<String, Duration>,
    pub(crate) required_tools: BTreeSet<String>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) poll_interval: Duration,
    pub(crate) max_request_bytes: usize,
    /// The resumability layer's settings, for identities and caps.
    pub(crate) layer: Arc<Config>,
    /// The same settings with the detach timeout a task's pump runs under:
    /// its time to live (nobody reading a task's stream is normal).
    pub(crate) pump: Arc<Config>,
    pub(crate) shared: Arc<Shared>,
}

impl TasksConfig {
    /// How long a call to `tool` may take before it becomes a task.
    pub(crate) fn task_after(&self, tool: Option<&str>) -> Duration {
        tool.and_then(|tool| self.tool_task_after.get(tool))
            .copied()
            .unwrap_or(self.task_after)
    }

    /// A task's time to live: the configured one, at most the store's
    /// retention (which is what keeps an ended task's stream).
    pub(crate) fn ttl(&self) -> Duration {
        let retention = self.shared.store.retention().max_age;
        self.ttl.map_or(retention, |ttl| ttl.min(retention))
    }

    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl().as_millis().min(u128::from(u64::MAX)) as u64
    }

    pub(crate) fn poll_interval_ms(&self) -> u64 {
        self.poll_interval
            .as_millis()
            .clamp(1, u128::from(u64::MAX)) as u64
    }
}

impl TasksLayer {
    /// The default of [`task_after`](Self::task_after): 1 second.
    pub const DEFAULT_TASK_AFTER: Duration = Duration::from_secs(1);
    /// The default of [`poll_interval`](Self::poll_interval): 500 ms.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
    /// The default of [`max_request_bytes`](Self::max_request_bytes): 1 MiB.
    pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;

    /// A gateway on `layer`'s store, identity and caps, with every setting
    /// at its default. Settings of `layer` changed afterwards are not seen.
    pub fn new(layer: &ResumabilityLayer) -> Self {
        let (config, shared) = layer.parts();
        let mut pump = config.clone();
        pump.detach_timeout = shared.store.retention().max_age;
        Self {
            config: Arc::new(TasksConfig {
                task_after: Self::DEFAULT_TASK_AFTER,
                tool_task_after: BTreeMap::new(),
                required_tools: BTreeSet::new(),
                ttl: None,
                poll_interval: Self::DEFAULT_POLL_INTERVAL,
                max_request_bytes: Self::DEFAULT_MAX_REQUEST_BYTES,
                layer: Arc::new(config),
                pump: Arc::new(pump),
                shared,
            }),
        }
    }

    fn edit(mut self, edit: impl FnOnce(&mut TasksConfig)) -> Self {
        edit(Arc::make_mut(&mut self.config));
        let ttl = self.config.ttl();
        let config = Arc::make_mut(&mut self.config);
        Arc::make_mut(&mut config.pump).detach_timeout = ttl;
        self
    }

    /// How long a tool call may run before the client gets a task for it
    /// instead of its result: a result that arrives sooner is answered as
    /// it is. `Duration::ZERO` makes every call of a declaring client a
    /// task. Default: [`DEFAULT_TASK_AFTER`](Self::DEFAULT_TASK_AFTER).
    pub fn task_after(self, after: Duration) -> Self {
        self.edit(|config| config.task_after = after)
    }

    /// [`task_after`](Self::task_after) for calls of one tool. Default:
    /// none (every tool uses `task_after`).
    pub fn tool_task_after(self, tool: impl Into<String>, after: Duration) -> Self {
        let tool = tool.into();
        self.edit(|config| {
            config.tool_task_after.insert(tool, after);
        })
    }

    /// Tools that only run as tasks: a call from a client that did not
    /// declare the extension is refused with error -32021 (missing required
    /// client capability) instead of being run. Calls of declaring clients
    /// become tasks at once. Default: none.
    pub fn require_task(self, tool: impl Into<String>) -> Self {
        let tool = tool.into();
        self.edit(|config| {
            config.tool_task_after.insert(tool.clone(), Duration::ZERO);
            config.required_tools.insert(tool);
        })
    }

    /// How long a task is kept from its creation (`ttlMs`): its call is
    /// stopped if still running then, and `tasks/get` no longer finds it.
    /// At most the store's
    /// [`Retention::max_age`](crate::store::Retention::max_age), which is
    /// also the default.
    pub fn ttl(self, ttl: Duration) -> Self {
        self.edit(|config| config.ttl = Some(ttl))
    }

    /// The polling interval suggested to clients (`pollIntervalMs`).
    /// Default: [`DEFAULT_POLL_INTERVAL`](Self::DEFAULT_POLL_INTERVAL).
    pub fn poll_interval(self, interval: Duration) -> Self {
        self.edit(|config| config.poll_interval = interval.max(Duration::from_millis(1)))
    }

    /// The largest request body the gateway reads to classify a request; a
    /// larger one is passed to the service as it is, without the gateway.
    /// Default: [`DEFAULT_MAX_REQUEST_BYTES`](Self::DEFAULT_MAX_REQUEST_BYTES).
    pub fn max_request_bytes(self, bytes: usize) -> Self {
        self.edit(|config| config.max_request_bytes = bytes)
    }
}

impl fmt::Debug for TasksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TasksConfig")
            .field("task_after", &self.task_after)
            .field("tool_task_after", &self.tool_task_after)
            .field("required_tools", &self.required_tools)
            .field("ttl", &self.ttl())
            .field("poll_interval", &self.poll_interval)
            .field("max_request_bytes", &self.max_request_bytes)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TasksLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TasksLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<S> tower::Layer<S> for TasksLayer {
    type Service = Tasks<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tasks::new(inner, self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryEventStore, Retention};

    #[test]
    fn a_tools_threshold_wins_and_the_ttl_never_outlives_the_stores_retention() {
        let retention = Retention::default().max_age(Duration::from_secs(120));
        let store = Arc::new(MemoryEventStore::with_retention(retention));
        let layer = ResumabilityLayer::new(store);
        let tasks = TasksLayer::new(&layer)
            .task_after(Duration::from_secs(3))
            .tool_task_after("quick", Duration::from_millis(10))
            .require_task("only_task");
        let config = &tasks.config;
        assert_eq!(config.task_after(Some("quick")), Duration::from_millis(10));
        assert_eq!(config.task_after(Some("only_task")), Duration::ZERO);
        assert_eq!(config.task_after(Some("other")), Duration::from_secs(3));
        assert_eq!(config.task_after(None), Duration::from_secs(3));
        // The store's retention by default, and a longer ttl is cut to it.
        assert_eq!(config.ttl(), Duration::from_secs(120));
        assert_eq!(config.pump.detach_timeout, Duration::from_secs(120));
        let longer = tasks.clone().ttl(Duration::from_secs(3600));
        assert_eq!(longer.config.ttl_ms(), 120_000);
        let shorter = tasks.ttl(Duration::from_secs(60));
        assert_eq!(shorter.config.ttl(), Duration::from_secs(60));
        assert_eq!(shorter.config.pump.detach_timeout, Duration::from_secs(60));
    }
}
