//! taskfleet's catalog: what each task type is, independent of how tasks are queued or run.
//! It depends on nothing of taskfleet's, so the library, the API and the worker all import it
//! and it imports none of them (River's `rivertype`, asynq's `internal/base`).
//!
//! # Layout
//! - [`task_type`]: the closed [`TaskType`] enum; adding a type adds a variant, and the
//!   compiler lists every `match` that must handle it.
//! - [`config`]: each type's [`TaskConfig`] (attempts, timeout, default band, backoff), its
//!   built-in defaults and the settings file's overrides ([`Catalog`]).
//! - [`requests`]: every type's typed request with its limits, defined once: serde refuses
//!   unknown fields, `validate` names the field a limit refuses, the worker parses with it,
//!   and (feature `openapi`) the API's schema is derived from it, limits included
//!   ([`schema`]).
//! - [`estimate`]: how long one run of a request takes, in minutes, without running it.
//! - [`TEST_QUEUE`]: the name of the test processors' queue.

pub mod config;
pub mod estimate;
pub mod requests;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod task_type;

pub use config::{Catalog, CatalogError, TaskConfig, TaskConfigOverride};
pub use estimate::estimate_minutes;
pub use requests::Invalid;
pub use task_type::{TaskType, UnknownTaskType};

/// The queue of the worker's test processors (registered only with `--test-processors`).
pub const TEST_QUEUE: &str = "test";
