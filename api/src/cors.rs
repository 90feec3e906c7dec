//! Cross-origin calls from browsers (CORS): which pages' origins may call the API
//! (`api.cors_origins`, none by default), answered by tower-http's layer. A preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered by the layer itself, before
//! routing; an origin not in the list gets no `Access-Control-Allow-Origin`, so its browser
//! refuses the answer.
//!
//! Credentials (cookies) are not allowed: a page authenticates with `Authorization: Bearer`
//! (an API key, or the application's short-lived token), which needs no cookie and so no
//! `Access-Control-Allow-Credentials`.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::REQUEST_ID_HEADER;

/// How long a browser may reuse a preflight's answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The request headers a page may send: the ones the API reads.
pub fn allowed_headers() -> Vec<HeaderName> {
    vec![
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::RANGE,
        HeaderName::from_static("idempotency-key"),
        HeaderName::from_static("last-event-id"),
        HeaderName::from_static(REQUEST_ID_HEADER),
    ]
}

/// The answer headers a page may read besides the CORS-safelisted ones.
pub fn exposed_headers() -> Vec<HeaderName> {
    vec![
        HeaderName::from_static(REQUEST_ID_HEADER),
        header::RETRY_AFTER,
        header::LOCATION,
        header::CONTENT_RANGE,
        header::CONTENT_DISPOSITION,
        header::ACCEPT_RANGES,
        HeaderName::from_static("idempotent-replayed"),
    ]
}

/// The layer for `origins` (`*` = any origin); `None` when the list is empty (no page of
/// another origin may call). An origin must be `scheme://host[:port]`, nothing after it.
pub fn layer(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let mut list = Vec::with_capacity(origins.len());
        for o in origins {
            list.push(parse_origin(o)?);
        }
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(allowed_headers())
            .expose_headers(exposed_headers())
            .max_age(PREFLIGHT_MAX_AGE),
    ))
}

/// An origin as browsers send it: `http(s)://host[:port]`, lower case, no path.
fn parse_origin(o: &str) -> anyhow::Result<HeaderValue> {
    let bad = || {
        anyhow::anyhow!(
            "api.cors_origins: {o:?} is not an origin (scheme://host[:port], e.g. https://app.example.com)"
        )
    };
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok {
        return Err(bad());
    }
    HeaderValue::from_str(&o.to_ascii_lowercase()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_at_start() {
        assert!(layer(&[]).unwrap().is_none());
        assert!(layer(&[" ".into()]).unwrap().is_none());
        assert!(layer(&["https://app.example.com".into()])
            .unwrap()
            .is_some());
        assert!(layer(&["http://127.0.0.1:5173".into(), "*".into()])
            .unwrap()
            .is_some());
        for bad in [
            "app.example.com",
            "https://a.example/path",
            "ftp://x",
            "https://",
        ] {
            assert!(layer(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
