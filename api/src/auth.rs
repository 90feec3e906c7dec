//! API keys: made random (256 bits), stored only as their SHA-256 (`tf:apikey:<sha>` HASH and
//! the `tf:apikeys` SET), and turned into a [`Caller`] per request. The account and user of a
//! request come from its key and nothing else.
//!
//! Why hashing makes the lookup safe: a request's key is hashed before Redis is asked, so how
//! long a lookup takes depends on the hash, which tells an attacker nothing about any real key.
//! The one key kept in memory (the admin key from the settings) is compared in constant time.
//!
//! A failed authentication (no key, a malformed header, an unknown key) is answered after a
//! fixed [`AUTH_FAILURE_DELAY`] ([`FailureDelay`]): guessing keys gets slower, and a client
//! with a bad key cannot spin on the API. At most [`MAX_DELAYED_FAILURES`] wait at once; past
//! that a failure is answered at once, so a flood of bad keys cannot make the API hold an
//! unbounded number of waiting responses (the delay is a brake on guessing, not a wall: keys are
//! 256 random bits, which no rate of guessing reaches). Valid keys are never delayed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use taskfleet::Broker;
use tokio::sync::Semaphore;

use crate::error::AppError;
use crate::state::AppState;

/// The account the settings' admin key acts as.
pub const ADMIN_KEY_ACCOUNT: &str = "admin";
/// Prefix of every key we make, so a leaked one is recognisable in logs and scanners.
pub const KEY_PREFIX: &str = "tfk_";
/// How long a failed authentication waits before its 401.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(200);
/// How many failed authentications wait at once; the rest are answered at once.
pub const MAX_DELAYED_FAILURES: usize = 256;

/// The wait before a 401: a fixed delay, for at most a fixed number of failures at once.
#[derive(Debug)]
pub struct FailureDelay {
    delay: Duration,
    max: usize,
    places: Arc<Semaphore>,
}

impl Default for FailureDelay {
    fn default() -> Self {
        FailureDelay::new(AUTH_FAILURE_DELAY, MAX_DELAYED_FAILURES)
    }
}

impl FailureDelay {
    pub fn new(delay: Duration, max: usize) -> Self {
        FailureDelay {
            delay,
            max,
            places: Arc::new(Semaphore::new(max)),
        }
    }

    /// Waits the delay if a place is free; returns at once if all are taken.
    pub async fn wait(&self) {
        if let Ok(_place) = self.places.try_acquire() {
            tokio::time::sleep(self.delay).await;
        }
    }

    /// How many failures are waiting now.
    pub fn waiting(&self) -> usize {
        self.max - self.places.available_permits()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
}

/// Who is calling: from the key, never from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: String,
    pub user_id: String,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless an admin.
    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }
}

pub fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `tfk_` and 64 hex digits (256 bits from the OS-seeded generator).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let caller = authenticate(parts, state).await;
        if let Err(AppError::Unauthorized) = caller {
            state.auth_failures.wait().await;
        }
        caller
    }
}

/// The caller a request's key names, or [`AppError::Unauthorized`] (not yet delayed).
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, AppError> {
    let key = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or(AppError::Unauthorized)?;
    let sha = sha256_hex(key);
    if let Some(admin) = &state.admin_key_sha {
        if bool::from(admin.as_bytes().ct_eq(sha.as_bytes())) {
            return Ok(Caller {
                account_id: ADMIN_KEY_ACCOUNT.to_string(),
                user_id: ADMIN_KEY_ACCOUNT.to_string(),
                role: Role::Admin,
            });
        }
    }
    lookup(&state.broker, &sha)
        .await?
        .map(|k| k.caller)
        .ok_or(AppError::Unauthorized)
}

/// A stored key's record (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub sha256: String,
    pub caller: Caller,
    pub name: String,
    pub created_at: i64,
}

async fn lookup(broker: &Broker, sha: &str) -> taskfleet::Result<Option<KeyRecord>> {
    let key = broker.keys().apikey(sha);
    let h: HashMap<String, String> = broker
        .with_conn(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
        .await?;
    Ok(record(sha, h))
}

fn record(sha: &str, mut h: HashMap<String, String>) -> Option<KeyRecord> {
    let account_id = h.remove("account_id").filter(|a| !a.is_empty())?;
    let role = match h.remove("role").as_deref() {
        Some("admin") => Role::Admin,
        Some("user") => Role::User,
        _ => return None,
    };
    Some(KeyRecord {
        sha256: sha.to_string(),
        caller: Caller {
            account_id,
            user_id: h.remove("user_id").unwrap_or_default(),
            role,
        },
        name: h.remove("name").unwrap_or_default(),
        created_at: h
            .remove("created_at")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// Account and user ids are key separators in Redis, so they follow the engine's rule.
fn validate_ident(field: &str, v: &str) -> anyhow::Result<()> {
    if v.is_empty() || v.len() > 128 || v.bytes().any(|b| b == b':' || !b.is_ascii_graphic()) {
        anyhow::bail!("{field}: 1-128 printable characters, without ':' or spaces");
    }
    Ok(())
}

/// Makes and stores a key; returns the key (shown once, never stored).
pub async fn create_key(
    broker: &Broker,
    account_id: &str,
    user_id: &str,
    role: Role,
    name: &str,
    now: i64,
) -> anyhow::Result<String> {
    validate_ident("account", account_id)?;
    validate_ident("user", user_id)?;
    let key = generate_key();
    let sha = sha256_hex(&key);
    let role = match role {
        Role::Admin => "admin",
        Role::User => "user",
    };
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("HSET")
        .arg(broker.keys().apikey(&sha))
        .arg("account_id")
        .arg(account_id)
        .arg("user_id")
        .arg(user_id)
        .arg("role")
        .arg(role)
        .arg("name")
        .arg(name)
        .arg("created_at")
        .arg(now)
        .ignore()
        .cmd("SADD")
        .arg(broker.keys().apikeys())
        .arg(&sha)
        .ignore();
    broker
        .with_conn(async |c| pipe.query_async::<()>(c).await)
        .await?;
    Ok(key)
}

/// Every stored key's record, by account then user.
pub async fn list_keys(broker: &Broker) -> anyhow::Result<Vec<KeyRecord>> {
    let set = broker.keys().apikeys();
    let shas: Vec<String> = broker
        .with_conn(async |c| redis::cmd("SMEMBERS").arg(&set).query_async(c).await)
        .await?;
    let mut out = Vec::new();
    for sha in shas {
        if let Some(r) = lookup(broker, &sha).await? {
            out.push(r);
        }
    }
    out.sort_by(|a, b| {
        (&a.caller.account_id, &a.caller.user_id, a.created_at).cmp(&(
            &b.caller.account_id,
            &b.caller.user_id,
            b.created_at,
        ))
    });
    Ok(out)
}

/// Revokes a key given as the key itself or as its id (a prefix of at least 8 hex digits of
/// its SHA-256, as `keys list` shows); returns the SHA-256 revoked.
pub async fn revoke_key(broker: &Broker, key_or_id: &str) -> anyhow::Result<String> {
    let sha = if key_or_id.starts_with(KEY_PREFIX) {
        sha256_hex(key_or_id)
    } else {
        if key_or_id.len() < 8 || !key_or_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            anyhow::bail!("give the key itself or an id of at least 8 hex digits from `keys list`");
        }
        let set = broker.keys().apikeys();
        let shas: Vec<String> = broker
            .with_conn(async |c| redis::cmd("SMEMBERS").arg(&set).query_async(c).await)
            .await?;
        let id = key_or_id.to_ascii_lowercase();
        let matches: Vec<String> = shas.into_iter().filter(|s| s.starts_with(&id)).collect();
        match matches.len() {
            0 => anyhow::bail!("no key has id {key_or_id}"),
            1 => matches.into_iter().next().expect("one match"),
            n => anyhow::bail!("{n} keys have ids starting {key_or_id}; give more digits"),
        }
    };
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("DEL")
        .arg(broker.keys().apikey(&sha))
        .cmd("SREM")
        .arg(broker.keys().apikeys())
        .arg(&sha);
    let (deleted, _): (i64, i64) = broker
        .with_conn(async |c| pipe.query_async(c).await)
        .await?;
    if deleted == 0 {
        anyhow::bail!("no such key");
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_random_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
        assert_eq!(sha256_hex(&a).len(), 64);
        assert_ne!(sha256_hex(&a), a);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_waits_the_delay_unless_every_place_is_taken() {
        let d = Arc::new(FailureDelay::new(Duration::from_millis(200), 2));
        let start = tokio::time::Instant::now();
        d.wait().await;
        // The paused clock moved by exactly the delay: the wait slept it.
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let d = d.clone();
                tokio::spawn(async move { d.wait().await })
            })
            .collect();
        while d.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        let before = tokio::time::Instant::now();
        d.wait().await;
        assert_eq!(before.elapsed(), Duration::ZERO, "no place: no wait");
        for h in holders {
            h.await.unwrap();
        }
        assert_eq!(d.waiting(), 0);
    }

    #[test]
    fn a_record_without_a_role_is_not_a_key() {
        let h = HashMap::from([("account_id".to_string(), "a".to_string())]);
        assert_eq!(record("x", h), None);
    }
}
