//! The eight typed endpoints `POST /api/<type>/generate`: a catalog request with the enqueue
//! options next to its fields (unknown fields 422, limits 400, both naming the field),
//! answered like POST /api/tasks. Their body schemas are the catalog types' with the options
//! added ([`crate::openapi`]).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::auth::Caller;
use crate::enqueue::{enqueue, EnqueueResponse};
use crate::error::{AppError, ErrorBody};
use crate::extract::ApiJson;
use crate::requests::{
    typed_body, AnimatedLessonRequest, CatalogRequest, CourseVideoRequest, DocumentationRequest,
    ImageRequest, QuizRequest, StoryRequest, VideoRequest, VoiceRequest,
};
use crate::state::AppState;

async fn generate<R: CatalogRequest>(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: serde_json::Value,
) -> Result<Response, AppError> {
    let (request, options) = typed_body::<R>(body)?;
    enqueue(
        state,
        caller,
        headers,
        R::TASK_TYPE.as_str(),
        request,
        options,
    )
    .await
}

macro_rules! generate_endpoint {
    ($fn_name:ident, $path:literal, $req:ty, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(post, path = $path, tag = "generate", request_body = $req,
            params(("Idempotency-Key" = Option<String>, Header,
                description = "Repeat a request safely: the same key returns the first task for 24 h")),
            responses(
                (status = 202, description = "Enqueued", body = EnqueueResponse),
                (status = 400, description = "Malformed JSON or a value out of range", body = ErrorBody),
                (status = 401, description = "No or bad API key", body = ErrorBody),
                (status = 413, description = "Body too large", body = ErrorBody),
                (status = 415, description = "Not JSON", body = ErrorBody),
                (status = 422, description = "Unknown field", body = ErrorBody),
                (status = 503, description = "Redis unreachable", body = ErrorBody),
            ),
            security(("bearer" = [])))]
        pub async fn $fn_name(
            State(state): State<AppState>,
            caller: Caller,
            headers: HeaderMap,
            ApiJson(body): ApiJson<serde_json::Value>,
        ) -> Result<Response, AppError> {
            generate::<$req>(&state, &caller, &headers, body).await
        }
    };
}

generate_endpoint!(
    video,
    "/api/video/generate",
    VideoRequest,
    "Enqueue a narrated video."
);
generate_endpoint!(
    animated_lesson,
    "/api/animated-lesson/generate",
    AnimatedLessonRequest,
    "Enqueue an animated lesson."
);
generate_endpoint!(
    course_video,
    "/api/course-video/generate",
    CourseVideoRequest,
    "Enqueue a course video."
);
generate_endpoint!(
    documentation,
    "/api/documentation/generate",
    DocumentationRequest,
    "Enqueue documentation."
);
generate_endpoint!(quiz, "/api/quiz/generate", QuizRequest, "Enqueue a quiz.");
generate_endpoint!(
    story,
    "/api/story/generate",
    StoryRequest,
    "Enqueue a story."
);
generate_endpoint!(
    image,
    "/api/image/generate",
    ImageRequest,
    "Enqueue an image."
);
generate_endpoint!(
    voice,
    "/api/voice-generation/generate",
    VoiceRequest,
    "Enqueue speech audio."
);
