//! Hostile requests against real worker processes: a request that slipped past the API's
//! checks (enqueued through the library) is refused by its processor before any work, and the
//! worker stays up for the next task.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::eventually;
use serde_json::{json, Value};
use taskfleet::{Broker, NewTask, Task, TaskStatus};

/// The address space the limited worker gets: plenty for its real work on small slides, far
/// too little for the hours of audio a hostile lesson asks for.
const WORKER_ADDRESS_SPACE: u64 = 768 << 20;

/// A `taskfleet-worker` process under `prlimit --as`, killed and reaped when dropped.
struct LimitedWorker(Child);

impl LimitedWorker {
    fn start(url: &str, prefix: &str, artifacts: &std::path::Path, types: &str) -> Self {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--as={WORKER_ADDRESS_SPACE}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_taskfleet-worker"))
            .args(["--redis-url", url, "--types", types])
            .args(["--concurrency", "1", "--poll-ms", "200"])
            .env("TASKFLEET__REDIS__PREFIX", prefix)
            .env("TASKFLEET__ARTIFACTS__DIR", artifacts)
            .env("TASKFLEET__PROCESSORS__VIDEO_SIZE", "160x90")
            // glibc reserves 64 MiB of address space per malloc arena; two keep the limit about
            // the heap, not about how many threads happened to allocate.
            .env("MALLOC_ARENA_MAX", "2")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var("TEST_WORKER_LOGS").is_err() {
            cmd.stderr(Stdio::null());
        }
        LimitedWorker(cmd.spawn().expect("prlimit and taskfleet-worker run"))
    }

    fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for LimitedWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` steps of 10,000 one-letter words each (19,999 characters: within the per-step limit),
/// about 57 minutes of speech a step.
fn hours_of_steps(n: usize) -> Value {
    let words = vec!["a"; 10_000].join(" ");
    let steps: Vec<Value> = (0..n).map(|_| json!({ "text": words })).collect();
    json!({"title": "Hours", "steps": steps})
}

/// A worker process with `extra` environment (and the test's), reaped when dropped.
fn worker_with_env(
    url: &str,
    prefix: &str,
    artifacts: &std::path::Path,
    extra: &[(&str, &str)],
) -> LimitedWorker {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskfleet-worker"));
    cmd.args([
        "--redis-url",
        url,
        "--types",
        "voice_generation",
        "--poll-ms",
        "200",
    ])
    .env("TASKFLEET__REDIS__PREFIX", prefix)
    .env("TASKFLEET__ARTIFACTS__DIR", artifacts)
    .env("RUST_LOG", "warn")
    .envs(extra.iter().copied())
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    if std::env::var("TEST_WORKER_LOGS").is_err() {
        cmd.stderr(Stdio::null());
    }
    LimitedWorker(cmd.spawn().expect("taskfleet-worker runs"))
}

async fn finished(b: &Broker, id: &str, limit: Duration) -> Task {
    eventually(&format!("task {id} to finish"), limit, || async {
        b.get(id)
            .await
            .ok()
            .flatten()
            .filter(|t| t.status.is_terminal())
    })
    .await
}

#[tokio::test]
async fn a_memory_limited_worker_refuses_a_lesson_of_hours_of_speech_and_runs_the_next() {
    let url = taskfleet::testing::shared_redis().url();
    let b = common::broker(&url);
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let mut worker = LimitedWorker::start(&url, b.keys().prefix(), &artifacts, "animated_lesson");

    // Straight into the queue, past the API's and the library's checks.
    let now = common::now(&b).await;
    let hostile = b
        .enqueue_unchecked(
            NewTask::new("animated_lesson", hours_of_steps(50)).owner("acme", "ann"),
            now,
        )
        .await
        .unwrap();
    let t = finished(&b, &hostile.id, Duration::from_secs(60)).await;
    assert_eq!(t.status, TaskStatus::Failed, "{:?}", t.error);
    assert_eq!(t.attempts, 1, "refused for good, not retried");
    let error = t.error.unwrap_or_default();
    assert!(error.contains("steps"), "names the field: {error}");
    assert!(error.contains("at most"), "names the limit: {error}");
    assert!(
        !artifacts.join(&hostile.id).exists(),
        "no audio was produced"
    );

    let now = common::now(&b).await;
    let normal = b
        .enqueue(
            NewTask::new(
                "animated_lesson",
                json!({"title": "Leaves", "steps": [{"text": "Leaves take in light."}]}),
            )
            .owner("acme", "ann"),
            now,
        )
        .await
        .unwrap();
    let t = finished(&b, &normal.id, Duration::from_secs(60)).await;
    assert_eq!(t.status, TaskStatus::Completed, "{:?}", t.error);
    assert!(worker.is_running(), "the worker is still up");
}

#[tokio::test]
async fn programs_a_worker_runs_see_none_of_its_secrets() {
    let url = taskfleet::testing::shared_redis().url();
    let b = common::broker(&url);
    let dir = tempfile::tempdir().unwrap();
    // An espeak-ng that writes down what it was given, then speaks.
    let dump = dir.path().join("espeak-env");
    let espeak = dir.path().join("espeak-ng");
    std::fs::write(
        &espeak,
        format!(
            "#!/bin/sh\nenv > '{}'\nexec espeak-ng \"$@\"\n",
            dump.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&espeak, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _worker = worker_with_env(
        &url,
        b.keys().prefix(),
        &dir.path().join("artifacts"),
        &[
            ("TASKFLEET__TOOLS__ESPEAK", espeak.to_str().unwrap()),
            ("REDIS_URL", &url),
            ("TASKFLEET__TEXT__API_KEY", "sk-do-not-leak"),
            ("AWS_SECRET_ACCESS_KEY", "aws-do-not-leak"),
        ],
    );
    let now = common::now(&b).await;
    let t = b
        .enqueue(
            NewTask::new("voice_generation", json!({"text": "Hello there."})).owner("acme", "ann"),
            now,
        )
        .await
        .unwrap();
    let t = finished(&b, &t.id, Duration::from_secs(60)).await;
    assert_eq!(t.status, TaskStatus::Completed, "{:?}", t.error);
    let env = std::fs::read_to_string(&dump).expect("the program ran");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    for l in env.lines() {
        assert!(
            !l.starts_with("TASKFLEET__") && !l.starts_with("REDIS") && !l.starts_with("AWS_"),
            "{l} reached the program"
        );
        assert!(!l.contains("do-not-leak") && !l.contains(&url), "{l}");
    }
}
