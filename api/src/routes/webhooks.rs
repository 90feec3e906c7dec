//! Webhooks (issue 13): a task's deliveries and their attempts, and the account's signing
//! secrets (created, rotated, listed; a secret is shown once).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use taskfleet::webhooks::{DeliveryView, SecretInfo};
use utoipa::{IntoParams, ToSchema};

use super::load_owned;
use crate::auth::Caller;
use crate::error::{AppError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskWebhooks {
    pub task_id: String,
    /// One per time the task ended, oldest first; each with every attempt.
    pub deliveries: Vec<DeliveryView>,
}

/// A task's webhook deliveries and their attempts (time, status or error, latency, the first
/// 256 bytes of the answer).
#[utoipa::path(get, path = "/api/tasks/{id}/webhooks", operation_id = "task_webhooks", tag = "webhooks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = TaskWebhooks), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn task_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskWebhooks>, AppError> {
    let task = load_owned(&state, &caller, &id).await?;
    let deliveries = state.broker.task_webhooks(&task).await?;
    Ok(Json(TaskWebhooks {
        task_id: task.id,
        deliveries,
    }))
}

/// Whose secrets: the caller's account, or (an admin) another's.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SecretsQuery {
    /// Another account's secrets (an admin only).
    pub account_id: Option<String>,
}

/// The account the caller may manage secrets of: its own (an account admin or an admin), or
/// any (an admin); a user may not.
fn secrets_account(caller: &Caller, q: &SecretsQuery) -> Result<String, AppError> {
    if caller.role == taskfleet::Role::User {
        return Err(AppError::ForbiddenBecause(
            "an account admin or an admin manages webhook secrets".into(),
        ));
    }
    match q.account_id.as_deref() {
        Some(a) if a != caller.account_id => {
            caller.require_admin()?;
            super::tasks::check_owner_id("account_id", a)?;
            Ok(a.to_string())
        }
        _ => Ok(caller.account_id.clone()),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    /// The secrets that sign now: the current one (no `expires_at`) and, during a rotation's
    /// grace period, the one before it.
    pub secrets: Vec<SecretInfo>,
}

/// The account's signing secrets (ids and dates; never a secret).
#[utoipa::path(get, path = "/api/webhooks/secrets", operation_id = "list_webhook_secrets", tag = "webhooks", params(SecretsQuery),
    responses((status = 200, body = SecretList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 400, description = "A malformed account_id", body = ErrorBody),
        (status = 422, description = "An unknown query parameter", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_secrets(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SecretsQuery>,
) -> Result<Json<SecretList>, AppError> {
    let account = secrets_account(&caller, &q)?;
    let secrets = state
        .broker
        .list_webhook_secrets(&account, state.now())
        .await?;
    Ok(Json(SecretList { secrets }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewSecret {
    pub id: String,
    /// `whsec_<base64>`: shown this once. Verify `webhook-signature` with it.
    pub secret: String,
    pub created_at: i64,
    /// The secret it replaced keeps signing until then (a rotation); null for a first secret.
    pub previous_expires_at: Option<i64>,
}

/// Create the account's signing secret (409 if it has one: rotate it). The secret is in this
/// answer only.
#[utoipa::path(post, path = "/api/webhooks/secrets", operation_id = "create_webhook_secret", tag = "webhooks", params(SecretsQuery),
    responses((status = 201, body = NewSecret), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 400, description = "A malformed account_id", body = ErrorBody),
        (status = 422, description = "An unknown query parameter", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SecretsQuery>,
) -> Result<Response, AppError> {
    let account = secrets_account(&caller, &q)?;
    let (info, secret) = state
        .broker
        .create_webhook_secret(&account, state.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewSecret {
            id: info.id,
            secret,
            created_at: info.created_at,
            previous_expires_at: None,
        }),
    )
        .into_response())
}

/// Rotate the account's signing secret: a new one signs from now on, and the old one keeps
/// signing too (both signatures are sent) for the grace period (24 h by default).
#[utoipa::path(post, path = "/api/webhooks/secrets/rotate", operation_id = "rotate_webhook_secret", tag = "webhooks", params(SecretsQuery),
    responses((status = 201, body = NewSecret), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 400, description = "A malformed account_id", body = ErrorBody),
        (status = 422, description = "An unknown query parameter", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SecretsQuery>,
) -> Result<Response, AppError> {
    let account = secrets_account(&caller, &q)?;
    let now = state.now();
    let had = state.broker.list_webhook_secrets(&account, now).await?;
    let (info, secret) = state
        .broker
        .rotate_webhook_secret(&account, now, state.webhook_rotation_grace)
        .await?;
    let previous_expires_at = had
        .iter()
        .any(|s| s.expires_at.is_none())
        .then(|| now + state.webhook_rotation_grace.as_millis() as i64);
    Ok((
        StatusCode::CREATED,
        Json(NewSecret {
            id: info.id,
            secret,
            created_at: info.created_at,
            previous_expires_at,
        }),
    )
        .into_response())
}
