//! Test support: the real router over a real Redis (taskfleet::testing's shared server), a
//! fresh key prefix per test, keys for two accounts and an admin, and request helpers.
#![allow(dead_code)]

pub mod processes;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use taskfleet::testing;
use taskfleet::Role;
use taskfleet::{Broker, Settings};
use taskfleet_api::{app, AppState, Options};
use tower::ServiceExt;

pub const TEST_QUEUE: &str = "test";

pub struct Api {
    pub router: Router,
    pub state: AppState,
    pub broker: Broker,
    /// A user of account "acme" (alice).
    pub user: String,
    /// Another user of account "acme" (carol): sees none of alice's tasks.
    pub colleague: String,
    /// The account admin of "acme" (ada): sees every task of acme.
    pub account_admin: String,
    /// A user of account "globex".
    pub other: String,
    /// An admin (account "ops").
    pub admin: String,
    pub artifacts: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Polls `check` every 10 ms until it holds, at most 10 s (a bound on waiting for an event, not
/// a timing assertion); panics with `what` when the bound runs out.
pub async fn eventually_true(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub fn settings() -> (Settings, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("artifact dir");
    let mut s = Settings::default();
    s.redis.url = testing::shared_redis().url();
    s.redis.prefix = testing::fresh_prefix();
    s.artifacts.dir = dir.path().display().to_string();
    (s, dir)
}

pub async fn setup() -> Api {
    let (s, dir) = settings();
    setup_with(s, dir).await
}

pub async fn setup_with(s: Settings, dir: tempfile::TempDir) -> Api {
    let mut state = AppState::new(
        &s,
        Options {
            test_processors: true,
        },
    )
    .await
    .expect("state");
    // Tests send many bad keys on purpose: a failure waits a millisecond here, not the
    // production 200 ms (auth.rs tests the delay itself).
    state.auth_failures = std::sync::Arc::new(taskfleet_api::auth::FailureDelay::new(
        std::time::Duration::from_millis(1),
        taskfleet_api::auth::MAX_DELAYED_FAILURES,
    ));
    let broker = state.broker.clone();
    let now = state.now();
    let user = broker
        .create_api_key("acme", "alice", Role::User, "t", now)
        .await
        .unwrap();
    let colleague = broker
        .create_api_key("acme", "carol", Role::User, "t", now)
        .await
        .unwrap();
    let account_admin = broker
        .create_api_key("acme", "ada", Role::AccountAdmin, "t", now)
        .await
        .unwrap();
    let other = broker
        .create_api_key("globex", "bob", Role::User, "t", now)
        .await
        .unwrap();
    let admin = broker
        .create_api_key("ops", "root", Role::Admin, "t", now)
        .await
        .unwrap();
    Api {
        router: app(state.clone()),
        state,
        broker,
        user,
        colleague,
        account_admin,
        other,
        admin,
        artifacts: dir,
    }
}

impl Api {
    /// Sends a request; `body` is sent as JSON when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            bytes,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    /// Enqueues a test task for `key`; returns its id.
    pub async fn enqueue_test(&self, key: &str, request: Value) -> String {
        let r = self
            .post(
                "/api/tasks",
                key,
                json!({"task_type": TEST_QUEUE, "request": request}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
        r.json()["task_id"].as_str().unwrap().to_string()
    }

    pub async fn enqueue_with(&self, key: &str, body: Value) -> Value {
        let r = self.post("/api/tasks", key, body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
        r.json()
    }

    /// `POST /api/tasks/{id}/cancel` as `key`.
    pub async fn cancel(&self, id: &str, key: &str) -> Reply {
        self.call(
            Method::POST,
            &format!("/api/tasks/{id}/cancel"),
            Some(key),
            None,
        )
        .await
    }

    /// The task ids of `GET /api/tasks/queue/list` as `key`, in the order listed.
    pub async fn queue_list_ids(&self, key: &str) -> Vec<String> {
        self.get("/api/tasks/queue/list", key).await.json()["tasks"]
            .as_array()
            .expect("a list of tasks")
            .iter()
            .map(|t| t["task"]["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn now(&self) -> i64 {
        self.state.now()
    }
}

/// A typed request that every limit accepts, per endpoint.
pub fn valid_typed_requests() -> Vec<(&'static str, &'static str, Value)> {
    let slides = json!([{"title": "Intro", "text": "Hello there."}]);
    vec![
        (
            "/api/video/generate",
            "video",
            json!({"title": "T", "slides": slides}),
        ),
        (
            "/api/animated-lesson/generate",
            "animated_lesson",
            json!({"title": "T", "steps": [{"text": "Step one"}]}),
        ),
        (
            "/api/course-video/generate",
            "course_video",
            json!({"title": "C", "lessons": [{"title": "L1", "slides": slides}]}),
        ),
        (
            "/api/documentation/generate",
            "documentation",
            json!({"source": "fn main() {}", "format": "markdown"}),
        ),
        (
            "/api/quiz/generate",
            "quiz",
            json!({"source_text": "Rust is a language.", "num_questions": 3}),
        ),
        (
            "/api/story/generate",
            "story_generation",
            json!({"prompt": "a fox", "length": "short"}),
        ),
        (
            "/api/image/generate",
            "image_generation",
            json!({"prompt": "a cat", "width": 128, "height": 64}),
        ),
        (
            "/api/voice-generation/generate",
            "voice_generation",
            json!({"text": "hello", "speed": 150}),
        ),
    ]
}
