//! The application's tokens (JWT): refused with a clear code for every way one can be wrong
//! (expired, not yet valid, a wrong signature, a wrong audience or issuer, `alg: none`, a
//! missing claim), and a valid one works on every route an API key works on. HS256 from a
//! secret, RS256 from a JWKS file, ES256 from a JWKS URL on loopback.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine;
use common::{settings, setup_with, Api, TEST_QUEUE};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "the-application-backend-shares-this-secret";
const AUDIENCE: &str = "taskfleet";
const ISSUER: &str = "https://app.example.test";

async fn setup_tokens() -> Api {
    let (mut s, dir) = settings();
    s.auth.jwt.hs256_secret = Some(SECRET.into());
    s.auth.jwt.audience = Some(AUDIENCE.into());
    s.auth.jwt.issuer = Some(ISSUER.into());
    s.auth.jwt.leeway_secs = 0;
    setup_with(s, dir).await
}

fn now_secs(api: &Api) -> i64 {
    api.now() / 1000
}

/// The claims of a valid token for `user` of `account` with `role`.
fn claims(api: &Api, account: &str, user: &str, role: &str) -> HashMap<&'static str, Value> {
    HashMap::from([
        ("sub", json!(user)),
        ("account_id", json!(account)),
        ("role", json!(role)),
        ("aud", json!(AUDIENCE)),
        ("iss", json!(ISSUER)),
        ("iat", json!(now_secs(api))),
        ("exp", json!(now_secs(api) + 600)),
    ])
}

fn hs256(claims: &HashMap<&'static str, Value>, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn refused_with(api: &Api, token: &str, code: &str) {
    let r = api.get("/api/tasks", token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{code}: {}", r.json());
    assert_eq!(r.code(), code, "{}", r.message());
    assert!(!r.message().is_empty());
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
}

#[tokio::test]
async fn tokens_are_refused_with_a_code_that_says_why() {
    let api = setup_tokens().await;
    let now = now_secs(&api);
    let good = claims(&api, "acme", "alice", "user");
    let with = |k: &'static str, v: Value| {
        let mut c = good.clone();
        c.insert(k, v);
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.remove(k);
        c
    };
    refused_with(
        &api,
        &hs256(&with("exp", json!(now - 3600)), SECRET),
        "token_expired",
    )
    .await;
    refused_with(
        &api,
        &hs256(&with("nbf", json!(now + 3600)), SECRET),
        "token_not_yet_valid",
    )
    .await;
    refused_with(
        &api,
        &hs256(&good, "some-other-secret-of-enough-length!!"),
        "token_bad_signature",
    )
    .await;
    refused_with(
        &api,
        &hs256(&with("aud", json!("someone-else")), SECRET),
        "token_wrong_audience",
    )
    .await;
    refused_with(
        &api,
        &hs256(&with("iss", json!("https://evil.example")), SECRET),
        "token_wrong_issuer",
    )
    .await;
    for claim in ["sub", "account_id", "role", "exp", "aud"] {
        refused_with(&api, &hs256(&without(claim), SECRET), "token_missing_claim").await;
    }
    refused_with(
        &api,
        &hs256(&with("role", json!("superuser")), SECRET),
        "token_invalid_claim",
    )
    .await;
    // alg none: an unsigned token with valid claims.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(serde_json::to_string(&good).unwrap().as_bytes())
    );
    refused_with(&api, &none, "token_algorithm_refused").await;
    // A token of an algorithm no key is configured for.
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &good,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    refused_with(&api, &hs512, "token_algorithm_refused").await;
    refused_with(&api, "abc.def.ghi", "token_malformed").await;
}

/// Every route that takes a caller, with a body where it takes one: a token works wherever a
/// key does.
fn keyed_routes(id: &str, done: &str) -> Vec<(Method, String, Option<Value>)> {
    let mut v = vec![
        (Method::GET, "/api/tasks/types".to_string(), None),
        (
            Method::POST,
            "/api/tasks".to_string(),
            Some(json!({"task_type": TEST_QUEUE, "request": {}})),
        ),
        (Method::GET, "/api/tasks".to_string(), None),
        (Method::GET, format!("/api/tasks/{id}"), None),
        // A finished task's stream sends its state and ends.
        (Method::GET, format!("/api/tasks/{done}/events"), None),
        (
            Method::GET,
            format!("/api/tasks/{id}/artifacts/a.txt"),
            None,
        ),
        (Method::POST, format!("/api/tasks/{done}/cancel"), None),
        (Method::POST, format!("/api/tasks/{id}/retry"), None),
        (Method::GET, "/api/tasks/queue/status".to_string(), None),
        (Method::GET, "/api/tasks/queue/list".to_string(), None),
        (Method::GET, "/api/tasks/queue/history".to_string(), None),
        (Method::GET, "/api/me".to_string(), None),
    ];
    for (path, _, body) in common::valid_typed_requests() {
        v.push((Method::POST, path.to_string(), Some(body)));
    }
    v
}

#[tokio::test]
async fn a_valid_token_works_on_every_route_a_key_works_on() {
    let api = setup_tokens().await;
    let token = hs256(&claims(&api, "acme", "alice", "user"), SECRET);
    let id = api.enqueue_test(&api.user, json!({})).await;
    api.state
        .artifacts
        .put(&id, "a.txt", b"hello".to_vec())
        .await
        .unwrap();
    let done = api.enqueue_test(&api.user, json!({})).await;
    assert_eq!(api.cancel(&done, &api.user).await.status, StatusCode::OK);
    for (method, path, body) in keyed_routes(&id, &done) {
        let by_key = api
            .call(method.clone(), &path, Some(&api.user), body.clone())
            .await;
        let by_token = api
            .call(method.clone(), &path, Some(&token), body.clone())
            .await;
        assert_ne!(by_token.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(by_token.status, by_key.status, "{method} {path}");
    }
    // The token's user is the task's owner: alice's key reads the task the token made.
    let made = api
        .enqueue_with(&token, json!({"task_type": TEST_QUEUE, "request": {}}))
        .await;
    let r = api
        .get(
            &format!("/api/tasks/{}", made["task_id"].as_str().unwrap()),
            &api.user,
        )
        .await;
    assert_eq!(r.json()["user_id"], "alice");
    assert_eq!(r.json()["account_id"], "acme");
    // Roles come from the claim: an admin token runs the admin endpoints as an admin key does,
    // a user's token is refused them as a user's key is.
    let admin = hs256(&claims(&api, "ops", "root", "admin"), SECRET);
    for path in [
        "/api/tasks/queue/stop",
        "/api/tasks/queue/start",
        "/api/tasks/queue/cleanup",
    ] {
        let r = api.call(Method::POST, path, Some(&admin), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json());
        let by_key = api.call(Method::POST, path, Some(&api.admin), None).await;
        assert_eq!(by_key.status, StatusCode::OK, "{path}");
        let r = api.call(Method::POST, path, Some(&token), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    // A colleague's token does not see alice's task; the account admin's does.
    let carol = hs256(&claims(&api, "acme", "carol", "user"), SECRET);
    let lead = hs256(&claims(&api, "acme", "ada", "account_admin"), SECRET);
    let path = format!("/api/tasks/{id}");
    assert_eq!(api.get(&path, &carol).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.get(&path, &lead).await.status, StatusCode::OK);
}

#[tokio::test]
async fn without_jwt_settings_a_token_is_an_unknown_credential() {
    let (s, dir) = settings();
    let api = setup_with(s, dir).await;
    let token = hs256(&claims(&api, "acme", "alice", "user"), SECRET);
    let r = api.get("/api/tasks", &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "unauthorized");
    assert!(r.message().contains("auth.jwt"), "{}", r.message());
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn rs256_tokens_are_checked_against_a_jwks_file() {
    let (mut s, dir) = settings();
    // A key pair made for these tests only (api/tests/fixtures): never used anywhere else.
    s.auth.jwt.jwks_file = Some(fixture("test-rs256.jwks.json").display().to_string());
    let api = setup_with(s, dir).await;
    let pem = std::fs::read_to_string(fixture("test-rs256.key.pem")).unwrap();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap();
    let key = EncodingKey::from_rsa_der(&der);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rs".into());
    let c = claims(&api, "acme", "alice", "user");
    let token = jsonwebtoken::encode(&header, &c, &key).unwrap();
    assert_eq!(api.get("/api/tasks", &token).await.status, StatusCode::OK);
    // No kid: the file's only RS256 key.
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &c, &key).unwrap();
    assert_eq!(api.get("/api/tasks", &token).await.status, StatusCode::OK);
    header.kid = Some("rotated-away".into());
    let token = jsonwebtoken::encode(&header, &c, &key).unwrap();
    refused_with(&api, &token, "token_unknown_key").await;
    // An HS256 token is not checked against the RSA key taken as a secret.
    let forged = hs256(
        &c,
        &std::fs::read_to_string(fixture("test-rs256.jwks.json")).unwrap(),
    );
    refused_with(&api, &forged, "token_algorithm_refused").await;
}

/// A loopback HTTP server that answers every request with `body` (a JWKS), counting them.
async fn serve_jwks(body: String) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn es256_tokens_are_checked_against_a_jwks_url_fetched_once() {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "es-1", "alg": "ES256",
        "use": "sig", "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    let (url, hits) = serve_jwks(jwks.to_string()).await;
    let (mut s, dir) = settings();
    s.auth.jwt.jwks_url = Some(url);
    let api = setup_with(s, dir).await;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("es-1".into());
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let token =
        jsonwebtoken::encode(&header, &claims(&api, "acme", "alice", "user"), &key).unwrap();
    for _ in 0..3 {
        let r = api.get("/api/tasks", &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the JWKS is fetched once and kept"
    );
}
