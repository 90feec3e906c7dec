//! `taskfleet-worker`: parses flags, loads settings, and runs [`taskfleet_worker::run`] until
//! SIGTERM or SIGINT.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use taskfleet::{Broker, Clock, QueueConfig, RedisClock, Settings, TaskType};
use taskfleet_worker::processors::testing::{TestProcessor, TEST_QUEUE};
use taskfleet_worker::{processors, Handler, Shared, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc, as in the API (a worker allocates per task: its
/// claim's fields, the request, the acknowledgement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "taskfleet-worker", about = "Claims and runs taskfleet tasks")]
struct Args {
    /// Settings file (default: taskfleet.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Redis URL (also REDIS_URL, TASKFLEET__REDIS__URL).
    #[arg(long)]
    redis_url: Option<String>,
    /// Task types to claim, comma-separated (default: all).
    #[arg(long)]
    types: Option<String>,
    /// Tasks run at once at most.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9091).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Also serve the test queue "test" (sleep, echo, fail, panic): for tests and benchmarks.
    #[arg(long)]
    test_processors: bool,
    /// Timeout of one test task, in ms (with --test-processors).
    #[arg(long, default_value_t = 600_000)]
    test_timeout_ms: u64,
    /// How long an idle worker blocks before it polls anyway, in ms.
    #[arg(long, default_value_t = 1_000)]
    poll_ms: u64,
    /// Tests only (with --test-processors): the time, in ms since the epoch, is read from this
    /// file instead of following Redis's clock, so a test moves several processes' time.
    #[arg(long, hide = true, requires = "test_processors")]
    test_clock_file: Option<PathBuf>,
    /// How often the scheduler promotes due tasks and ticks schedules, in ms.
    #[arg(long, hide = true, default_value_t = 1_000)]
    schedule_every_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut settings = Settings::load(args.config.as_deref())?;
    if let Some(u) = args.redis_url {
        settings.redis.url = u;
    }
    if let Some(t) = args.types {
        settings.worker.types = t;
    }
    if let Some(c) = args.concurrency {
        settings.worker.concurrency = c;
    }
    if let Some(m) = args.metrics_listen {
        settings.worker.metrics_listen = Some(m);
    }
    let catalog = settings.catalog()?;
    let store = taskfleet::artifacts::from_settings(&settings.artifacts)?;
    let deps =
        processors::Deps::from_settings(store.clone(), &settings).map_err(anyhow::Error::msg)?;

    let mut queues: HashMap<String, Handler> = HashMap::new();
    for (t, c) in catalog.iter() {
        queues.insert(
            t.as_str().to_string(),
            Handler {
                processor: processors::for_type(t, &deps),
                config: QueueConfig::from(c),
            },
        );
    }
    if args.test_processors {
        queues.insert(
            TEST_QUEUE.to_string(),
            Handler {
                processor: Arc::new(TestProcessor),
                config: QueueConfig {
                    timeout: Duration::from_millis(args.test_timeout_ms),
                    backoff_base: Duration::from_millis(200),
                    backoff_max: Duration::from_secs(2),
                    ..QueueConfig::default()
                },
            },
        );
    }
    let types: Vec<String> = if settings.worker.types.trim().is_empty() {
        let mut all: Vec<String> = TaskType::ALL.iter().map(|t| t.to_string()).collect();
        if args.test_processors {
            all.push(TEST_QUEUE.to_string());
        }
        all
    } else {
        settings
            .worker
            .types
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for t in &types {
        if !queues.contains_key(t) {
            anyhow::bail!("unknown task type {t:?} in --types");
        }
    }
    if settings.worker.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }

    let worker_id = format!(
        "{}-{}-{:04x}",
        taskfleet_worker::heartbeat::hostname(),
        std::process::id(),
        rand::random::<u16>()
    );
    let broker = Broker::builder_from(&settings)?
        .worker_id(worker_id.clone())
        .queues(queues.iter().map(|(n, q)| (n.clone(), q.config.clone())))
        .build()?;

    let stop = CancellationToken::new();
    tokio::spawn(signals(stop.clone()));

    // Wait for Redis at start rather than crash: a fleet may start before its Redis. A
    // deployment that is not what the settings say is another matter: stop, saying why.
    loop {
        match broker.check_deployment().await {
            Ok(()) => break,
            Err(e @ taskfleet::Error::InvalidInput { .. }) => {
                return Err(anyhow::Error::new(e).context("the redis deployment"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for redis");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    let clock = loop {
        match RedisClock::new(&broker).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for redis");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tokio::spawn(clock.clone().run(broker.clone(), stop.clone()));
    let clock: Arc<dyn Clock> = match args.test_clock_file {
        Some(path) => Arc::new(taskfleet_worker::test_clock::FileClock::new(path)),
        None => clock,
    };
    check_eviction_policy(&broker).await;
    let missing = deps.tools.missing();
    if !missing.is_empty() {
        tracing::warn!(tools = ?missing, "tools missing on this machine: tasks that need them fail with a clear error");
    }

    let metrics = Arc::new(taskfleet_worker::metrics::Metrics::default());
    if let Some(addr) = &settings.worker.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "metrics");
        tokio::spawn(taskfleet_worker::metrics::serve(
            listener,
            metrics.clone(),
            stop.clone(),
        ));
    }
    let shared = Arc::new(
        Shared::new(
            broker,
            clock,
            WorkerConfig {
                worker_id: worker_id.clone(),
                types: types.clone(),
                concurrency: settings.worker.concurrency,
                grace: Duration::from_secs(settings.worker.grace_seconds),
                poll: Duration::from_millis(args.poll_ms.max(10)),
                schedule_every: Duration::from_millis(args.schedule_every_ms.max(1)),
                work_dir: std::env::temp_dir().join("taskfleet-work").join(&worker_id),
            },
            queues,
            Some(store),
            metrics,
        )
        .with_webhooks(taskfleet_worker::webhook::DeliveryConfig::from_settings(
            &settings.webhooks,
        )?),
    );
    tracing::info!(worker_id = %worker_id, types = ?types, concurrency = settings.worker.concurrency, "worker started");
    taskfleet_worker::run(shared, stop).await;
    Ok(())
}

/// Warns loudly unless Redis runs with `maxmemory-policy noeviction`: an evicted lease or
/// task hash loses a task.
async fn check_eviction_policy(broker: &Broker) {
    match broker.eviction_policy().await {
        Ok(p) if p == "noeviction" => {}
        Ok(p) => tracing::warn!(
            policy = %p,
            "REDIS maxmemory-policy IS NOT noeviction: Redis may evict task data and LOSE TASKS; set maxmemory-policy noeviction"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not read maxmemory-policy; make sure it is noeviction")
        }
    }
}

async fn signals(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    stop.cancel();
}
