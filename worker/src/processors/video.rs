//! video: for each slide a picture (the image provider) and its narration (espeak-ng); ffmpeg
//! encodes each slide as an H.264/AAC segment exactly as long as its narration, then joins the
//! segments into one MP4. Progress after each slide. ffmpeg runs as a child that is killed (and
//! reaped) when the task is cancelled.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use taskfleet::artifacts::{Artifact, ArtifactStore};
use tokio_util::sync::CancellationToken;

use super::image::ImageProvider;
use super::requests::{self, VideoRequest, DEFAULT_SPEED_WPM, DEFAULT_VOICE};
use super::tools::{self, Scratch, Tools};
use super::voice::{check_voice, max_spoken_seconds, round2, speak, WavWriter};
use super::{invalid, store_error, Processor, Step, TaskContext, TaskError};

/// Frames per second of a slide video: slides are still pictures, so few frames are needed.
pub const FPS: u32 = 10;
/// Shortest time a slide is shown, in seconds, even if its narration is shorter.
pub const MIN_SLIDE_SECONDS: f64 = 1.0;
/// The name of a video task's MP4 artifact (a course reads its lessons' files by this name).
pub const VIDEO_ARTIFACT: &str = "video.mp4";

pub struct VideoProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) images: Arc<dyn ImageProvider>,
    pub(crate) tools: Tools,
    pub(crate) size: (u32, u32),
}

#[async_trait]
impl Processor for VideoProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let r: VideoRequest = requests::parse(request).map_err(invalid)?;
        self.tools.require_ffmpeg("video")?;
        self.tools.require_espeak("video")?;
        let voice = r.voice.as_deref().unwrap_or(DEFAULT_VOICE);
        check_voice(&self.tools, voice).await?;
        // yuv420p needs even sides.
        let (w, h) = (self.size.0 & !1, self.size.1 & !1);
        let scratch = Scratch::new(&ctx.artifact_dir, ctx.attempt).await?;
        let n = r.slides.len();
        let mut segments = Vec::with_capacity(n);
        let mut slides = Vec::with_capacity(n);
        let mut total = 0.0;
        let mut spoken_total = 0.0;
        ctx.progress(0, &format!("slide 1 of {n}")).await;
        for (i, slide) in r.slides.iter().enumerate() {
            let png = self
                .images
                .slide(&slide.title, &slide.text, w, h, &ctx.cancel)
                .await?;
            let png_path = scratch.join(format!("slide-{i}.png"));
            tokio::fs::write(&png_path, png)
                .await
                .map_err(tools::io_retry("writing a slide"))?;
            // The narration the request's check estimated, spoken onto its own WAV file; the
            // video's slides share one limit on how much espeak-ng may produce.
            let narration = requests::slide_narration(slide);
            let wav_path = scratch.join(format!("slide-{i}.wav"));
            let mut wav =
                WavWriter::create(wav_path.clone(), max_spoken_seconds() - spoken_total).await?;
            let spoken = speak(
                ctx,
                &self.tools,
                &narration,
                voice,
                DEFAULT_SPEED_WPM,
                scratch.path(),
                &mut wav,
                None,
            )
            .await?;
            wav.finish().await?;
            spoken_total += spoken.seconds;
            let seconds = spoken.seconds.max(MIN_SLIDE_SECONDS);
            let segment = scratch.join(format!("segment-{i}.mp4"));
            encode_slide(
                &ctx.cancel,
                &self.tools,
                &png_path,
                &wav_path,
                seconds,
                &segment,
            )
            .await?;
            segments.push(segment);
            slides.push(json!({"title": slide.title, "duration_seconds": round2(seconds)}));
            total += seconds;
            let pct = (5 + 90 * (i + 1) / n) as u8;
            ctx.progress(pct, &format!("slide {} of {n} done", i + 1))
                .await;
        }
        let artifact = concat_and_store(
            ctx,
            &self.tools,
            self.store.as_ref(),
            &segments,
            scratch.path(),
            VIDEO_ARTIFACT,
        )
        .await?;
        Ok(Step::Done(json!({
            "title": r.title,
            "artifacts": [artifact],
            "duration_seconds": round2(total),
            "width": w,
            "height": h,
            "slides": slides,
        })))
    }
}

/// One slide: its picture shown for `seconds`, with its narration (padded with silence).
async fn encode_slide(
    cancel: &CancellationToken,
    tools: &Tools,
    png: &Path,
    wav: &Path,
    seconds: f64,
    out: &Path,
) -> Result<(), TaskError> {
    let fps = FPS.to_string();
    let secs = format!("{seconds:.3}");
    let args: Vec<&std::ffi::OsStr> = vec![
        "-nostdin".as_ref(),
        "-y".as_ref(),
        "-loglevel".as_ref(),
        "error".as_ref(),
        "-loop".as_ref(),
        "1".as_ref(),
        "-framerate".as_ref(),
        fps.as_ref(),
        "-i".as_ref(),
        png.as_os_str(),
        "-i".as_ref(),
        wav.as_os_str(),
        "-map".as_ref(),
        "0:v".as_ref(),
        "-map".as_ref(),
        "1:a".as_ref(),
        "-af".as_ref(),
        "apad".as_ref(),
        "-c:v".as_ref(),
        "libx264".as_ref(),
        "-preset".as_ref(),
        "veryfast".as_ref(),
        "-tune".as_ref(),
        "stillimage".as_ref(),
        "-pix_fmt".as_ref(),
        "yuv420p".as_ref(),
        "-r".as_ref(),
        fps.as_ref(),
        "-c:a".as_ref(),
        "aac".as_ref(),
        "-b:a".as_ref(),
        "96k".as_ref(),
        "-ar".as_ref(),
        "44100".as_ref(),
        "-ac".as_ref(),
        "1".as_ref(),
        "-t".as_ref(),
        secs.as_ref(),
        out.as_os_str(),
    ];
    tools::run(cancel, &tools.ffmpeg, tools::FFMPEG, args, None).await?;
    Ok(())
}

/// The last step of a video and of a course: joins the parts into `name` in `dir`, stores it
/// as the task's artifact, and reports 100%.
pub(crate) async fn concat_and_store(
    ctx: &TaskContext,
    tools: &Tools,
    store: &dyn ArtifactStore,
    parts: &[std::path::PathBuf],
    dir: &Path,
    name: &str,
) -> Result<Artifact, TaskError> {
    let out = dir.join(name);
    concat(&ctx.cancel, tools, parts, dir, &out).await?;
    let artifact = store
        .put_file(&ctx.task_id, name, &out)
        .await
        .map_err(store_error)?;
    ctx.progress(100, "done").await;
    Ok(artifact)
}

/// Joins MP4 files of the same encoding into one, without re-encoding (ffmpeg's concat
/// demuxer).
async fn concat(
    cancel: &CancellationToken,
    tools: &Tools,
    parts: &[std::path::PathBuf],
    dir: &Path,
    out: &Path,
) -> Result<(), TaskError> {
    let mut list = String::new();
    for p in parts {
        // The concat list quotes with single quotes; escape any in the path.
        let escaped = p.display().to_string().replace('\'', "'\\''");
        list.push_str(&format!("file '{escaped}'\n"));
    }
    let list_path = dir.join(format!("concat-{:x}.txt", rand::random::<u32>()));
    tokio::fs::write(&list_path, list)
        .await
        .map_err(tools::io_retry("writing the concat list"))?;
    let args: Vec<&std::ffi::OsStr> = vec![
        "-nostdin".as_ref(),
        "-y".as_ref(),
        "-loglevel".as_ref(),
        "error".as_ref(),
        "-f".as_ref(),
        "concat".as_ref(),
        "-safe".as_ref(),
        "0".as_ref(),
        "-i".as_ref(),
        list_path.as_os_str(),
        "-c".as_ref(),
        "copy".as_ref(),
        "-movflags".as_ref(),
        "+faststart".as_ref(),
        out.as_os_str(),
    ];
    tools::run(cancel, &tools.ffmpeg, tools::FFMPEG, args, None).await?;
    Ok(())
}
