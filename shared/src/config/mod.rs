//! Configuration: per-type task configs, per-queue engine settings, and the settings file.
//!
//! Settings are read in this order, each overriding the one before (DESIGN §10): built-in
//! defaults, `taskfleet.toml` (or the file named by `--config`), the environment
//! (`TASKFLEET__SECTION__KEY`, and `REDIS_URL`), then the binaries' command-line flags.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
pub use taskfleet_catalog::{Catalog, TaskConfig, TaskConfigOverride};

mod processors;
pub use processors::{
    ProcessorSettings, ProviderSettings, ToolSettings, DEFAULT_PROVIDER_TIMEOUT_SECS,
};

use crate::error::{Error, Result};
use crate::task::Priority;

/// Default Redis URL: a local server.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default API listen address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";
/// Default lease (visibility timeout): a worker that stops beating loses its tasks after this.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;
/// Default number of tasks one worker process runs at once.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default time in-flight tasks get to finish after SIGTERM before they are released.
pub const DEFAULT_GRACE_SECONDS: u64 = 30;
pub use taskfleet_catalog::config::{DEFAULT_BACKOFF_BASE_SECS, DEFAULT_BACKOFF_MAX_SECS};
/// Default retention of completed tasks.
pub const DEFAULT_RETENTION_COMPLETED_DAYS: u64 = 7;
/// Default retention of failed tasks (kept longer: someone may want to look).
pub const DEFAULT_RETENTION_FAILED_DAYS: u64 = 30;
/// Default retention of cancelled tasks.
pub const DEFAULT_RETENTION_CANCELLED_DAYS: u64 = 1;
/// Default timeout of every Redis call: a stalled Redis never hangs a caller longer.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 5_000;
/// Default artifact directory.
pub const DEFAULT_ARTIFACTS_DIR: &str = "artifacts";
/// Default shards of each task type on a Redis Cluster: enough to spread a hot type over
/// a few primaries and keep claims contending on different slots.
pub const DEFAULT_CLUSTER_SHARDS: u16 = 16;
/// Default wait for replicas' acknowledgement (when `redis.wait_replicas` is set).
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 1_000;
/// Default time an API key's lookup is reused: a revoked key stops working within 5 s on
/// every API replica, and a busy client's requests skip a Redis round trip.
pub const DEFAULT_KEY_CACHE_MS: u64 = 5_000;
/// Default enqueues one account may make per minute through the API: a hundred a second is
/// far beyond what content generation needs, and keeps one tenant from flooding the queue.
pub const DEFAULT_RATE_PER_MINUTE: u64 = 6_000;
/// Default tasks of one type one account may hold (until retention trims them): with the
/// 1 KiB or so a small task costs Redis, all eight types of one account stay under 400 MiB.
pub const DEFAULT_MAX_TASKS: u64 = 50_000;
/// Default request bytes of one type one account may hold: 64 MiB, so one tenant cannot fill
/// a single-machine Redis with large requests (Redis runs `noeviction`: a full Redis stops
/// everyone).
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default time a client has to send a request's head (and an idle keep-alive connection to
/// start its next one) before the API closes the connection: slow-header clients cannot hold
/// connections open.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Default time the API gives one request, its body included, before answering 408 (event
/// streams, long-lived by design, are exempt once their first answer is sent).
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default number of event streams one account may hold open on one API process (of the
/// process's 1,024), so one account cannot take them all.
pub const DEFAULT_MAX_STREAMS_PER_ACCOUNT: usize = 32;

/// What the queue engine needs to know about one queue (one task type name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_attempts: u32,
    pub default_priority: Priority,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long one attempt may run before the worker fails it.
    pub timeout: Duration,
    /// How many shards the queue is spread over; `None`: the deployment's default (1 on a
    /// single server, [`DEFAULT_CLUSTER_SHARDS`] on a cluster, or `redis.shards`).
    pub shards: Option<u16>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_attempts: 3,
            default_priority: Priority::Normal,
            backoff_base: Duration::from_secs(DEFAULT_BACKOFF_BASE_SECS),
            backoff_max: Duration::from_secs(DEFAULT_BACKOFF_MAX_SECS),
            timeout: Duration::from_secs(600),
            shards: None,
        }
    }
}

/// The queue engine's view of a catalog type.
impl From<&TaskConfig> for QueueConfig {
    fn from(c: &TaskConfig) -> QueueConfig {
        QueueConfig {
            max_attempts: c.max_attempts,
            default_priority: Priority::from_weight(c.priority_weight),
            backoff_base: Duration::from_secs(c.backoff_base_secs),
            backoff_max: Duration::from_secs(c.backoff_max_secs),
            timeout: Duration::from_secs(c.timeout_minutes * 60),
            shards: c.shards,
        }
    }
}

/// Every catalog type as a queue name with its engine config, to register with the broker.
pub fn queues(catalog: &Catalog) -> Vec<(String, QueueConfig)> {
    catalog
        .iter()
        .map(|(t, c)| (t.as_str().to_string(), QueueConfig::from(c)))
        .collect()
}

/// Everything configurable, as read from defaults, the file and the environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub redis: RedisSettings,
    pub api: ApiSettings,
    pub auth: AuthSettings,
    pub worker: WorkerSettings,
    pub artifacts: ArtifactSettings,
    pub retention: RetentionSettings,
    pub webhooks: WebhookSettings,
    /// Per-account limits of the service (the API's enqueues and the flows it starts).
    pub limits: Limits,
    pub task_types: HashMap<String, TaskConfigOverride>,
    /// The text provider of the processors; read by the worker.
    pub text: ProviderSettings,
    /// The image provider.
    pub image: ProviderSettings,
    /// Paths of external programs.
    pub tools: ToolSettings,
    /// Sizes and intervals of the processors.
    pub processors: ProcessorSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// A single server (`redis://host:port`); ignored when `cluster_nodes` is set.
    pub url: String,
    /// A Redis Cluster, named by seed nodes: `host:port,host:port,...` (every one must answer
    /// at start). Empty: the single server of `url`.
    pub cluster_nodes: String,
    pub prefix: String,
    pub timeout_ms: u64,
    /// Each task type's shards unless its own `task_types.<type>.shards` says otherwise;
    /// 0: 1 on a single server, [`DEFAULT_CLUSTER_SHARDS`] on a cluster.
    pub shards: u16,
    /// Replicas that must acknowledge an enqueue or a completion before it is answered
    /// (`WAIT`); 0: answer once the primary has it (replication stays asynchronous).
    pub wait_replicas: u32,
    /// How long an enqueue or a completion waits for `wait_replicas`; past it, the call fails
    /// (Unavailable) and is retried.
    pub wait_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: DEFAULT_REDIS_URL.to_string(),
            cluster_nodes: String::new(),
            prefix: crate::keys::DEFAULT_PREFIX.to_string(),
            timeout_ms: DEFAULT_REDIS_TIMEOUT_MS,
            shards: 0,
            wait_replicas: 0,
            wait_timeout_ms: DEFAULT_WAIT_TIMEOUT_MS,
        }
    }
}

impl RedisSettings {
    /// The deployment these settings name: a cluster's seed nodes (each `host:port`,
    /// checked), or the single server's URL.
    pub fn deployment(&self) -> Result<crate::broker::conn::Deployment> {
        use crate::broker::conn::Deployment;
        if self.cluster_nodes.trim().is_empty() {
            return Ok(Deployment::Single {
                url: self.url.clone(),
            });
        }
        let nodes: Vec<String> = self
            .cluster_nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        for n in &nodes {
            let ok = n.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(Error::invalid(
                    "redis.cluster_nodes",
                    format!("{n:?} is not host:port"),
                ));
            }
        }
        if nodes.is_empty() {
            return Err(Error::invalid("redis.cluster_nodes", "no seed node"));
        }
        Ok(Deployment::Cluster { nodes })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    pub listen: String,
    pub max_body_bytes: usize,
    /// How long an API key's lookup is reused (ms): a revoked key stops working within this
    /// long. 0 = every request looks its key up.
    pub key_cache_ms: u64,
    /// Seconds a client has to send a request's head; 0 = no limit.
    pub header_read_timeout_secs: u64,
    /// Seconds one request (its body included) may take, event streams exempt; 0 = no limit.
    pub request_timeout_secs: u64,
    /// Event streams one account may hold open on one API process; 0 = no limit of its own.
    pub max_streams_per_account: usize,
    /// Origins (`https://app.example.com`) whose pages may call the API from a browser (CORS);
    /// `*` allows any. None by default: browsers refuse cross-origin calls.
    pub cors_origins: Vec<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: DEFAULT_API_LISTEN.to_string(),
            max_body_bytes: 1 << 20,
            key_cache_ms: DEFAULT_KEY_CACHE_MS,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            max_streams_per_account: DEFAULT_MAX_STREAMS_PER_ACCOUNT,
            cors_origins: Vec::new(),
        }
    }
}

/// Per-account limits (DESIGN §6): defaults for every account, and overrides by account id
/// (`[limits.accounts.<id>]` in the settings file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Enqueues one account may make per minute (fixed one-minute windows, shared by every
    /// API replica through Redis); a course's lesson videos count too. 0 = no limit.
    pub rate_per_minute: u64,
    /// Tasks of one type one account may hold until retention trims them; 0 = no limit.
    pub max_tasks: u64,
    /// Request bytes (JSON) of one type one account may hold; 0 = no limit.
    pub max_bytes: u64,
    /// The highest band the account may ask for (`urgent` keeps every band open).
    pub max_priority: Priority,
    /// Overrides by account id; a field left out keeps the default.
    pub accounts: HashMap<String, AccountLimits>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate_per_minute: DEFAULT_RATE_PER_MINUTE,
            max_tasks: DEFAULT_MAX_TASKS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_priority: Priority::Urgent,
            accounts: HashMap::new(),
        }
    }
}

/// One account's overrides of [`Limits`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountLimits {
    pub rate_per_minute: Option<u64>,
    pub max_tasks: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_priority: Option<Priority>,
}

/// The limits that hold for one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountLimit {
    pub rate_per_minute: u64,
    pub max_tasks: u64,
    pub max_bytes: u64,
    pub max_priority: Priority,
}

impl Limits {
    /// No limit at all: what a library user's own broker gets unless it asks for limits.
    pub fn unlimited() -> Limits {
        Limits {
            rate_per_minute: 0,
            max_tasks: 0,
            max_bytes: 0,
            max_priority: Priority::Urgent,
            accounts: HashMap::new(),
        }
    }

    /// The limits of one account: its overrides over the defaults.
    pub fn for_account(&self, account_id: &str) -> AccountLimit {
        let o = self.accounts.get(account_id);
        AccountLimit {
            rate_per_minute: o
                .and_then(|o| o.rate_per_minute)
                .unwrap_or(self.rate_per_minute),
            max_tasks: o.and_then(|o| o.max_tasks).unwrap_or(self.max_tasks),
            max_bytes: o.and_then(|o| o.max_bytes).unwrap_or(self.max_bytes),
            max_priority: o.and_then(|o| o.max_priority).unwrap_or(self.max_priority),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub admin_key: Option<String>,
    /// Signed bearer tokens (JWT) minted by the application's backend for its users.
    pub jwt: JwtSettings,
}

/// How the API verifies the application's tokens (`[auth.jwt]`). Off while no key is set.
/// Exactly one way to verify: an HS256 secret, or RS256/ES256 public keys from a JWKS file or
/// URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// The shared secret of HS256 tokens (at least 32 bytes).
    pub hs256_secret: Option<String>,
    /// A JWKS file (`{"keys": [...]}`) of RS256 / ES256 public keys.
    pub jwks_file: Option<String>,
    /// A JWKS URL (https, or http on loopback), fetched at start and again for an unknown `kid`.
    pub jwks_url: Option<String>,
    /// The `aud` a token must name, when set.
    pub audience: Option<String>,
    /// The `iss` a token must carry, when set.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// How long a fetched JWKS is used before it is fetched again, in seconds.
    pub jwks_refresh_secs: u64,
}

/// Default clock skew allowed on a token's `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 30;
/// Default time a JWKS fetched from a URL is used before it is fetched again.
pub const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            hs256_secret: None,
            jwks_file: None,
            jwks_url: None,
            audience: None,
            issuer: None,
            leeway_secs: DEFAULT_JWT_LEEWAY_SECS,
            jwks_refresh_secs: DEFAULT_JWKS_REFRESH_SECS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// Comma-separated type names; empty = all.
    pub types: String,
    pub concurrency: usize,
    pub lease_seconds: u64,
    pub grace_seconds: u64,
    pub metrics_listen: Option<String>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            types: String::new(),
            concurrency: DEFAULT_CONCURRENCY,
            lease_seconds: DEFAULT_LEASE_SECONDS,
            grace_seconds: DEFAULT_GRACE_SECONDS,
            metrics_listen: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ArtifactSettings {
    pub dir: String,
    /// An object store URL (`s3://bucket/prefix`); empty = the local directory.
    pub url: String,
}

impl Default for ArtifactSettings {
    fn default() -> Self {
        ArtifactSettings {
            dir: DEFAULT_ARTIFACTS_DIR.to_string(),
            url: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    pub completed_days: u64,
    pub failed_days: u64,
    pub cancelled_days: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            completed_days: DEFAULT_RETENTION_COMPLETED_DAYS,
            failed_days: DEFAULT_RETENTION_FAILED_DAYS,
            cancelled_days: DEFAULT_RETENTION_CANCELLED_DAYS,
        }
    }
}

/// Webhooks (issue 13): where a worker may deliver, how long an attempt may take, how long a
/// rotated signing secret keeps signing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Addresses or CIDRs a webhook may reach although they are loopback, private, link-local,
    /// CGNAT or a metadata address (refused by default); e.g. `127.0.0.1/32` in tests.
    pub allow_networks: Vec<String>,
    /// One attempt's bound (connect, send, answer), in seconds.
    pub timeout_secs: u64,
    /// How long the old secret keeps signing after a rotation, in seconds.
    pub rotation_grace_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_networks: Vec::new(),
            timeout_secs: 10,
            rotation_grace_secs: 24 * 3600,
        }
    }
}

impl Settings {
    /// Defaults, then `file` (or `taskfleet.toml` if it exists), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// [`Settings::load`] with the environment given, so tests need not touch the process's.
    pub fn load_from(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Settings> {
        let bad = |e: config::ConfigError| Error::invalid("config", e.to_string());
        let mut b = config::Config::builder();
        match file {
            Some(f) => b = b.add_source(config::File::from(f).required(true)),
            None => b = b.add_source(config::File::with_name("taskfleet").required(false)),
        }
        let mut env_vars: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("TASKFLEET__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(url) = env.get("REDIS_URL") {
            env_vars
                .entry("TASKFLEET__REDIS__URL".to_string())
                .or_insert_with(|| url.clone());
        }
        b = b.add_source(
            config::Environment::with_prefix("TASKFLEET")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // `TASKFLEET__API__CORS_ORIGINS=https://a.example,https://b.example`
                .list_separator(",")
                .with_list_parse_key("api.cors_origins")
                // `TASKFLEET__WEBHOOKS__ALLOW_NETWORKS=127.0.0.1/32,10.1.0.0/16`
                .with_list_parse_key("webhooks.allow_networks")
                .source(Some(env_vars)),
        );
        b.build()
            .map_err(bad)?
            .try_deserialize::<Settings>()
            .map_err(bad)
    }

    pub fn catalog(&self) -> Result<Catalog> {
        Ok(Catalog::from_overrides(&self.task_types)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskType;

    #[test]
    fn a_catalog_type_becomes_its_queues_config() {
        let c = Catalog::default();
        let q = QueueConfig::from(c.get(TaskType::CourseVideo));
        assert_eq!(q.default_priority, Priority::Low);
        assert_eq!(q.backoff_base, Duration::from_secs(10));
        assert_eq!(q.backoff_max, Duration::from_secs(600));
    }

    #[test]
    fn file_then_environment_override_the_defaults() {
        let dir = std::env::temp_dir().join(format!("tf-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("taskfleet.toml");
        std::fs::write(
            &file,
            "[redis]\nprefix = \"fromfile\"\n[worker]\nconcurrency = 9\n[task_types.quiz]\nmax_attempts = 7\npriority_weight = 9\n",
        )
        .unwrap();
        let env = HashMap::from([
            (
                "TASKFLEET__WORKER__CONCURRENCY".to_string(),
                "12".to_string(),
            ),
            (
                "REDIS_URL".to_string(),
                "redis://127.0.0.1:7777".to_string(),
            ),
            (
                "TASKFLEET__API__MAX_STREAMS_PER_ACCOUNT".to_string(),
                "5".to_string(),
            ),
            (
                "TASKFLEET__API__CORS_ORIGINS".to_string(),
                "http://127.0.0.1:5173,https://app.example.com".to_string(),
            ),
            (
                "TASKFLEET__AUTH__JWT__AUDIENCE".to_string(),
                "taskfleet".to_string(),
            ),
        ]);
        let s = Settings::load_from(Some(&file), &env).unwrap();
        assert_eq!(s.redis.prefix, "fromfile");
        assert_eq!(s.redis.url, "redis://127.0.0.1:7777");
        assert_eq!(s.worker.concurrency, 12);
        assert_eq!(s.api.max_streams_per_account, 5);
        assert_eq!(
            s.api.cors_origins,
            ["http://127.0.0.1:5173", "https://app.example.com"]
        );
        assert_eq!(s.auth.jwt.audience.as_deref(), Some("taskfleet"));
        assert_eq!(s.auth.jwt.leeway_secs, DEFAULT_JWT_LEEWAY_SECS);
        assert_eq!(s.api.request_timeout_secs, DEFAULT_REQUEST_TIMEOUT_SECS);
        assert_eq!(s.worker.lease_seconds, DEFAULT_LEASE_SECONDS);
        let quiz = QueueConfig::from(s.catalog().unwrap().get(TaskType::Quiz));
        assert_eq!(quiz.max_attempts, 7);
        assert_eq!(quiz.default_priority, Priority::Urgent);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn processor_sections_are_typed_and_read_from_the_file_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("tf-config-p-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("taskfleet.toml");
        std::fs::write(
            &file,
            "[text]\nprovider = \"openai\"\ntimeout_secs = 30\n[processors]\nvideo_size = \"160x90\"\n",
        )
        .unwrap();
        let env = HashMap::from([
            ("TASKFLEET__TEXT__MODEL".to_string(), "llama3".to_string()),
            (
                "TASKFLEET__TOOLS__FFMPEG".to_string(),
                "/opt/ffmpeg".to_string(),
            ),
        ]);
        let s = Settings::load_from(Some(&file), &env).unwrap();
        assert_eq!(s.text.provider, "openai");
        assert_eq!(s.text.timeout_secs, 30);
        assert_eq!(s.text.model, "llama3");
        assert_eq!(s.image, ProviderSettings::default());
        assert_eq!(
            s.tools.ffmpeg.as_deref(),
            Some(std::path::Path::new("/opt/ffmpeg"))
        );
        assert_eq!(s.processors.video_size(64..=2048).unwrap(), Some((160, 90)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
