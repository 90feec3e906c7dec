//! The application's identities: a signed bearer token (JWT) that the application's backend
//! mints for one of its users, so that a browser holds a short-lived credential instead of an
//! API key. Verified with an HS256 secret, or RS256 / ES256 public keys from a JWKS file or URL
//! (`[auth.jwt]`, docs/api.md "Tokens"); its claims name the caller:
//!
//! | claim | meaning |
//! |---|---|
//! | `sub` | the user id (required) |
//! | `account_id` | the account id (required) |
//! | `role` | `user`, `account_admin` or `admin` (required) |
//! | `exp` | expiry, seconds since the epoch (required) |
//! | `nbf` | not before (checked when present) |
//! | `aud`, `iss` | checked when `auth.jwt.audience` / `auth.jwt.issuer` are set |
//!
//! The signature and algorithm are checked by `jsonwebtoken` (ring); the times and claims here,
//! against the API's clock (the Redis server's, like every other decision), each failure with
//! its own code so a frontend developer sees at once what to fix. `alg: none` is never
//! accepted, and an algorithm is accepted only with a key of its own kind (an HS256 token is
//! never checked against an RSA public key taken as a secret).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use taskfleet::config::JwtSettings;
use taskfleet::Role;

use crate::auth::Caller;
use crate::error::AppError;

/// The most bytes a token may have (a JWT with an RSA-4096 signature is under 1,500).
pub const MAX_TOKEN_BYTES: usize = 8192;
/// The most bytes a JWKS document may have.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// How long a JWKS fetch may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two fetches of a JWKS URL for a `kid` it did not have: a token with
/// a made-up `kid` cannot make the API fetch on every request.
pub const JWKS_REFETCH_MIN: Duration = Duration::from_secs(30);
/// The shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash's size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Whether a bearer credential has the shape of a JWT (three base64url parts), rather than an
/// API key.
pub fn looks_like_jwt(s: &str) -> bool {
    s.len() <= MAX_TOKEN_BYTES
        && s.split('.').count() == 3
        && s.split('.').take(2).all(|p| !p.is_empty())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// A token refused: 401 with a code of its own.
fn refused(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::InvalidToken {
        code,
        message: message.into(),
    }
}

/// One public key of a JWKS with the algorithm it verifies.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Public keys read from a JWKS, and when.
#[derive(Default)]
struct KeySet {
    keys: Vec<PublicKey>,
    fetched: Option<Instant>,
    tried: Option<Instant>,
}

/// Checks the application's tokens. Cheap to share (`Arc`).
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    jwks_url: Option<String>,
    refresh: Duration,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_secs: i64,
    // A tokio mutex: held across the fetch of a JWKS URL, so concurrent requests wait for one
    // fetch rather than each starting its own.
    keys: tokio::sync::Mutex<KeySet>,
}

impl TokenVerifier {
    /// The verifier the settings ask for; `None` when no key is configured (tokens are then
    /// refused as unknown credentials). A JWKS file is read now; a JWKS URL at the first token.
    pub fn from_settings(s: &JwtSettings) -> anyhow::Result<Option<Arc<TokenVerifier>>> {
        let secret = match s.hs256_secret.as_deref().filter(|v| !v.is_empty()) {
            Some(v) if v.len() < MIN_SECRET_BYTES => anyhow::bail!(
                "auth.jwt.hs256_secret: at least {MIN_SECRET_BYTES} bytes (it has {})",
                v.len()
            ),
            Some(v) => Some(DecodingKey::from_secret(v.as_bytes())),
            None => None,
        };
        let mut set = KeySet::default();
        let jwks_url = s.jwks_url.clone().filter(|v| !v.is_empty());
        let jwks_file = s.jwks_file.as_deref().filter(|v| !v.is_empty());
        if jwks_file.is_some() && jwks_url.is_some() {
            // A fetched set would replace the file's keys: one source of public keys, not two.
            anyhow::bail!("auth.jwt: set jwks_file or jwks_url, not both");
        }
        if let Some(file) = jwks_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("auth.jwt.jwks_file {file}: {e}"))?;
            set.keys =
                parse_jwks(&text).map_err(|e| anyhow::anyhow!("auth.jwt.jwks_file {file}: {e}"))?;
            if set.keys.is_empty() {
                anyhow::bail!("auth.jwt.jwks_file {file}: no RS256 or ES256 key in it");
            }
            set.fetched = Some(Instant::now());
        }
        if let Some(url) = &jwks_url {
            check_jwks_url(url)?;
        }
        if secret.is_none() && set.keys.is_empty() && jwks_url.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(TokenVerifier {
            secret,
            jwks_url,
            refresh: Duration::from_secs(s.jwks_refresh_secs.max(1)),
            audience: s.audience.clone().filter(|v| !v.is_empty()),
            issuer: s.issuer.clone().filter(|v| !v.is_empty()),
            leeway_secs: s.leeway_secs.min(3600) as i64,
            keys: tokio::sync::Mutex::new(set),
        })))
    }

    /// The caller a token names, checked at `now_ms` (ms since the epoch).
    pub async fn verify(&self, token: &str, now_ms: i64) -> Result<Caller, AppError> {
        if !looks_like_jwt(token) {
            return Err(refused(
                "token_malformed",
                "the token is not a JWT (three base64url parts separated by dots)",
            ));
        }
        let alg = header_alg(token)?;
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let (key, alg) = match alg.as_str() {
            "HS256" => (
                self.secret.clone().ok_or_else(|| {
                    refused(
                        "token_algorithm_refused",
                        "HS256 tokens are not accepted here (no auth.jwt.hs256_secret); sign with the configured key",
                    )
                })?,
                Algorithm::HS256,
            ),
            "RS256" | "ES256" => {
                let alg = if alg == "RS256" {
                    Algorithm::RS256
                } else {
                    Algorithm::ES256
                };
                (self.public_key(alg, kid.as_deref()).await?, alg)
            }
            other => {
                return Err(refused(
                    "token_algorithm_refused",
                    format!("alg {other:?} is not accepted: use HS256, RS256 or ES256"),
                ))
            }
        };
        let mut validation = Validation::new(alg);
        // Times, audience and issuer are checked below against the API's clock, each with a
        // code of its own; jsonwebtoken checks the signature and the algorithm.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => refused(
                        "token_bad_signature",
                        "the token's signature does not verify",
                    ),
                    K::InvalidAlgorithm => refused(
                        "token_algorithm_refused",
                        "the token's algorithm does not match its key",
                    ),
                    _ => refused(
                        "token_malformed",
                        "the token's header, claims or signature cannot be read",
                    ),
                }
            })?;
        self.caller_of(&data.claims, now_ms / 1000)
    }

    /// The caller the claims name, if they hold at `now` (seconds).
    fn caller_of(&self, c: &serde_json::Map<String, Value>, now: i64) -> Result<Caller, AppError> {
        let missing = |name: &str| {
            refused(
                "token_missing_claim",
                format!("the token has no `{name}` claim (it needs sub, account_id, role and exp)"),
            )
        };
        let time = |name: &str| -> Result<Option<i64>, AppError> {
            match c.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(|f| Some(f as i64)).ok_or_else(|| {
                    refused(
                        "token_invalid_claim",
                        format!("`{name}` must be a number of seconds since the epoch"),
                    )
                }),
            }
        };
        let exp = time("exp")?.ok_or_else(|| missing("exp"))?;
        if now > exp + self.leeway_secs {
            return Err(refused(
                "token_expired",
                format!("the token expired at {exp} (seconds since the epoch); mint a new one"),
            ));
        }
        if let Some(nbf) = time("nbf")? {
            if now + self.leeway_secs < nbf {
                return Err(refused(
                    "token_not_yet_valid",
                    format!("the token is not valid before {nbf} (seconds since the epoch)"),
                ));
            }
        }
        if let Some(want) = &self.audience {
            let ok = match c.get("aud") {
                Some(Value::String(a)) => a == want,
                Some(Value::Array(v)) => v.iter().any(|a| a.as_str() == Some(want)),
                None => return Err(missing("aud")),
                _ => false,
            };
            if !ok {
                return Err(refused(
                    "token_wrong_audience",
                    format!("the token's `aud` does not name {want:?}"),
                ));
            }
        }
        if let Some(want) = &self.issuer {
            match c.get("iss").and_then(Value::as_str) {
                None => return Err(missing("iss")),
                Some(iss) if iss != want => {
                    return Err(refused(
                        "token_wrong_issuer",
                        format!("the token's `iss` is not {want:?}"),
                    ))
                }
                Some(_) => {}
            }
        }
        let text = |name: &str| -> Result<String, AppError> {
            let v = c
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing(name))?;
            let ok = v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b':' && b != b',');
            if ok {
                Ok(v.to_string())
            } else {
                Err(refused(
                    "token_invalid_claim",
                    format!("`{name}`: 1-128 printable characters without ':', ',' or spaces"),
                ))
            }
        };
        let user_id = text("sub")?;
        let account_id = text("account_id")?;
        let role = text("role")?;
        let role = Role::parse(&role).ok_or_else(|| {
            refused(
                "token_invalid_claim",
                format!("`role` {role:?} is not one of user, account_admin, admin"),
            )
        })?;
        Ok(Caller {
            account_id,
            user_id,
            role,
        })
    }

    /// The public key for `alg` and the token's `kid`: from the JWKS held, fetched again from
    /// the URL when stale or when the `kid` is unknown (at most every [`JWKS_REFETCH_MIN`]).
    async fn public_key(&self, alg: Algorithm, kid: Option<&str>) -> Result<DecodingKey, AppError> {
        let mut set = self.keys.lock().await;
        let stale = set.fetched.is_none_or(|t| t.elapsed() >= self.refresh);
        let found = pick(&set.keys, alg, kid);
        let may_fetch = set.tried.is_none_or(|t| t.elapsed() >= JWKS_REFETCH_MIN);
        if let Some(url) = &self.jwks_url {
            if (stale || found.is_none())
                && (may_fetch || set.keys.is_empty() && set.tried.is_none())
            {
                set.tried = Some(Instant::now());
                match fetch_jwks(url).await {
                    Ok(keys) => {
                        set.keys = keys;
                        set.fetched = Some(Instant::now());
                    }
                    // Keys fetched before go on serving until the URL answers again.
                    Err(e) => tracing::warn!(url = %url, error = %e, "JWKS fetch failed"),
                }
            }
        }
        if set.keys.is_empty() {
            return Err(AppError::TokenKeysUnavailable);
        }
        pick(&set.keys, alg, kid).ok_or_else(|| {
            refused(
                "token_unknown_key",
                match kid {
                    Some(kid) => format!("no {alg:?} key with kid {kid:?} in the JWKS"),
                    None => {
                        format!("the token names no kid and the JWKS has no single {alg:?} key")
                    }
                },
            )
        })
    }
}

/// The key of `alg` named by `kid`, or the only key of `alg` when the token names none.
fn pick(keys: &[PublicKey], alg: Algorithm, kid: Option<&str>) -> Option<DecodingKey> {
    let mut of_alg = keys.iter().filter(|k| k.alg == alg);
    match kid {
        Some(kid) => of_alg
            .find(|k| k.kid.as_deref() == Some(kid))
            .map(|k| k.key.clone()),
        None => {
            let first = of_alg.next()?;
            of_alg.next().is_none().then(|| first.key.clone())
        }
    }
}

/// The `alg` of a token's header, read before anything else so that `none` (which
/// `jsonwebtoken` cannot even parse) gets its own answer.
fn header_alg(token: &str) -> Result<String, AppError> {
    let bad = || {
        refused(
            "token_malformed",
            "the token's header is not base64url JSON",
        )
    };
    let head = token.split('.').next().ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let alg = v.get("alg").and_then(Value::as_str).ok_or_else(bad)?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(refused(
            "token_algorithm_refused",
            "alg none (an unsigned token) is never accepted",
        ));
    }
    Ok(alg.to_string())
}

/// The RS256 and ES256 (P-256) keys of a JWKS document; other keys are skipped.
fn parse_jwks(text: &str) -> anyhow::Result<Vec<PublicKey>> {
    let doc: Value = serde_json::from_str(text)?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow::anyhow!("not a JWKS: no \"keys\" array"))?;
    let mut out = Vec::new();
    for v in list {
        let Ok(jwk) = serde_json::from_value::<Jwk>(v.clone()) else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        if let Some(named) = jwk.common.key_algorithm {
            if format!("{named:?}") != format!("{alg:?}") {
                continue;
            }
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(PublicKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    Ok(out)
}

/// A JWKS URL is https, or http on a loopback address (a local issuer in development and tests).
fn check_jwks_url(url: &str) -> anyhow::Result<()> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| anyhow::anyhow!("auth.jwt.jwks_url: {url:?} is not a URL"))?;
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") => Ok(()),
        _ => anyhow::bail!(
            "auth.jwt.jwks_url: {url:?} must be https (or http on 127.0.0.1, localhost or [::1])"
        ),
    }
}

/// Fetches and reads a JWKS URL: hyper's client, TLS by rustls with ring and the system's roots.
async fn fetch_jwks(url: &str) -> anyhow::Result<Vec<PublicKey>> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(https);
    let req = axum::http::Request::get(url)
        .header("accept", "application/json")
        .body(http_body_util::Empty::new())?;
    let work = async {
        let resp = client.request(req).await?;
        if !resp.status().is_success() {
            anyhow::bail!("answered {}", resp.status());
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
            .to_bytes();
        Ok::<_, anyhow::Error>(body)
    };
    let body = tokio::time::timeout(JWKS_FETCH_TIMEOUT, work)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {JWKS_FETCH_TIMEOUT:?}"))??;
    let keys = parse_jwks(std::str::from_utf8(&body)?)?;
    if keys.is_empty() {
        anyhow::bail!("no RS256 or ES256 key in it");
    }
    Ok(keys)
}

/// An HS256 token of `claims` signed with `secret`: what the application's backend mints, for
/// tests and tools.
pub fn hs256(secret: &str, claims: &HashMap<&str, Value>) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

    fn verifier(audience: Option<&str>) -> Arc<TokenVerifier> {
        let s = JwtSettings {
            hs256_secret: Some(SECRET.into()),
            audience: audience.map(str::to_string),
            leeway_secs: 0,
            ..Default::default()
        };
        TokenVerifier::from_settings(&s).unwrap().unwrap()
    }

    fn claims(exp: i64) -> HashMap<&'static str, Value> {
        HashMap::from([
            ("sub", Value::from("ann")),
            ("account_id", Value::from("acme")),
            ("role", Value::from("user")),
            ("exp", Value::from(exp)),
        ])
    }

    fn code(r: Result<Caller, AppError>) -> String {
        match r {
            Err(AppError::InvalidToken { code, .. }) => code.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn times_are_judged_at_the_given_instant() {
        let v = verifier(None);
        let t = hs256(SECRET, &claims(1_000));
        assert!(v.verify(&t, 999_000).await.is_ok());
        assert!(v.verify(&t, 1_000_000).await.is_ok());
        assert_eq!(code(v.verify(&t, 1_001_000).await), "token_expired");
        let mut c = claims(5_000);
        c.insert("nbf", Value::from(2_000));
        let t = hs256(SECRET, &c);
        assert_eq!(code(v.verify(&t, 1_999_000).await), "token_not_yet_valid");
        assert!(v.verify(&t, 2_000_000).await.is_ok());
    }

    #[tokio::test]
    async fn an_audience_is_required_once_configured() {
        let v = verifier(Some("taskfleet"));
        let mut c = claims(5_000);
        assert_eq!(
            code(v.verify(&hs256(SECRET, &c), 0).await),
            "token_missing_claim"
        );
        c.insert("aud", Value::from(vec!["other", "taskfleet"]));
        assert!(v.verify(&hs256(SECRET, &c), 0).await.is_ok());
        c.insert("aud", Value::from("other"));
        assert_eq!(
            code(v.verify(&hs256(SECRET, &c), 0).await),
            "token_wrong_audience"
        );
    }

    #[test]
    fn short_secrets_and_plain_http_jwks_urls_are_refused_at_start() {
        let s = JwtSettings {
            hs256_secret: Some("short".into()),
            ..Default::default()
        };
        assert!(TokenVerifier::from_settings(&s).is_err());
        assert!(check_jwks_url("https://issuer.example/.well-known/jwks.json").is_ok());
        assert!(check_jwks_url("http://127.0.0.1:9/jwks").is_ok());
        assert!(check_jwks_url("http://issuer.example/jwks").is_err());
        assert!(TokenVerifier::from_settings(&JwtSettings::default())
            .unwrap()
            .is_none());
        let both = JwtSettings {
            jwks_file: Some("/nonexistent.json".into()),
            jwks_url: Some("https://issuer.example/jwks".into()),
            ..Default::default()
        };
        let e = TokenVerifier::from_settings(&both)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn api_keys_do_not_look_like_tokens() {
        assert!(!looks_like_jwt(&taskfleet::apikeys::generate_key()));
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt("a..b"));
    }
}
