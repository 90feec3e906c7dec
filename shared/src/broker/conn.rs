//! Connection plumbing: one shared multiplexed connection, every call under the broker's
//! timeout, scripts by SHA with reloads after NOSCRIPT, and Redis's errors sorted into what
//! a caller retries and what it does not.

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisError, Script, ServerErrorKind};

use super::Broker;
use crate::error::{Error, Result};

/// A script's source: its file after the shared fragments it uses (`scripts/includes/*.lua`),
/// joined at build time, so a fragment (a score formula, the wake-up push) is written once.
macro_rules! script_source {
    ($file:literal $(, $include:literal)* $(,)?) => {
        concat!(
            $(include_str!(concat!("../scripts/includes/", $include)), "\n",)*
            include_str!(concat!("../scripts/", $file))
        )
    };
}
pub(crate) use script_source;

/// The script of [`script_source!`], sent by SHA.
macro_rules! script {
    ($($source:tt)*) => {
        ::std::sync::LazyLock::new(|| ::redis::Script::new($crate::broker::conn::script_source!($($source)*)))
    };
}
pub(crate) use script;

/// What an error from Redis means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// Try again later: the connection was lost, or the server said it cannot answer now
    /// (LOADING an AOF after a restart, BUSY running a long script, TRYAGAIN, CLUSTERDOWN,
    /// MASTERDOWN or READONLY after a failover). `reconnect`: the connection itself points at
    /// the wrong server (a demoted primary) or is dead, so take a fresh one.
    Transient { reconnect: bool },
    /// The server did not know a script.
    NoScript,
    /// Anything else (a script bug, a wrong type): retrying does not help.
    Permanent,
}

/// Sorts a Redis error (DESIGN §6, "retry classes").
pub(crate) fn classify(e: &RedisError) -> ErrorClass {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        return ErrorClass::Transient { reconnect: true };
    }
    match e.kind() {
        redis::ErrorKind::Server(ServerErrorKind::NoScript) => ErrorClass::NoScript,
        redis::ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown) => {
            ErrorClass::Transient { reconnect: true }
        }
        redis::ErrorKind::Server(
            ServerErrorKind::BusyLoading | ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown,
        ) => ErrorClass::Transient { reconnect: false },
        _ => match e.code() {
            Some("BUSY") => ErrorClass::Transient { reconnect: false },
            // A script whose own call was refused keeps the refusal's code in its message.
            _ if transient_in_message(e) => ErrorClass::Transient { reconnect: true },
            _ => ErrorClass::Permanent,
        },
    }
}

/// A script error that carries a failover refusal of one of its commands.
fn transient_in_message(e: &RedisError) -> bool {
    let text = e.to_string();
    ["READONLY", "MASTERDOWN", "LOADING"]
        .iter()
        .any(|code| text.contains(code))
}

impl Broker {
    /// Runs `f` on the broker's shared connection within the broker's timeout.
    pub async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    {
        let timeout = self.inner.timeout;
        let work = async {
            let mut conn = self.shared_conn().await?;
            match f(&mut conn).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    if let ErrorClass::Transient { reconnect: true } = classify(&e) {
                        self.drop_conn();
                    }
                    Err(Error::from(e))
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                // A connection that stopped answering may be dead: take a fresh one next time.
                self.drop_conn();
                Err(Error::Unavailable(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }

    fn drop_conn(&self) {
        self.inner.shared.lock().expect("connection lock").take();
    }

    async fn shared_conn(&self) -> Result<MultiplexedConnection> {
        if let Some(c) = self.inner.shared.lock().expect("connection lock").as_ref() {
            return Ok(c.clone());
        }
        let conn = deadpool_redis::Connection::take(self.inner.pool.get().await?);
        let mut slot = self.inner.shared.lock().expect("connection lock");
        Ok(slot.get_or_insert(conn).clone())
    }

    /// Runs a script with its keys and arguments.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        // redis-rs loads the script and retries once on NOSCRIPT; a second flush between its
        // load and its retry (a restart, an operator's SCRIPT FLUSH) gets two more chances.
        // A script that never ran changed nothing, so running it again is safe.
        let mut tries = 0;
        loop {
            match self.with_conn(async |c| inv.invoke_async(c).await).await {
                Err(Error::NoScript(_)) if tries < 2 => tries += 1,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str) -> RedisError {
        // What redis-rs makes of an error line from the server.
        let reply = format!("-{code} something went wrong\r\n");
        match redis::parse_redis_value(reply.as_bytes()) {
            Ok(redis::Value::ServerError(e)) => e.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn failover_and_loading_errors_are_retried_and_script_bugs_are_not() {
        for code in ["LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN"] {
            assert_eq!(
                classify(&server_error(code)),
                ErrorClass::Transient { reconnect: false },
                "{code}"
            );
        }
        for code in ["READONLY", "MASTERDOWN"] {
            assert_eq!(
                classify(&server_error(code)),
                ErrorClass::Transient { reconnect: true },
                "{code}"
            );
        }
        assert_eq!(classify(&server_error("NOSCRIPT")), ErrorClass::NoScript);
        assert_eq!(classify(&server_error("WRONGTYPE")), ErrorClass::Permanent);
        assert_eq!(classify(&server_error("ERR")), ErrorClass::Permanent);
    }
}
