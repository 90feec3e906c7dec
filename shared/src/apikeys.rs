//! API keys: made random (256 bits), stored only as their SHA-256 (`tf:{apikeys}:key:<sha>` HASH and
//! the `tf:{apikeys}:all` SET). The API turns a request's key into its caller with [`Broker::api_key`];
//! the CLI makes, lists and revokes them. The only code that reads or writes those keys.
//!
//! Why hashing makes the lookup safe: a key is hashed before Redis is asked, so how long a
//! lookup takes depends on the hash, which tells an attacker nothing about any real key.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::broker::{validate_ident, Broker};
use crate::error::{Error, Result};
use crate::task::Millis;

/// Prefix of every key we make, so a leaked one is recognisable in logs and scanners.
pub const KEY_PREFIX: &str = "tfk_";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The tasks it created, and nothing else.
    User,
    /// Every task of its account (any user's), but none of another account's.
    AccountAdmin,
    /// Everything, and the admin endpoints.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::AccountAdmin => "account_admin",
            Role::Admin => "admin",
        }
    }

    /// A role by its name (`user`, `account_admin`, `admin`).
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "account_admin" => Some(Role::AccountAdmin),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A stored key's record (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The SHA-256 (hex) of the key: its id (`keys list` shows a prefix).
    pub sha256: String,
    pub account_id: String,
    pub user_id: String,
    pub role: Role,
    pub name: String,
    pub created_at: Millis,
}

impl ApiKey {
    fn from_hash(sha: &str, mut h: HashMap<String, String>) -> Option<ApiKey> {
        let account_id = h.remove("account_id").filter(|a| !a.is_empty())?;
        let role = Role::parse(h.remove("role")?.as_str())?;
        Some(ApiKey {
            sha256: sha.to_string(),
            account_id,
            user_id: h.remove("user_id").unwrap_or_default(),
            role,
            name: h.remove("name").unwrap_or_default(),
            created_at: h
                .remove("created_at")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }
}

/// The SHA-256 of a key, in hex.
pub fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `tfk_` and 64 hex digits (256 bits from the OS-seeded generator).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

impl Broker {
    /// The record of the key whose SHA-256 is `sha`, if there is one.
    pub async fn api_key(&self, sha: &str) -> Result<Option<ApiKey>> {
        let key = self.keys().apikey(sha);
        let h: HashMap<String, String> = self
            .with_conn(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await?;
        Ok(ApiKey::from_hash(sha, h))
    }

    /// Makes and stores a key; returns the key (shown once, never stored).
    pub async fn create_api_key(
        &self,
        account_id: &str,
        user_id: &str,
        role: Role,
        name: &str,
        created_at: Millis,
    ) -> Result<String> {
        for (field, v) in [("account", account_id), ("user", user_id)] {
            if v.is_empty() {
                return Err(Error::invalid(field, "must not be empty"));
            }
            validate_ident(field, v, 128)?;
        }
        let key = generate_key();
        let sha = sha256_hex(&key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(self.keys().apikey(&sha))
            .arg("account_id")
            .arg(account_id)
            .arg("user_id")
            .arg(user_id)
            .arg("role")
            .arg(role.as_str())
            .arg("name")
            .arg(name)
            .arg("created_at")
            .arg(created_at)
            .ignore()
            .cmd("SADD")
            .arg(self.keys().apikeys())
            .arg(&sha)
            .ignore();
        self.with_conn(async |c| pipe.query_async::<()>(c).await)
            .await?;
        Ok(key)
    }

    /// Every stored key's record, by account, then user, then age.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let shas = self.api_key_ids().await?;
        if shas.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for sha in &shas {
            pipe.cmd("HGETALL").arg(self.keys().apikey(sha));
        }
        let hashes: Vec<HashMap<String, String>> =
            self.with_conn(async |c| pipe.query_async(c).await).await?;
        let mut out: Vec<ApiKey> = shas
            .iter()
            .zip(hashes)
            .filter_map(|(sha, h)| ApiKey::from_hash(sha, h))
            .collect();
        out.sort_by(|a, b| {
            (&a.account_id, &a.user_id, a.created_at).cmp(&(
                &b.account_id,
                &b.user_id,
                b.created_at,
            ))
        });
        Ok(out)
    }

    async fn api_key_ids(&self) -> Result<Vec<String>> {
        let set = self.keys().apikeys();
        self.with_conn(async |c| redis::cmd("SMEMBERS").arg(&set).query_async(c).await)
            .await
    }

    /// Revokes a key given as the key itself or as its id (a prefix of at least 8 hex digits
    /// of its SHA-256, as `keys list` shows); returns the SHA-256 revoked.
    pub async fn revoke_api_key(&self, key_or_id: &str) -> Result<String> {
        let sha = if key_or_id.starts_with(KEY_PREFIX) {
            sha256_hex(key_or_id)
        } else {
            if key_or_id.len() < 8 || !key_or_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::invalid(
                    "key",
                    "give the key itself or an id of at least 8 hex digits from `keys list`",
                ));
            }
            let id = key_or_id.to_ascii_lowercase();
            let matches: Vec<String> = self
                .api_key_ids()
                .await?
                .into_iter()
                .filter(|s| s.starts_with(&id))
                .collect();
            match matches.len() {
                0 => return Err(Error::NotFound(format!("key {key_or_id}"))),
                1 => matches.into_iter().next().expect("one match"),
                n => {
                    return Err(Error::invalid(
                        "key",
                        format!("{n} keys have ids starting {key_or_id}; give more digits"),
                    ))
                }
            }
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.keys().apikey(&sha))
            .cmd("SREM")
            .arg(self.keys().apikeys())
            .arg(&sha);
        let (deleted, _): (i64, i64) = self.with_conn(async |c| pipe.query_async(c).await).await?;
        if deleted == 0 {
            return Err(Error::NotFound(format!("key {key_or_id}")));
        }
        Ok(sha)
    }
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

    #[test]
    fn roles_round_trip_by_name() {
        for r in [Role::User, Role::AccountAdmin, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_record_without_a_role_is_not_a_key() {
        let h = HashMap::from([("account_id".to_string(), "a".to_string())]);
        assert_eq!(ApiKey::from_hash("x", h), None);
    }
}
