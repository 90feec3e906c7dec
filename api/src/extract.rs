//! Our own body and query extractors, so a bad request gets our error shape: malformed JSON
//! 400, wrong content type 415, too large 413, an unknown field 422 naming it (with its path,
//! e.g. `slides[2].colour`), any other bad value 400 naming its field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

use crate::error::{from_bytes_rejection, unknown_field_name, AppError};
use crate::state::AppState;

/// A JSON body deserialized with field paths in its errors.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The body's bytes; past the configured limit, 413 naming the limit.
async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, AppError> {
    let limit = state.max_body_bytes;
    Bytes::from_request(req, state)
        .await
        .map_err(|r| match from_bytes_rejection(r) {
            AppError::PayloadTooLarge(_) => AppError::PayloadTooLarge(limit),
            other => other,
        })
}

/// Deserializes `bytes` as `T`, naming the field of the first error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        data_error(&path, inner)
    })?;
    // Trailing garbage after the value is malformed JSON too.
    if serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde::de::IgnoredAny>()
        .nth(1)
        .is_some()
    {
        return Err(AppError::MalformedJson("trailing characters".into()));
    }
    Ok(value)
}

/// Deserializes a JSON value already parsed (a generic enqueue's `request`), with `prefix`
/// in front of field paths.
pub fn from_value<T: DeserializeOwned>(prefix: &str, v: serde_json::Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            prefix.to_string()
        } else if prefix.is_empty() {
            path
        } else {
            format!("{prefix}.{path}")
        };
        data_error(&path, e.into_inner())
    })
}

fn data_error(path: &str, e: serde_json::Error) -> AppError {
    use serde_json::error::Category;
    let message = strip_position(&e.to_string());
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => AppError::MalformedJson(message),
        Category::Data => {
            if let Some(name) = unknown_field_name(&message) {
                return AppError::UnknownField(join(path, &name));
            }
            let field = if path == "." || path.is_empty() {
                missing_field_name(&message).unwrap_or_else(|| "body".to_string())
            } else {
                match missing_field_name(&message) {
                    Some(name) => join(path, &name),
                    None => path.to_string(),
                }
            };
            AppError::invalid(field, message)
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() || path == "." {
        name.to_string()
    } else if path == name || path.ends_with(&format!(".{name}")) {
        path.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn missing_field_name(message: &str) -> Option<String> {
    let rest = &message[message.find("missing field `")? + "missing field `".len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// serde_json appends " at line 1 column 12"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn is_json(v: Option<&header::HeaderValue>) -> bool {
    let Some(ct) = v.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// An optional JSON body: no body at all gives `T::default()`; a body must be JSON.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let json = is_json(req.headers().get(header::CONTENT_TYPE));
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) && (!has_type || json) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(AppError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// A query string deserialized into `T`, unknown parameters refused (422) and bad values 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) = axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(AppError::from)?;
        Ok(ApiQuery(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Slide {
        title: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Deck {
        slides: Vec<Slide>,
        width: Option<u32>,
    }

    fn err(body: &str) -> String {
        match parse_json::<Deck>(body.as_bytes()) {
            Err(AppError::UnknownField(f)) => format!("unknown {f}"),
            Err(AppError::Invalid { field, .. }) => format!("invalid {field}"),
            Err(AppError::MalformedJson(_)) => "malformed".into(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_with_its_path() {
        assert_eq!(err(r#"{"slides":[],"colour":1}"#), "unknown colour");
        assert_eq!(
            err(r#"{"slides":[{"title":"a"},{"title":"b","x":1}]}"#),
            "unknown slides[1].x"
        );
        assert_eq!(err(r#"{"slides":[],"width":"wide"}"#), "invalid width");
        assert_eq!(err(r#"{"width":5}"#), "invalid slides");
        assert_eq!(err(r#"{"slides":[{}]}"#), "invalid slides[0].title");
        assert_eq!(err(r#"{"slides":["#), "malformed");
        assert_eq!(err(r#"{"slides":[]} x"#), "malformed");
    }
}
