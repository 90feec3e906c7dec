//! voice_generation: espeak-ng speaks the text into one WAV file. Long text is spoken in
//! chunks (at sentence ends), one espeak-ng run each, and the chunks' samples are joined into
//! a single valid WAV, with progress after each chunk. Also the narration of videos and lessons.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use taskfleet::artifacts::ArtifactStore;

use super::requests::{self, VoiceRequest, DEFAULT_SPEED_WPM, DEFAULT_VOICE};
use super::tools::{self, Scratch, Tools};
use super::{invalid, store_error, Processor, TaskContext, TaskError};

/// Longest piece of text one espeak-ng run speaks.
pub const CHUNK_CHARS: usize = 1_500;

pub struct VoiceProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) tools: Tools,
}

#[async_trait]
impl Processor for VoiceProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Value, TaskError> {
        let r: VoiceRequest = requests::parse(request).map_err(invalid)?;
        self.tools.require_espeak("voice_generation")?;
        let voice = r.voice.as_deref().unwrap_or(DEFAULT_VOICE);
        let speed = r.speed.unwrap_or(DEFAULT_SPEED_WPM);
        let scratch = Scratch::new(&ctx.artifact_dir, ctx.attempt).await?;
        ctx.progress(0, "speaking").await;
        let speech = speak(
            ctx,
            &self.tools,
            &r.text,
            voice,
            speed,
            scratch.path(),
            Some((0, 95)),
        )
        .await?;
        let artifact = self
            .store
            .put(&ctx.task_id, "voice.wav", speech.wav)
            .await
            .map_err(store_error)?;
        ctx.progress(100, "done").await;
        Ok(json!({
            "artifacts": [artifact],
            "duration_seconds": round2(speech.seconds),
            "voice": voice,
            "speed": speed,
            "words": r.text.split_whitespace().count(),
            "chunks": speech.chunks,
        }))
    }

    fn estimate_completion_minutes(&self, request: &Value) -> u32 {
        let chars = request
            .get("text")
            .and_then(Value::as_str)
            .map_or(0, str::len);
        1 + (chars / 20_000) as u32
    }
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Spoken text: one WAV file and its length.
pub(crate) struct Speech {
    pub wav: Vec<u8>,
    pub seconds: f64,
    pub chunks: usize,
}

/// Speaks `text` with espeak-ng; with `progress = Some((from, to))` reports progress in that
/// range after each chunk.
pub(crate) async fn speak(
    ctx: &TaskContext,
    tools: &Tools,
    text: &str,
    voice: &str,
    speed: u32,
    dir: &Path,
    progress: Option<(u8, u8)>,
) -> Result<Speech, TaskError> {
    let chunks = chunks(text, CHUNK_CHARS);
    let mut joined: Option<Wav> = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let out = dir.join(format!("speech-{i}.wav"));
        let args: Vec<std::ffi::OsString> = vec![
            "-v".into(),
            voice.into(),
            "-s".into(),
            speed.to_string().into(),
            "-b".into(),
            "1".into(),
            "-w".into(),
            out.clone().into(),
            "--stdin".into(),
        ];
        tools::run(
            &ctx.cancel,
            &tools.espeak,
            tools::ESPEAK,
            args,
            Some(chunk.as_bytes().to_vec()),
        )
        .await?;
        let bytes = tokio::fs::read(&out)
            .await
            .map_err(tools::io_retry("reading espeak-ng output"))?;
        let wav = Wav::parse(&bytes)
            .map_err(|e| TaskError::Permanent(format!("espeak-ng wrote no valid WAV: {e}")))?;
        match &mut joined {
            None => joined = Some(wav),
            Some(j) => j.append(&wav).map_err(TaskError::Permanent)?,
        }
        if let Some((from, to)) = progress {
            let pct = from as usize + (to - from) as usize * (i + 1) / chunks.len();
            ctx.progress(
                pct as u8,
                &format!("spoke chunk {} of {}", i + 1, chunks.len()),
            )
            .await;
        }
    }
    let wav = joined.ok_or_else(|| TaskError::Permanent("no text to speak".into()))?;
    Ok(Speech {
        seconds: wav.seconds(),
        wav: wav.encode(),
        chunks: chunks.len(),
    })
}

/// Splits text into pieces of at most `max` characters, at sentence ends where it can, else at
/// spaces, else anywhere.
pub(crate) fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for sentence in sentences(text) {
        for piece in split_long(sentence, max) {
            if !cur.is_empty() && cur.chars().count() + 1 + piece.chars().count() > max {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(&piece);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            let next = bytes.get(i + 1).copied();
            if next.is_none_or(|b| b.is_ascii_whitespace()) {
                let s = text[start..=i].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = i + 1;
            }
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn split_long(s: &str, max: usize) -> Vec<String> {
    if s.chars().count() <= max {
        return vec![s.to_string()];
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > max {
            let cut: String = word.chars().take(max).collect();
            word = word.chars().skip(max).collect();
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(cut);
        }
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > max {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// PCM audio as read from, and written to, a RIFF/WAVE file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wav {
    pub channels: u16,
    pub sample_rate: u32,
    pub bits: u16,
    pub data: Vec<u8>,
}

impl Wav {
    pub fn parse(b: &[u8]) -> Result<Wav, String> {
        if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
            return Err("not a RIFF/WAVE file".into());
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut fmt = None;
        let mut i = 12;
        while i + 8 <= b.len() {
            let id = &b[i..i + 4];
            let size = u32_at(i + 4) as usize;
            let body = i + 8;
            // A writer that streamed may leave the size at 0 or 0xFFFFFFFF: take what is there.
            let end = body.saturating_add(size).min(b.len());
            if id == b"fmt " && end - body >= 16 {
                let format = u16_at(body);
                if format != 1 && format != 0xFFFE {
                    return Err(format!("WAV format {format} is not PCM"));
                }
                fmt = Some((u16_at(body + 2), u32_at(body + 4), u16_at(body + 14)));
            } else if id == b"data" {
                let (channels, sample_rate, bits) = fmt.ok_or("data before fmt chunk")?;
                let end = if size == 0 { b.len() } else { end };
                return Ok(Wav {
                    channels,
                    sample_rate,
                    bits,
                    data: b[body..end].to_vec(),
                });
            }
            i = body + size + (size & 1);
        }
        Err("no data chunk".into())
    }

    pub fn append(&mut self, other: &Wav) -> Result<(), String> {
        if (self.channels, self.sample_rate, self.bits)
            != (other.channels, other.sample_rate, other.bits)
        {
            return Err("cannot join WAV chunks of different formats".into());
        }
        self.data.extend_from_slice(&other.data);
        Ok(())
    }

    pub fn block_align(&self) -> u32 {
        u32::from(self.channels) * u32::from(self.bits / 8).max(1)
    }

    pub fn seconds(&self) -> f64 {
        self.data.len() as f64 / (f64::from(self.sample_rate) * f64::from(self.block_align()))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44 + self.data.len());
        let data_len = self.data.len() as u32;
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&self.channels.to_le_bytes());
        out.extend_from_slice(&self.sample_rate.to_le_bytes());
        out.extend_from_slice(&(self.sample_rate * self.block_align()).to_le_bytes());
        out.extend_from_slice(&(self.block_align() as u16).to_le_bytes());
        out.extend_from_slice(&self.bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        out.extend_from_slice(&self.data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_at_sentences_and_never_exceed_the_limit() {
        let text = "One two three. Four five six! Seven eight nine? Ten.";
        assert_eq!(chunks(text, 100), vec![text.to_string()]);
        let c = chunks(text, 20);
        assert_eq!(
            c,
            vec![
                "One two three.",
                "Four five six!",
                "Seven eight nine?",
                "Ten."
            ]
        );
        let long = "word ".repeat(1000);
        let c = chunks(&long, 50);
        assert!(c.iter().all(|p| p.chars().count() <= 50));
        assert_eq!(c.join(" ").split_whitespace().count(), 1000);
        assert!(chunks(&"x".repeat(120), 50).iter().all(|p| p.len() <= 50));
    }

    #[test]
    fn wav_round_trips_and_joins() {
        let a = Wav {
            channels: 1,
            sample_rate: 8000,
            bits: 16,
            data: vec![1; 16000],
        };
        let parsed = Wav::parse(&a.encode()).unwrap();
        assert_eq!(parsed, a);
        assert!((parsed.seconds() - 1.0).abs() < 1e-9);
        let mut j = a.clone();
        j.append(&a).unwrap();
        assert!((j.seconds() - 2.0).abs() < 1e-9);
        let other = Wav {
            sample_rate: 22050,
            ..a.clone()
        };
        assert!(j.append(&other).is_err());
        assert!(Wav::parse(b"not a wav").is_err());
    }
}
