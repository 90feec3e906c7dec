//! animated_lesson: one self-contained HTML file that animates the steps in time with their
//! narration (espeak-ng, one WAV embedded as a data URI, or beside the page when large), and a
//! poster PNG from the image provider. The narration is written to disk as it is spoken; only
//! narration small enough to embed is read back into memory.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{json, Value};
use taskfleet::artifacts::ArtifactStore;

use super::image::ImageProvider;
use super::requests::{self, AnimatedLessonRequest, DEFAULT_SPEED_WPM, DEFAULT_VOICE};
use super::tools::{self, Scratch, Tools};
use super::voice::{check_voice, max_spoken_seconds, round2, speak, WavWriter};
use super::{invalid, store_error, Processor, Step, TaskContext, TaskError};

/// Narration up to this size is embedded in the page; larger narration is stored beside it.
pub const MAX_EMBEDDED_AUDIO_BYTES: usize = 8 << 20;

pub struct AnimatedLessonProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) images: Arc<dyn ImageProvider>,
    pub(crate) tools: Tools,
    pub(crate) size: (u32, u32),
}

#[async_trait]
impl Processor for AnimatedLessonProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let r: AnimatedLessonRequest = requests::parse(request).map_err(invalid)?;
        self.tools.require_espeak("animated_lesson")?;
        let voice = r.voice.as_deref().unwrap_or(DEFAULT_VOICE);
        check_voice(&self.tools, voice).await?;
        let scratch = Scratch::new(&ctx.artifact_dir, ctx.attempt).await?;
        let n = r.steps.len();
        let mut narration =
            WavWriter::create(scratch.join("narration.wav"), max_spoken_seconds()).await?;
        let mut timings = Vec::with_capacity(n);
        let mut at = 0.0;
        ctx.progress(0, "narrating").await;
        for (i, step) in r.steps.iter().enumerate() {
            let spoken = speak(
                ctx,
                &self.tools,
                &step.text,
                voice,
                DEFAULT_SPEED_WPM,
                scratch.path(),
                &mut narration,
                None,
            )
            .await?;
            timings.push((at, at + spoken.seconds));
            at += spoken.seconds;
            ctx.progress(
                (80 * (i + 1) / n) as u8,
                &format!("narrated step {} of {n}", i + 1),
            )
            .await;
        }
        let (audio_path, audio_size) = narration.finish().await?;
        let poster = self
            .images
            .generate(&r.title, self.size.0, self.size.1, &ctx.cancel)
            .await?;
        ctx.progress(90, "writing the page").await;
        let embedded = audio_size <= MAX_EMBEDDED_AUDIO_BYTES as u64;
        let audio_src = if embedded {
            let audio = tokio::fs::read(&audio_path)
                .await
                .map_err(tools::io_retry("reading the narration"))?;
            format!(
                "data:audio/wav;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&audio)
            )
        } else {
            "narration.wav".to_string()
        };
        let page = page(&r, &timings, &audio_src);
        let mut artifacts = vec![
            self.store
                .put(&ctx.task_id, "lesson.html", page.into_bytes())
                .await
                .map_err(store_error)?,
            self.store
                .put(&ctx.task_id, "poster.png", poster)
                .await
                .map_err(store_error)?,
        ];
        if !embedded {
            artifacts.push(
                self.store
                    .put_file(&ctx.task_id, "narration.wav", &audio_path)
                    .await
                    .map_err(store_error)?,
            );
        }
        ctx.progress(100, "done").await;
        Ok(Step::Done(json!({
            "title": r.title,
            "artifacts": artifacts,
            "steps": n,
            "duration_seconds": round2(at),
            "audio_embedded": embedded,
        })))
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The lesson page: steps appear one by one (slide-in and highlight) as the narration reaches
/// them; without sound (autoplay refused, or muted) a timer keeps the same schedule.
fn page(r: &AnimatedLessonRequest, timings: &[(f64, f64)], audio_src: &str) -> String {
    let steps: String = r
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "<li class=\"step\" id=\"step-{i}\"><span class=\"n\">{}</span><p>{}</p></li>\n",
                i + 1,
                esc(&s.text)
            )
        })
        .collect();
    let times = serde_json::to_string(
        &timings
            .iter()
            .map(|(a, b)| [round2(*a), round2(*b)])
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    let total = timings.last().map_or(0.0, |t| t.1);
    format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;background:#0f172a;color:#e2e8f0;margin:0;padding:2rem;}}
main{{max-width:46rem;margin:auto}}
h1{{animation:drop .8s ease-out both}}
ol{{list-style:none;padding:0}}
.step{{display:flex;gap:1rem;align-items:flex-start;margin:.8rem 0;padding:.8rem 1rem;border-radius:.6rem;background:#1e293b;opacity:0;transform:translateX(-2rem);transition:opacity .6s,transform .6s,background .4s}}
.step.shown{{opacity:1;transform:none}}
.step.current{{background:#2563eb;box-shadow:0 0 0 3px #93c5fd;animation:pulse 1.6s ease-in-out infinite}}
.step p{{margin:0}}
.n{{font-weight:700;min-width:1.6rem;height:1.6rem;border-radius:50%;background:#f59e0b;color:#111;display:grid;place-items:center}}
#bar{{height:6px;background:#334155;border-radius:3px;overflow:hidden;margin:1rem 0}}
#fill{{height:100%;width:0;background:#f59e0b;transition:width .25s linear}}
button{{font-size:1rem;padding:.5rem 1.2rem;border:0;border-radius:.4rem;background:#f59e0b;cursor:pointer}}
@keyframes drop{{from{{opacity:0;transform:translateY(-1rem)}}to{{opacity:1;transform:none}}}}
@keyframes pulse{{50%{{box-shadow:0 0 0 6px #93c5fd55}}}}
</style></head>
<body><main>
<h1>{title}</h1>
<button id="play">▶ Play lesson</button>
<div id="bar"><div id="fill"></div></div>
<ol id="steps">
{steps}</ol>
<audio id="narration" preload="auto" src="{audio_src}"></audio>
</main>
<script>
const times = {times};
const total = {total:.2};
const audio = document.getElementById('narration');
const items = [...document.querySelectorAll('.step')];
let clock = null, started = 0;
function show(t) {{
  items.forEach((el, i) => {{
    el.classList.toggle('shown', t >= times[i][0]);
    el.classList.toggle('current', t >= times[i][0] && t < times[i][1]);
  }});
  document.getElementById('fill').style.width = Math.min(100, 100 * t / (total || 1)) + '%';
}}
function timer() {{
  started = performance.now();
  clock = setInterval(() => {{
    const t = (performance.now() - started) / 1000;
    show(t);
    if (t > total) clearInterval(clock);
  }}, 100);
}}
audio.addEventListener('timeupdate', () => show(audio.currentTime));
audio.addEventListener('ended', () => show(total + 1));
document.getElementById('play').addEventListener('click', () => {{
  clearInterval(clock);
  audio.currentTime = 0;
  audio.play().catch(timer);
}});
show(0);
</script>
</body></html>
"##,
        title = esc(&r.title),
    )
}
