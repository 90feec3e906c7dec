//! Who is calling: a request's API key, or the application's token (a JWT, [`crate::token`]),
//! turned into a [`Caller`]. The keys themselves (made random, stored only as their SHA-256)
//! are kept by the library ([`taskfleet::apikeys`]); here they are looked up, cached for a
//! moment, and compared. The account, user and role of a request come from its key or token
//! and nothing else.
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
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use subtle::ConstantTimeEq;
pub use taskfleet::apikeys::{sha256_hex, Role};
use tokio::sync::Semaphore;

use crate::error::AppError;
use crate::state::AppState;

/// The account the settings' admin key acts as.
pub const ADMIN_KEY_ACCOUNT: &str = "admin";
/// How long a failed authentication waits before its 401.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(200);
/// How many failed authentications wait at once; the rest are answered at once.
pub const MAX_DELAYED_FAILURES: usize = 256;
/// The most keys the cache holds; past it, it starts over (bounded memory whatever the load).
pub const KEY_CACHE_MAX: usize = 10_000;

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

    /// Whether the caller may see and act on a task of `account_id` created by `user_id`: an
    /// admin any task, an account admin its account's, a user the tasks it created.
    pub fn may_see(&self, account_id: Option<&str>, user_id: Option<&str>) -> bool {
        let own_account = account_id == Some(self.account_id.as_str());
        match self.role {
            Role::Admin => true,
            Role::AccountAdmin => own_account,
            Role::User => own_account && user_id == Some(self.user_id.as_str()),
        }
    }

    /// The user whose tasks alone a list shows the caller: its own for a user, none (every
    /// user of the account) for an account admin or an admin.
    pub fn only_user(&self) -> Option<&str> {
        (self.role == Role::User).then_some(self.user_id.as_str())
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let caller = match bearer(parts) {
            Some(credential) => authenticate(credential, state).await,
            None => Err(AppError::Unauthorized),
        };
        delay_failure(caller, state).await
    }
}

/// A 401 waits [`AUTH_FAILURE_DELAY`] ([`FailureDelay`]) before it is answered.
pub async fn delay_failure(
    caller: Result<Caller, AppError>,
    state: &AppState,
) -> Result<Caller, AppError> {
    if let Err(AppError::Unauthorized | AppError::InvalidToken { .. }) = caller {
        state.auth_failures.wait().await;
    }
    caller
}

/// The credential of `Authorization: Bearer <credential>`, if the header has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|k| !k.is_empty())
}

/// The caller a credential names: the settings' admin key, an API key, or (shaped like a JWT,
/// with `auth.jwt` configured) the application's token. [`AppError::Unauthorized`] or
/// [`AppError::InvalidToken`] otherwise (not yet delayed).
pub async fn authenticate(credential: &str, state: &AppState) -> Result<Caller, AppError> {
    if crate::token::looks_like_jwt(credential) && !is_admin_key(credential, state) {
        return match &state.tokens {
            Some(v) => v.verify(credential, state.now()).await,
            None => Err(AppError::InvalidToken {
                code: "unauthorized",
                message: "this API accepts no tokens (auth.jwt is not configured); send an API key"
                    .into(),
            }),
        };
    }
    if credential.len() > 256 {
        return Err(AppError::Unauthorized);
    }
    let key = credential;
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
    let now = Instant::now();
    if let Some(caller) = state.key_cache.get(&sha, now) {
        return Ok(caller);
    }
    let record = state
        .broker
        .api_key(&sha)
        .await?
        .ok_or(AppError::Unauthorized)?;
    let caller = Caller {
        account_id: record.account_id,
        user_id: record.user_id,
        role: record.role,
    };
    state.key_cache.put(sha, caller.clone(), now);
    Ok(caller)
}

/// Whether a credential is the settings' admin key (compared in constant time).
fn is_admin_key(credential: &str, state: &AppState) -> bool {
    state
        .admin_key_sha
        .as_ref()
        .is_some_and(|admin| bool::from(admin.as_bytes().ct_eq(sha256_hex(credential).as_bytes())))
}

/// Known keys' callers by SHA-256, each for a TTL (`api.key_cache_ms`, default 5 s): a
/// revoked key stops working within the TTL on every API replica, and a busy client's
/// requests skip a Redis round trip. Only keys that exist are cached: a new key works at
/// once, and an unknown one is always looked up.
pub struct KeyCache {
    ttl: Duration,
    // A std mutex: held for one map operation, never across an await.
    entries: std::sync::Mutex<HashMap<String, (Instant, Caller)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cached caller of a key, if looked up less than the TTL before `now`.
    pub fn get(&self, sha: &str, now: Instant) -> Option<Caller> {
        let map = self.entries.lock().expect("key cache lock");
        map.get(sha)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(_, c)| c.clone())
    }

    pub fn put(&self, sha: String, caller: Caller, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.entries.lock().expect("key cache lock");
        if map.len() >= KEY_CACHE_MAX {
            map.clear();
        }
        map.insert(sha, (now, caller));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            account_id: "acme".into(),
            user_id: "ann".into(),
            role: Role::User,
        }
    }

    #[test]
    fn each_role_sees_its_own_circle_of_tasks() {
        let as_role = |role| Caller { role, ..caller() };
        let user = as_role(Role::User);
        assert!(user.may_see(Some("acme"), Some("ann")));
        assert!(!user.may_see(Some("acme"), Some("bob")));
        assert!(!user.may_see(Some("globex"), Some("ann")));
        assert!(!user.may_see(None, None));
        let account_admin = as_role(Role::AccountAdmin);
        assert!(account_admin.may_see(Some("acme"), Some("bob")));
        assert!(!account_admin.may_see(Some("globex"), Some("ann")));
        let admin = as_role(Role::Admin);
        assert!(admin.may_see(Some("globex"), Some("zed")));
        assert_eq!(user.only_user(), Some("ann"));
        assert_eq!(account_admin.only_user(), None);
    }

    #[test]
    fn a_cached_key_is_reused_only_within_its_ttl() {
        let cache = KeyCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(cache.get("k", t0), None);
        cache.put("k".into(), caller(), t0);
        assert_eq!(
            cache.get("k", t0 + Duration::from_millis(4_999)),
            Some(caller())
        );
        // Past the TTL it is looked up again: a revocation has taken effect.
        assert_eq!(cache.get("k", t0 + Duration::from_secs(5)), None);
        let off = KeyCache::new(Duration::ZERO);
        off.put("k".into(), caller(), t0);
        assert_eq!(off.get("k", t0), None);
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
}
