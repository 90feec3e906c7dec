//! The processors of the eight task types, run for real: espeak-ng, ffmpeg and ffprobe on this
//! machine, a real redis-server (from `taskfleet::testing`) where a broker is needed, and a small
//! OpenAI-compatible HTTP server on 127.0.0.1 for the `openai` providers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use taskfleet::artifacts::{ArtifactStore, LocalStore};
use taskfleet::{Broker, NewTask, QueueConfig, TaskStatus, TaskType};
use taskfleet_worker::processors::{
    self, course, for_type, Deps, ProviderSettings, Step, TaskContext, TaskError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The result of a run that ended done (not waiting).
fn finished(step: Step) -> Value {
    step.done().expect("the processor finished")
}

/// A test's own artifact store and scratch directory.
struct Setup {
    dir: tempfile::TempDir,
    store: Arc<LocalStore>,
    broker: Broker,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path().join("artifacts")));
    let queues: Vec<(&str, QueueConfig)> = TaskType::ALL
        .iter()
        .map(|t| (t.as_str(), QueueConfig::default()))
        .collect();
    let broker = taskfleet::testing::broker(&queues);
    Setup { dir, store, broker }
}

impl Setup {
    /// Local providers, small slides so videos encode quickly.
    fn deps(&self) -> Deps {
        let mut d = Deps::new(self.store.clone());
        d.video_size = (160, 90);
        d
    }

    fn ctx(&self, t: TaskType) -> TaskContext {
        TaskContext::detached(
            self.broker.clone(),
            t.as_str(),
            self.dir.path().join("work"),
        )
    }

    async fn run(&self, t: TaskType, request: Value) -> Result<Value, TaskError> {
        let ctx = self.ctx(t);
        let r = for_type(t, &self.deps())
            .process(&ctx, request)
            .await
            .map(finished);
        if let Ok(v) = &r {
            self.check_artifacts(&ctx.task_id, v).await;
        }
        r.map(|mut v| {
            v["_task_id"] = json!(ctx.task_id);
            v
        })
    }

    /// Every artifact a result lists is in the store, with the size it says.
    async fn check_artifacts(&self, task_id: &str, result: &Value) {
        let list = result["artifacts"]
            .as_array()
            .expect("a result lists its artifacts");
        assert!(!list.is_empty());
        for a in list {
            let name = a["name"].as_str().unwrap();
            let bytes = self
                .store
                .get(task_id, name)
                .await
                .unwrap()
                .expect("stored");
            assert_eq!(bytes.len() as u64, a["size"].as_u64().unwrap(), "{name}");
            assert!(a["media_type"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    async fn artifact(&self, result: &Value, name: &str) -> Vec<u8> {
        let id = result["_task_id"].as_str().unwrap();
        self.store
            .get(id, name)
            .await
            .unwrap()
            .expect("artifact stored")
    }

    async fn artifact_file(&self, result: &Value, name: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("{}-{name}", result["_task_id"].as_str().unwrap()));
        std::fs::write(&path, self.artifact(result, name).await).unwrap();
        path
    }
}

fn permanent<T: std::fmt::Debug>(r: Result<T, TaskError>) -> String {
    match r {
        Err(TaskError::Permanent(m)) => m,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

/// ffprobe's view of a media file: (codec_type, codec_name) per stream, and the duration.
fn probe(path: &Path) -> (Vec<(String, String)>, f64) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name:format=duration,format_name",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap().to_string(),
                s["codec_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let duration = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(v["format"]["format_name"].as_str().unwrap().contains("mp4"));
    (streams, duration)
}

fn wav_seconds(bytes: &[u8]) -> f64 {
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..16], b"WAVEfmt ");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as f64;
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as f64;
    assert_eq!(&bytes[36..40], b"data");
    assert_eq!(
        u32_at(40) as usize,
        bytes.len() - 44,
        "data size matches the file"
    );
    assert_eq!(
        u32_at(4) as usize,
        bytes.len() - 8,
        "RIFF size matches the file"
    );
    let (channels, rate, bits) = (u16_at(22), u32_at(24), u16_at(34));
    u32_at(40) / (rate * channels * bits / 8.0)
}

const SPEECH: &str = "The quick brown fox jumps over the lazy dog. A journey of a thousand miles \
    begins with a single step. Every cloud has a silver lining, and every lining has a story to tell.";

#[tokio::test]
async fn voice_is_a_wav_as_long_as_its_words_predict() {
    let s = setup();
    let words = SPEECH.split_whitespace().count() as f64;
    for speed in [140u32, 280] {
        let r = s
            .run(
                TaskType::VoiceGeneration,
                json!({"text": SPEECH, "speed": speed, "voice": "en"}),
            )
            .await
            .unwrap();
        let secs = wav_seconds(&s.artifact(&r, "voice.wav").await);
        let predicted = words / f64::from(speed) * 60.0;
        assert!(
            (secs - predicted).abs() <= 0.3 * predicted,
            "{speed} wpm: {secs:.2}s, predicted {predicted:.2}s"
        );
        assert!((r["duration_seconds"].as_f64().unwrap() - secs).abs() < 0.02);
        assert_eq!(r["chunks"], 1);
    }
}

#[tokio::test]
async fn long_voice_text_is_spoken_in_chunks_joined_into_one_wav() {
    let s = setup();
    let text = SPEECH.repeat(12); // ~2,300 characters: two chunks
    let r = s
        .run(
            TaskType::VoiceGeneration,
            json!({"text": text, "speed": 400}),
        )
        .await
        .unwrap();
    assert!(r["chunks"].as_u64().unwrap() >= 2);
    let secs = wav_seconds(&s.artifact(&r, "voice.wav").await);
    let predicted = text.split_whitespace().count() as f64 / 400.0 * 60.0;
    assert!(
        (secs - predicted).abs() <= 0.3 * predicted,
        "{secs:.2}s, predicted {predicted:.2}s"
    );
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[tokio::test]
async fn images_decode_at_the_requested_size_and_differ_by_prompt() {
    let s = setup();
    let a = s
        .run(
            TaskType::ImageGeneration,
            json!({"prompt": "a red fox in the snow", "width": 160, "height": 90}),
        )
        .await
        .unwrap();
    let b = s
        .run(
            TaskType::ImageGeneration,
            json!({"prompt": "a lighthouse at night", "width": 160, "height": 90}),
        )
        .await
        .unwrap();
    let (w, h, pa) = decode_png(&s.artifact(&a, "image.png").await);
    assert_eq!((w, h), (160, 90));
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(160), Some(90))
    );
    let (_, _, pb) = decode_png(&s.artifact(&b, "image.png").await);
    let differing = pa.iter().zip(&pb).filter(|(x, y)| x != y).count();
    assert!(
        differing > pa.len() / 4,
        "only {differing} of {} bytes differ",
        pa.len()
    );
    // Not a flat fill: a picture has many colours.
    let mut colours: Vec<&[u8]> = pa.chunks(3).collect();
    colours.sort();
    colours.dedup();
    assert!(colours.len() > 50, "{} colours", colours.len());
    let tall = s
        .run(
            TaskType::ImageGeneration,
            json!({"prompt": "x", "width": 64, "height": 200}),
        )
        .await
        .unwrap();
    assert_eq!(decode_png(&s.artifact(&tall, "image.png").await).0, 64);
}

#[tokio::test]
async fn stories_from_two_prompts_differ_and_have_the_requested_length() {
    let s = setup();
    for (length, words) in [("short", 150..=350), ("long", 900..=1600)] {
        let a = s
            .run(
                TaskType::StoryGeneration,
                json!({"prompt": "a clockmaker who can stop time", "length": length}),
            )
            .await
            .unwrap();
        let b = s
            .run(
                TaskType::StoryGeneration,
                json!({"prompt": "the last whale who sings", "length": length}),
            )
            .await
            .unwrap();
        for r in [&a, &b] {
            let n = r["text"].as_str().unwrap().split_whitespace().count();
            assert!(words.contains(&n), "{length}: {n} words");
            assert_eq!(r["words"].as_u64().unwrap() as usize, n);
            let md = String::from_utf8(s.artifact(r, "story.md").await).unwrap();
            assert!(md.starts_with(&format!("# {}", r["title"].as_str().unwrap())));
        }
        assert_ne!(a["text"], b["text"]);
        assert_ne!(a["title"], b["title"]);
    }
}

const RUST_SOURCE: &str = r#"//! Inventory tracking.

/// An item on a shelf.
pub struct Item {
    /// Stock keeping unit.
    pub sku: String,
    pub count: u32,
}

/// Where an item is.
pub enum Location { Shelf(u32), Backroom }

/// Things that can be counted.
pub trait Countable {
    /// How many.
    fn total(&self) -> u32;
}

impl Item {
    /// A new item with no stock.
    pub fn new(sku: &str) -> Item { Item { sku: sku.into(), count: 0 } }
    pub fn restock(&mut self, n: u32) { self.count += n; }
    fn audit(&self) {}
}

/// Largest shelf number.
pub const MAX_SHELF: u32 = 400;
pub type Sku = String;
pub mod reports {}
pub async fn sync_inventory() {}
fn internal_helper() {}
"#;

const PYTHON_SOURCE: &str = "\"\"\"Billing helpers.\"\"\"\n\nclass Invoice:\n    \"\"\"An invoice.\"\"\"\n\n    def __init__(self, number):\n        self.number = number\n\n    def total(self):\n        \"\"\"The sum of its lines.\"\"\"\n        return 0\n\n    def _round(self):\n        pass\n\ndef send_invoice(invoice, email):\n    \"\"\"Mails an invoice.\"\"\"\n    pass\n\ndef _secret():\n    pass\n";

#[tokio::test]
async fn documentation_names_every_public_item_of_its_input() {
    let s = setup();
    let rust_public = [
        "Item",
        "sku",
        "count",
        "Location",
        "Shelf",
        "Backroom",
        "Countable",
        "total",
        "new",
        "restock",
        "MAX_SHELF",
        "Sku",
        "reports",
        "sync_inventory",
    ];
    for format in ["markdown", "html"] {
        let r = s
            .run(
                TaskType::Documentation,
                json!({"title": "Inventory", "source": RUST_SOURCE, "format": format}),
            )
            .await
            .unwrap();
        let text = r["text"].as_str().unwrap();
        assert_eq!(r["language"], "rust");
        for name in rust_public {
            assert!(text.contains(name), "{format}: {name} missing");
        }
        for private in ["audit", "internal_helper"] {
            assert!(
                !text.contains(private),
                "{format}: private {private} listed"
            );
        }
        assert!(text.contains("A new item with no stock."));
        if format == "html" {
            assert!(text.starts_with("<!DOCTYPE html>"));
            assert_eq!(r["artifacts"][0]["name"], "documentation.html");
        } else {
            assert!(text.starts_with("# Inventory"));
        }
    }
    let r = s
        .run(TaskType::Documentation, json!({"source": PYTHON_SOURCE}))
        .await
        .unwrap();
    let text = r["text"].as_str().unwrap();
    assert_eq!(r["language"], "python");
    for name in [
        "Invoice",
        "__init__",
        "total",
        "send_invoice",
        "Mails an invoice.",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert!(!text.contains("_secret") && !text.contains("_round"));
}

const QUIZ_SOURCE: &str = "The Amazon River flows through South America and empties into the Atlantic Ocean. \
    It carries more water than any other river in the world. The river basin covers about 7 million square kilometres. \
    Most of the basin lies in Brazil, but it also reaches Peru, Colombia and Ecuador. \
    The Amazon rainforest is home to millions of species of insects, plants, birds and other forms of life. \
    Francisco de Orellana was the first European to travel the length of the river, in 1542. \
    Scientists estimate that the rainforest produces a large share of the oxygen made on land. \
    Deforestation threatens the rainforest and the species that live there.";

#[tokio::test]
async fn a_quiz_has_the_requested_number_of_questions_with_answers_from_the_source() {
    let s = setup();
    for n in [1, 4, 8] {
        let r = s
            .run(
                TaskType::Quiz,
                json!({"source_text": QUIZ_SOURCE, "num_questions": n}),
            )
            .await
            .unwrap();
        let qs = r["questions"].as_array().unwrap();
        assert_eq!(qs.len(), n);
        let mut answers: Vec<&str> = Vec::new();
        for q in qs {
            let answer = q["answer"].as_str().unwrap();
            assert!(
                QUIZ_SOURCE.contains(answer),
                "{answer:?} is not in the source"
            );
            assert!(q["question"].as_str().unwrap().contains("_____"));
            if q["type"] == "multiple_choice" {
                let options: Vec<&str> = q["options"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_str().unwrap())
                    .collect();
                assert!(options.contains(&answer) && options.len() >= 3);
            } else {
                assert_eq!(q["type"], "cloze");
            }
            answers.push(answer);
        }
        answers.sort();
        answers.dedup();
        assert_eq!(answers.len(), n, "every question asks something else");
    }
    let m = permanent(
        s.run(
            TaskType::Quiz,
            json!({"source_text": "Too short to ask about.", "num_questions": 5}),
        )
        .await,
    );
    assert!(m.contains("source_text"), "{m}");
}

fn slides(n: usize) -> Value {
    let texts = [
        "Water covers most of the planet.",
        "Rivers carry water to the sea.",
        "Clouds bring it back as rain.",
    ];
    json!((0..n)
        .map(|i| json!({"title": format!("Part {}", i + 1), "text": texts[i % 3]}))
        .collect::<Vec<_>>())
}

#[tokio::test]
async fn a_video_is_an_h264_aac_mp4_as_long_as_its_narrated_slides() {
    let s = setup();
    let r = s
        .run(
            TaskType::Video,
            json!({"title": "Water", "slides": slides(2)}),
        )
        .await
        .unwrap();
    let (streams, duration) = probe(&s.artifact_file(&r, "video.mp4").await);
    assert_eq!(
        streams,
        vec![
            ("video".to_string(), "h264".to_string()),
            ("audio".to_string(), "aac".to_string())
        ]
    );
    let per_slide: Vec<f64> = r["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["duration_seconds"].as_f64().unwrap())
        .collect();
    assert_eq!(per_slide.len(), 2);
    // Each slide lasts as long as its narration: a few seconds for a short sentence.
    assert!(
        per_slide.iter().all(|d| (1.0..8.0).contains(d)),
        "{per_slide:?}"
    );
    let expected: f64 = per_slide.iter().sum();
    assert!(
        (duration - expected).abs() < 0.25 + 0.05 * expected,
        "{duration} vs {expected}"
    );
    assert!((r["duration_seconds"].as_f64().unwrap() - expected).abs() < 0.05);
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(160), Some(90))
    );
}

#[tokio::test]
async fn an_animated_lesson_is_a_self_contained_page_with_a_poster() {
    let s = setup();
    let r = s
        .run(TaskType::AnimatedLesson, json!({"title": "Photosynthesis <basics>", "steps": [{"text": "Leaves take in light."}, {"text": "Water and carbon dioxide become sugar."}]}))
        .await
        .unwrap();
    let page = String::from_utf8(s.artifact(&r, "lesson.html").await).unwrap();
    assert!(
        page.contains("data:audio/wav;base64,UklGR"),
        "narration embedded as a WAV data URI"
    );
    assert!(
        page.contains("Photosynthesis &lt;basics&gt;"),
        "title escaped"
    );
    assert!(page.contains("Water and carbon dioxide become sugar.") && page.contains("@keyframes"));
    assert!(
        !page.contains("src=\"http"),
        "nothing loaded from the network"
    );
    assert_eq!(r["steps"], 2);
    assert!(r["duration_seconds"].as_f64().unwrap() > 1.0);
    let (w, h, _) = decode_png(&s.artifact(&r, "poster.png").await);
    assert_eq!((w, h), (160, 90));
}

/// Runs the video processor for every queued lesson of a course, as a worker would, and
/// completes (or, for `fail`, fails) them through the broker.
async fn work_lessons(s: &Setup, fail: Option<&str>) -> usize {
    let now = s.broker.server_time_ms().await.unwrap();
    let claimed = s.broker.claim(&["video"], 10, now).await.unwrap();
    for c in &claimed {
        if let Some(error) = fail {
            s.broker
                .fail_one("video", &c.id, &c.lease, error, true, now)
                .await
                .unwrap();
            continue;
        }
        let mut ctx = s.ctx(TaskType::Video);
        ctx.task_id = c.id.clone();
        let result = for_type(TaskType::Video, &s.deps())
            .process(&ctx, c.request.clone())
            .await
            .map(finished)
            .unwrap();
        s.broker
            .complete_one("video", &c.id, &c.lease, result, now)
            .await
            .unwrap();
    }
    claimed.len()
}

fn course_request() -> Value {
    json!({"title": "Water course", "lessons": [
        {"title": "Oceans", "slides": slides(1)},
        {"title": "Rivers", "slides": slides(2)},
    ]})
}

/// Enqueues and claims a course task, so its context has a real task id and owner.
async fn claimed_course(s: &Setup) -> TaskContext {
    let now = s.broker.server_time_ms().await.unwrap();
    let e = s
        .broker
        .enqueue(
            NewTask::new("course_video", course_request()).owner("acct1", "user1"),
            now,
        )
        .await
        .unwrap();
    let c = s.broker.claim(&["course_video"], 1, now).await.unwrap();
    assert_eq!(c[0].id, e.id);
    let mut ctx = s
        .ctx(TaskType::CourseVideo)
        .with_lease(&e.id, &c[0].lease, c[0].attempt);
    ctx.account_id = Some("acct1".into());
    ctx
}

#[tokio::test]
async fn a_course_waits_for_its_lesson_videos_then_joins_them() {
    let s = setup();
    let ctx = claimed_course(&s).await;
    let p = for_type(TaskType::CourseVideo, &s.deps());
    match p.process(&ctx, course_request()).await {
        Ok(Step::WaitFor(_, m)) => assert_eq!(m, "waiting for 2 of 2 lessons"),
        other => panic!("expected Defer, got {other:?}"),
    }
    // A re-run does not enqueue the lessons again.
    assert!(matches!(
        p.process(&ctx, course_request()).await,
        Ok(Step::WaitFor(..))
    ));
    let ids: Vec<String> = (0..2)
        .map(|i| course::lesson_task_id(&s.broker, &ctx.task_id, i).unwrap())
        .collect();
    let children = s.broker.get_many("video", &ids).await.unwrap();
    assert_eq!(children.len(), 2);
    for (i, c) in children.iter().enumerate() {
        assert_eq!(c.parent_id.as_deref(), Some(ctx.task_id.as_str()));
        assert_eq!(
            (c.account_id.as_deref(), c.user_id.as_deref()),
            (Some("acct1"), Some("user1"))
        );
        assert_eq!(c.request["title"], ["Oceans", "Rivers"][i]);
    }
    let status = s.broker.status().await.unwrap();
    let video = status.iter().find(|q| q.task_type == "video").unwrap();
    assert_eq!(video.count(TaskStatus::Queued), 2, "two lessons, not four");

    assert_eq!(work_lessons(&s, None).await, 2);
    let r = p
        .process(&ctx, course_request())
        .await
        .map(finished)
        .unwrap();
    let children = s.broker.get_many("video", &ids).await.unwrap();
    let lesson_total: f64 = children
        .iter()
        .map(|c| {
            c.result.as_ref().unwrap()["duration_seconds"]
                .as_f64()
                .unwrap()
        })
        .sum();
    let path = s.dir.path().join("course.mp4");
    std::fs::write(
        &path,
        s.store
            .get(&ctx.task_id, "course.mp4")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let (streams, duration) = probe(&path);
    assert_eq!(streams.len(), 2);
    assert!(
        (duration - lesson_total).abs() < 0.3 + 0.05 * lesson_total,
        "{duration} vs {lesson_total}"
    );
    assert!((r["duration_seconds"].as_f64().unwrap() - lesson_total).abs() < 0.05);
    assert_eq!(r["lessons"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failed_lesson_fails_its_course_with_the_lessons_error() {
    let s = setup();
    let ctx = claimed_course(&s).await;
    let p = for_type(TaskType::CourseVideo, &s.deps());
    assert!(matches!(
        p.process(&ctx, course_request()).await,
        Ok(Step::WaitFor(..))
    ));
    work_lessons(&s, Some("espeak-ng exploded")).await;
    let m = permanent(p.process(&ctx, course_request()).await);
    assert!(
        m.contains("lesson 1") && m.contains("espeak-ng exploded"),
        "{m}"
    );
}

/// ffmpeg processes whose command line mentions `marker`.
fn ffmpeg_processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("ffmpeg") && cmd.contains(marker) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn cancelling_a_running_video_stops_its_ffmpeg() {
    let s = setup();
    let mut deps = s.deps();
    deps.video_size = (1280, 720); // slow enough to catch ffmpeg at work
    let ctx = s.ctx(TaskType::Video);
    let marker = ctx.artifact_dir.display().to_string();
    let long =
        "This sentence is narrated slowly so that the encoder has plenty of frames to make. "
            .repeat(8);
    let request = json!({"title": "Long", "slides": [{"title": "One", "text": long}, {"title": "Two", "text": long}]});
    let p = for_type(TaskType::Video, &deps);
    let cancel = ctx.cancel.clone();
    let run = tokio::spawn(async move { p.process(&ctx, request).await });
    let mut seen = false;
    for _ in 0..6000 {
        if !ffmpeg_processes_with(&marker).is_empty() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen, "ffmpeg never started");
    cancel.cancel();
    let r = run.await.unwrap();
    assert_eq!(r, Err(TaskError::Retry("cancelled".into())));
    assert_eq!(
        ffmpeg_processes_with(&marker),
        Vec::<u32>::new(),
        "ffmpeg left behind"
    );
}

#[tokio::test]
async fn a_missing_tool_fails_permanently_naming_it() {
    let s = setup();
    let mut deps = s.deps();
    deps.tools.ffmpeg = "/nonexistent/ffmpeg".into();
    deps.tools.espeak = "/nonexistent/espeak-ng".into();
    let ctx = s.ctx(TaskType::Video);
    let m = permanent(
        for_type(TaskType::Video, &deps)
            .process(&ctx, json!({"title": "t", "slides": slides(1)}))
            .await,
    );
    assert!(m.contains("ffmpeg is not installed"), "{m}");
    let m = permanent(
        for_type(TaskType::VoiceGeneration, &deps)
            .process(&ctx, json!({"text": "hi"}))
            .await,
    );
    assert!(m.contains("espeak-ng is not installed"), "{m}");
    assert_eq!(deps.tools.missing(), vec!["espeak-ng", "ffmpeg"]);
    assert_eq!(
        processors::missing_tools(),
        Vec::<&str>::new(),
        "this machine has both"
    );
}

#[tokio::test]
async fn a_voice_espeak_ng_does_not_have_is_refused_naming_it() {
    let s = setup();
    for (voice, known) in [
        ("en-us", true),
        ("de+f3", true),
        ("gmw/en-US", true),
        ("zz-nope", false),
        ("en+nosuchvariant", false),
    ] {
        let lesson = json!({"title": "t", "steps": [{"text": "Hi."}], "voice": voice});
        let r = s.run(TaskType::AnimatedLesson, lesson).await;
        let speech = s
            .run(
                TaskType::VoiceGeneration,
                json!({"text": "Hi.", "voice": voice}),
            )
            .await;
        if known {
            assert!(r.is_ok(), "{voice}: {r:?}");
            assert!(speech.is_ok(), "{voice}: {speech:?}");
        } else {
            for r in [r, speech] {
                let m = permanent(r);
                assert!(m.starts_with("invalid voice:") && m.contains(voice), "{m}");
            }
        }
    }
    let m = permanent(
        s.run(
            TaskType::Video,
            json!({"title": "t", "slides": slides(1), "voice": "zz-nope"}),
        )
        .await,
    );
    assert!(m.contains("zz-nope"), "{m}");
}

#[tokio::test]
async fn a_failing_program_is_named_with_its_exit_status_and_nothing_of_its_stderr() {
    let s = setup();
    // An "ffmpeg" that fails the way a real one does: a message about a file in a temp dir.
    let fake = s.dir.path().join("fake-ffmpeg");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"/tmp/tf-work-1234/segment-0.mp4: Permission denied\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut deps = s.deps();
    deps.tools.ffmpeg = fake;
    let ctx = s.ctx(TaskType::Video);
    let m = permanent(
        for_type(TaskType::Video, &deps)
            .process(&ctx, json!({"title": "t", "slides": slides(1)}))
            .await,
    );
    assert_eq!(m, "ffmpeg failed (exit 1)");
}

#[tokio::test]
async fn bad_requests_fail_permanently_with_the_field_named() {
    let s = setup();
    let cases = [
        (
            TaskType::VoiceGeneration,
            json!({"text": "a".repeat(20_001)}),
            "text",
        ),
        (
            TaskType::VoiceGeneration,
            json!({"text": "hi", "speed": 50}),
            "speed",
        ),
        (
            TaskType::Video,
            json!({"title": "t", "slides": []}),
            "slides",
        ),
        (
            TaskType::ImageGeneration,
            json!({"prompt": "p", "width": 10000}),
            "width",
        ),
        (
            TaskType::StoryGeneration,
            json!({"prompt": "p", "mood": "sad"}),
            "mood",
        ),
        (
            TaskType::Quiz,
            json!({"source_text": "x", "num_questions": 51}),
            "num_questions",
        ),
        (
            TaskType::Documentation,
            json!({"source": "x", "format": "pdf"}),
            "format",
        ),
        (
            TaskType::AnimatedLesson,
            json!({"title": "t", "steps": [{"text": "a", "audio": 1}]}),
            "audio",
        ),
        (
            TaskType::CourseVideo,
            json!({"title": "t", "lessons": []}),
            "lessons",
        ),
        (
            TaskType::AnimatedLesson,
            json!({"title": "t", "steps": vec![json!({"text": "a ".repeat(9_999)}); 50]}),
            "steps",
        ),
        (
            TaskType::VoiceGeneration,
            json!({"text": "a ".repeat(9_999), "speed": 80}),
            "text",
        ),
    ];
    for (t, request, field) in cases {
        let m = permanent(s.run(t, request).await);
        assert!(m.contains(field), "{t}: {m:?} does not name {field}");
    }
}

// ---- the openai providers, against a small OpenAI-compatible server on loopback ----

/// What the test server answers: status, body, and how long it waits first.
type Answer = (u16, String, Duration);

/// Serves every request with `answer(path, body)` on 127.0.0.1 at a free port; the server
/// stops with the test's runtime.
async fn provider_server(
    answer: impl Fn(&str, &Value) -> Answer + Send + Sync + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, len) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body: Value =
                    serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
                let (status, text, delay) = answer(&path, &body);
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/v1")
}

fn chat_answer(content: &str) -> String {
    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
        .to_string()
}

fn openai_deps(s: &Setup, url: &str) -> Deps {
    let mut d = s.deps();
    d.text = ProviderSettings::openai(url, "sk-test", "test-model");
    d.text.timeout_secs = 1;
    d.image = d.text.clone();
    d
}

#[tokio::test]
async fn the_openai_text_provider_uses_the_chat_endpoint() {
    let s = setup();
    let url = provider_server(|path, body| {
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(body["model"], "test-model");
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        let content = if user.contains("questions") {
            json!({"questions": [
                {"type": "cloze", "question": "_____ is wet.", "answer": "Water"},
                {"type": "multiple_choice", "question": "Rivers reach the _____.", "options": ["sea", "sky"], "answer": "sea"},
            ]})
            .to_string()
        } else {
            "The Tide Clock\n\nOnce there was a clock that kept the tides.".to_string()
        };
        (200, chat_answer(&content), Duration::ZERO)
    })
    .await;
    let deps = openai_deps(&s, &url);
    let ctx = s.ctx(TaskType::StoryGeneration);
    let r = for_type(TaskType::StoryGeneration, &deps)
        .process(&ctx, json!({"prompt": "a tide clock"}))
        .await
        .map(finished)
        .unwrap();
    assert_eq!(r["title"], "The Tide Clock");
    assert_eq!(r["text"], "Once there was a clock that kept the tides.");
    assert_eq!(r["provider"], "openai");
    let r = for_type(TaskType::Quiz, &deps)
        .process(
            &ctx,
            json!({"source_text": "Water is wet.", "num_questions": 2}),
        )
        .await
        .map(finished)
        .unwrap();
    assert_eq!(r["questions"].as_array().unwrap().len(), 2);
    assert_eq!(r["questions"][1]["answer"], "sea");
}

#[tokio::test]
async fn openai_errors_mean_retry_or_permanent() {
    let s = setup();
    let url = provider_server(|_, body| {
        let prompt = body["messages"][1]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if prompt.contains("busy") {
            (
                429,
                r#"{"error":{"message":"rate limited"}}"#.into(),
                Duration::ZERO,
            )
        } else if prompt.contains("broken") {
            (
                503,
                r#"{"error":{"message":"overloaded"}}"#.into(),
                Duration::ZERO,
            )
        } else if prompt.contains("bad") {
            (
                400,
                r#"{"error":{"message":"bad request"}}"#.into(),
                Duration::ZERO,
            )
        } else if prompt.contains("nokey") {
            (
                401,
                r#"{"error":{"message":"no key"}}"#.into(),
                Duration::ZERO,
            )
        } else {
            (200, chat_answer("Late\n\ntoo late"), Duration::from_secs(3))
        }
    })
    .await;
    let deps = openai_deps(&s, &url);
    let ctx = s.ctx(TaskType::StoryGeneration);
    let story = for_type(TaskType::StoryGeneration, &deps);
    let run = |p: &'static str| {
        let story = story.clone();
        let ctx = ctx.clone();
        async move { story.process(&ctx, json!({"prompt": p})).await }
    };
    assert!(matches!(run("busy").await, Err(TaskError::Retry(m)) if m.contains("429")));
    assert!(matches!(run("broken").await, Err(TaskError::Retry(m)) if m.contains("503")));
    assert!(matches!(run("bad").await, Err(TaskError::Permanent(m)) if m.contains("400")));
    assert!(matches!(run("nokey").await, Err(TaskError::Permanent(m)) if m.contains("401")));
    assert!(matches!(run("slow").await, Err(TaskError::Retry(m)) if m.contains("timed out")));
    // What is stored on the task says what failed, in the user's terms: not the provider's URL
    // and not its answer's body (the worker's log has both).
    for p in ["busy", "broken", "bad", "nokey", "slow"] {
        let m = run(p).await.unwrap_err().message().to_string();
        assert!(m.starts_with("text provider "), "{p}: {m}");
        for leak in [
            "127.0.0.1",
            "/v1",
            "rate limited",
            "overloaded",
            "bad request",
            "no key",
        ] {
            assert!(!m.contains(leak), "{p}: {m:?} shows {leak:?}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_retried() {
    let s = setup();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let deps = openai_deps(&s, &format!("http://127.0.0.1:{port}/v1"));
    let ctx = s.ctx(TaskType::Documentation);
    let r = for_type(TaskType::Documentation, &deps)
        .process(&ctx, json!({"source": "pub fn a() {}"}))
        .await;
    assert!(matches!(r, Err(TaskError::Retry(_))), "{r:?}");
}

#[tokio::test]
async fn the_openai_image_provider_stores_the_png_it_returns() {
    use base64::Engine as _;
    let s = setup();
    // A real PNG to hand back: one drawn by a local image task.
    let local = s
        .run(
            TaskType::ImageGeneration,
            json!({"prompt": "a kite", "width": 64, "height": 64}),
        )
        .await
        .unwrap();
    let png = s.artifact(&local, "image.png").await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let url = provider_server(move |path, body| {
        assert_eq!(path, "/v1/images/generations");
        assert_eq!(body["size"], "64x64");
        (
            200,
            json!({"data": [{"b64_json": b64}]}).to_string(),
            Duration::ZERO,
        )
    })
    .await;
    let deps = openai_deps(&s, &url);
    let ctx = s.ctx(TaskType::ImageGeneration);
    let r = for_type(TaskType::ImageGeneration, &deps)
        .process(&ctx, json!({"prompt": "a kite", "width": 64, "height": 64}))
        .await
        .map(finished)
        .unwrap();
    assert_eq!(r["provider"], "openai");
    assert_eq!(
        s.store
            .get(&ctx.task_id, "image.png")
            .await
            .unwrap()
            .unwrap(),
        png
    );
}

#[tokio::test]
async fn a_course_whose_token_fires_without_a_cancel_leaves_its_lessons_alone() {
    // The token also fires on a lost lease, a shutdown's release and a timeout: none of
    // those is a cancel of the course, and its lessons must go on.
    let s = setup();
    let ctx = claimed_course(&s).await;
    ctx.cancel.cancel();
    let r = for_type(TaskType::CourseVideo, &s.deps())
        .process(&ctx, course_request())
        .await;
    assert!(matches!(r, Ok(Step::WaitFor(..))), "{r:?}");
    let ids: Vec<String> = (0..2)
        .map(|i| course::lesson_task_id(&s.broker, &ctx.task_id, i).unwrap())
        .collect();
    let children = s.broker.get_many("video", &ids).await.unwrap();
    assert_eq!(children.len(), 2);
    assert!(children.iter().all(|c| c.status == TaskStatus::Queued));
}

#[tokio::test]
async fn a_course_cancelled_while_it_waits_cancels_its_waiting_lessons() {
    let s = setup();
    let ctx = claimed_course(&s).await;
    let r = for_type(TaskType::CourseVideo, &s.deps())
        .process(&ctx, course_request())
        .await;
    let Ok(Step::WaitFor(delay, message)) = r else {
        panic!("expected Defer, got {r:?}");
    };
    let lease = s
        .broker
        .get(&ctx.task_id)
        .await
        .unwrap()
        .unwrap()
        .lease
        .unwrap();
    s.broker
        .defer(
            "course_video",
            &ctx.task_id,
            &lease,
            delay,
            &message,
            taskfleet::At::Server,
        )
        .await
        .unwrap();
    assert_eq!(
        s.broker.status_of(&ctx.task_id).await.unwrap(),
        TaskStatus::Scheduled
    );
    // The course waits in `scheduled`: a cancel ends it at once, and its lessons with it.
    s.broker
        .cancel(&ctx.task_id, taskfleet::At::Server)
        .await
        .unwrap();
    let ids: Vec<String> = (0..2)
        .map(|i| course::lesson_task_id(&s.broker, &ctx.task_id, i).unwrap())
        .collect();
    let children = s.broker.get_many("video", &ids).await.unwrap();
    assert_eq!(children.len(), 2);
    assert!(
        children.iter().all(|c| c.status == TaskStatus::Cancelled),
        "{:?}",
        children.iter().map(|c| c.status).collect::<Vec<_>>()
    );
}

#[cfg(feature = "object-store")]
#[tokio::test]
async fn artifacts_can_live_in_an_object_store() {
    let s = setup();
    let store = Arc::new(
        taskfleet::artifacts::ObjectStoreArtifacts::from_url_with(
            "memory:///bucket/tf",
            Vec::new(),
        )
        .unwrap(),
    );
    let mut deps = s.deps();
    deps.store = store.clone();
    let ctx = s.ctx(TaskType::ImageGeneration);
    let r = for_type(TaskType::ImageGeneration, &deps)
        .process(&ctx, json!({"prompt": "a boat", "width": 64, "height": 64}))
        .await
        .map(finished)
        .unwrap();
    let png = store.get(&ctx.task_id, "image.png").await.unwrap().unwrap();
    assert_eq!(
        png.len() as u64,
        r["artifacts"][0]["size"].as_u64().unwrap()
    );
    assert_eq!(decode_png(&png).0, 64);
    assert_eq!(
        s.store.get(&ctx.task_id, "image.png").await.unwrap(),
        None,
        "not in the local store"
    );
}

#[tokio::test]
async fn local_algorithms_survive_odd_input() {
    use taskfleet_worker::processors::requests::{DocFormat, StoryLength, StoryRequest};
    use taskfleet_worker::processors::{docs, quiz, story};
    let pieces = [
        "pub ",
        "fn ",
        "struct ",
        "enum ",
        "impl ",
        "{",
        "}",
        "(",
        ")",
        "\n",
        "    ",
        "\t",
        "\"",
        "'",
        "///",
        "//!",
        "#[x]",
        "def ",
        "class ",
        ":",
        "\"\"\"",
        "'''",
        "é",
        "日本",
        "A",
        "Name",
        "1999",
        ".",
        " ",
        ",",
        ";",
        "<",
        ">",
        "#",
        "=",
        "-",
        "_x",
        "Ünïcödé",
        "\r\n",
        "!",
        "?",
        "de",
        "Ölaf",
    ];
    let mut seed: u64 = 0x9E37_79B9;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..1500 {
        let n = (next() % 120) as usize;
        let s: String = (0..n)
            .map(|_| pieces[(next() % pieces.len() as u64) as usize])
            .collect();
        docs::generate(None, &s, DocFormat::Markdown);
        docs::generate(Some("t"), &s, DocFormat::Html);
        let _ = quiz::generate(&s, 3);
        if !s.trim().is_empty() {
            let r = StoryRequest {
                prompt: s.clone(),
                length: StoryLength::Short,
                audience: Some(s.clone()),
            };
            assert!(StoryLength::Short
                .words()
                .contains(&story::generate(&r).words()));
        }
    }
    let s = setup();
    for prompt in [
        "日本語のテキスト ".repeat(40),
        "x".repeat(5000),
        "  \u{200b} é ".into(),
    ] {
        let r = s
            .run(
                TaskType::ImageGeneration,
                json!({"prompt": prompt, "width": 64, "height": 64}),
            )
            .await
            .unwrap();
        assert_eq!(decode_png(&s.artifact(&r, "image.png").await).0, 64);
    }
}

/// A worker process of this build, killed when the test ends.
struct WorkerProcess(std::process::Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_real_worker_runs_a_course_through_its_lessons_to_one_mp4() {
    let s = setup();
    let artifacts = s.dir.path().join("artifacts");
    let _worker = WorkerProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_taskfleet-worker"))
            .args(["--redis-url", &taskfleet::testing::shared_redis().url()])
            .args([
                "--types",
                "video,course_video",
                "--concurrency",
                "3",
                "--poll-ms",
                "200",
            ])
            .env("TASKFLEET__REDIS__PREFIX", s.broker.keys().prefix())
            .env("TASKFLEET__ARTIFACTS__DIR", &artifacts)
            .env("TASKFLEET__PROCESSORS__VIDEO_SIZE", "160x90")
            .env("TASKFLEET__PROCESSORS__COURSE_POLL_SECS", "1")
            .env("RUST_LOG", "warn")
            .current_dir(s.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start taskfleet-worker"),
    );
    let now = s.broker.server_time_ms().await.unwrap();
    let course = s
        .broker
        .enqueue(
            NewTask::new("course_video", course_request()).owner("acct9", "user9"),
            now,
        )
        .await
        .unwrap();
    let mut task = None;
    for _ in 0..600 {
        let t = s.broker.get(&course.id).await.unwrap().unwrap();
        if t.status.is_terminal() {
            task = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let task = task.expect("the course finished within two minutes");
    assert_eq!(
        task.status,
        TaskStatus::Completed,
        "error: {:?}",
        task.error
    );
    assert_eq!(task.attempts, 1, "waiting for lessons used no attempt");
    let ids: Vec<String> = (0..2)
        .map(|i| course::lesson_task_id(&s.broker, &course.id, i).unwrap())
        .collect();
    let lessons = s.broker.get_many("video", &ids).await.unwrap();
    assert!(lessons.iter().all(|l| l.status == TaskStatus::Completed));
    let total: f64 = lessons
        .iter()
        .map(|l| {
            l.result.as_ref().unwrap()["duration_seconds"]
                .as_f64()
                .unwrap()
        })
        .sum();
    let path = s.dir.path().join("from-worker.mp4");
    std::fs::copy(artifacts.join(&course.id).join("course.mp4"), &path)
        .expect("course.mp4 in the artifact dir");
    let (streams, duration) = probe(&path);
    assert_eq!(streams.len(), 2);
    assert!(
        (duration - total).abs() < 0.3 + 0.05 * total,
        "{duration} vs {total}"
    );
}

#[tokio::test]
async fn a_courses_lessons_count_against_its_accounts_enqueue_rate() {
    // acct1 may enqueue one task a minute, and has used it: the course's two lessons wait for
    // the next window instead of skipping the limit.
    let mut s = setup();
    let mut limits = taskfleet::Limits::unlimited();
    limits.rate_per_minute = 1;
    let mut b = Broker::builder(taskfleet::testing::shared_redis().url())
        .prefix(taskfleet::testing::fresh_prefix())
        .limits(limits);
    for t in TaskType::ALL {
        b = b.queue(t.as_str(), QueueConfig::default());
    }
    s.broker = b.build().unwrap();
    let ctx = claimed_course(&s).await;
    let now = s.broker.server_time_ms().await.unwrap();
    s.broker.take_rate("acct1", 1, now).await.unwrap();
    let r = for_type(TaskType::CourseVideo, &s.deps())
        .process(&ctx, course_request())
        .await;
    match r {
        Ok(Step::WaitFor(_, m)) => assert!(m.contains("rate limit"), "{m}"),
        other => panic!("expected a wait for the rate limit, got {other:?}"),
    }
    let ids: Vec<String> = (0..2)
        .map(|i| course::lesson_task_id(&s.broker, &ctx.task_id, i).unwrap())
        .collect();
    assert!(s.broker.get_many("video", &ids).await.unwrap().is_empty());
}
