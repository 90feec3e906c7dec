//! Webhooks a receiver can trust (issue 13): durable, signed, complete and safe.
//!
//! - **Durable.** Every script that ends a task with a `webhook_url` (complete, fail, cancel,
//!   recover, release, defer) writes a delivery record in the task's own slot, in the same
//!   script (`includes/outbox.lua`), and puts its id in the shard's delivery queue
//!   (`tf:{T}:hooks`, a ZSET by due time). Workers claim due deliveries under a lease
//!   ([`Broker::claim_hooks`]: the entry's score moves to the lease's end, so a worker killed
//!   mid-delivery loses nothing: the entry comes due again), send them, and record each attempt
//!   ([`Broker::report_hook`], fenced by the claim's token); a failed attempt is retried after
//!   [`retry_delay`], over more than 24 hours.
//! - **Signed** per Standard Webhooks: `webhook-id` (the delivery's id, the same on every
//!   retry), `webhook-timestamp` (unix seconds), `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "{id}.{timestamp}.{body}">` under each of the account's live secrets (`whsec_<base64>`),
//!   space-separated: two during a rotation's grace period ([`sign`], [`verify`]).
//! - **Batches**: a task of a batch leaves a note in the same queue; the worker that takes it
//!   counts it on the batch's record ([`Broker::carry_note`], idempotent), and the count that
//!   completes the batch writes its `batch.finished` delivery, once.
//! - **Safe**: [`NetPolicy`] says which resolved addresses a worker may connect to.
//!
//! This module is the only code that reads or writes the delivery records and the secrets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use redis::Cmd;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::broker::conn::{script, Dual};
use crate::broker::{validate_ident, Broker, Shard};
use crate::browse::on;
use crate::clock::At;
use crate::error::{Error, Result};
use crate::task::{Millis, Task};

static CLAIM: std::sync::LazyLock<Dual> = script!("hooks_claim.lua", "now.lua");
static REPORT: std::sync::LazyLock<Dual> = script!("hooks_report.lua", "now.lua");
static ACK: std::sync::LazyLock<Dual> = script!("hooks_ack.lua");
static NOTE: std::sync::LazyLock<Dual> = script!("batch_note.lua", "now.lua");

/// The waits between attempts: after attempt `n` fails, the next comes `SCHEDULE[n - 1]`
/// later; after the last, the delivery is given up. 13 attempts over 28 h 42 m.
pub const SCHEDULE: [Duration; 12] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(5 * 3600),
];

/// How long after attempt `attempt` (from 1) failed the next one is due; `None`: give up.
pub fn retry_delay(attempt: u32) -> Option<Duration> {
    let i = usize::try_from(attempt.checked_sub(1)?).ok()?;
    SCHEDULE.get(i).copied()
}

/// How much of a receiver's answer is kept per attempt.
pub const BODY_PREFIX: usize = 256;
/// How long a finished delivery record (delivered or given up) is kept.
pub const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a finished batch's record is kept (then `GET /api/batches/{id}` is 404).
pub const BATCH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The most live secrets an account has (one, and the one rotated out during its grace).
pub const MAX_SECRETS: usize = 4;
/// The longest webhook URL.
pub const MAX_URL: usize = 2048;

/// Whether `url` may be a webhook: http or https, at most [`MAX_URL`] printable characters,
/// with a host. Refused with the field named.
pub fn validate_url(field: &str, url: &str) -> Result<()> {
    let ok = url.len() <= MAX_URL
        && url.bytes().all(|b| b.is_ascii_graphic())
        && url::Url::parse(url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("an http(s) URL with a host, of at most {MAX_URL} characters"),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Signing

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// One signature (`v1,<base64>`) of `body` sent as message `msg_id` at `timestamp` (unix
/// seconds): HMAC-SHA256 over `"{msg_id}.{timestamp}.{body}"` keyed by the secret's bytes.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String> {
    let key = secret_key(secret).ok_or_else(|| Error::invalid("secret", "not a whsec_ secret"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Whether `header` (a `webhook-signature` value: space-separated `v1,<base64>`) holds a
/// signature of `body` by `secret` (compared in constant time).
pub fn verify(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(key) = secret_key(secret) else {
        return false;
    };
    header.split_whitespace().any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    })
}

// ---------------------------------------------------------------------------------------
// Secrets

/// A signing secret as stored (the secret itself is shown once, at creation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredSecret {
    pub secret: String,
    pub created_at: Millis,
    /// When it stops signing: set by a rotation (now + the grace period); none while current.
    pub expires_at: Option<Millis>,
}

/// A secret as listed: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    pub id: String,
    pub created_at: Millis,
    /// When a rotated-out secret stops signing; null for the current one.
    pub expires_at: Option<Millis>,
}

impl Broker {
    /// The account's secrets that still sign at `now`, by id, newest first.
    pub async fn webhook_secrets(
        &self,
        account_id: &str,
        now: Millis,
    ) -> Result<Vec<(String, StoredSecret)>> {
        let key = self.keys().webhook_secrets(account_id);
        let all: HashMap<String, String> = self
            .with_conn(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await?;
        let mut live: Vec<(String, StoredSecret)> = all
            .into_iter()
            .filter_map(|(id, v)| Some((id, serde_json::from_str::<StoredSecret>(&v).ok()?)))
            .filter(|(_, s)| s.expires_at.is_none_or(|e| e > now))
            .collect();
        live.sort_by(|a, b| b.1.created_at.cmp(&a.1.created_at).then(b.0.cmp(&a.0)));
        Ok(live)
    }

    /// The account's live secrets, listed without the secrets.
    pub async fn list_webhook_secrets(
        &self,
        account_id: &str,
        now: Millis,
    ) -> Result<Vec<SecretInfo>> {
        Ok(self
            .webhook_secrets(account_id, now)
            .await?
            .into_iter()
            .map(|(id, s)| SecretInfo {
                id,
                created_at: s.created_at,
                expires_at: s.expires_at,
            })
            .collect())
    }

    /// Makes the account's first signing secret; [`Error::Conflict`] if it has a current one
    /// (rotate instead). Returns it with the secret, which is never shown again.
    pub async fn create_webhook_secret(
        &self,
        account_id: &str,
        now: Millis,
    ) -> Result<(SecretInfo, String)> {
        validate_ident("account_id", account_id, 128)?;
        let live = self.webhook_secrets(account_id, now).await?;
        if live.iter().any(|(_, s)| s.expires_at.is_none()) {
            return Err(Error::Conflict(
                "the account has a signing secret: rotate it instead".into(),
            ));
        }
        self.add_secret(account_id, now, &[]).await
    }

    /// A new current secret; the current one keeps signing until `now + grace`, so a
    /// receiver can switch over meanwhile (both sign). With no current secret, this creates one.
    pub async fn rotate_webhook_secret(
        &self,
        account_id: &str,
        now: Millis,
        grace: Duration,
    ) -> Result<(SecretInfo, String)> {
        validate_ident("account_id", account_id, 128)?;
        let live = self.webhook_secrets(account_id, now).await?;
        let until = now + grace.as_millis() as Millis;
        let retired: Vec<(String, StoredSecret)> = live
            .into_iter()
            .filter(|(_, s)| s.expires_at.is_none())
            .map(|(id, mut s)| {
                s.expires_at = Some(until);
                (id, s)
            })
            .collect();
        self.add_secret(account_id, now, &retired).await
    }

    async fn add_secret(
        &self,
        account_id: &str,
        now: Millis,
        retired: &[(String, StoredSecret)],
    ) -> Result<(SecretInfo, String)> {
        let key = self.keys().webhook_secrets(account_id);
        let all: HashMap<String, String> = self
            .with_conn(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await?;
        // Forget expired secrets, and the oldest beyond MAX_SECRETS.
        let mut stale: Vec<String> = Vec::new();
        let mut kept: Vec<(String, Millis)> = Vec::new();
        for (id, v) in &all {
            match serde_json::from_str::<StoredSecret>(v) {
                Ok(s) if s.expires_at.is_none_or(|e| e > now) => {
                    kept.push((id.clone(), s.created_at))
                }
                _ => stale.push(id.clone()),
            }
        }
        kept.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
        stale.extend(kept.into_iter().skip(MAX_SECRETS - 1).map(|(id, _)| id));
        let secret = generate_secret();
        let id = format!("whsec_id_{}", uuid::Uuid::now_v7().simple());
        let stored = StoredSecret {
            secret: secret.clone(),
            created_at: now,
            expires_at: None,
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !stale.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(&stale).ignore();
        }
        for (rid, s) in retired {
            if !stale.contains(rid) {
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg(rid)
                    .arg(serde_json::to_string(s).expect("plain struct"))
                    .ignore();
            }
        }
        pipe.cmd("HSET")
            .arg(&key)
            .arg(&id)
            .arg(serde_json::to_string(&stored).expect("plain struct"))
            .ignore();
        self.with_conn(async |c| pipe.query_async::<()>(c).await)
            .await?;
        Ok((
            SecretInfo {
                id,
                created_at: now,
                expires_at: None,
            },
            secret,
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Deliveries

/// One claimed entry of a shard's delivery queue.
#[derive(Debug, Clone)]
pub enum HookWork {
    /// A task of a batch ended: count it on the batch ([`Broker::carry_note`]).
    Note { shard: Shard, member: String },
    /// A webhook to send.
    Delivery(Delivery),
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub shard: Shard,
    /// The delivery's id: `webhook-id`, the same on every attempt.
    pub id: String,
    pub url: String,
    pub account_id: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The claim's token: the report is refused if another worker took the entry since.
    pub token: String,
}

/// What one attempt saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// When the attempt was recorded (ms since the epoch, the server's clock).
    #[serde(default)]
    pub at: Millis,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed without an acceptable answer (refused address, timeout, redirect, ...).
    pub error: Option<String>,
    pub latency_ms: u64,
    /// The first bytes (at most 256) of the receiver's answer.
    pub body: String,
}

impl Attempt {
    /// A 2xx answer. Anything else, a 3xx included (redirects are not followed), fails.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Delivered,
    /// Due again after this long.
    Retry(Duration),
    /// The last attempt of [`SCHEDULE`] failed.
    GivenUp,
    /// The claim's lease ran out and another worker took the delivery: nothing recorded.
    Stale,
}

/// A delivery as `GET /api/tasks/{id}/webhooks` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    /// Its `webhook-id`.
    pub id: String,
    /// `task.finished` or `batch.finished`.
    pub event: String,
    pub url: String,
    /// `pending` (being tried), `delivered` or `failed` (given up after the schedule).
    pub state: String,
    pub created_at: Millis,
    /// When the next attempt is due (pending, after a failed attempt).
    pub next_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The JSON body sent.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    pub attempts: Vec<Attempt>,
}

impl DeliveryView {
    fn from_hash(id: &str, mut h: HashMap<String, String>) -> Option<DeliveryView> {
        let state = h.remove("state")?;
        let n: u32 = h.get("attempts").and_then(|v| v.parse().ok()).unwrap_or(0);
        let attempts = (1..=n)
            .filter_map(|i| serde_json::from_str(h.get(&format!("a:{i}"))?).ok())
            .collect();
        let num = |h: &HashMap<String, String>, f: &str| h.get(f).and_then(|v| v.parse().ok());
        Some(DeliveryView {
            id: id.to_string(),
            event: h.remove("event").unwrap_or_default(),
            url: h.remove("url").unwrap_or_default(),
            created_at: num(&h, "created_at").unwrap_or(0),
            next_at: num(&h, "next_at"),
            finished_at: num(&h, "finished_at"),
            payload: h
                .get("body")
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(serde_json::Value::Null),
            state,
            attempts,
        })
    }
}

impl Broker {
    /// Which of `shards` have a delivery queue entry due at `now` (one read each, fanned out:
    /// one round trip per node): the ones worth a claim.
    pub async fn hooks_due(&self, shards: &[Shard], now: Millis) -> Result<Vec<Shard>> {
        let cmds = shards
            .iter()
            .map(|sh| {
                on!(
                    self.keys().hooks(sh.tag()),
                    "ZRANGEBYSCORE",
                    "-inf",
                    now,
                    "LIMIT",
                    0,
                    1
                )
            })
            .collect();
        let found: Vec<Vec<String>> = self.fanout(cmds).await?;
        Ok(shards
            .iter()
            .zip(found)
            .filter(|(_, f)| !f.is_empty())
            .map(|(s, _)| s.clone())
            .collect())
    }

    /// Leases up to `limit` due entries of `shard`'s delivery queue for `lease`.
    pub async fn claim_hooks(
        &self,
        shard: &Shard,
        limit: usize,
        lease: Duration,
        at: impl Into<At>,
    ) -> Result<Vec<HookWork>> {
        let k = self.keys();
        let token = uuid::Uuid::now_v7().simple().to_string();
        let keys = [k.hooks(shard.tag()), k.hook_prefix(shard.tag())];
        let args = [
            at.into().arg(),
            lease.as_millis().to_string(),
            limit.to_string(),
            token.clone(),
        ];
        let rows: Vec<Vec<String>> = self.script(&CLAIM, &keys, &args).await?;
        let mut out = Vec::with_capacity(rows.len());
        for mut row in rows {
            match row.first().map(String::as_str) {
                Some("note") if row.len() == 2 => out.push(HookWork::Note {
                    shard: shard.clone(),
                    member: row.remove(1),
                }),
                Some("hook") if row.len() == 6 => {
                    let attempts = row[5].parse().unwrap_or(0);
                    let mut it = row.into_iter().skip(1);
                    let mut next = || it.next().unwrap_or_default();
                    out.push(HookWork::Delivery(Delivery {
                        shard: shard.clone(),
                        id: next(),
                        url: next(),
                        account_id: next(),
                        body: next(),
                        attempts,
                        token: token.clone(),
                    }))
                }
                _ => return Err(Error::Redis("hooks_claim returned a malformed row".into())),
            }
        }
        Ok(out)
    }

    /// Records an attempt of `d`: delivered on a 2xx, else due again after [`retry_delay`] or,
    /// past the schedule, given up.
    pub async fn report_hook(
        &self,
        d: &Delivery,
        attempt: &Attempt,
        at: impl Into<At>,
    ) -> Result<ReportOutcome> {
        let number = d.attempts + 1;
        let outcome = if attempt.succeeded() {
            ReportOutcome::Delivered
        } else {
            match retry_delay(number) {
                Some(wait) => ReportOutcome::Retry(wait),
                None => ReportOutcome::GivenUp,
            }
        };
        let (name, delay) = match outcome {
            ReportOutcome::Delivered => ("delivered", 0),
            ReportOutcome::Retry(w) => ("retry", w.as_millis() as u64),
            _ => ("failed", 0),
        };
        let mut attempt = attempt.clone();
        attempt.body = prefix(&attempt.body, BODY_PREFIX).to_string();
        let k = self.keys();
        let keys = [k.hooks(d.shard.tag()), k.hook_prefix(d.shard.tag())];
        let args = [
            at.into().arg(),
            d.id.clone(),
            d.token.clone(),
            name.to_string(),
            delay.to_string(),
            serde_json::to_string(&attempt).expect("plain struct"),
            RECORD_TTL.as_secs().to_string(),
        ];
        let n: i64 = self.script(&REPORT, &keys, &args).await?;
        Ok(if n == 0 {
            ReportOutcome::Stale
        } else {
            outcome
        })
    }

    /// Counts a batch note (`b|<batch>|<task>|<status>`) on its batch (another slot,
    /// `batch_note.lua`), then takes it off the queue. Whether this note finished the batch.
    /// A note about a batch id that is not one of ours (a `batch_id` a library user set) is
    /// just taken off.
    pub async fn carry_note(&self, shard: &Shard, member: &str, at: impl Into<At>) -> Result<bool> {
        let at = at.into();
        let mut parts = member.splitn(4, '|');
        let (_, batch_id, task_id, status) =
            (parts.next(), parts.next(), parts.next(), parts.next());
        let mut finished = false;
        if let (Some(bid), Some(tid), Some(status)) = (batch_id, task_id, status) {
            let batch_shard = self.route(bid);
            if batch_shard.is_none() && crate::broker::is_batch_id(bid) {
                // A batch of a queue this process does not know (another fleet's, or the
                // test queue's): left for a worker that does, when its lease ends.
                tracing::debug!(batch = %bid, "a batch note for an unknown queue, left");
                return Ok(false);
            }
            if let Some(bs) = batch_shard {
                let k = self.keys();
                let keys = [
                    k.batch(bs.tag(), bid),
                    k.batch_done(bs.tag(), bid),
                    k.hooks(bs.tag()),
                    k.hook_prefix(bs.tag()),
                ];
                let args = [
                    at.arg(),
                    bid.to_string(),
                    tid.to_string(),
                    status.to_string(),
                    BATCH_TTL.as_secs().to_string(),
                ];
                let r: i64 = self.script(&NOTE, &keys, &args).await?;
                finished = r == 2;
            }
        }
        let keys = [self.keys().hooks(shard.tag())];
        let _: i64 = self.script(&ACK, &keys, &[member.to_string()]).await?;
        Ok(finished)
    }

    /// The deliveries of a task, oldest first (one per time it ended: a task retried from
    /// the outside and ended again has two).
    pub async fn task_webhooks(&self, task: &Task) -> Result<Vec<DeliveryView>> {
        let shard = self.shard_of(&task.task_type, &task.id)?;
        let key = self.keys().task(shard.tag(), &task.id);
        let n: Option<u32> = self
            .with_conn(async |c| {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg("hooks")
                    .query_async(c)
                    .await
            })
            .await?;
        let ids: Vec<String> = (1..=n.unwrap_or(0).min(100))
            .map(|i| format!("{}.{i}", task.id))
            .collect();
        self.deliveries(&shard, &ids).await
    }

    /// Delivery records of one shard by id (ids without a record are skipped).
    pub async fn deliveries(&self, shard: &Shard, ids: &[String]) -> Result<Vec<DeliveryView>> {
        let prefix = self.keys().hook_prefix(shard.tag());
        let cmds = ids
            .iter()
            .map(|id| on!(format!("{prefix}{id}"), "HGETALL"))
            .collect();
        let hashes: Vec<HashMap<String, String>> = self.fanout(cmds).await?;
        Ok(ids
            .iter()
            .zip(hashes)
            .filter_map(|(id, h)| DeliveryView::from_hash(id, h))
            .collect())
    }
}

/// At most `n` bytes of `s`, cut at a character boundary.
fn prefix(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------
// Where a webhook may go

/// Which resolved addresses a worker may connect to: public ones, and those in the allow-list
/// (`webhooks.allow_networks`). Loopback, private (RFC 1918, fc00::/7), link-local
/// (169.254/16, fe80::/10, the cloud metadata address among them), unspecified, CGNAT
/// (100.64/10), broadcast, documentation and multicast addresses are refused.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    allow: Vec<ipnet::IpNet>,
}

impl NetPolicy {
    /// The policy for an allow-list of addresses or CIDRs; the entry that does not parse is
    /// named (`webhooks.allow_networks`).
    pub fn new(allow: &[String]) -> Result<NetPolicy> {
        let allow = allow
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        Error::invalid(
                            "webhooks.allow_networks",
                            format!("{s:?} is not an address or a CIDR"),
                        )
                    })
            })
            .collect::<Result<_>>()?;
        Ok(NetPolicy { allow })
    }

    /// `Ok` if a webhook may connect to `ip`, else why not.
    pub fn check(&self, ip: IpAddr) -> std::result::Result<(), &'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match forbidden(ip) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_unspecified() {
                Some("the unspecified address")
            } else if o == [169, 254, 169, 254] {
                Some("the cloud metadata address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_private() {
                Some("a private address")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("a carrier-grade NAT address")
            } else if v4.is_broadcast() || v4.is_multicast() || o[0] == 0 || o[0] >= 240 {
                Some("a reserved address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("a private address")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a reserved address")
            } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // NAT64: the IPv4 address it carries decides.
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                forbidden(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spans_more_than_a_day() {
        let total: Duration = SCHEDULE.iter().sum();
        assert!(total >= Duration::from_secs(24 * 3600), "{total:?}");
        assert_eq!(retry_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(4), Some(Duration::from_secs(600)));
        assert_eq!(retry_delay(12), Some(Duration::from_secs(5 * 3600)));
        assert_eq!(retry_delay(13), None);
        assert_eq!(retry_delay(0), None);
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &sig
        ));
        let other = generate_secret();
        assert!(!verify(
            &other,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &sig
        ));
        let both = format!(
            "{} {sig}",
            sign(&other, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap()
        );
        assert!(verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &both
        ));
        assert!(verify(
            &other,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &both
        ));
        assert!(!verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            body,
            &sig
        ));
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let p = NetPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(p.check(ip.parse().unwrap()).is_err(), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "100.128.0.1",
        ] {
            assert!(p.check(ip.parse().unwrap()).is_ok(), "{ip}");
        }
        let p = NetPolicy::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("10.9.9.9".parse().unwrap()).is_ok());
        assert!(p.check("127.0.0.2".parse().unwrap()).is_err());
        assert!(NetPolicy::new(&["nope".into()]).is_err());
    }

    #[test]
    fn webhook_urls_are_http_or_https() {
        assert!(validate_url("webhook_url", "https://example.com/hook").is_ok());
        assert!(validate_url("webhook_url", "http://127.0.0.1:9/x").is_ok());
        for bad in [
            "ftp://example.com",
            "file:///etc/passwd",
            "https://",
            "javascript:alert(1)",
            "https://exa mple.com",
        ] {
            assert!(validate_url("webhook_url", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_body_prefix_is_cut_at_a_character() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("abc", 10), "abc");
    }
}
