//! Webhooks: when a worker finishes a task that has a `webhook_url` (completed, failed with no
//! attempts left, or cancelled while running), it POSTs the outcome there as JSON. Delivery is
//! best effort and never holds up the worker: its own tokio task, three tries with backoff,
//! each bounded by a timeout. The task's state in Redis is the truth; the hook is a nudge.

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{json, Value};

/// How long one delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per delivery, and the wait before each retry.
pub const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("taskfleet-worker/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client")
});

/// The JSON a hook receives.
pub fn finished(
    id: &str,
    task_type: &str,
    status: &str,
    result: Option<&Value>,
    error: Option<&str>,
) -> Value {
    json!({
        "event": "task.finished",
        "task_id": id,
        "task_type": task_type,
        "status": status,
        "result": result,
        "error": error,
    })
}

/// Delivers `payload` to `url` in the background.
pub fn notify(url: &str, payload: Value) {
    let url = url.to_string();
    tokio::spawn(async move {
        for attempt in 0..=BACKOFF.len() {
            if attempt > 0 {
                tokio::time::sleep(BACKOFF[attempt - 1]).await;
            }
            match CLIENT
                .post(&url)
                .header("x-taskfleet-event", "task.finished")
                .json(&payload)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::debug!(url = %url, status = %r.status(), "webhook refused"),
                Err(e) => tracing::debug!(url = %url, error = %e, "webhook not delivered"),
            }
        }
        tracing::warn!(url = %url, task_id = %payload["task_id"], "webhook not delivered after {} tries", BACKOFF.len() + 1);
    });
}
