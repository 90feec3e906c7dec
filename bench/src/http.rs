//! HTTP enqueue through one `taskfleet-api` process: `POST /api/tasks` from a number of
//! keep-alive HTTP/1.1 connections of a load generator of our own (one request in flight on
//! each, so the number of connections is the number of requests in flight), so the client
//! costs next to nothing. The API process is started for the run and killed by its pid after
//! it, also when the run fails; every wait is bounded.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::fleet::{broker, counts, now_us, single, HttpRun, Proc};
use crate::sample::Meter;
use crate::server::Server;

/// The API's per-account limits during a run: far above what one run sends.
const LIMIT_OUT_OF_REACH: &str = "1000000000000";

/// One HTTP enqueue run.
pub struct HttpCase<'a> {
    /// The taskfleet-api binary.
    pub bin: &'a Path,
    pub url: &'a str,
    /// The key prefix of this run's API (its tasks are counted there afterwards).
    pub prefix: &'a str,
    pub requests: usize,
    /// Keep-alive connections, one request in flight on each.
    pub connections: usize,
    /// Bounds the whole run.
    pub timeout: Duration,
}

/// A free loopback port (bound, then released).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts one API process, sends `case.requests` requests, stops the process.
pub async fn run(server: &mut Server, case: &HttpCase<'_>) -> Result<HttpRun> {
    let key = format!("bench-{:x}", now_us());
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(case.bin);
    cmd.args([
        "--listen",
        &addr,
        "--redis-url",
        case.url,
        "--test-processors",
    ])
    .env("TASKFLEET__REDIS__PREFIX", case.prefix)
    .env("TASKFLEET__AUTH__ADMIN_KEY", &key)
    // Every request comes from one account: its limits (6000 enqueues a minute, 50000 tasks
    // by default) are raised out of reach, not turned off (0), so each request still pays
    // for the rate limit's count in Redis, as in production.
    .env("TASKFLEET__LIMITS__RATE_PER_MINUTE", LIMIT_OUT_OF_REACH)
    .env("TASKFLEET__LIMITS__MAX_TASKS", LIMIT_OUT_OF_REACH)
    .env("TASKFLEET__LIMITS__MAX_BYTES", LIMIT_OUT_OF_REACH)
    .env("RUST_LOG", "warn");
    let mut api = Proc::spawn("taskfleet-api", cmd)?;
    let r = run_with(server, &mut api, &addr, &key, case).await;
    api.stop().await;
    r
}

async fn run_with(
    server: &mut Server,
    api: &mut Proc,
    addr: &str,
    key: &str,
    case: &HttpCase<'_>,
) -> Result<HttpRun> {
    wait_ready(api, addr).await?;
    let body = r#"{"task_type":"test","request":{"op":"noop"}}"#;
    let request = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let request: Arc<[u8]> = request.into_bytes().into();
    let (n, timeout) = (case.requests, case.timeout);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + timeout;
    let cpu_before = api.cpu_seconds()?;
    let meter = Meter::start(server).await?;
    let mut conns = Vec::new();
    for _ in 0..case.connections.max(1) {
        let (next, request, addr) = (next.clone(), request.clone(), addr.to_string());
        conns.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(&addr).await?;
            c.set_nodelay(true)?;
            let mut buf = Vec::with_capacity(4096);
            let mut calls = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                if Instant::now() > deadline {
                    bail!("HTTP enqueue ran past its {timeout:?} limit");
                }
                let t0 = Instant::now();
                c.write_all(&request).await?;
                let (status, body) = read_response(&mut c, &mut buf).await?;
                ensure!(
                    status == 202,
                    "POST /api/tasks answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                calls.push(t0.elapsed());
            }
            Ok::<_, anyhow::Error>(calls)
        }));
    }
    let mut calls = Vec::with_capacity(n);
    for c in conns {
        calls.extend(c.await??);
    }
    let sample = meter
        .finish(
            server,
            &format!(
                "HTTP POST /api/tasks, 1 API process, {} keep-alive connections",
                case.connections
            ),
            n,
            calls,
        )
        .await?;
    let api_cpu = api.cpu_seconds()? - cpu_before;
    let (queued, _) = counts(&broker(&single(case.url), case.prefix)?).await?;
    ensure!(
        queued == n as u64,
        "after HTTP enqueue: {queued} of {n} queued"
    );
    Ok(HttpRun {
        connections: case.connections,
        sample,
        api_cpu,
    })
}

/// Ready when /health answers 200, within 10 s.
async fn wait_ready(api: &mut Proc, addr: &str) -> Result<()> {
    let ready_by = Instant::now() + Duration::from_secs(10);
    loop {
        api.check_alive()?;
        if let Ok(mut c) = TcpStream::connect(addr).await {
            let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            if c.write_all(req.as_bytes()).await.is_ok() {
                if let Ok(Ok((200, _))) = tokio::time::timeout(
                    Duration::from_secs(2),
                    read_response(&mut c, &mut Vec::new()),
                )
                .await
                {
                    return Ok(());
                }
            }
        }
        ensure!(
            Instant::now() < ready_by,
            "taskfleet-api did not answer /health in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body from `c`; `buf` keeps what was
/// read past it (nothing, one request at a time). Returns the status and the body.
async fn read_response(c: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, Vec<u8>)> {
    loop {
        if let Some((status, head_len, body_len)) = parse_head(buf)? {
            while buf.len() < head_len + body_len {
                read_more(c, buf).await?;
            }
            let body = buf[head_len..head_len + body_len].to_vec();
            buf.drain(..head_len + body_len);
            return Ok((status, body));
        }
        read_more(c, buf).await?;
    }
}

async fn read_more(c: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 4096];
    let k = c.read(&mut chunk).await?;
    ensure!(k > 0, "the API closed the connection");
    buf.extend_from_slice(&chunk[..k]);
    Ok(())
}

/// The status, head length and `Content-Length` of a response whose head is complete in
/// `buf`; `None` while it is not.
pub fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("a response head that is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut len = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("content-length") {
            len = Some(v.trim().parse::<usize>()?);
        } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked response: only Content-Length bodies are read");
        }
    }
    Ok(Some((status, end + 4, len.unwrap_or(0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_head_gives_status_and_body_length() {
        let r = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        let (status, head, body) = parse_head(r).unwrap().unwrap();
        assert_eq!((status, body), (202, 7));
        assert_eq!(&r[head..], b"{\"a\":1}");
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"nonsense\r\n\r\n").is_err());
    }
}
