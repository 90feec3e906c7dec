//! Artifact storage: the files tasks produce, by (task id, name). Workers write them, the API
//! serves them, and trim deletes them with their task. A local directory by default; an
//! object store (S3 or S3-compatible, [`ObjectStoreArtifacts`]) lets workers on many machines
//! share files. Reads for serving are streams of an optional byte range
//! ([`ArtifactStore::open`]), so an hour of audio is never held in memory to be sent.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::config::ArtifactSettings;
use crate::error::{Error, Result};

#[cfg(feature = "object-store")]
mod object;
#[cfg(feature = "object-store")]
pub use object::ObjectStoreArtifacts;

/// One stored file, as listed in a task's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub size: u64,
    pub media_type: String,
}

/// A byte range a reader asks for, in the three forms of HTTP's `Range: bytes=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, both inclusive.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Last(u64),
}

impl ByteRange {
    /// The bytes this range selects of an artifact of `size` bytes (`start..end`), or `None`
    /// if it selects none (HTTP 416): a first byte at or past the end, a last byte before the
    /// first, or a suffix of zero bytes. A last byte past the end is cut to the end.
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::FromTo(a, b) => {
                (a < size && a <= b).then(|| a..b.saturating_add(1).min(size))
            }
            ByteRange::From(a) => (a < size).then_some(a..size),
            ByteRange::Last(n) => (n > 0 && size > 0).then(|| size - n.min(size)..size),
        }
    }
}

/// An artifact opened for reading.
pub enum Opened {
    /// The artifact: its whole size, the bytes being sent (`range`, all of it when no range
    /// was asked for), and those bytes as a stream.
    Found {
        size: u64,
        range: Range<u64>,
        body: BoxStream<'static, std::io::Result<Bytes>>,
    },
    /// The artifact exists, but the range asked for selects none of its `size` bytes.
    Unsatisfiable { size: u64 },
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opened::Found { size, range, .. } => f
                .debug_struct("Found")
                .field("size", size)
                .field("range", range)
                .finish_non_exhaustive(),
            Opened::Unsatisfiable { size } => {
                f.debug_struct("Unsatisfiable").field("size", size).finish()
            }
        }
    }
}

impl Opened {
    /// Reads the whole stream (tests and small files).
    pub async fn bytes(self) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Opened::Found { body, .. } => {
                let parts: Vec<Bytes> = body.try_collect().await?;
                Ok(Some(parts.concat()))
            }
            Opened::Unsatisfiable { .. } => Ok(None),
        }
    }
}

/// Where artifacts live.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores `bytes` as `name` of the task (replacing an earlier one: idempotent per name).
    async fn put(&self, task_id: &str, name: &str, bytes: Vec<u8>) -> Result<Artifact>;
    /// One artifact's bytes, `None` if there is no such artifact.
    async fn get(&self, task_id: &str, name: &str) -> Result<Option<Vec<u8>>>;
    /// One artifact (or `range` of it) as a stream, `None` if there is no such artifact. The
    /// stores here read it in pieces from disk or the object store; this default reads it whole.
    async fn open(
        &self,
        task_id: &str,
        name: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<Opened>> {
        let Some(bytes) = self.get(task_id, name).await? else {
            return Ok(None);
        };
        let size = bytes.len() as u64;
        let Some(r) = resolve(range, size) else {
            return Ok(Some(Opened::Unsatisfiable { size }));
        };
        let part = Bytes::from(bytes).slice(r.start as usize..r.end as usize);
        Ok(Some(Opened::Found {
            size,
            range: r,
            body: futures::stream::once(async move { Ok(part) }).boxed(),
        }))
    }
    /// Deletes every artifact of a task.
    async fn delete_task(&self, task_id: &str) -> Result<()>;

    /// Copies an artifact to a file on disk in a stream (a lesson's video joined into its
    /// course is never held in memory); false if there is no such artifact.
    async fn get_to_file(&self, task_id: &str, name: &str, path: &Path) -> Result<bool> {
        let Some(Opened::Found { mut body, .. }) = self.open(task_id, name, None).await? else {
            return Ok(false);
        };
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        while let Some(chunk) = body.try_next().await.map_err(io)? {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(io)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(io)?;
        Ok(true)
    }

    /// Stores a file from disk. The stores here copy it in a stream (an hour of audio is
    /// never read into memory); this default reads it whole.
    async fn put_file(&self, task_id: &str, name: &str, path: &Path) -> Result<Artifact> {
        let bytes = tokio::fs::read(path).await.map_err(io)?;
        self.put(task_id, name, bytes).await
    }
}

/// The bytes to send of an artifact of `size` bytes: all of them without a range.
fn resolve(range: Option<ByteRange>, size: u64) -> Option<Range<u64>> {
    match range {
        None => Some(0..size),
        Some(r) => r.resolve(size),
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
        Err(Error::invalid(
            "name",
            "an artifact name is 1-128 of a-z, 0-9, '.', '_', '-'",
        ))
    }
}

fn validate_task_id(id: &str) -> Result<()> {
    if crate::task::is_task_id(id) {
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

    async fn put_file(&self, task_id: &str, name: &str, from: &Path) -> Result<Artifact> {
        let path = self.path(task_id, name)?;
        let dir = path.parent().expect("artifact path has a parent");
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        // Copy then rename, as `put` does: a reader never sees half a file.
        let tmp = dir.join(format!(".{name}.{:x}.tmp", rand::random::<u64>()));
        let size = match tokio::fs::copy(from, &tmp).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(io(e));
            }
        };
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

    async fn open(
        &self,
        task_id: &str,
        name: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<Opened>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.path(task_id, name)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        // The open file stays what it is even if a retried attempt renames a new one over the
        // name meanwhile: a reader gets one version, whole.
        let size = file.metadata().await.map_err(io)?.len();
        let Some(r) = resolve(range, size) else {
            return Ok(Some(Opened::Unsatisfiable { size }));
        };
        file.seek(std::io::SeekFrom::Start(r.start))
            .await
            .map_err(io)?;
        let body =
            tokio_util::io::ReaderStream::with_capacity(file.take(r.end - r.start), 64 << 10);
        Ok(Some(Opened::Found {
            size,
            range: r,
            body: body.boxed(),
        }))
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
        return Ok(Arc::new(LocalStore::new(&s.dir)));
    }
    #[cfg(feature = "object-store")]
    {
        Ok(Arc::new(ObjectStoreArtifacts::from_url(&s.url)?))
    }
    #[cfg(not(feature = "object-store"))]
    {
        Err(Error::invalid(
            "artifacts.url",
            "this build has no object store; build the binaries with `--features object-store`",
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

    #[cfg(feature = "object-store")]
    #[tokio::test]
    async fn object_store_puts_gets_and_deletes_under_its_prefix() {
        let s = ObjectStoreArtifacts::from_url_with("memory:///some/prefix", Vec::new()).unwrap();
        let a = s.put("t1", "b.png", vec![9; 10]).await.unwrap();
        assert_eq!(
            a,
            Artifact {
                name: "b.png".into(),
                size: 10,
                media_type: "image/png".into()
            }
        );
        s.put("t1", "c.md", b"# x".to_vec()).await.unwrap();
        s.put("t2", "b.png", vec![1]).await.unwrap();
        assert_eq!(s.get("t1", "b.png").await.unwrap(), Some(vec![9; 10]));
        assert_eq!(s.get("t1", "zz.png").await.unwrap(), None);
        assert!(s.put("t1", "../x", vec![]).await.is_err());
        s.delete_task("t1").await.unwrap();
        assert_eq!(s.get("t1", "b.png").await.unwrap(), None);
        assert_eq!(s.get("t1", "c.md").await.unwrap(), None);
        assert_eq!(s.get("t2", "b.png").await.unwrap(), Some(vec![1]));
    }

    #[cfg(feature = "object-store")]
    #[tokio::test]
    async fn both_stores_store_a_file_from_disk() {
        let dir = tempfile_dir();
        let file = dir.join("big.bin");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let local = LocalStore::new(dir.join("store"));
        let objects = ObjectStoreArtifacts::from_url_with("memory:///p", Vec::new()).unwrap();
        let stores: [&dyn ArtifactStore; 2] = [&local, &objects];
        for s in stores {
            let a = s.put_file("t1", "big.wav", &file).await.unwrap();
            assert_eq!((a.size, a.media_type.as_str()), (3_000_000, "audio/wav"));
            assert_eq!(s.get("t1", "big.wav").await.unwrap().as_ref(), Some(&bytes));
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn byte_ranges_resolve_against_the_size() {
        use ByteRange::*;
        assert_eq!(FromTo(2, 4).resolve(10), Some(2..5));
        assert_eq!(FromTo(2, 400).resolve(10), Some(2..10));
        assert_eq!(FromTo(10, 12).resolve(10), None);
        assert_eq!(FromTo(5, 2).resolve(10), None);
        assert_eq!(From(9).resolve(10), Some(9..10));
        assert_eq!(From(10).resolve(10), None);
        assert_eq!(Last(3).resolve(10), Some(7..10));
        assert_eq!(Last(30).resolve(10), Some(0..10));
        assert_eq!(Last(0).resolve(10), None);
        assert_eq!(Last(1).resolve(0), None);
    }

    #[cfg(feature = "object-store")]
    #[tokio::test]
    async fn both_stores_open_artifacts_and_ranges_of_them() {
        let dir = tempfile_dir();
        let local = LocalStore::new(&dir);
        let objects = ObjectStoreArtifacts::from_url_with("memory:///p", Vec::new()).unwrap();
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let stores: [&dyn ArtifactStore; 2] = [&local, &objects];
        for s in stores {
            s.put("t1", "a.bin", bytes.clone()).await.unwrap();
            let whole = s.open("t1", "a.bin", None).await.unwrap().unwrap();
            assert!(
                matches!(&whole, Opened::Found { size: 200_000, range, .. } if *range == (0..200_000))
            );
            assert_eq!(whole.bytes().await.unwrap().unwrap(), bytes);
            let part = s
                .open("t1", "a.bin", Some(ByteRange::FromTo(70_000, 139_999)))
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(&part, Opened::Found { range, .. } if *range == (70_000..140_000)));
            assert_eq!(
                part.bytes().await.unwrap().unwrap(),
                &bytes[70_000..140_000]
            );
            let tail = s
                .open("t1", "a.bin", Some(ByteRange::Last(5)))
                .await
                .unwrap();
            assert_eq!(
                tail.unwrap().bytes().await.unwrap().unwrap(),
                &bytes[199_995..]
            );
            let past = s
                .open("t1", "a.bin", Some(ByteRange::From(200_000)))
                .await
                .unwrap();
            assert!(matches!(
                past,
                Some(Opened::Unsatisfiable { size: 200_000 })
            ));
            assert!(s.open("t1", "none.bin", None).await.unwrap().is_none());
            assert!(s
                .open("t1", "none.bin", Some(ByteRange::From(0)))
                .await
                .unwrap()
                .is_none());
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[cfg(feature = "object-store")]
    #[test]
    fn from_settings_picks_the_object_store_for_a_url_and_refuses_a_bad_one() {
        let local = ArtifactSettings::default();
        assert!(from_settings(&local).is_ok());
        let s3 = ArtifactSettings {
            dir: String::new(),
            url: "s3://bucket/pre?region=us-east-1&endpoint=http://127.0.0.1:9&allow_http=true"
                .into(),
        };
        assert!(
            format!("{:?}", ObjectStoreArtifacts::from_url(&s3.url).unwrap())
                .contains("s3://bucket/pre")
        );
        let bad = ArtifactSettings {
            dir: String::new(),
            url: "nosuchscheme://x".into(),
        };
        assert!(from_settings(&bad).is_err());
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("tf-art-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
