//! A client of any OpenAI-compatible HTTP API (OpenAI, Ollama, vLLM, LocalAI): chat
//! completions for text, image generations for pictures. What a failure means is decided here
//! once: 429, 5xx, a timeout or a refused connection are worth another attempt (`Retry`);
//! 400, 401, 403, 404 and 422 will fail the same way again (`Permanent`).
//!
//! What a failure says is decided here too: the error stored on the task names the provider by
//! its role and what went wrong (`text provider answered 502 Bad Gateway`, `image provider
//! timed out`); the endpoint's URL and its answer's body (which may echo the prompt, a key's
//! prefix or an internal host) go to the worker's log at warn, never onto the task.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use taskfleet::config::ProviderSettings;

use super::TaskError;

/// One configured endpoint.
#[derive(Clone)]
pub struct OpenAi {
    client: reqwest::Client,
    settings: ProviderSettings,
    /// What the endpoint is for, as errors name it: `text provider` or `image provider`.
    role: &'static str,
}

impl OpenAi {
    /// An endpoint for `role` (`text provider`, `image provider`).
    pub fn new(settings: ProviderSettings, role: &'static str) -> Self {
        let client = crate::http_client()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with rustls");
        OpenAi {
            client,
            settings,
            role,
        }
    }

    pub fn model(&self) -> &str {
        &self.settings.model
    }

    fn endpoint(&self, path: &str) -> String {
        let base = self.settings.url.trim_end_matches('/');
        if base.ends_with(path) {
            base.to_string()
        } else {
            format!("{base}{path}")
        }
    }

    /// POSTs `body` as JSON to `path` (e.g. `/chat/completions`) and returns the JSON answer.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        cancel: &CancellationToken,
    ) -> Result<Value, TaskError> {
        let url = self.endpoint(path);
        let mut req = self.client.post(&url).json(body);
        if !self.settings.api_key.is_empty() {
            req = req.bearer_auth(&self.settings.api_key);
        }
        let role = self.role;
        let send = async {
            let resp = req.send().await.map_err(|e| transport(role, e))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| transport(role, e))?;
            Ok::<_, TaskError>((status, text))
        };
        let (status, text) = tokio::select! {
            r = send => r?,
            _ = cancel.cancelled() => return Err(TaskError::Retry("cancelled".into())),
        };
        if !status.is_success() {
            let detail: String = text.chars().take(300).collect();
            tracing::warn!(provider = role, url = %url, status = %status, body = %detail, "provider refused");
            let msg = format!("{role} answered {status}");
            return Err(match status.as_u16() {
                408 | 409 | 425 | 429 => TaskError::Retry(msg),
                s if s >= 500 => TaskError::Retry(msg),
                _ => TaskError::Permanent(msg),
            });
        }
        serde_json::from_str(&text).map_err(|e| {
            tracing::warn!(provider = role, url = %url, error = %e, "provider answered invalid JSON");
            TaskError::Retry(format!("{role} answered invalid JSON"))
        })
    }

    /// One chat completion: the assistant's text.
    pub async fn chat(
        &self,
        system: &str,
        user: &str,
        cancel: &CancellationToken,
    ) -> Result<String, TaskError> {
        let body = json!({
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
        });
        let answer = self.post("/chat/completions", &body, cancel).await?;
        answer
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::to_string)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| TaskError::Retry(format!("{} answered no message content", self.role)))
    }

    /// One generated image as bytes (from `b64_json`, or fetched from `url`).
    pub async fn image(
        &self,
        prompt: &str,
        w: u32,
        h: u32,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TaskError> {
        use base64::Engine as _;
        let body = json!({
            "model": self.settings.model,
            "prompt": prompt,
            "n": 1,
            "size": format!("{w}x{h}"),
            "response_format": "b64_json",
        });
        let answer = self.post("/images/generations", &body, cancel).await?;
        if let Some(b64) = answer.pointer("/data/0/b64_json").and_then(Value::as_str) {
            return base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| TaskError::Retry(format!("{}'s image is not base64", self.role)));
        }
        if let Some(url) = answer.pointer("/data/0/url").and_then(Value::as_str) {
            let role = self.role;
            let get = async {
                let r = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| transport(role, e))?;
                if !r.status().is_success() {
                    tracing::warn!(provider = role, url = %url, status = %r.status(), "image download refused");
                    return Err(TaskError::Retry(format!(
                        "{role}'s image download answered {}",
                        r.status()
                    )));
                }
                r.bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| transport(role, e))
            };
            return tokio::select! {
                r = get => r,
                _ = cancel.cancelled() => Err(TaskError::Retry("cancelled".into())),
            };
        }
        Err(TaskError::Retry(format!("{} answered no image", self.role)))
    }
}

/// A request that did not get an answer. reqwest's message names the URL: the log has it.
fn transport(role: &str, e: reqwest::Error) -> TaskError {
    tracing::warn!(provider = role, error = %e, "provider request failed");
    if e.is_timeout() {
        TaskError::Retry(format!("{role} timed out"))
    } else if e.is_builder() {
        TaskError::Permanent(format!(
            "{role}: the request could not be built (check its url)"
        ))
    } else {
        TaskError::Retry(format!("{role} unreachable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_the_base_once() {
        let o = OpenAi::new(
            ProviderSettings::openai("http://h/v1/", "", "m"),
            "text provider",
        );
        assert_eq!(
            o.endpoint("/chat/completions"),
            "http://h/v1/chat/completions"
        );
        let o = OpenAi::new(
            ProviderSettings::openai("http://h/v1/chat/completions", "", "m"),
            "text provider",
        );
        assert_eq!(
            o.endpoint("/chat/completions"),
            "http://h/v1/chat/completions"
        );
    }
}
