//! Artifact storage: the files tasks produce, by (task id, name). Workers write them, the API
//! serves them, and trim deletes them with their task. A local directory by default; an
//! object store lets workers on many machines share files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::ArtifactSettings;
use crate::error::{Error, Result};

/// One stored file, as listed in a task's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub size: u64,
    pub media_type: String,
}

/// Where artifacts live.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores `bytes` as `name` of the task (replacing an earlier one: idempotent per name).
    async fn put(&self, task_id: &str, name: &str, bytes: Vec<u8>) -> Result<Artifact>;
    /// One artifact's bytes, `None` if there is no such artifact.
    async fn get(&self, task_id: &str, name: &str) -> Result<Option<Vec<u8>>>;
    /// Deletes every artifact of a task.
    async fn delete_task(&self, task_id: &str) -> Result<()>;

    /// Stores a file from disk.
    async fn put_file(&self, task_id: &str, name: &str, path: &Path) -> Result<Artifact> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| Error::Redis(format!("reading {}: {e}", path.display())))?;
        self.put(task_id, name, bytes).await
    }
}

/// The media type of a file name, by its extension.
pub fn media_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "html" | "htm" => "text/html; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// An artifact name is one path segment: letters, digits, `.`, `_`, `-`; not starting with `.`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("name", "an artifact name is 1-128 of a-z, 0-9, '.', '_', '-'"))
    }
}

fn validate_task_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("task_id", "not a task id"))
    }
}

/// Artifacts in a local directory: `<root>/<task id>/<name>`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, task_id: &str, name: &str) -> Result<PathBuf> {
        validate_task_id(task_id)?;
        validate_name(name)?;
        Ok(self.root.join(task_id).join(name))
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Redis(format!("artifact store: {e}"))
}

#[async_trait]
impl ArtifactStore for LocalStore {
    async fn put(&self, task_id: &str, name: &str, bytes: Vec<u8>) -> Result<Artifact> {
        let path = self.path(task_id, name)?;
        let dir = path.parent().expect("artifact path has a parent");
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        // Write then rename: a reader never sees half a file.
        let tmp = dir.join(format!(".{name}.{:x}.tmp", rand::random::<u64>()));
        let size = bytes.len() as u64;
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(Artifact {
            name: name.to_string(),
            size,
            media_type: media_type(name).to_string(),
        })
    }

    async fn get(&self, task_id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(task_id, name)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete_task(&self, task_id: &str) -> Result<()> {
        validate_task_id(task_id)?;
        match tokio::fs::remove_dir_all(self.root.join(task_id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

/// The store the settings name: the local directory unless an object store URL is set.
pub fn from_settings(s: &ArtifactSettings) -> Result<Arc<dyn ArtifactStore>> {
    if s.url.is_empty() {
        Ok(Arc::new(LocalStore::new(&s.dir)))
    } else {
        Err(Error::invalid(
            "artifacts.url",
            "object store URLs are not supported by this build",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_puts_gets_and_deletes() {
        let dir = tempfile_dir();
        let s = LocalStore::new(&dir);
        let a = s.put("t1", "a.wav", vec![1, 2, 3]).await.unwrap();
        assert_eq!((a.size, a.media_type.as_str()), (3, "audio/wav"));
        assert_eq!(s.get("t1", "a.wav").await.unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(s.get("t1", "b.wav").await.unwrap(), None);
        assert!(s.get("t1", "../etc").await.is_err());
        assert!(s.get("../x", "a.wav").await.is_err());
        s.delete_task("t1").await.unwrap();
        assert_eq!(s.get("t1", "a.wav").await.unwrap(), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("tf-art-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
