//! End to end with real processes: the `taskfleet-api` binary and a `taskfleet-worker` binary
//! (with its test processors) on the tests' Redis, talking HTTP over loopback. Needs the worker
//! binary built first (`cargo build -p taskfleet-worker --bins`; scripts/test.sh does).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::processes::{free_port, http, worker_bin, Proc};
use serde_json::{json, Value};
use taskfleet::testing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN_KEY: &str = "e2e-admin-key-0123456789abcdef";

struct Stack {
    port: u16,
    api: Proc,
    _worker: Proc,
    key: String,
    _dir: tempfile::TempDir,
}

fn command(bin: &str, prefix: &str, dir: &std::path::Path) -> Command {
    let mut c = Command::new(bin);
    c.env("TASKFLEET__REDIS__PREFIX", prefix)
        .env("TASKFLEET__ARTIFACTS__DIR", dir)
        .env("TASKFLEET__AUTH__ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null());
    c
}

async fn start() -> Stack {
    let url = testing::shared_redis().url();
    let prefix = testing::fresh_prefix();
    let dir = tempfile::tempdir().unwrap();
    let api_bin = env!("CARGO_BIN_EXE_taskfleet-api");
    // The CLI makes a key and prints only the key.
    let out = command(api_bin, &prefix, dir.path())
        .args([
            "--redis-url",
            &url,
            "keys",
            "create",
            "--account",
            "e2e",
            "--user",
            "u1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout is the key alone: {stdout:?}"
    );
    let key = stdout.trim().to_string();

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let api = Proc(
        command(api_bin, &prefix, dir.path())
            .args([
                "--listen",
                &listen,
                "--redis-url",
                &url,
                "--test-processors",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let worker = Proc(
        command(worker_bin().to_str().unwrap(), &prefix, dir.path())
            .args([
                "--redis-url",
                &url,
                "--test-processors",
                "--concurrency",
                "4",
            ])
            // Small slides and a quick course poll keep the real processors fast.
            .env("TASKFLEET__PROCESSORS__VIDEO_SIZE", "160x90")
            .env("TASKFLEET__PROCESSORS__COURSE_POLL_SECS", "1")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stack = Stack {
        port,
        api,
        _worker: worker,
        key,
        _dir: dir,
    };
    for _ in 0..200 {
        if let Ok((200, _)) = stack.http("GET", "/ready", None, None).await {
            return stack;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the API did not become ready");
}

impl Stack {
    /// One HTTP/1.1 request with `Connection: close`; returns the status and the body.
    async fn http(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> std::io::Result<(u16, String)> {
        http(self.port, method, path, key, body).await
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self
            .http(method, path, Some(&self.key), body)
            .await
            .unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn wait_for(&self, id: &str, status: &str) -> Value {
        for _ in 0..600 {
            let (_, t) = self.json("GET", &format!("/api/tasks/{id}"), None).await;
            if t["status"] == status {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task {id} did not reach {status}");
    }
}

impl Stack {
    /// GET with the key; the status, Content-Type and the body's bytes (artifacts are binary).
    async fn get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
            self.key
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
            .await
            .expect("an answer within 60 s")
            .unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "artifacts are sent with a length"
        );
        (status, content_type, raw[split + 4..].to_vec())
    }
}

#[tokio::test]
async fn tasks_enqueued_over_http_are_run_by_a_real_worker() {
    let stack = start().await;
    let (status, b) = stack
        .json(
            "POST",
            "/api/tasks",
            Some(json!({"task_type": "test", "request": {"op": "echo", "n": 7}})),
        )
        .await;
    assert_eq!(status, 202, "{b}");
    let id = b["task_id"].as_str().unwrap().to_string();
    let t = stack.wait_for(&id, "completed").await;
    assert_eq!(t["result"]["echo"]["n"], 7);
    assert_eq!(t["attempts"], 1);

    // The events of a task that sleeps: queued or processing first, completed last, then the
    // stream closes.
    let (_, b) = stack
        .json(
            "POST",
            "/api/tasks",
            Some(json!({"task_type": "test", "request": {"op": "sleep", "ms": 300}})),
        )
        .await;
    let id = b["task_id"].as_str().unwrap().to_string();
    let (status, sse) = stack
        .http(
            "GET",
            &format!("/api/tasks/{id}/events"),
            Some(&stack.key),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let names: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("event:"))
        .map(str::trim)
        .collect();
    assert!(names.contains(&"processing"), "{names:?}");
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");

    // A real processor's file, written by the worker, served by the API.
    let (status, b) = stack
        .json(
            "POST",
            "/api/story/generate",
            Some(json!({"prompt": "a lighthouse and a storm", "length": "short"})),
        )
        .await;
    assert_eq!(status, 202, "{b}");
    let story = b["task_id"].as_str().unwrap().to_string();
    let t = stack.wait_for(&story, "completed").await;
    assert_eq!(t["result"]["artifacts"][0]["name"], "story.md", "{t}");
    let (status, md) = stack
        .http(
            "GET",
            &format!("/api/tasks/{story}/artifacts/story.md"),
            Some(&stack.key),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(md.starts_with("# "), "{md}");

    // The queue status sees the worker by its heartbeat.
    let (_, s) = stack.json("GET", "/api/tasks/queue/status", None).await;
    assert!(s["workers"]["live"].as_u64().unwrap() >= 1, "{s}");
    let test = s["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_type"] == "test")
        .unwrap()
        .clone();
    assert_eq!(test["counts"]["completed"], 2);

    // The admin key from the environment stops and starts the queue.
    let (status, _) = stack
        .http("POST", "/api/tasks/queue/stop", Some(ADMIN_KEY), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _) = stack
        .http("POST", "/api/tasks/queue/stop", Some(&stack.key), None)
        .await
        .unwrap();
    assert_eq!(status, 403);
    let (status, _) = stack
        .http("POST", "/api/tasks/queue/start", Some(ADMIN_KEY), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_api_exits_cleanly_on_sigterm_even_with_an_event_stream_open() {
    let mut stack = start().await;
    // A task that waits an hour: its event stream would stay open that long.
    let (_, b) = stack
        .json(
            "POST",
            "/api/tasks",
            Some(json!({"task_type": "test", "request": {}, "delay_seconds": 3600})),
        )
        .await;
    let path = format!("/api/tasks/{}/events", b["task_id"].as_str().unwrap());
    let mut sse = TcpStream::connect(("127.0.0.1", stack.port)).await.unwrap();
    sse.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            stack.key
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut first = [0u8; 256];
    let n = sse.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let pid = stack.api.0.id();
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    for _ in 0..400 {
        if let Some(status) = stack.api.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the API did not exit after SIGTERM");
}

#[tokio::test]
async fn one_task_of_each_type_completes_and_its_artifacts_download() {
    let stack = start().await;
    let slides = json!([{"title": "Tides", "text": "The moon pulls the sea."}]);
    let requests = [
        (
            "/api/story/generate",
            json!({"prompt": "a fox and a lantern", "length": "short"}),
        ),
        (
            "/api/image/generate",
            json!({"prompt": "a red kite", "width": 96, "height": 64}),
        ),
        (
            "/api/voice-generation/generate",
            json!({"text": "Hello from taskfleet.", "speed": 200}),
        ),
        (
            "/api/documentation/generate",
            json!({"source": "/// Adds two numbers.\npub fn add(a: i32, b: i32) -> i32 { a + b }", "format": "markdown"}),
        ),
        (
            "/api/quiz/generate",
            json!({"source_text": "Paris is the capital of France. The Seine flows through Paris. France is in Europe.", "num_questions": 2}),
        ),
        (
            "/api/video/generate",
            json!({"title": "Sea", "slides": slides}),
        ),
        (
            "/api/animated-lesson/generate",
            json!({"title": "Leaves", "steps": [{"text": "Leaves take in light."}]}),
        ),
        (
            "/api/course-video/generate",
            json!({"title": "Water", "lessons": [{"title": "Seas", "slides": slides}]}),
        ),
    ];
    let mut ids = Vec::new();
    for (path, body) in requests {
        let (status, b) = stack.json("POST", path, Some(body)).await;
        assert_eq!(status, 202, "{path}: {b}");
        ids.push((path, b["task_id"].as_str().unwrap().to_string()));
    }
    for (path, id) in ids {
        let mut task = Value::Null;
        for _ in 0..1200 {
            let (_, t) = stack.json("GET", &format!("/api/tasks/{id}"), None).await;
            if ["completed", "failed", "cancelled"].contains(&t["status"].as_str().unwrap_or("")) {
                task = t;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(task["status"], "completed", "{path}: {task}");
        let artifacts = task["result"]["artifacts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!artifacts.is_empty(), "{path} produced no artifact: {task}");
        for a in artifacts {
            let name = a["name"].as_str().unwrap();
            let (status, content_type, bytes) = stack
                .get_bytes(&format!("/api/tasks/{id}/artifacts/{name}"))
                .await;
            assert_eq!(status, 200, "{path} {name}");
            assert_eq!(
                bytes.len() as u64,
                a["size"].as_u64().unwrap(),
                "{path} {name}"
            );
            assert_eq!(
                content_type,
                a["media_type"].as_str().unwrap(),
                "{path} {name}"
            );
            let magic_ok = match name.rsplit('.').next().unwrap() {
                "png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "wav" => bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WAVE",
                "mp4" => bytes.len() > 12 && &bytes[4..8] == b"ftyp",
                "html" => String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    .to_ascii_lowercase()
                    .contains("<html"),
                _ => !bytes.is_empty() && std::str::from_utf8(&bytes).is_ok(),
            };
            assert!(magic_ok, "{path}: {name} is not what its name says");
        }
    }
}
