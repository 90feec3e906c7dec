//! The processors' settings: `[text]` and `[image]` (the providers), `[tools]` (the programs)
//! and `[processors]` (sizes and intervals), typed, read like every other section (the file,
//! then `TASKFLEET__TEXT__URL` and friends). The worker builds its processors from these.

use std::path::PathBuf;

use serde::Deserialize;

/// Default timeout of one provider call.
pub const DEFAULT_PROVIDER_TIMEOUT_SECS: u64 = 120;

/// A text or image provider: `local` (the built-in algorithms, no network) or `openai` (any
/// OpenAI-compatible endpoint: OpenAI, Ollama, vLLM).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    /// `local` or `openai`.
    pub provider: String,
    /// The API base, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub url: String,
    pub api_key: String,
    pub model: String,
    pub timeout_secs: u64,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            provider: "local".into(),
            url: String::new(),
            api_key: String::new(),
            model: String::new(),
            timeout_secs: DEFAULT_PROVIDER_TIMEOUT_SECS,
        }
    }
}

impl ProviderSettings {
    /// An `openai` provider at `url` with `model`.
    pub fn openai(
        url: impl Into<String>,
        api_key: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        ProviderSettings {
            provider: "openai".into(),
            url: url.into(),
            api_key: api_key.into(),
            model: model.into(),
            ..ProviderSettings::default()
        }
    }

    /// Refuses a provider name other than `local`/`openai`, or `openai` without a URL;
    /// `what` names the section in the error.
    pub fn check(&self, what: &str) -> Result<(), String> {
        match self.provider.as_str() {
            "local" => Ok(()),
            "openai" if self.url.is_empty() => {
                Err(format!("{what}: the openai provider needs a url"))
            }
            "openai" if self.timeout_secs == 0 => {
                Err(format!("{what}: timeout_secs must be at least 1"))
            }
            "openai" => Ok(()),
            other => Err(format!(
                "{what}: unknown provider {other:?} (local or openai)"
            )),
        }
    }

    pub fn is_openai(&self) -> bool {
        self.provider == "openai"
    }
}

/// `[tools]`: the external programs, when they are not `espeak-ng` and `ffmpeg` in `PATH`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolSettings {
    pub espeak: Option<PathBuf>,
    pub ffmpeg: Option<PathBuf>,
}

/// `[processors]`: sizes and intervals of the processors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorSettings {
    /// Video slides and lesson posters, `WxH` (sides 64-2048).
    pub video_size: Option<String>,
    /// How often a course looks at its lesson videos, in seconds (at least 1).
    pub course_poll_secs: Option<u64>,
}

impl ProcessorSettings {
    /// The video size, if set: `Err` names the setting and what is wrong.
    pub fn video_size(
        &self,
        sides: std::ops::RangeInclusive<u32>,
    ) -> Result<Option<(u32, u32)>, String> {
        let Some(v) = &self.video_size else {
            return Ok(None);
        };
        let bad = || {
            format!(
                "processors.video_size: {v:?} is not WxH with sides {}-{}",
                sides.start(),
                sides.end()
            )
        };
        let (w, h) = v.split_once(['x', 'X']).ok_or_else(bad)?;
        let side = |s: &str| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| sides.contains(n))
                .ok_or_else(bad)
        };
        Ok(Some((side(w)?, side(h)?)))
    }

    /// The course poll interval, if set.
    pub fn course_poll(&self) -> Result<Option<std::time::Duration>, String> {
        match self.course_poll_secs {
            None => Ok(None),
            Some(0) => Err("processors.course_poll_secs: at least 1".into()),
            Some(s) => Ok(Some(std::time::Duration::from_secs(s))),
        }
    }
}
