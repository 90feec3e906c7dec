//! The API's guards against clients that hold its resources: slow headers and bodies against
//! a real server on a loopback port (the router alone cannot see a connection).

mod common;

use std::time::Duration;

use common::{setup, Api};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Serves `api`'s state on a free loopback port until the state's shutdown token fires; the
/// address.
async fn serve(api: &Api) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(taskfleet_api::server::serve(listener, api.state.clone()));
    addr
}

/// Reads until the server closes the connection (bounded, so a server that never does fails
/// the test instead of hanging it); what it sent.
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&out).to_string()
}

async fn limited_api(header_secs: u64, request_secs: u64) -> Api {
    let mut api = setup().await;
    api.state.header_read_timeout = Some(Duration::from_secs(header_secs));
    api.state.request_timeout = Some(Duration::from_secs(request_secs));
    api
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let api = limited_api(1, 30).await;
    let addr = serve(&api).await;
    // Half a head, then nothing.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(!answer.contains(" 5"), "no 5xx: {answer}");
    // Nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let answer = read_until_closed(&mut silent).await;
    assert!(!answer.contains(" 5"), "no 5xx: {answer}");
    // An idle keep-alive connection is let go the same way after its first answer.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    api.state.shutdown.cancel();
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    let api = limited_api(30, 1).await;
    let addr = serve(&api).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"task_type\"",
        api.user
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    api.state.shutdown.cancel();
}

#[tokio::test]
async fn an_event_stream_outlives_the_request_timeout() {
    let api = limited_api(30, 1).await;
    let id = api.enqueue_test(&api.user, json!({"op": "noop"})).await;
    let addr = serve(&api).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/tasks/{id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        api.user
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = vec![0u8; 8192];
    while !seen.contains("event: queued") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("the first event")
            .unwrap();
        assert!(n > 0, "stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    // Past the request timeout, the stream still carries the task's next change.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let r = api
        .call(
            axum::http::Method::POST,
            &format!("/api/tasks/{id}/cancel"),
            Some(&api.user),
            None,
        )
        .await;
    assert_eq!(r.status, axum::http::StatusCode::OK, "{}", r.json());
    while !seen.contains("event: cancelled") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("the cancelled event")
            .unwrap();
        assert!(n > 0, "stream closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    api.state.shutdown.cancel();
}
