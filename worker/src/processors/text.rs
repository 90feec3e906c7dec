//! The text task types (story_generation, documentation, quiz) and the text provider they
//! share: `local` runs the built-in algorithms ([`super::story`], [`super::docs`],
//! [`super::quiz`]), `openai` asks any OpenAI-compatible chat completions endpoint.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use taskfleet::artifacts::ArtifactStore;
use tokio_util::sync::CancellationToken;

use super::openai::{OpenAi, ProviderSettings};
use super::quiz::Question;
use super::requests::{self, DocFormat, DocumentationRequest, QuizRequest, StoryRequest};
use super::story::Story;
use super::{docs, quiz, story, Step};
use super::{invalid, store_error, Processor, TaskContext, TaskError};

/// Where text comes from.
#[async_trait]
pub trait TextProvider: Send + Sync {
    /// `local` or `openai`.
    fn name(&self) -> &'static str;
    async fn story(&self, r: &StoryRequest, cancel: &CancellationToken)
        -> Result<Story, TaskError>;
    /// The documentation text in the requested format.
    async fn documentation(
        &self,
        r: &DocumentationRequest,
        cancel: &CancellationToken,
    ) -> Result<String, TaskError>;
    async fn quiz(
        &self,
        r: &QuizRequest,
        cancel: &CancellationToken,
    ) -> Result<Vec<Question>, TaskError>;
}

/// The provider the settings name.
pub fn provider(settings: &ProviderSettings) -> Arc<dyn TextProvider> {
    if settings.is_openai() {
        Arc::new(OpenAiText(OpenAi::new(settings.clone(), "text provider")))
    } else {
        Arc::new(LocalText)
    }
}

/// The built-in algorithms: no network, deterministic.
pub struct LocalText;

#[async_trait]
impl TextProvider for LocalText {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn story(
        &self,
        r: &StoryRequest,
        _cancel: &CancellationToken,
    ) -> Result<Story, TaskError> {
        Ok(story::generate(r))
    }

    async fn documentation(
        &self,
        r: &DocumentationRequest,
        _cancel: &CancellationToken,
    ) -> Result<String, TaskError> {
        let r = r.clone();
        tokio::task::spawn_blocking(move || {
            docs::generate(r.title.as_deref(), &r.source, r.format).0
        })
        .await
        .map_err(|e| TaskError::Retry(format!("documentation generator failed: {e}")))
    }

    async fn quiz(
        &self,
        r: &QuizRequest,
        _cancel: &CancellationToken,
    ) -> Result<Vec<Question>, TaskError> {
        let n = r.questions();
        let source = r.source_text.clone();
        let made = tokio::task::spawn_blocking(move || quiz::generate(&source, n))
            .await
            .map_err(|e| TaskError::Retry(format!("quiz generator failed: {e}")))?;
        made.map_err(|k| {
            TaskError::Permanent(format!(
                "invalid source_text: it has material for {k} questions, not the {n} asked \
                 (num_questions); give a longer text or ask for fewer"
            ))
        })
    }
}

/// Any OpenAI-compatible `/chat/completions` endpoint.
pub struct OpenAiText(pub OpenAi);

fn strip_fences(s: &str) -> &str {
    let t = s.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```markdown"))
        .or_else(|| t.strip_prefix("```html"))
        .or_else(|| t.strip_prefix("```"))
        .unwrap_or(t);
    t.strip_suffix("```").unwrap_or(t).trim()
}

#[async_trait]
impl TextProvider for OpenAiText {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn story(
        &self,
        r: &StoryRequest,
        cancel: &CancellationToken,
    ) -> Result<Story, TaskError> {
        let words = r.length.words();
        let system =
            "You are a storyteller. Answer with the story only: its title on the first line \
                      (no quotes, no '#'), a blank line, then the story in paragraphs.";
        let user = format!(
            "Write a {} story of {} to {} words{} about: {}",
            r.length.as_str(),
            words.start(),
            words.end(),
            r.audience
                .as_deref()
                .map(|a| format!(" for {a}"))
                .unwrap_or_default(),
            r.prompt
        );
        let answer = self.0.chat(system, &user, cancel).await?;
        let answer = strip_fences(&answer);
        let (title, text) = match answer.split_once('\n') {
            Some((t, rest)) if !rest.trim().is_empty() => (
                t.trim().trim_start_matches('#').trim().to_string(),
                rest.trim().to_string(),
            ),
            _ => (story::capitalize(&r.prompt), answer.to_string()),
        };
        Ok(Story { title, text })
    }

    async fn documentation(
        &self,
        r: &DocumentationRequest,
        cancel: &CancellationToken,
    ) -> Result<String, TaskError> {
        let format = match r.format {
            DocFormat::Markdown => "Markdown",
            DocFormat::Html => "a standalone HTML page",
        };
        let system = format!(
            "You write reference documentation. Answer with the document only, in {format}: \
             every public item of the source with its signature and what it does."
        );
        let user = format!(
            "Title: {}\n\nSource:\n{}",
            r.title.as_deref().unwrap_or("API reference"),
            r.source
        );
        Ok(strip_fences(&self.0.chat(&system, &user, cancel).await?).to_string())
    }

    async fn quiz(
        &self,
        r: &QuizRequest,
        cancel: &CancellationToken,
    ) -> Result<Vec<Question>, TaskError> {
        let n = r.questions();
        let system = "You write quizzes. Answer with JSON only: {\"questions\": [{\"type\": \"cloze\" or \
                      \"multiple_choice\", \"question\": \"...\", \"options\": [...] (multiple_choice only), \
                      \"answer\": \"...\"}]}. Every answer must be a phrase copied from the text.";
        let user = format!(
            "Write exactly {n} questions about this text:\n\n{}",
            r.source_text
        );
        let answer = self.0.chat(system, &user, cancel).await?;
        #[derive(serde::Deserialize)]
        struct Quiz {
            questions: Vec<Question>,
        }
        // A model that answers in the wrong shape may answer right the next time: Retry.
        let mut q: Quiz = serde_json::from_str(strip_fences(&answer)).map_err(|e| {
            tracing::warn!(error = %e, "the text provider's quiz is not the JSON asked for");
            TaskError::Retry("text provider's quiz is not the JSON asked for".into())
        })?;
        if q.questions.len() < n {
            return Err(TaskError::Retry(format!(
                "text provider wrote {} questions, not {n}",
                q.questions.len()
            )));
        }
        q.questions.truncate(n);
        Ok(q.questions)
    }
}

pub struct StoryProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) text: Arc<dyn TextProvider>,
}

#[async_trait]
impl Processor for StoryProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let r: StoryRequest = requests::parse(request).map_err(invalid)?;
        ctx.progress(0, "writing").await;
        let s = self.text.story(&r, &ctx.cancel).await?;
        let md = format!("# {}\n\n{}\n", s.title, s.text);
        let artifact = self
            .store
            .put(&ctx.task_id, "story.md", md.into_bytes())
            .await
            .map_err(store_error)?;
        ctx.progress(100, "done").await;
        Ok(Step::Done(json!({
            "title": s.title,
            "text": s.text,
            "words": s.words(),
            "length": r.length.as_str(),
            "provider": self.text.name(),
            "artifacts": [artifact],
        })))
    }
}

pub struct DocumentationProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) text: Arc<dyn TextProvider>,
}

#[async_trait]
impl Processor for DocumentationProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let r: DocumentationRequest = requests::parse(request).map_err(invalid)?;
        ctx.progress(0, "reading the source").await;
        let text = self.text.documentation(&r, &ctx.cancel).await?;
        let (name, format) = match r.format {
            DocFormat::Markdown => ("documentation.md", "markdown"),
            DocFormat::Html => ("documentation.html", "html"),
        };
        let artifact = self
            .store
            .put(&ctx.task_id, name, text.clone().into_bytes())
            .await
            .map_err(store_error)?;
        ctx.progress(100, "done").await;
        let language = docs::detect(&r.source).as_str();
        Ok(Step::Done(json!({
            "format": format,
            "language": language,
            "text": text,
            "provider": self.text.name(),
            "artifacts": [artifact],
        })))
    }
}

pub struct QuizProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) text: Arc<dyn TextProvider>,
}

#[async_trait]
impl Processor for QuizProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let r: QuizRequest = requests::parse(request).map_err(invalid)?;
        ctx.progress(0, "reading the text").await;
        let questions = self.text.quiz(&r, &ctx.cancel).await?;
        let body = json!({"questions": questions});
        let artifact = self
            .store
            .put(
                &ctx.task_id,
                "quiz.json",
                serde_json::to_vec_pretty(&body).unwrap_or_default(),
            )
            .await
            .map_err(store_error)?;
        ctx.progress(100, "done").await;
        Ok(Step::Done(json!({
            "num_questions": questions.len(),
            "questions": questions,
            "provider": self.text.name(),
            "artifacts": [artifact],
        })))
    }
}
