//! voice_generation: espeak-ng speaks the text into one WAV file. Long text is spoken in
//! chunks (at sentence ends), one espeak-ng run each, and each chunk's samples are copied onto
//! the end of one WAV file on disk as it is spoken ([`WavWriter`]), with progress after each
//! chunk: no more than a copy buffer of audio is ever in memory, however long the speech. Also
//! the narration of videos and lessons.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use taskfleet::artifacts::ArtifactStore;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::requests::{
    self, VoiceRequest, DEFAULT_VOICE, MAX_NARRATION_SECONDS, SPOKEN_SECONDS_SLACK,
};
use super::tools::{self, Scratch, Tools};
use super::{invalid, store_error, Processor, Step, TaskContext, TaskError};

/// Longest piece of text one espeak-ng run speaks.
pub const CHUNK_CHARS: usize = 1_500;

/// The voices an espeak-ng knows, as `-v` takes them: lower-case language codes (`en-us`),
/// voice names (`english_(america)`), voice files with and without their group (`gmw/en-us`,
/// `en-us`), and the variants that may follow a `+` (`f3`, `klatt`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Voices {
    pub voices: std::collections::HashSet<String>,
    pub variants: std::collections::HashSet<String>,
}

impl Voices {
    /// Reads `espeak-ng --voices` (or `--voices=variant`) output into `into`.
    fn read(listing: &str, into: &mut std::collections::HashSet<String>) {
        for line in listing.lines().skip(1) {
            // Pty Language Age/Gender VoiceName File Other-Languages
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 5 {
                continue;
            }
            let (language, name, file) = (cols[1], cols[3], cols[4]);
            if language != "variant" {
                into.insert(language.to_lowercase());
            }
            into.insert(name.to_lowercase());
            let file = file.trim_start_matches('!').to_lowercase();
            if let Some((_, base)) = file.rsplit_once('/') {
                into.insert(base.to_string());
            }
            into.insert(file.trim_start_matches("v/").to_string());
            into.insert(file);
            // "(en 2)(en-gb 3)": other language codes the voice answers to.
            let others = cols[5..].join(" ");
            for part in others.split('(').skip(1) {
                if let Some(code) = part.split_whitespace().next() {
                    into.insert(code.trim_end_matches(')').to_lowercase());
                }
            }
        }
    }

    /// Whether `-v voice` names one of these (a base voice, and a variant after `+` if any).
    pub fn knows(&self, voice: &str) -> bool {
        let voice = voice.to_lowercase();
        let (base, variant) = match voice.split_once('+') {
            Some((b, v)) => (b, Some(v)),
            None => (voice.as_str(), None),
        };
        self.voices.contains(base) && variant.is_none_or(|v| self.variants.contains(v))
    }
}

/// The voices of the espeak-ng at `espeak`, listed once per program and kept: `None` if it
/// could not be listed (the voice is then left to espeak-ng itself to refuse).
async fn voices_of(espeak: &Path) -> Option<Arc<Voices>> {
    static LISTED: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<PathBuf, Arc<Voices>>>,
    > = std::sync::LazyLock::new(Default::default);
    if let Some(v) = LISTED.lock().expect("voices lock").get(espeak) {
        return Some(v.clone());
    }
    let mut voices = Voices::default();
    let never = tokio_util::sync::CancellationToken::new();
    for (arg, into) in [
        ("--voices", &mut voices.voices),
        ("--voices=variant", &mut voices.variants),
    ] {
        match tools::run(&never, espeak, tools::ESPEAK, [arg], None).await {
            Ok(out) => Voices::read(&String::from_utf8_lossy(&out), into),
            Err(e) => {
                tracing::warn!(error = %e, "could not list espeak-ng's voices; not checking them");
                return None;
            }
        }
    }
    if voices.voices.is_empty() {
        tracing::warn!("espeak-ng listed no voices; not checking them");
        return None;
    }
    let voices = Arc::new(voices);
    LISTED
        .lock()
        .expect("voices lock")
        .insert(espeak.to_path_buf(), voices.clone());
    Some(voices)
}

/// Refuses, `Permanent` and naming it, a voice this worker's espeak-ng does not have: the API
/// checks only the name's shape (it has no espeak-ng), so this is where `zz` is caught, before
/// any work rather than at the first espeak-ng run.
pub(crate) async fn check_voice(tools: &Tools, voice: &str) -> Result<(), TaskError> {
    match voices_of(&tools.espeak).await {
        Some(v) if !v.knows(voice) => Err(TaskError::Permanent(format!(
            "invalid voice: espeak-ng on this worker has no voice {voice:?} \
             (`espeak-ng --voices` lists them; a variant follows a `+`, as in \"de+f3\")"
        ))),
        _ => Ok(()),
    }
}

/// The most speech espeak-ng may produce for one request, in seconds: past it the request is
/// refused, whatever its estimate said.
pub(crate) fn max_spoken_seconds() -> f64 {
    f64::from(MAX_NARRATION_SECONDS) * f64::from(SPOKEN_SECONDS_SLACK)
}

pub struct VoiceProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) tools: Tools,
}

#[async_trait]
impl Processor for VoiceProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let r: VoiceRequest = requests::parse(request).map_err(invalid)?;
        self.tools.require_espeak("voice_generation")?;
        let voice = r.voice.as_deref().unwrap_or(DEFAULT_VOICE);
        check_voice(&self.tools, voice).await?;
        let speed = r.speed();
        let scratch = Scratch::new(&ctx.artifact_dir, ctx.attempt).await?;
        ctx.progress(0, "speaking").await;
        let mut wav = WavWriter::create(scratch.join("voice.wav"), max_spoken_seconds()).await?;
        let spoken = speak(
            ctx,
            &self.tools,
            &r.text,
            voice,
            speed,
            scratch.path(),
            &mut wav,
            Some((0, 95)),
        )
        .await?;
        let (path, _) = wav.finish().await?;
        let artifact = self
            .store
            .put_file(&ctx.task_id, "voice.wav", &path)
            .await
            .map_err(store_error)?;
        ctx.progress(100, "done").await;
        Ok(Step::Done(json!({
            "artifacts": [artifact],
            "duration_seconds": round2(spoken.seconds),
            "voice": voice,
            "speed": speed,
            "words": r.text.split_whitespace().count(),
            "chunks": spoken.chunks,
        })))
    }
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What one [`speak`] added to its WAV file.
pub(crate) struct Spoken {
    pub seconds: f64,
    pub chunks: usize,
}

/// Speaks `text` with espeak-ng onto the end of `out`; with `progress = Some((from, to))`
/// reports progress in that range after each chunk.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn speak(
    ctx: &TaskContext,
    tools: &Tools,
    text: &str,
    voice: &str,
    speed: u32,
    dir: &Path,
    out: &mut WavWriter,
    progress: Option<(u8, u8)>,
) -> Result<Spoken, TaskError> {
    let chunks = chunks(text, CHUNK_CHARS);
    if chunks.is_empty() {
        return Err(TaskError::Permanent("no text to speak".into()));
    }
    let before = out.seconds();
    for (i, chunk) in chunks.iter().enumerate() {
        let piece = dir.join(format!("speech-{i}.wav"));
        let args: Vec<std::ffi::OsString> = vec![
            "-v".into(),
            voice.into(),
            "-s".into(),
            speed.to_string().into(),
            "-b".into(),
            "1".into(),
            "-w".into(),
            piece.clone().into(),
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
        out.append_file(&piece).await?;
        // The piece is in `out` now: keep the scratch directory as small as one piece.
        let _ = tokio::fs::remove_file(&piece).await;
        if let Some((from, to)) = progress {
            let pct = from as usize + (to - from) as usize * (i + 1) / chunks.len();
            ctx.progress(
                pct as u8,
                &format!("spoke chunk {} of {}", i + 1, chunks.len()),
            )
            .await;
        }
    }
    Ok(Spoken {
        seconds: out.seconds() - before,
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

/// The sample format of PCM audio in a RIFF/WAVE file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WavFormat {
    pub channels: u16,
    pub sample_rate: u32,
    pub bits: u16,
}

/// Bytes of a canonical WAV header (RIFF, `fmt ` and `data` chunk headers).
pub(crate) const WAV_HEADER_BYTES: u64 = 44;
/// The most sample bytes a WAV file can hold: its RIFF size field is 32 bits and counts the
/// 36 header bytes after it.
pub(crate) const MAX_WAV_DATA_BYTES: u64 = u32::MAX as u64 - 36;
/// How much of a WAV file is read to find its data chunk.
const WAV_HEAD_BYTES: u64 = 64 << 10;

impl WavFormat {
    pub fn block_align(&self) -> u32 {
        u32::from(self.channels) * u32::from(self.bits / 8).max(1)
    }

    pub fn seconds(&self, data_bytes: u64) -> f64 {
        data_bytes as f64 / (f64::from(self.sample_rate) * f64::from(self.block_align()))
    }

    /// The 44-byte header of a file with `data_len` bytes of samples.
    pub fn header(&self, data_len: u32) -> [u8; WAV_HEADER_BYTES as usize] {
        let mut h = [0u8; WAV_HEADER_BYTES as usize];
        h[0..4].copy_from_slice(b"RIFF");
        h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
        h[8..16].copy_from_slice(b"WAVEfmt ");
        h[16..20].copy_from_slice(&16u32.to_le_bytes());
        h[20..22].copy_from_slice(&1u16.to_le_bytes());
        h[22..24].copy_from_slice(&self.channels.to_le_bytes());
        h[24..28].copy_from_slice(&self.sample_rate.to_le_bytes());
        h[28..32].copy_from_slice(&(self.sample_rate * self.block_align()).to_le_bytes());
        h[32..34].copy_from_slice(&(self.block_align() as u16).to_le_bytes());
        h[34..36].copy_from_slice(&self.bits.to_le_bytes());
        h[36..40].copy_from_slice(b"data");
        h[40..44].copy_from_slice(&data_len.to_le_bytes());
        h
    }
}

/// Where the samples of a RIFF/WAVE file are, from its first bytes `head` and its length:
/// the format, and the offset and length of the data chunk.
pub(crate) fn locate_data(head: &[u8], file_len: u64) -> Result<(WavFormat, u64, u64), String> {
    let b = head;
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut fmt = None;
    let mut i = 12usize;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let size = u32_at(i + 4);
        let body = i + 8;
        if id == b"fmt " && b.len() >= body + 16 {
            let format = u16_at(body);
            if format != 1 && format != 0xFFFE {
                return Err(format!("WAV format {format} is not PCM"));
            }
            fmt = Some(WavFormat {
                channels: u16_at(body + 2),
                sample_rate: u32_at(body + 4),
                bits: u16_at(body + 14),
            });
        } else if id == b"data" {
            let format = fmt.ok_or("data before fmt chunk")?;
            if format.sample_rate == 0 || format.channels == 0 {
                return Err("a WAV format without samples".into());
            }
            let rest = file_len.saturating_sub(body as u64);
            // A writer that streamed may leave the size at 0 or 0xFFFFFFFF: take what is there.
            let len = if size == 0 || size == u32::MAX {
                rest
            } else {
                u64::from(size).min(rest)
            };
            return Ok((format, body as u64, len));
        }
        i = body + size as usize + (size & 1) as usize;
    }
    Err("no data chunk".into())
}

/// One WAV file on disk that speech is appended to piece by piece: a placeholder header first,
/// each piece's samples copied after it, the real header written by [`WavWriter::finish`].
/// Refuses to grow past `max_seconds` or past what a WAV header can describe (4 GiB).
pub(crate) struct WavWriter {
    file: tokio::fs::File,
    path: PathBuf,
    format: Option<WavFormat>,
    data_len: u64,
    max_seconds: f64,
}

impl WavWriter {
    pub async fn create(path: PathBuf, max_seconds: f64) -> Result<WavWriter, TaskError> {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(tools::io_retry("creating a WAV file"))?;
        file.write_all(&[0u8; WAV_HEADER_BYTES as usize])
            .await
            .map_err(tools::io_retry("writing a WAV file"))?;
        Ok(WavWriter {
            file,
            path,
            format: None,
            data_len: 0,
            max_seconds,
        })
    }

    /// Seconds of audio written so far.
    pub fn seconds(&self) -> f64 {
        self.format.map_or(0.0, |f| f.seconds(self.data_len))
    }

    /// Copies the samples of the WAV file at `from` onto the end, in a stream.
    pub async fn append_file(&mut self, from: &Path) -> Result<(), TaskError> {
        let read = tools::io_retry("reading espeak-ng output");
        let mut src = tokio::fs::File::open(from).await.map_err(&read)?;
        let file_len = src.metadata().await.map_err(&read)?.len();
        let mut head = Vec::new();
        (&mut src)
            .take(WAV_HEAD_BYTES)
            .read_to_end(&mut head)
            .await
            .map_err(&read)?;
        let (format, offset, len) = locate_data(&head, file_len)
            .map_err(|e| TaskError::Permanent(format!("espeak-ng wrote no valid WAV: {e}")))?;
        match self.format {
            None => self.format = Some(format),
            Some(f) if f != format => {
                return Err(TaskError::Permanent(
                    "cannot join WAV pieces of different formats".into(),
                ))
            }
            Some(_) => {}
        }
        let total = self.data_len + len;
        if format.seconds(total) > self.max_seconds {
            return Err(TaskError::Permanent(format!(
                "the narration ran past {:.0} s of speech, more than this request may have \
                 (at most {MAX_NARRATION_SECONDS} s by its estimate)",
                self.max_seconds
            )));
        }
        if total > MAX_WAV_DATA_BYTES {
            return Err(TaskError::Permanent(
                "the narration is longer than a WAV file can hold (4 GiB)".into(),
            ));
        }
        src.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(&read)?;
        let copied = tokio::io::copy(&mut src.take(len), &mut self.file)
            .await
            .map_err(tools::io_retry("writing a WAV file"))?;
        self.data_len += copied;
        Ok(())
    }

    /// Writes the real header; returns the file's path and size.
    pub async fn finish(mut self) -> Result<(PathBuf, u64), TaskError> {
        let format = self
            .format
            .ok_or_else(|| TaskError::Permanent("no text to speak".into()))?;
        let write = tools::io_retry("writing a WAV file");
        self.file
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(&write)?;
        // append_file kept data_len within MAX_WAV_DATA_BYTES, so it fits the 32-bit field.
        let data_len = u32::try_from(self.data_len).unwrap_or(u32::MAX);
        self.file
            .write_all(&format.header(data_len))
            .await
            .map_err(&write)?;
        self.file.flush().await.map_err(&write)?;
        Ok((self.path, WAV_HEADER_BYTES + self.data_len))
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

    fn wav_file(dir: &Path, name: &str, format: WavFormat, data: &[u8]) -> PathBuf {
        let path = dir.join(name);
        let mut bytes = format.header(data.len() as u32).to_vec();
        bytes.extend_from_slice(data);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    const MONO_8K: WavFormat = WavFormat {
        channels: 1,
        sample_rate: 8000,
        bits: 16,
    };

    const LISTING: &str = "\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  de              --/M      German             gmw/de
 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
";
    const VARIANTS: &str = "\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  variant         --/M      Alex               !v/Alex
 5  variant         --/F      female3            !v/f3
";

    #[test]
    fn voices_are_known_by_language_name_file_and_variant() {
        let mut v = Voices::default();
        Voices::read(LISTING, &mut v.voices);
        Voices::read(VARIANTS, &mut v.variants);
        for ok in [
            "de",
            "en",
            "en-us",
            "EN-US",
            "gmw/en-US",
            "en-gb",
            "German",
            "de+f3",
            "de+alex",
        ] {
            assert!(v.knows(ok), "{ok}");
        }
        for bad in ["zz", "fr", "de+f9", "de+", "variant", "+f3"] {
            assert!(!v.knows(bad), "{bad}");
        }
    }

    #[test]
    fn the_data_chunk_is_found_from_the_head_of_a_file() {
        let mut bytes = MONO_8K.header(16000).to_vec();
        bytes.extend_from_slice(&[1; 16000]);
        let (format, offset, len) = locate_data(&bytes[..64], bytes.len() as u64).unwrap();
        assert_eq!((format, offset, len), (MONO_8K, 44, 16000));
        assert!((format.seconds(len) - 1.0).abs() < 1e-9);
        // A streamed file leaves the size at 0: the data runs to the end.
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(locate_data(&bytes[..64], 1044).unwrap().2, 1000);
        assert!(locate_data(b"not a wav", 9).is_err());
    }

    #[tokio::test]
    async fn a_wav_writer_joins_pieces_on_disk_and_refuses_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let a = wav_file(dir.path(), "a.wav", MONO_8K, &[1; 16000]);
        let b = wav_file(dir.path(), "b.wav", MONO_8K, &[2; 8000]);
        let mut w = WavWriter::create(dir.path().join("out.wav"), 2.0)
            .await
            .unwrap();
        w.append_file(&a).await.unwrap();
        w.append_file(&b).await.unwrap();
        assert!((w.seconds() - 1.5).abs() < 1e-9);
        // Another second would pass the two-second limit.
        let e = w.append_file(&a).await.unwrap_err();
        assert!(
            matches!(&e, TaskError::Permanent(m) if m.contains("ran past 2 s")),
            "{e:?}"
        );
        let (path, size) = w.finish().await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(locate_data(&bytes, size).unwrap(), (MONO_8K, 44, 24000));
        assert_eq!(&bytes[44..16044], &[1; 16000][..]);
        assert_eq!(&bytes[16044..], &[2; 8000][..]);
        let other = wav_file(
            dir.path(),
            "c.wav",
            WavFormat {
                sample_rate: 22050,
                ..MONO_8K
            },
            &[0; 100],
        );
        let mut w = WavWriter::create(dir.path().join("x.wav"), 10.0)
            .await
            .unwrap();
        w.append_file(&a).await.unwrap();
        assert!(w.append_file(&other).await.is_err());
    }
}
