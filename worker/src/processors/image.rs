//! image_generation, and the image provider that videos and lessons use for their slides and
//! posters: `local` draws with the built-in renderer ([`super::render`]), `openai` asks any
//! OpenAI-compatible images endpoint.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use taskfleet::artifacts::ArtifactStore;
use tokio_util::sync::CancellationToken;

use super::openai::{OpenAi, ProviderSettings};
use super::render;
use super::requests::{self, ImageRequest};
use super::{invalid, store_error, Processor, Step, TaskContext, TaskError};

/// Where pictures come from.
#[async_trait]
pub trait ImageProvider: Send + Sync {
    /// `local` or `openai`.
    fn name(&self) -> &'static str;

    /// A picture of `prompt`, `w`×`h`, as PNG bytes.
    async fn generate(
        &self,
        prompt: &str,
        w: u32,
        h: u32,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TaskError>;

    /// A slide's picture: by default the picture of its title and text.
    async fn slide(
        &self,
        title: &str,
        text: &str,
        w: u32,
        h: u32,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TaskError> {
        self.generate(&format!("{title}. {text}"), w, h, cancel)
            .await
    }
}

/// The provider the settings name.
pub fn provider(settings: &ProviderSettings) -> Arc<dyn ImageProvider> {
    if settings.is_openai() {
        Arc::new(OpenAiImages(OpenAi::new(
            settings.clone(),
            "image provider",
        )))
    } else {
        Arc::new(LocalImages)
    }
}

/// The built-in renderer: an illustrative composition seeded by the prompt, with the prompt as
/// its caption. Not a diffusion model.
pub struct LocalImages;

#[async_trait]
impl ImageProvider for LocalImages {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn generate(
        &self,
        prompt: &str,
        w: u32,
        h: u32,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TaskError> {
        let prompt = prompt.to_string();
        blocking(cancel, move || render::render_prompt(&prompt, w, h)).await
    }

    async fn slide(
        &self,
        title: &str,
        text: &str,
        w: u32,
        h: u32,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TaskError> {
        let (title, text) = (title.to_string(), text.to_string());
        blocking(cancel, move || render::render_slide(&title, &text, w, h)).await
    }
}

/// Runs CPU-bound drawing off the async threads; cancellation returns at once (the drawing,
/// bounded by the largest image, finishes in the background and is dropped).
async fn blocking(
    cancel: &CancellationToken,
    f: impl FnOnce() -> Vec<u8> + Send + 'static,
) -> Result<Vec<u8>, TaskError> {
    let job = tokio::task::spawn_blocking(f);
    tokio::select! {
        r = job => r.map_err(|e| TaskError::Retry(format!("renderer failed: {e}"))),
        _ = cancel.cancelled() => Err(TaskError::Retry("cancelled".into())),
    }
}

/// Longest prompt sent to an images endpoint, in characters.
pub const MAX_PROMPT_CHARS: usize = 1_000;

/// Any OpenAI-compatible `/images/generations` endpoint. The size is asked for as given; an
/// endpoint that only makes some sizes (OpenAI's own) may refuse others (`Permanent`) or
/// answer another size, which the result then reports.
pub struct OpenAiImages(pub OpenAi);

#[async_trait]
impl ImageProvider for OpenAiImages {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn generate(
        &self,
        prompt: &str,
        w: u32,
        h: u32,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, TaskError> {
        // Image endpoints cap prompt length (OpenAI: 1,000-4,000 characters); a slide's text
        // can be far longer, and its start says what the picture is about.
        let prompt: String = prompt.chars().take(MAX_PROMPT_CHARS).collect();
        let bytes = self.0.image(&prompt, w, h, cancel).await?;
        if render::png_size(&bytes).is_none() {
            return Err(TaskError::Retry(
                "image provider's image is not a PNG".into(),
            ));
        }
        Ok(bytes)
    }
}

pub struct ImageProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) images: Arc<dyn ImageProvider>,
}

#[async_trait]
impl Processor for ImageProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let r: ImageRequest = requests::parse(request).map_err(invalid)?;
        let (w, h) = r.size();
        ctx.progress(0, "drawing").await;
        let png = self.images.generate(&r.prompt, w, h, &ctx.cancel).await?;
        let (aw, ah) = render::png_size(&png).unwrap_or((w, h));
        ctx.progress(90, "storing").await;
        let artifact = self
            .store
            .put(&ctx.task_id, "image.png", png)
            .await
            .map_err(store_error)?;
        ctx.progress(100, "done").await;
        Ok(Step::Done(json!({
            "artifacts": [artifact],
            "width": aw,
            "height": ah,
            "provider": self.images.name(),
            "prompt": r.prompt,
        })))
    }
}
