//! The HTTP server around the router: accepts connections and serves each with hyper's HTTP/1.1
//! connection, under the limits that keep slow clients from holding it.
//!
//! Why our own accept loop instead of `axum::serve`: axum's gives hyper no timer, so hyper's
//! header read timeout is off and a client that sends half a request head (or nothing, or
//! keeps an idle connection) holds a connection and a task for ever. Here every connection
//! gets [`AppState::header_read_timeout`] to send each request head, including the wait for the
//! next request on a keep-alive connection. HTTP/1.1 only: hyper's protocol detection for h2c
//! reads the first bytes with no timeout, which is the same hole again (put a proxy in front for
//! HTTP/2). The request timeout (bodies, handlers) is a layer of the router ([`crate::app`]).
//!
//! Shutdown: when [`AppState::shutdown`] fires, stop accepting, ask every connection to finish
//! its request in flight and close, and wait for them at most [`DRAIN_TIMEOUT`]. Event streams
//! end on the same token, so they do not hold the drain open.

use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::state::AppState;

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the API on `listener` until `state.shutdown` fires, then drains.
pub async fn serve(listener: TcpListener, state: AppState) {
    let app = crate::app(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: a pause, not a busy loop.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = state.shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away, or a head that came too slowly: nothing to report.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still running after the drain timeout; exiting");
        }
    }
}
