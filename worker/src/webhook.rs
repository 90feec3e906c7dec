//! Webhook deliveries (issue 13). The scripts that end a task write its delivery in Redis
//! (`includes/outbox.lua`, in the task's slot, atomically with the ending); this loop sends
//! them. Every worker runs it over the shards of its types: it finds the shards with a due
//! entry (one read per shard, fanned out), claims up to [`CLAIM`] entries under a lease (a
//! worker killed mid-delivery loses nothing: the entry comes due again when the lease ends),
//! and for each
//! - a batch note: counts the task on its batch ([`taskfleet::Broker::carry_note`]);
//! - a delivery: resolves the URL's host, refuses an address the [`NetPolicy`] does not allow
//!   (loopback, private, link-local, metadata, ... unless listed in
//!   `webhooks.allow_networks`), connects to the checked address only (no second lookup), POSTs
//!   the body signed per Standard Webhooks with the account's live secrets, follows no redirect
//!   (a 3xx is a failed attempt), reads at most 256 bytes of the answer, all within
//!   `webhooks.timeout_secs`; then records the attempt, which schedules the next one
//!   ([`taskfleet::webhooks::retry_delay`]: 5 s, 30 s, 2 min, ... over 28 h).
//!
//! A hook URL is the account's secret as much as an address (`…/hook?token=…`), so logs name
//! it by its origin only (`sanitize::origin`: scheme, host, port), never its path or query.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng;
use taskfleet::webhooks::{self, Attempt, Delivery, HookWork, NetPolicy, ReportOutcome};
use taskfleet::{At, Millis};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Event;
use crate::processors::sanitize::origin;
use crate::Shared;

/// The most entries one claim takes from one shard.
pub const CLAIM: usize = 32;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub policy: NetPolicy,
    /// One attempt's bound: resolve, connect, send, answer.
    pub timeout: Duration,
    /// How often the loop looks for due deliveries.
    pub every: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            policy: NetPolicy::default(),
            timeout: Duration::from_secs(10),
            every: Duration::from_secs(1),
        }
    }
}

impl DeliveryConfig {
    /// From the settings (`[webhooks]`); an allow-list entry that does not parse is named.
    pub fn from_settings(s: &taskfleet::config::WebhookSettings) -> taskfleet::Result<Self> {
        Ok(DeliveryConfig {
            policy: NetPolicy::new(&s.allow_networks)?,
            timeout: Duration::from_secs(s.timeout_secs.max(1)),
            ..DeliveryConfig::default()
        })
    }
}

/// The most deliveries one worker has in flight at once (the loop claims no more than it
/// has room for).
pub const MAX_IN_FLIGHT: usize = 64;

/// The delivery loop of one worker.
#[derive(Clone)]
pub struct Deliverer {
    shared: Arc<Shared>,
}

impl Deliverer {
    pub fn new(shared: Arc<Shared>) -> Deliverer {
        Deliverer { shared }
    }

    /// How long a claimed entry is held: an attempt's timeout and a lease of slack.
    pub fn lease(&self) -> Duration {
        self.shared.webhooks.timeout + self.shared.broker.lease()
    }

    /// Looks for due deliveries every `webhooks.every` (jittered) until `stop`. Each delivery
    /// runs on its own (at most [`MAX_IN_FLIGHT`]), so a receiver that hangs until the timeout
    /// delays no one else's. One still running when the worker stops is sent again by another
    /// worker when its lease ends (at least once).
    pub async fn run(self, stop: CancellationToken) {
        let room = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        loop {
            let jitter = rand::rng().random_range(0.75..1.25);
            let wait = self.shared.webhooks.every.mul_f64(jitter);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if let Err(e) = self.pass(self.shared.at(), Some(&room)).await {
                self.shared.health.bad("webhook delivery", &e);
                self.shared.metrics.redis_error();
            }
        }
    }

    /// One pass over the worker's shards: every due entry claimed and handled before it
    /// returns (tests drive it with a manual clock). How many.
    pub async fn tick(&self, at: At) -> taskfleet::Result<usize> {
        self.pass(at, None).await
    }

    /// One pass: with `room`, each claimed entry is handled on its own task holding a permit,
    /// and no more are claimed than there are permits; without, they are awaited here.
    async fn pass(&self, at: At, room: Option<&Arc<Semaphore>>) -> taskfleet::Result<usize> {
        let s = &self.shared;
        let now = match at {
            At::Ms(ms) => ms,
            At::Server => s.now(),
        };
        let shards: Vec<taskfleet::Shard> = s
            .config
            .types
            .iter()
            .flat_map(|t| s.broker.shards(t).unwrap_or_default())
            .collect();
        let mut handled = 0;
        for shard in s.broker.hooks_due(&shards, now).await? {
            let limit = room.map_or(CLAIM, |r| r.available_permits().min(CLAIM));
            if limit == 0 {
                break;
            }
            let work = s
                .broker
                .claim_hooks(&shard, limit, self.lease(), at)
                .await?;
            handled += work.len();
            match room {
                None => {
                    for r in join_all(work.into_iter().map(|w| self.handle(w, at, now))).await {
                        r?;
                    }
                }
                Some(room) => {
                    for w in work {
                        let permit = room.clone().acquire_owned().await.expect("never closed");
                        let me = self.clone();
                        tokio::spawn(async move {
                            let _permit = permit;
                            if let Err(e) = me.handle(w, at, now).await {
                                me.shared.health.bad("webhook delivery", &e);
                                me.shared.metrics.redis_error();
                            }
                        });
                    }
                }
            }
        }
        Ok(handled)
    }

    async fn handle(&self, work: HookWork, at: At, now: Millis) -> taskfleet::Result<()> {
        let b = &self.shared.broker;
        match work {
            HookWork::Note { shard, member } => {
                b.carry_note(&shard, &member, at).await?;
            }
            HookWork::Delivery(d) => {
                let secrets: Vec<String> = b
                    .webhook_secrets(&d.account_id, now)
                    .await?
                    .into_iter()
                    .map(|(_, s)| s.secret)
                    .collect();
                let attempt = send(&d, &secrets, now / 1000, &self.shared.webhooks).await;
                let outcome = b.report_hook(&d, &attempt, at).await?;
                let t = d.shard.task_type();
                let metrics = &self.shared.metrics;
                match outcome {
                    ReportOutcome::Delivered => metrics.count(Event::WebhookDelivered, t, 1),
                    ReportOutcome::Retry(_) => metrics.count(Event::WebhookRetried, t, 1),
                    ReportOutcome::GivenUp => metrics.count(Event::WebhookGivenUp, t, 1),
                    ReportOutcome::Stale => {}
                }
                match outcome {
                    ReportOutcome::GivenUp => tracing::warn!(
                        target_origin = %origin(&d.url),
                        delivery = %d.id,
                        "webhook given up after {} attempts", d.attempts + 1
                    ),
                    ReportOutcome::Retry(wait) => tracing::debug!(
                        target_origin = %origin(&d.url),
                        delivery = %d.id,
                        status = ?attempt.status,
                        error = ?attempt.error,
                        "webhook attempt failed; again in {wait:?}"
                    ),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Sends one attempt of `d`, signed with each of `secrets`, at `timestamp` (unix seconds).
pub async fn send(
    d: &Delivery,
    secrets: &[String],
    timestamp: i64,
    cfg: &DeliveryConfig,
) -> Attempt {
    let started = Instant::now();
    let mut attempt =
        match tokio::time::timeout(cfg.timeout, post(d, secrets, timestamp, cfg)).await {
            Ok(a) => a,
            Err(_) => Attempt {
                error: Some(format!("no answer within {} s", cfg.timeout.as_secs())),
                ..Attempt::default()
            },
        };
    attempt.latency_ms = started.elapsed().as_millis() as u64;
    attempt
}

fn failed(error: impl Into<String>) -> Attempt {
    Attempt {
        error: Some(error.into()),
        ..Attempt::default()
    }
}

async fn post(d: &Delivery, secrets: &[String], timestamp: i64, cfg: &DeliveryConfig) -> Attempt {
    let Ok(url) = reqwest::Url::parse(&d.url) else {
        return failed("not a URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return failed("not an http(s) URL");
    }
    let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
        return failed("no host");
    };
    // Resolve once, check, and pin the connection to the checked address.
    let (addrs, domain): (Vec<IpAddr>, Option<String>) = match host {
        url::Host::Ipv4(ip) => (vec![IpAddr::V4(ip)], None),
        url::Host::Ipv6(ip) => (vec![IpAddr::V6(ip)], None),
        url::Host::Domain(name) => match tokio::net::lookup_host((name, port)).await {
            Ok(found) => (found.map(|a| a.ip()).collect(), Some(name.to_string())),
            Err(_) => return failed(format!("{name} does not resolve")),
        },
    };
    let mut refusal = None;
    let mut chosen = None;
    for ip in addrs {
        match cfg.policy.check(ip) {
            Ok(()) => {
                chosen = Some(ip);
                break;
            }
            Err(why) => refusal = refusal.or(Some(why)),
        }
    }
    let Some(ip) = chosen else {
        return failed(format!(
            "refused: the host resolves to {} (allow it in webhooks.allow_networks)",
            refusal.unwrap_or("no address")
        ));
    };
    let mut builder = crate::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .user_agent(concat!("taskfleet-worker/", env!("CARGO_PKG_VERSION")));
    if let Some(domain) = &domain {
        builder = builder.resolve(domain, SocketAddr::new(ip, port));
    }
    let Ok(client) = builder.build() else {
        return failed("no HTTP client");
    };
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", timestamp.to_string())
        .body(d.body.clone());
    let signatures: Vec<String> = secrets
        .iter()
        .filter_map(|s| webhooks::sign(s, &d.id, timestamp, d.body.as_bytes()).ok())
        .collect();
    if !signatures.is_empty() {
        req = req.header("webhook-signature", signatures.join(" "));
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        // reqwest's message names the whole URL: only its kind is kept.
        Err(e) => {
            return failed(if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "the request failed"
            })
        }
    };
    let status = resp.status();
    let mut body = Vec::new();
    while body.len() < webhooks::BODY_PREFIX {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    body.truncate(webhooks::BODY_PREFIX);
    Attempt {
        status: Some(status.as_u16()),
        error: status
            .is_redirection()
            .then(|| "a redirect (not followed)".to_string())
            .or_else(|| (!status.is_success()).then(|| format!("answered {status}"))),
        body: String::from_utf8_lossy(&body).into_owned(),
        ..Attempt::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_url_is_logged_as_its_origin() {
        assert_eq!(
            origin("https://user:pw@example.com:8443/a/b?c=d#e"),
            "https://example.com:8443"
        );
        assert_eq!(origin("http://example.com/x"), "http://example.com");
        assert_eq!(origin("not a url"), "<invalid url>");
    }

    fn delivery(url: &str) -> Delivery {
        Delivery {
            shard: taskfleet::Broker::builder("redis://127.0.0.1:1")
                .queue("test", taskfleet::QueueConfig::default())
                .build()
                .unwrap()
                .shard("test", 0)
                .unwrap(),
            id: "test.0.x.1".into(),
            url: url.into(),
            account_id: "a".into(),
            body: "{}".into(),
            attempts: 0,
            token: "t".into(),
        }
    }

    #[tokio::test]
    async fn loopback_and_metadata_addresses_are_refused_before_any_connection() {
        let cfg = DeliveryConfig::default();
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost:9/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:9/",
            "http://10.0.0.1/",
        ] {
            let a = send(&delivery(url), &[], 0, &cfg).await;
            assert_eq!(a.status, None, "{url}");
            let e = a.error.unwrap();
            assert!(e.starts_with("refused"), "{url}: {e}");
        }
    }
}
