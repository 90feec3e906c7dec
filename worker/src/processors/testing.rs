//! Test processors (the queue named [`TEST_QUEUE`], registered only with `--test-processors`):
//! the request says what to do, so tests and the benchmark drive a real worker precisely.
//!
//! `{"op": "noop"}` returns at once; `{"op": "echo", ...}` returns the request;
//! `{"op": "sleep", "ms": N}` sleeps N ms (ending early on cancellation, with progress);
//! `{"op": "fail", "times": N}` fails (Retry) on attempts 1..=N, then succeeds;
//! `{"op": "permanent"}` fails permanently; `{"op": "panic"}` panics;
//! `{"op": "stamp", "sent_us": T}` returns how many µs passed since T (µs since the epoch by
//! this machine's clock): the benchmark's enqueue-to-start latency, on one machine.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{Processor, Step, TaskContext, TaskError};

/// The queue name of the test processors.
pub use taskfleet::TEST_QUEUE;

pub struct TestProcessor;

#[async_trait]
impl Processor for TestProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let op = request.get("op").and_then(Value::as_str).unwrap_or("noop");
        match op {
            "noop" => Ok(Step::Done(json!({}))),
            "stamp" => {
                let now_us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                let sent = request
                    .get("sent_us")
                    .and_then(Value::as_i64)
                    .unwrap_or(now_us);
                Ok(Step::Done(json!({"latency_us": now_us - sent})))
            }
            "echo" => Ok(Step::Done(json!({"echo": request, "attempt": ctx.attempt}))),
            "sleep" => {
                let ms = request.get("ms").and_then(Value::as_u64).unwrap_or(100);
                let started = tokio::time::Instant::now();
                ctx.progress(0, "sleeping").await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = ctx.cancel.cancelled() => {
                        return Err(TaskError::Retry(format!(
                            "cancelled after {} ms", started.elapsed().as_millis()
                        )));
                    }
                }
                Ok(Step::Done(json!({"slept_ms": ms, "attempt": ctx.attempt})))
            }
            "fail" => {
                let times = request.get("times").and_then(Value::as_u64).unwrap_or(1);
                if u64::from(ctx.attempt) <= times {
                    Err(TaskError::Retry(format!("planned failure {}", ctx.attempt)))
                } else {
                    Ok(Step::Done(json!({"attempt": ctx.attempt})))
                }
            }
            "permanent" => Err(TaskError::Permanent("planned permanent failure".into())),
            "panic" => panic!("planned panic in attempt {}", ctx.attempt),
            other => Err(TaskError::Permanent(format!("unknown test op {other:?}"))),
        }
    }
}
