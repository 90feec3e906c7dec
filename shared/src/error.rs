//! The typed error of every queue operation.

/// What went wrong; the API maps each variant to one status code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("task {0} not found")]
    NotFound(String),
    /// The lease token is not the task's current one: it was recovered, cancelled or finished.
    #[error("lease of task {0} is no longer held")]
    StaleLease(String),
    #[error("task {id} is already {status}")]
    AlreadyTerminal { id: String, status: String },
    /// A retry of a task that is neither failed nor cancelled; nothing changed.
    #[error("task {id} is {status}: only a failed or cancelled task can be retried")]
    NotRetryable { id: String, status: String },
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },
    #[error("unknown task type {0:?}")]
    UnknownTaskType(String),
    /// Redis did not answer in time, could not be reached, or said it cannot answer now
    /// (loading, busy, failing over): the call may be tried again (DESIGN §6, retry classes).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The account holds as many tasks (or request bytes) of this type as it may
    /// (DESIGN §6, per-account limits); nothing was written.
    #[error("account {account} holds its most {what} of type {task_type} ({limit})")]
    QuotaExceeded {
        account: String,
        task_type: String,
        /// `tasks` or `bytes`.
        what: &'static str,
        limit: u64,
    },
    /// An Idempotency-Key came again with a different request; nothing was written.
    #[error("idempotency key {key:?} was used for a different request (task {earlier})")]
    IdempotencyMismatch { key: String, earlier: String },
    /// The request conflicts with the state of what it names (a signing secret that already
    /// exists, a batch that already finished); nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// Redis did not know a script even after loading it (it was flushed again meanwhile).
    #[error("redis script missing: {0}")]
    NoScript(String),
    /// Redis answered with an error (a script bug, a wrong type).
    #[error("redis error: {0}")]
    Redis(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        use crate::broker::conn::{classify, ErrorClass};
        match classify(&e) {
            ErrorClass::Transient { .. } => Error::Unavailable(e.to_string()),
            ErrorClass::NoScript => Error::NoScript(e.to_string()),
            ErrorClass::Permanent => Error::Redis(e.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<taskfleet_catalog::UnknownTaskType> for Error {
    fn from(e: taskfleet_catalog::UnknownTaskType) -> Self {
        Error::UnknownTaskType(e.0)
    }
}

impl From<taskfleet_catalog::Invalid> for Error {
    fn from(e: taskfleet_catalog::Invalid) -> Self {
        Error::invalid(e.field, e.message)
    }
}

impl From<taskfleet_catalog::CatalogError> for Error {
    fn from(e: taskfleet_catalog::CatalogError) -> Self {
        match e {
            taskfleet_catalog::CatalogError::UnknownTaskType(u) => u.into(),
            taskfleet_catalog::CatalogError::Invalid(i) => i.into(),
        }
    }
}

impl From<redis::ParsingError> for Error {
    fn from(e: redis::ParsingError) -> Self {
        Error::Redis(format!("unexpected reply: {e}"))
    }
}
