//! The one error type of every handler, and the only place that picks an HTTP status.
//!
//! Bodies are `{"error": {"code", "message"}}`. 4xx messages say what was wrong (naming the
//! field); 5xx messages say "internal error" and the detail goes to the log only, so no Redis
//! reply, lease token or key hash ever reaches a client.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Everything a request can fail with.
#[derive(Debug)]
pub enum AppError {
    /// 400: a value is malformed or out of range; `field` names it.
    Invalid { field: String, message: String },
    /// 400: the body is not JSON.
    MalformedJson(String),
    /// 401: no key, or a key we do not know.
    Unauthorized,
    /// 401: a token (JWT) refused; `code` says why (`token_expired`, `token_bad_signature`, …).
    InvalidToken { code: &'static str, message: String },
    /// 503: the JWKS that verifies tokens could not be fetched, and none is held.
    TokenKeysUnavailable,
    /// 403: the key is valid but not an admin's.
    Forbidden,
    /// 403: the caller may not ask for this (another account's or user's list); says why.
    ForbiddenBecause(String),
    /// 404: no such task (or another account's: the two are indistinguishable).
    NotFound,
    /// 404: the task has no artifact of that name.
    ArtifactNotFound,
    /// 404: no such schedule (or another account's: the two are indistinguishable).
    ScheduleNotFound,
    /// 404: no route matches the path.
    NoRoute,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 408: the request (its body) did not arrive within the request timeout.
    RequestTimeout,
    /// 409: the task is already finished.
    Conflict(String),
    /// 416: the `Range` asked for selects none of the artifact's `size` bytes.
    RangeNotSatisfiable { size: u64 },
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge(usize),
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422: a field the request type does not have.
    UnknownField(String),
    /// 422: a task type the API does not serve.
    UnknownTaskType(String),
    /// 429: the account made more enqueues this minute than it may; retry after N seconds.
    RateLimited { limit: u64, retry_after_secs: u64 },
    /// 429: the account holds as many tasks of the type as it may (until some finish and are
    /// trimmed by retention).
    TaskQuota { task_type: String, limit: u64 },
    /// 413: the account's stored requests of the type would pass its byte quota.
    StorageQuota { task_type: String, limit: u64 },
    /// 422: an Idempotency-Key came again with a different request.
    IdempotencyKeyReused { earlier: String },
    /// 503: Redis did not answer.
    Unavailable(String),
    /// 503: this process holds as many event streams as it may.
    TooManyStreams,
    /// 429: this account holds as many event streams on this process as it may.
    TooManyAccountStreams { limit: usize },
    /// 500: anything else; the detail is logged, not sent.
    Internal(String),
}

/// The error envelope every non-2xx JSON answer has.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `unknown_field`, `not_found`, `redis_unavailable`.
    pub code: String,
    /// What went wrong, for a human.
    pub message: String,
}

impl AppError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            AppError::Invalid { field, message } => (
                StatusCode::BAD_REQUEST,
                "invalid_input",
                format!("{field}: {message}"),
            ),
            AppError::MalformedJson(m) => (
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {m}"),
            ),
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send a valid API key or token as `Authorization: Bearer <credential>`".into(),
            ),
            AppError::InvalidToken { code, message } => {
                (StatusCode::UNAUTHORIZED, code, message.clone())
            }
            AppError::TokenKeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "token_keys_unavailable",
                "the keys that verify tokens (auth.jwt.jwks_url) could not be fetched; try again"
                    .into(),
            ),
            AppError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this endpoint needs an admin key".into(),
            ),
            AppError::ForbiddenBecause(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            AppError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such task".into()),
            AppError::ScheduleNotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such schedule".into(),
            ),
            AppError::ArtifactNotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such artifact".into(),
            ),
            AppError::NoRoute => (StatusCode::NOT_FOUND, "no_route", "no such endpoint".into()),
            AppError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method".into(),
            ),
            AppError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request took longer than the server allows; send it again".into(),
            ),
            AppError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            AppError::RangeNotSatisfiable { size } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the Range asked for selects none of the artifact's {size} bytes"),
            ),
            AppError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {limit} bytes"),
            ),
            AppError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as `Content-Type: application/json`".into(),
            ),
            AppError::UnknownField(field) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_field",
                format!("unknown field `{field}`"),
            ),
            AppError::UnknownTaskType(t) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_task_type",
                format!("unknown task type {t:?}; GET /api/tasks/types lists them"),
            ),
            AppError::RateLimited {
                limit,
                retry_after_secs,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this account may enqueue {limit} tasks a minute; retry in {retry_after_secs} s"
                ),
            ),
            AppError::TaskQuota { task_type, limit } => (
                StatusCode::TOO_MANY_REQUESTS,
                "task_quota_exceeded",
                format!(
                    "this account holds its most {task_type} tasks ({limit}); finished tasks count until retention trims them"
                ),
            ),
            AppError::StorageQuota { task_type, limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "storage_quota_exceeded",
                format!(
                    "this account's stored {task_type} requests would pass its quota of {limit} bytes"
                ),
            ),
            AppError::IdempotencyKeyReused { earlier } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!(
                    "this Idempotency-Key was used for a different request (task {earlier}); use a new key for a new request"
                ),
            ),
            AppError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "the queue store is unreachable; try again".into(),
            ),
            AppError::TooManyAccountStreams { limit } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "this account already has {limit} open event streams on this server; \
                     close one first"
                ),
            ),
            AppError::TooManyStreams => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "too many open event streams on this server; try again".into(),
            ),
            AppError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            ),
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (status, code, message) = self.parts();
        write!(f, "{status} {code}: {message}")
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        match &self {
            AppError::Unavailable(detail) => tracing::warn!(%detail, "redis unavailable"),
            AppError::Internal(detail) => tracing::error!(%detail, "internal error"),
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: says which scheme to use, and for a refused token that it was the token.
            let v = if matches!(self, AppError::InvalidToken { .. }) {
                "Bearer error=\"invalid_token\""
            } else {
                "Bearer"
            };
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        if let AppError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if let AppError::RangeNotSatisfiable { size } = self {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Clients and load balancers back off rather than hammer a Redis that is down.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<taskfleet::Error> for AppError {
    fn from(e: taskfleet::Error) -> Self {
        use taskfleet::Error as E;
        match e {
            E::NotFound(_) => AppError::NotFound,
            E::Conflict(m) => AppError::Conflict(m),
            E::AlreadyTerminal { status, .. } => {
                AppError::Conflict(format!("the task is already {status}"))
            }
            E::NotRetryable { status, .. } => AppError::Conflict(format!(
                "the task is {status}: only a failed or cancelled task can be retried"
            )),
            E::InvalidInput { field, message } => AppError::Invalid { field, message },
            E::UnknownTaskType(t) => AppError::UnknownTaskType(t),
            E::Unavailable(m) | E::NoScript(m) => AppError::Unavailable(m),
            E::QuotaExceeded {
                task_type,
                what: "bytes",
                limit,
                ..
            } => AppError::StorageQuota { task_type, limit },
            E::QuotaExceeded {
                task_type, limit, ..
            } => AppError::TaskQuota { task_type, limit },
            E::IdempotencyMismatch { earlier, .. } => AppError::IdempotencyKeyReused { earlier },
            E::StaleLease(m) | E::Redis(m) => AppError::Internal(m),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => AppError::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(e) => AppError::MalformedJson(e.body_text()),
            JsonRejection::JsonDataError(e) => AppError::invalid("body", e.body_text()),
            JsonRejection::BytesRejection(b) => from_bytes_rejection(b),
            other => AppError::invalid("body", other.body_text()),
        }
    }
}

pub(crate) fn from_bytes_rejection(b: BytesRejection) -> AppError {
    if b.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge(0)
    } else {
        AppError::invalid("body", b.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        // "Failed to deserialize query string: unknown field `x`, expected ..." or
        // "Failed to deserialize query string: limit: invalid digit found in string".
        if let Some(field) = unknown_field_name(&text) {
            return AppError::UnknownField(field);
        }
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        match detail.split_once(": ") {
            Some((field, message))
                if !field.is_empty()
                    && field
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                AppError::invalid(field, message)
            }
            _ => AppError::invalid("query", detail),
        }
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::invalid("path", r.body_text())
    }
}

/// The field name in serde's "unknown field `x`, expected ..." message.
pub(crate) fn unknown_field_name(message: &str) -> Option<String> {
    let rest = &message[message.find("unknown field `")? + "unknown field `".len()..];
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_names_are_read_from_serde_messages() {
        assert_eq!(
            unknown_field_name("unknown field `colour`, expected one of `a`, `b`").as_deref(),
            Some("colour")
        );
        assert_eq!(unknown_field_name("missing field `a`"), None);
    }

    #[test]
    fn server_errors_never_carry_their_detail() {
        let e = AppError::Internal("ERR script lease=abc123".into());
        assert_eq!(e.parts().2, "internal error");
        let e = AppError::Unavailable("connection refused 127.0.0.1:6390".into());
        assert!(!e.parts().2.contains("127.0.0.1"));
    }
}
