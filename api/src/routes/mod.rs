//! The handlers, one file per group of §9's endpoints, and what they share: reading a task
//! id from the path and loading a task the caller may see.

pub mod batches;
pub mod dashboard;
pub mod dead_letters;
pub mod events;
pub mod generate;
pub mod health;
pub mod live;
pub mod queue;
pub mod schedules;
pub mod tasks;
pub mod webhooks;

use taskfleet::Task;

use crate::auth::Caller;
use crate::error::AppError;
use crate::state::AppState;

/// A task id from a path (400 naming `id` if it cannot be one): `<type>.<shard>.<uuid>` as
/// the API gives them, an id derived from one such as a course's lessons, or any
/// [`taskfleet::is_task_id`].
pub fn parse_task_id(raw: &str) -> Result<String, AppError> {
    if taskfleet::is_task_id(raw) {
        Ok(raw.to_string())
    } else {
        Err(AppError::invalid(
            "id",
            format!(
                "a task id is 1-{} of a-z, A-Z, 0-9, '.', '_', '-' (such as video.3.0193b2c4-...)",
                taskfleet::MAX_TASK_ID
            ),
        ))
    }
}

/// The task if the caller may see it ([`Caller::may_see`]: a user the tasks it created, an
/// account admin its account's, an admin any). Any other task is [`AppError::NotFound`],
/// exactly as a missing one (never 403), so ids of other users and tenants cannot be probed.
pub async fn load_owned(state: &AppState, caller: &Caller, raw_id: &str) -> Result<Task, AppError> {
    let id = parse_task_id(raw_id)?;
    let task = state.broker.get(&id).await?.ok_or(AppError::NotFound)?;
    if caller.may_see(task.account_id.as_deref(), task.user_id.as_deref()) {
        Ok(task)
    } else {
        Err(AppError::NotFound)
    }
}
