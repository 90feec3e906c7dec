//! What a failure says to the task's owner: the last pass over every processor's error before
//! the runner stores it on the task (where the API shows it to the account). Processors already
//! word their errors in the user's terms and log the details (provider answers, program stderr)
//! at warn; this pass is the backstop for what slipped through: an absolute path (a scratch
//! file, a tool's location) becomes `<path>`, and a URL keeps only its scheme and host (a
//! path or query may hold a token).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Processor, Step, TaskContext, TaskError};

/// `message` without absolute paths, and with URLs cut to scheme and host.
pub fn user_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while !rest.is_empty() {
        // A token starts after whitespace or an opening mark; copy up to the next one.
        let start = rest
            .char_indices()
            .find(|&(i, c)| {
                let before = rest[..i].chars().next_back();
                (c == '/' || c == 'h')
                    && before.is_none_or(|b| b.is_whitespace() || "([{'\"=:,".contains(b))
            })
            .map(|(i, _)| i);
        let Some(i) = start else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..i]);
        let token_len = rest[i..]
            .find(|c: char| c.is_whitespace() || "'\"()[]{},;".contains(c))
            .unwrap_or(rest.len() - i);
        let token = &rest[i..i + token_len];
        // A colon or full stop that ends a sentence is not part of the path or URL.
        let trailing = token.len() - token.trim_end_matches([':', '.']).len();
        let (core, tail) = token.split_at(token.len() - trailing);
        if let Some(origin) = url_origin(core) {
            out.push_str(&origin);
            out.push_str(tail);
        } else if is_absolute_path(core) {
            out.push_str("<path>");
            out.push_str(tail);
        } else {
            out.push_str(token);
        }
        // `/` and `h` are not delimiters, so a token is at least one character long.
        rest = &rest[i + token_len..];
    }
    out
}

/// The origin of an http(s) URL token.
fn url_origin(token: &str) -> Option<String> {
    (token.starts_with("http://") || token.starts_with("https://")).then(|| origin(token))
}

/// A URL as errors and logs may show it: `scheme://host[:port]`, without user, path, query or
/// fragment (any of which may hold a token).
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => format!("{}://", u.scheme()),
        },
        Err(_) => "<invalid url>".into(),
    }
}

/// A Unix path of at least two segments (`/tmp/x`, `/usr/bin/ffmpeg`), not a lone `/` or a
/// unit like `/min`.
fn is_absolute_path(token: &str) -> bool {
    token.starts_with('/') && token[1..].contains('/') && token.len() > 2
}

/// A processor whose errors pass through [`user_message`]; what it changed is logged at warn.
pub struct Sanitized(pub Arc<dyn Processor>);

#[async_trait]
impl Processor for Sanitized {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        self.0.process(ctx, request).await.map_err(|e| {
            let clean = user_message(e.message());
            if clean != e.message() {
                tracing::warn!(parent: ctx.span(), error = %e.message(), "task error cleaned before it is stored");
            }
            match e {
                TaskError::Retry(_) => TaskError::Retry(clean),
                TaskError::Permanent(_) => TaskError::Permanent(clean),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_url_paths_leave_a_message() {
        let cases = [
            (
                "reading /tmp/tf-work/1/work-1-ab/slide-0.png: No such file",
                "reading <path>: No such file",
            ),
            (
                "ffmpeg is not installed (looked for /opt/bin/ffmpeg)",
                "ffmpeg is not installed (looked for <path>)",
            ),
            (
                "provider at https://api.example.com/v1/chat?key=sk-123 answered 502",
                "provider at https://api.example.com answered 502",
            ),
            (
                "hook http://10.0.0.5:8080/t/abc failed.",
                "hook http://10.0.0.5:8080 failed.",
            ),
            ("path='/var/lib/x/y'", "path='<path>'"),
        ];
        for (given, want) in cases {
            assert_eq!(user_message(given), want, "{given}");
        }
        // What is not a path or a URL stays as it was.
        for same in [
            "invalid speed: 500 words/min is out of range 80-400",
            "ffmpeg failed (exit 1)",
            "a / b and /x alone",
            "lesson 1 (\"Hello\", task abc-lesson-0) failed: text provider answered 502",
            "héllo wörld — ünïcode",
            "",
        ] {
            assert_eq!(user_message(same), same);
        }
    }
}
