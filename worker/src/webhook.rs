//! Webhooks: when a worker finishes a task that has a `webhook_url` (completed, failed with no
//! attempts left, or cancelled while running), it POSTs the outcome there as JSON. Delivery is
//! best effort and never holds up the worker: its own tokio task, three tries with backoff,
//! each bounded by a timeout. The task's state in Redis is the truth; the hook is a nudge.
//!
//! A hook URL is the account's secret as much as an address (`…/hook?token=…`), so logs name
//! it by its origin only (`sanitize::origin`: scheme, host, port), never its path or query.

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{json, Value};

use crate::processors::sanitize::origin;

/// How long one delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per delivery, and the wait before each retry.
pub const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    crate::http_client()
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
        deliver(&url, &payload, &BACKOFF).await;
    });
}

/// Tries to deliver `payload`, waiting `backoff[i]` before try `i + 2`; whether it was taken.
async fn deliver(url: &str, payload: &Value, backoff: &[Duration]) -> bool {
    let target = origin(url);
    for attempt in 0..=backoff.len() {
        if attempt > 0 {
            tokio::time::sleep(backoff[attempt - 1]).await;
        }
        match CLIENT
            .post(url)
            .header("x-taskfleet-event", "task.finished")
            .json(payload)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => {
                tracing::debug!(target_origin = %target, status = %r.status(), "webhook refused")
            }
            // reqwest's message names the whole URL: only its kind is logged.
            Err(e) => tracing::debug!(
                target_origin = %target,
                timeout = e.is_timeout(),
                connect = e.is_connect(),
                "webhook not delivered"
            ),
        }
    }
    tracing::warn!(
        target_origin = %target,
        task_id = %payload["task_id"],
        "webhook not delivered after {} tries",
        backoff.len() + 1
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A tracing writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_undelivered_hook_is_logged_by_scheme_and_host_only() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/hooks/secret-path?token=abc123");
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let delivered = deliver(
            &url,
            &finished("t1", "quiz", "completed", None, None),
            &[Duration::ZERO, Duration::ZERO],
        )
        .await;
        assert!(!delivered);
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
        for secret in ["secret-path", "token", "abc123", "/hooks"] {
            assert!(!text.contains(secret), "{secret} logged: {text}");
        }
    }

    #[test]
    fn a_hook_url_is_logged_as_its_origin() {
        assert_eq!(
            origin("https://user:pw@example.com:8443/a/b?c=d#e"),
            "https://example.com:8443"
        );
        assert_eq!(origin("http://example.com/x"), "http://example.com");
        assert_eq!(origin("not a url"), "<invalid url>");
    }
}
