//! taskfleet: a Redis-backed distributed task queue.
//!
//! # Glossary
//! - **task**: one unit of work of a type (`video`, `quiz`, …), stored as a Redis hash.
//! - **queue**: the keys of one task type; the engine takes any type name, and the closed
//!   [`TaskType`] catalog sits above it.
//! - **claim**: a worker leases up to N ready tasks, best band first, then oldest.
//! - **lease**: a claimed task's deadline and fencing token; the worker renews it with
//!   **extend** (its heartbeat). Only the current token may complete or fail the task.
//! - **recover**: bring back tasks whose lease expired or whose worker died.
//! - **promote**: move scheduled and retrying tasks whose time has come to `queued`.
//! - **trim**: delete finished tasks past their retention.
//!
//! # Layout
//! - [`keys`]: the only code that spells a Redis key.
//! - [`task`]: priorities, states, the task. Task types, their configs and typed requests
//!   are the catalog's ([`catalog`], the `taskfleet-catalog` crate), re-exported here.
//! - [`config`]: per-type configs, defaults, the settings file.
//! - [`error`]: the typed error.
//! - [`clock`]: the Redis server's clock, and a manual one for tests.
//! - [`artifacts`]: where the files tasks produce are stored.
//! - [`broker`]: one method per Lua script (`scripts/*.lua`): the only writer.
//! - [`inspect`]: read-only queries (status, lists, one task).
//! - [`browse`]: read-only lists by state and owner, recent finishes, task briefs (the API's
//!   lists and the dashboard's charts).
//! - [`registry`]: the workers' heartbeats ([`WorkerInfo`]): register, live, dead.
//! - [`schedules`]: recurring schedules (cron in a time zone): create, list, pause, resume,
//!   delete, and the scheduler's pass that enqueues each tick once fleet-wide.
//! - [`apikeys`]: the API's keys, stored hashed: create, look up, list, revoke.
//! - [`follow`]: blocking reads on connections of their own: a type's event stream, an idle
//!   worker's wait for work; and PING, the eviction policy.
//! - `testing` (feature `testing`): a real redis-server on a free port for tests.

pub mod apikeys;
pub mod artifacts;
pub mod broker;
pub mod browse;
pub mod clock;
pub mod config;
pub mod error;
pub mod follow;
pub mod inspect;
pub mod keys;
pub mod registry;
pub mod schedules;
pub mod task;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use apikeys::{ApiKey, Role};
pub use broker::{
    is_batch_id, Batch, BatchCreated, Broker, BrokerBuilder, CancelOutcome, Completion,
    DeferOutcome, Deployment, ExtendReport, FailOutcome, Failure, NewBatch, RateOutcome,
    RecoverReport, ReleaseOutcome, Shard,
};
pub use browse::TaskBrief;
pub use clock::{At, Clock, ManualClock, RedisClock};
pub use config::{AccountLimit, Catalog, Limits, QueueConfig, Settings, TaskConfig};
pub use error::{Error, Result};
pub use follow::{EventEntry, EventFollower, WorkWaiter};
pub use inspect::{QueueStatus, QueuedEntry};
pub use keys::Keys;
pub use registry::WorkerInfo;
pub use schedules::{CatchUp, NewSchedule, Schedule, TickReport};
pub use task::{
    is_task_id, Claimed, Enqueued, Millis, NewTask, PreviousEnding, Priority, Task, TaskStatus,
    MAX_TASK_ID,
};
pub use taskfleet_catalog as catalog;
pub use taskfleet_catalog::{TaskType, TEST_QUEUE};
