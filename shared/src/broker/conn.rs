//! Connection plumbing, the same for both deployments: one shared connection (a multiplexed
//! connection to a single server, or redis-rs's cluster connection, which follows MOVED and ASK
//! itself), every call under the broker's timeout, scripts by SHA with reloads after NOSCRIPT,
//! commands of many slots fanned out as one pipeline per slot, and Redis's errors sorted into
//! what a caller retries and what it does not.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, ServerErrorKind, Value,
};

use super::Broker;
use crate::error::{Error, Result};
use crate::keys::cluster_slot;

/// A script's source: its file after the shared fragments it uses (`scripts/includes/*.lua`),
/// joined at build time, so a fragment (a score formula, the wake-up) is written once.
macro_rules! script_source {
    ($file:literal $(, $include:literal)* $(,)?) => {
        concat!(
            $(include_str!(concat!("../scripts/includes/", $include)), "\n",)*
            include_str!(concat!("../scripts/", $file))
        )
    };
}
pub(crate) use script_source;

/// The script of [`script_source!`] in both deployments' variants, sent by SHA.
macro_rules! script {
    ($($source:tt)*) => {
        ::std::sync::LazyLock::new(|| {
            $crate::broker::conn::Dual::new($crate::broker::conn::script_source!($($source)*))
        })
    };
}
pub(crate) use script;

/// A script in two variants: for a single server, whose wake-ups are `PUBLISH`ed, and for a
/// cluster, whose wake-ups are `SPUBLISH`ed to a channel in the script's own slot (sharded
/// pub/sub: a classic `PUBLISH` would be broadcast to every node). The only difference, made
/// once from the one source.
pub struct Dual {
    single: Script,
    cluster: Script,
}

impl Dual {
    pub fn new(source: &str) -> Dual {
        Dual {
            single: Script::new(source),
            cluster: Script::new(&source.replace("'PUBLISH'", "'SPUBLISH'")),
        }
    }
}

/// Where Redis is: one server, or a cluster named by its seed nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    Single { url: String },
    Cluster { nodes: Vec<String> },
}

impl Deployment {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Deployment::Cluster { .. })
    }
}

/// The broker's connection to its deployment, made on first use and again after it failed.
pub(crate) enum Backend {
    Single {
        client: redis::Client,
        // A std mutex, held only to clone the connection; never across an await.
        shared: std::sync::Mutex<Option<MultiplexedConnection>>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        shared: std::sync::Mutex<Option<ClusterConnection>>,
    },
}

impl Backend {
    pub(crate) fn new(deployment: &Deployment, timeout: Duration) -> Result<Backend> {
        match deployment {
            Deployment::Single { url } => {
                if url.starts_with("redis+cluster://") {
                    return Err(Error::invalid(
                        "redis.url",
                        "name a cluster by its seed nodes: TASKFLEET__REDIS__CLUSTER_NODES=host:port,host:port",
                    ));
                }
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| Error::invalid("redis.url", e.to_string()))?;
                Ok(Backend::Single {
                    client,
                    shared: std::sync::Mutex::new(None),
                })
            }
            Deployment::Cluster { nodes } => {
                if nodes.is_empty() {
                    return Err(Error::invalid("redis.cluster_nodes", "no seed node"));
                }
                let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{n}")).collect();
                let client = ClusterClientBuilder::new(urls)
                    .connection_timeout(timeout)
                    // Longer than any call's own bound: the broker's timeout decides.
                    .response_timeout(timeout + Duration::from_secs(1))
                    // A failover takes seconds: retry through it rather than give up.
                    .retries(8)
                    .min_retry_wait(50)
                    .max_retry_wait(1_000)
                    .build()
                    .map_err(|e| Error::invalid("redis.cluster_nodes", e.to_string()))?;
                Ok(Backend::Cluster {
                    client,
                    shared: std::sync::Mutex::new(None),
                })
            }
        }
    }
}

/// A connection to either deployment: what every call runs on.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

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
        redis::ErrorKind::ClusterConnectionNotFound => ErrorClass::Transient { reconnect: true },
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
    ["READONLY", "MASTERDOWN", "LOADING", "CLUSTERDOWN"]
        .iter()
        .any(|code| text.contains(code))
}

impl Broker {
    /// Whether the broker talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster { .. })
    }

    /// Runs `f` on the broker's shared connection within the broker's timeout.
    pub async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
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
        match &self.inner.backend {
            Backend::Single { shared, .. } => {
                shared.lock().expect("connection lock").take();
            }
            // The cluster connection reconnects to its nodes by itself; it is kept.
            Backend::Cluster { .. } => {}
        }
    }

    async fn shared_conn(&self) -> Result<Conn> {
        match &self.inner.backend {
            Backend::Single { client, shared } => {
                if let Some(c) = shared.lock().expect("connection lock").as_ref() {
                    return Ok(Conn::Single(c.clone()));
                }
                // Connections answer within the broker's timeout (redis-rs would give up after
                // 500 ms, too soon for a large batch on a busy server).
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.inner.timeout))
                    .set_response_timeout(Some(self.inner.timeout));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?;
                let mut slot = shared.lock().expect("connection lock");
                Ok(Conn::Single(slot.get_or_insert(conn).clone()))
            }
            Backend::Cluster { client, shared } => {
                if let Some(c) = shared.lock().expect("connection lock").as_ref() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let conn = client.get_async_connection().await?;
                let mut slot = shared.lock().expect("connection lock");
                Ok(Conn::Cluster(slot.get_or_insert(conn).clone()))
            }
        }
    }

    /// Runs a script with its keys and arguments (the deployment's variant).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        script: &Dual,
        keys: &[String],
        args: &[String],
    ) -> Result<T> {
        let script = if self.is_cluster() {
            &script.cluster
        } else {
            &script.single
        };
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        // redis-rs loads the script and retries once on NOSCRIPT (on the node that answered
        // it: a promoted replica has an empty script cache); a second flush between its load
        // and its retry (a restart, an operator's SCRIPT FLUSH) gets two more chances. A
        // script that never ran changed nothing, so running it again is safe.
        let mut tries = 0;
        loop {
            match self.with_conn(async |c| inv.invoke_async(c).await).await {
                Err(Error::NoScript(_)) if tries < 2 => tries += 1,
                other => return other,
            }
        }
    }

    /// Runs commands that may live in different slots, each given with a key that routes it:
    /// as one pipeline on a single server, as one pipeline per slot (concurrently) on a
    /// cluster, where a pipeline must stay in one slot. Answers in the commands' order.
    pub(crate) async fn fanout<T: FromRedisValue>(
        &self,
        cmds: Vec<(String, Cmd)>,
    ) -> Result<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let groups: Vec<Vec<(usize, Cmd)>> = if self.is_cluster() {
            let mut by_slot: BTreeMap<u16, Vec<(usize, Cmd)>> = BTreeMap::new();
            for (i, (key, cmd)) in cmds.into_iter().enumerate() {
                by_slot
                    .entry(cluster_slot(&key))
                    .or_default()
                    .push((i, cmd));
            }
            by_slot.into_values().collect()
        } else {
            vec![cmds
                .into_iter()
                .enumerate()
                .map(|(i, (_, c))| (i, c))
                .collect()]
        };
        let n: usize = groups.iter().map(Vec::len).sum();
        let calls = groups.into_iter().map(|group| async move {
            let mut pipe = redis::pipe();
            for (_, cmd) in &group {
                pipe.add_command(cmd.clone());
            }
            let values: Vec<Value> = self.with_conn(async |c| pipe.query_async(c).await).await?;
            Ok::<_, Error>(
                group
                    .into_iter()
                    .map(|(i, _)| i)
                    .zip(values)
                    .collect::<Vec<_>>(),
            )
        });
        let mut out: Vec<Option<Value>> = vec![None; n];
        for r in join_all(calls).await {
            for (i, v) in r? {
                out[i] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| Ok(T::from_redis_value(v.unwrap_or(Value::Nil))?))
            .collect()
    }

    /// Waits until `replicas` replicas acknowledged the writes made so far on the connection
    /// that serves `key`'s slot (`WAIT`), at most `timeout`: the one way to narrow
    /// asynchronous replication's loss window on a failover. `Unavailable` if fewer did.
    pub(crate) async fn wait_replicas(
        &self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> Result<()> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(timeout.as_millis() as u64);
        let acked: i64 = match &self.inner.backend {
            Backend::Single { .. } => self.with_conn(async |c| cmd.query_async(c).await).await?,
            Backend::Cluster { .. } => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(cluster_slot(key), SlotAddr::Master),
                ));
                let v = self
                    .with_conn(async |c| match c {
                        Conn::Cluster(cc) => cc.route_command(cmd.clone(), route.clone()).await,
                        Conn::Single(s) => cmd.query_async(s).await,
                    })
                    .await?;
                i64::from_redis_value(v)?
            }
        };
        if acked < i64::from(replicas) {
            return Err(Error::Unavailable(format!(
                "the write reached {acked} of {replicas} replicas within {} ms",
                timeout.as_millis()
            )));
        }
        Ok(())
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

    #[test]
    fn the_cluster_variant_of_a_script_publishes_to_its_shard() {
        let d = Dual::new("redis.call('PUBLISH', KEYS[1], 1)");
        assert_ne!(d.single.get_hash(), d.cluster.get_hash());
    }
}
