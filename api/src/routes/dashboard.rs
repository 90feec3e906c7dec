//! The web dashboard: one static page; the data it shows comes from the API with the key the
//! user enters, so the page itself needs none.

use axum::http::header;
use axum::response::IntoResponse;

/// The dashboard page (HTML). It calls `/api/tasks/queue/status` and `/api/tasks` with the
/// key the user enters.
#[utoipa::path(get, path = "/dashboard", tag = "health",
    responses((status = 200, description = "The dashboard page", content_type = "text/html")))]
pub async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/dashboard.html"),
    )
}
