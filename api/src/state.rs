//! What every handler shares: the broker, the clock, the artifact store, the catalog, the
//! metrics, and a short-lived cache of the live workers. The API itself keeps no task state:
//! any number of replicas can serve the same Redis.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use taskfleet::artifacts::{self, ArtifactStore};
use taskfleet::TEST_QUEUE;
use taskfleet::{At, Broker, Catalog, Clock, Millis, QueueConfig, RedisClock, Settings};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::metrics::Metrics;
use crate::workers::WorkerCache;

/// The longest an events stream stays open; a client reconnects for more.
pub const DEFAULT_SSE_LIFETIME: Duration = Duration::from_secs(3600);
/// How many event streams one API process holds open at once: each holds a Redis connection
/// of its own, so this bounds the connections the API can open.
pub const MAX_EVENT_STREAMS: usize = 1024;

/// How the state is built beyond the settings.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also register the queue `test` (the worker's test processors) for end-to-end tests.
    pub test_processors: bool,
}

/// Shared by every handler: one `Arc`, so the clone axum makes for each request that
/// extracts it (several per request, through the middleware) is one reference count, not one
/// per field. Fields are read through `Deref`; a test that changes one before serving gets
/// its own copy (`DerefMut`, copy on write).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppStateInner {
        Arc::make_mut(&mut self.0)
    }
}

/// What [`AppState`] holds.
#[derive(Clone)]
pub struct AppStateInner {
    pub broker: Broker,
    pub clock: Arc<ServerClock>,
    pub artifacts: Arc<dyn ArtifactStore>,
    /// Behind an `Arc`, like every field that is not one already: axum clones the state for
    /// each request that extracts it, and that clone should cost nothing.
    pub catalog: Arc<Catalog>,
    pub max_body_bytes: usize,
    /// SHA-256 hex of `TASKFLEET__AUTH__ADMIN_KEY`, if set: the key itself is not kept.
    pub admin_key_sha: Option<Arc<str>>,
    pub metrics: Arc<Metrics>,
    pub workers: Arc<WorkerCache>,
    /// Recently looked-up API keys (for `api.key_cache_ms`).
    pub key_cache: Arc<auth::KeyCache>,
    pub sse_lifetime: Duration,
    /// How often a quiet event stream sends a comment line ([`crate::routes::events::KEEP_ALIVE`]).
    pub sse_keep_alive: Duration,
    /// Permits for open event streams ([`MAX_EVENT_STREAMS`]).
    pub event_streams: Arc<Semaphore>,
    /// Open event streams per account (`api.max_streams_per_account`).
    pub account_streams: Arc<AccountStreams>,
    pub test_processors: bool,
    /// Fires at shutdown: long-lived responses (event streams) end so the server can drain.
    pub shutdown: CancellationToken,
    /// How long a connection may take to send a request's head (or sit idle between requests).
    pub header_read_timeout: Option<Duration>,
    /// How long one request may take before its answer starts (408); not event streams.
    pub request_timeout: Option<Duration>,
    /// The wait before a 401 ([`auth::FailureDelay`]).
    pub auth_failures: Arc<auth::FailureDelay>,
    /// Whether the deployment and shard counts were checked against Redis
    /// ([`Broker::check_deployment`]): at start, or by the first `/ready` that reaches Redis.
    pub deployment_checked: Arc<std::sync::atomic::AtomicBool>,
    /// Checks the application's tokens (`auth.jwt`); `None`: tokens are not accepted.
    pub tokens: Option<Arc<crate::token::TokenVerifier>>,
    /// Which origins' pages may call the API (`api.cors_origins`); `None`: no other origin.
    pub cors: Option<tower_http::cors::CorsLayer>,
    /// How long a rotated-out webhook signing secret keeps signing (`webhooks.rotation_grace_secs`).
    pub webhook_rotation_grace: Duration,
}

impl AppState {
    /// Checks the deployment once ([`Broker::check_deployment`]); afterwards does nothing.
    pub async fn check_deployment(&self) -> taskfleet::Result<()> {
        use std::sync::atomic::Ordering;
        if self.deployment_checked.load(Ordering::Acquire) {
            return Ok(());
        }
        self.broker.check_deployment().await?;
        self.deployment_checked.store(true, Ordering::Release);
        Ok(())
    }

    /// Builds the state from settings. Redis need not be up: the API starts, `/ready` says 503,
    /// and the clock follows Redis's once it answers.
    pub async fn new(settings: &Settings, options: Options) -> anyhow::Result<AppState> {
        let catalog = settings.catalog()?;
        let mut builder = Broker::builder_from(settings)?
            .worker_id(format!("api-{}", std::process::id()))
            .queues(taskfleet::config::queues(&catalog));
        if options.test_processors {
            builder = builder.queue(TEST_QUEUE, QueueConfig::default());
        }
        let broker = builder.build()?;
        let clock = Arc::new(ServerClock::default());
        clock.try_sync(&broker).await;
        Ok(AppState(Arc::new(AppStateInner {
            artifacts: artifacts::from_settings(&settings.artifacts)?,
            catalog: Arc::new(catalog),
            max_body_bytes: settings.api.max_body_bytes,
            admin_key_sha: settings
                .auth
                .admin_key
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(|k| auth::sha256_hex(k).into()),
            metrics: Arc::new(Metrics::default()),
            workers: Arc::new(WorkerCache::default()),
            key_cache: Arc::new(auth::KeyCache::new(Duration::from_millis(
                settings.api.key_cache_ms,
            ))),
            sse_lifetime: DEFAULT_SSE_LIFETIME,
            sse_keep_alive: crate::routes::events::KEEP_ALIVE,
            event_streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            account_streams: Arc::new(AccountStreams::new(settings.api.max_streams_per_account)),
            test_processors: options.test_processors,
            shutdown: CancellationToken::new(),
            header_read_timeout: secs(settings.api.header_read_timeout_secs),
            request_timeout: secs(settings.api.request_timeout_secs),
            auth_failures: Arc::new(auth::FailureDelay::default()),
            deployment_checked: Arc::default(),
            cors: crate::cors::layer(&settings.api.cors_origins)?,
            webhook_rotation_grace: Duration::from_secs(settings.webhooks.rotation_grace_secs),
            tokens: crate::token::TokenVerifier::from_settings(&settings.auth.jwt)?,
            broker,
            clock,
        })))
    }

    /// The estimate of the server's time, for what is shown or bounded (a `run_at` check).
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// The time script calls act at: always the server's own clock.
    pub fn at(&self) -> At {
        self.clock.at()
    }
}

/// How many event streams each account holds open on this process, against a cap, so that one
/// account cannot take every one of [`MAX_EVENT_STREAMS`]. Per process, like that cap: each
/// stream is a connection of this process's.
#[derive(Debug)]
pub struct AccountStreams {
    /// 0 = no cap of its own.
    max: usize,
    // A std mutex: held for one map update, never across an await.
    open: std::sync::Mutex<HashMap<String, usize>>,
}

impl AccountStreams {
    pub fn new(max: usize) -> Self {
        AccountStreams {
            max,
            open: Default::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more stream of `account`, given back when dropped; `None` at the cap.
    pub fn try_open(self: &Arc<Self>, account: &str) -> Option<AccountStream> {
        let mut open = self.open.lock().expect("account streams lock");
        let n = open.entry(account.to_string()).or_default();
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AccountStream {
            streams: self.clone(),
            account: account.to_string(),
        })
    }
}

/// One account's place for an open stream; dropping it gives the place back.
#[derive(Debug)]
pub struct AccountStream {
    streams: Arc<AccountStreams>,
    account: String,
}

impl Drop for AccountStream {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().expect("account streams lock");
        if let Some(n) = open.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                // No entry per account ever seen: the map holds only accounts with streams.
                open.remove(&self.account);
            }
        }
    }
}

/// A setting in seconds, 0 meaning none.
fn secs(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n))
}

/// The Redis server's clock once it has answered; the machine's until then (while Redis is
/// down no write succeeds anyway, so nothing is decided by the machine's clock).
#[derive(Default)]
pub struct ServerClock {
    redis: OnceLock<Arc<RedisClock>>,
}

impl ServerClock {
    /// Reads Redis's time if not done yet; true once the clock follows Redis.
    pub async fn try_sync(&self, broker: &Broker) -> bool {
        if self.redis.get().is_some() {
            return true;
        }
        match RedisClock::new(broker).await {
            Ok(c) => {
                let _ = self.redis.set(c);
                true
            }
            Err(_) => false,
        }
    }

    /// The Redis clock, once synced.
    pub fn redis(&self) -> Option<Arc<RedisClock>> {
        self.redis.get().cloned()
    }
}

impl Clock for ServerClock {
    fn now_ms(&self) -> Millis {
        match self.redis.get() {
            Some(c) => c.now_ms(),
            None => taskfleet::clock::wall_clock_ms(),
        }
    }

    fn at(&self) -> At {
        At::Server
    }
}
