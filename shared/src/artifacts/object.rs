//! Artifacts in an object store (feature `object-store`): S3 or any S3-compatible server,
//! shared by workers on many machines and the API.

use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};

use super::*;
use crate::error::{Error, Result};

/// Artifacts in an object store (S3 or any S3-compatible server such as MinIO or Ceph):
/// `<prefix>/<task id>/<name>` in the bucket the URL names, so workers on many machines and the
/// API share one set of files.
pub struct ObjectStoreArtifacts {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
}

impl std::fmt::Debug for ObjectStoreArtifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreArtifacts")
            .field("url", &self.url)
            .finish()
    }
}

impl ObjectStoreArtifacts {
    /// A store from a URL: `s3://bucket/prefix` (credentials and region from the usual `AWS_*`
    /// environment variables), `memory://` (in-process, for tests and tools) or
    /// `file:///path`. Query parameters are builder options, e.g.
    /// `s3://bucket/p?endpoint=http://127.0.0.1:9000&allow_http=true&region=us-east-1` for a
    /// local MinIO; they override the environment.
    pub fn from_url(url: &str) -> Result<Self> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        Self::from_url_with(url, env)
    }

    /// [`ObjectStoreArtifacts::from_url`] with the options given instead of the environment.
    pub fn from_url_with(
        url: &str,
        options: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        // TLS with ring, the process's one provider (installing it twice is harmless).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bad = |m: String| Error::invalid("artifacts.url", m);
        let mut parsed = url::Url::parse(url).map_err(|e| bad(format!("{url:?}: {e}")))?;
        let mut opts: Vec<(String, String)> = options
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        for (k, v) in parsed.query_pairs() {
            let k = k.to_ascii_lowercase();
            let k = if k.starts_with("aws_") {
                k
            } else {
                format!("aws_{k}")
            };
            opts.push((k, v.into_owned()));
        }
        parsed.set_query(None);
        let (store, prefix) = object_store::parse_url_opts(&parsed, opts)
            .map_err(|e| bad(format!("{url:?}: {e}")))?;
        Ok(ObjectStoreArtifacts {
            store: Arc::from(store),
            prefix,
            url: parsed.to_string(),
        })
    }

    /// A store over any [`ObjectStore`], under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        ObjectStoreArtifacts {
            store,
            prefix: ObjectPath::from(prefix),
            url: String::new(),
        }
    }

    fn task_dir(&self, task_id: &str) -> Result<ObjectPath> {
        validate_task_id(task_id)?;
        Ok(self.prefix.clone().join(task_id))
    }

    fn location(&self, task_id: &str, name: &str) -> Result<ObjectPath> {
        validate_name(name)?;
        Ok(self.task_dir(task_id)?.join(name))
    }
}

fn os(e: object_store::Error) -> Error {
    Error::Redis(format!("artifact object store: {e}"))
}

#[async_trait]
impl ArtifactStore for ObjectStoreArtifacts {
    async fn put(&self, task_id: &str, name: &str, bytes: Vec<u8>) -> Result<Artifact> {
        let location = self.location(task_id, name)?;
        let size = bytes.len() as u64;
        // One PUT: the object appears whole or not at all, and a second put replaces it.
        self.store
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(os)?;
        Ok(Artifact {
            name: name.to_string(),
            size,
            media_type: media_type(name).to_string(),
        })
    }

    async fn put_file(&self, task_id: &str, name: &str, from: &Path) -> Result<Artifact> {
        use tokio::io::AsyncReadExt;
        let location = self.location(task_id, name)?;
        let mut file = tokio::fs::File::open(from).await.map_err(io)?;
        // A multipart upload, fed a part at a time: the object still appears whole or not at
        // all (the upload completes in one call, or is aborted).
        let upload = self.store.put_multipart(&location).await.map_err(os)?;
        let mut writer = object_store::WriteMultipart::new(upload);
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            writer.wait_for_capacity(4).await.map_err(os)?;
            writer.write(&buf[..n]);
            size += n as u64;
        }
        writer.finish().await.map_err(os)?;
        Ok(Artifact {
            name: name.to_string(),
            size,
            media_type: media_type(name).to_string(),
        })
    }

    async fn get(&self, task_id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let location = self.location(task_id, name)?;
        match self.store.get(&location).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(os)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(os(e)),
        }
    }

    async fn open(
        &self,
        task_id: &str,
        name: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<Opened>> {
        let location = self.location(task_id, name)?;
        let mut options = GetOptions::default();
        if range.is_some() {
            // The size first, to resolve the range (and answer 416) as the local store does.
            let meta = match self.store.head(&location).await {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(os(e)),
            };
            let Some(r) = resolve(range, meta.size) else {
                return Ok(Some(Opened::Unsatisfiable { size: meta.size }));
            };
            options.range = Some(GetRange::Bounded(r));
        }
        let got = match self.store.get_opts(&location, options).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(os(e)),
        };
        let (size, range) = (got.meta.size, got.range.clone());
        let body = got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .boxed();
        Ok(Some(Opened::Found { size, range, body }))
    }

    async fn delete_task(&self, task_id: &str) -> Result<()> {
        let dir = self.task_dir(task_id)?;
        let names: Vec<ObjectPath> = self
            .store
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(os)?;
        for location in names {
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os(e)),
            }
        }
        Ok(())
    }
}
