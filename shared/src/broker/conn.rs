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

impl Backend {
    /// Forgets the connection after a failure that may have broken it (`timed_out`: it did not
    /// answer within the broker's timeout): the next call makes a new one.
    fn drop_conn(&self, timed_out: bool) {
        match self {
            Backend::Single { shared, .. } => {
                shared.lock().expect("connection lock").take();
            }
            // The cluster connection follows failovers and reconnects to its nodes by itself,
            // so an error alone does not drop it. One that stops answering altogether does
            // happen (seen with redis 1.8 when a primary is killed under load: every later
            // request on it waits forever), so a timeout replaces it.
            Backend::Cluster { shared, .. } => {
                if timed_out {
                    shared.lock().expect("connection lock").take();
                }
            }
        }
    }
}

/// What a durable write does when its shard's primary has too few replicas to confirm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    /// Refuse it, unwritten (an enqueue: the caller sends it again, elsewhere).
    Refuse,
    /// Write it unconfirmed (a completion: if lost with its primary, the task runs again).
    Anyway,
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
        // A redirect the cluster client still saw after its own retries: the slot's owner is
        // changing (a failover under way, its new primary not known to every node yet).
        redis::ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => {
            ErrorClass::Transient { reconnect: false }
        }
        redis::ErrorKind::ClusterConnectionNotFound => ErrorClass::Transient { reconnect: true },
        _ => match e.code() {
            // UNBLOCKED: a blocking call (WAIT) released because its server changed role.
            Some("BUSY" | "UNBLOCKED") => ErrorClass::Transient { reconnect: false },
            // A script whose own call was refused keeps the refusal's code in its message.
            _ if transient_in_message(e) => ErrorClass::Transient { reconnect: true },
            _ => ErrorClass::Permanent,
        },
    }
}

/// A script error that carries a failover refusal of one of its commands.
fn transient_in_message(e: &RedisError) -> bool {
    let text = e.to_string();
    [
        "READONLY",
        "MASTERDOWN",
        "LOADING",
        "CLUSTERDOWN",
        "UNBLOCKED",
    ]
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
        self.with_conn_on(&self.inner.backend, f).await
    }

    /// Runs `f` on `backend`'s connection within the broker's timeout.
    async fn with_conn_on<T, F>(&self, backend: &Backend, f: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    {
        let timeout = self.inner.timeout;
        let work = async {
            let mut conn = self.shared_conn(backend).await?;
            match f(&mut conn).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    if let ErrorClass::Transient { reconnect: true } = classify(&e) {
                        backend.drop_conn(false);
                    }
                    Err(Error::from(e))
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                // A connection that stopped answering may be dead: take a fresh one next time.
                backend.drop_conn(true);
                Err(Error::Unavailable(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }

    async fn shared_conn(&self, backend: &Backend) -> Result<Conn> {
        match backend {
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
        self.script_on(&self.inner.backend, script, keys, args)
            .await
    }

    /// Runs a script that writes what must survive a failover (an enqueue, a completion).
    /// With `redis.wait_replicas = N`: if the primary of the keys' slot has fewer than `N`
    /// replicas connected (`ROLE`, read at most once a second per shard), the write cannot
    /// be confirmed: `Durable::Refuse` refuses it unwritten ([`Error::Unavailable`]), and
    /// `Durable::Anyway` makes it unconfirmed. Otherwise it runs on the connection kept for
    /// such writes, followed by `WAIT` on that connection (WAIT counts the writes of its own
    /// connection and blocks it: a connection of their own keeps claims, heartbeats and reads
    /// from waiting behind it). `Ok((reply, confirmed))`: `confirmed` says why not when the
    /// replicas did not acknowledge in time; without the setting, always `Ok`.
    pub(crate) async fn durable_script<T: FromRedisValue>(
        &self,
        script: &Dual,
        keys: &[String],
        args: &[String],
        when_unconfirmable: Durable,
    ) -> Result<(T, std::result::Result<(), String>)> {
        let (Some((replicas, timeout)), Some(durable)) = (self.inner.wait, &self.inner.durable)
        else {
            return Ok((self.script(script, keys, args).await?, Ok(())));
        };
        let have = self.connected_replicas(durable, &keys[0]).await;
        if have < replicas {
            let why = format!(
                "the shard's primary has {have} replicas connected; redis.wait_replicas asks for {replicas}"
            );
            return match when_unconfirmable {
                Durable::Refuse => Err(Error::Unavailable(format!("{why}: not written"))),
                Durable::Anyway => Ok((self.script(script, keys, args).await?, Err(why))),
            };
        }
        let reply = self.script_on(durable, script, keys, args).await?;
        let confirmed = self
            .wait_replicas_on(durable, &keys[0], replicas, timeout)
            .await;
        if confirmed.is_err() {
            // Look again before the next write rather than block on another WAIT.
            self.inner
                .replicas_seen
                .lock()
                .expect("replicas lock")
                .remove(&cluster_slot(&keys[0]));
        }
        Ok((reply, confirmed))
    }

    /// How many replicas the primary serving `key`'s slot has connected, by `ROLE`, kept for a
    /// second per slot; 0 if it does not answer.
    async fn connected_replicas(&self, backend: &Backend, key: &str) -> u32 {
        let slot = cluster_slot(key);
        if let Some((when, n)) = self
            .inner
            .replicas_seen
            .lock()
            .expect("replicas lock")
            .get(&slot)
        {
            if when.elapsed() < Duration::from_secs(1) {
                return *n;
            }
        }
        let cmd = redis::cmd("ROLE");
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot,
            SlotAddr::Master,
        )));
        let reply = self
            .with_conn_on(backend, async |c| match c {
                Conn::Cluster(cc) => cc.route_command(cmd.clone(), route.clone()).await,
                Conn::Single(s) => cmd.query_async(s).await,
            })
            .await;
        // ["master", offset, [[ip, port, offset], ...]]
        let n = match reply {
            Ok(Value::Array(role)) if role.len() >= 3 => match &role[2] {
                Value::Array(replicas) => replicas.len() as u32,
                _ => 0,
            },
            _ => 0,
        };
        self.inner
            .replicas_seen
            .lock()
            .expect("replicas lock")
            .insert(slot, (std::time::Instant::now(), n));
        n
    }

    async fn script_on<T: FromRedisValue>(
        &self,
        backend: &Backend,
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
            match self
                .with_conn_on(backend, async |c| inv.invoke_async(c).await)
                .await
            {
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

    /// Waits until `replicas` replicas acknowledged the writes made so far on `backend`'s
    /// connection to `key`'s slot (`WAIT`), at most `timeout`: the one way to narrow
    /// asynchronous replication's loss window on a failover. `Err(why)` if fewer did, or the
    /// WAIT itself failed (its node changed role meanwhile): the write is not confirmed.
    async fn wait_replicas_on(
        &self,
        backend: &Backend,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> std::result::Result<(), String> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(timeout.as_millis() as u64);
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            cluster_slot(key),
            SlotAddr::Master,
        )));
        let reply = self
            .with_conn_on(backend, async |c| match c {
                Conn::Cluster(cc) => cc.route_command(cmd.clone(), route.clone()).await,
                Conn::Single(s) => cmd.query_async(s).await,
            })
            .await;
        let acked = match reply {
            Ok(Value::Int(n)) => n,
            Ok(Value::ServerError(e)) => return Err(RedisError::from(e).to_string()),
            Ok(other) => return Err(format!("WAIT answered {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        if acked < i64::from(replicas) {
            return Err(format!(
                "the write reached {acked} of {replicas} replicas within {} ms",
                timeout.as_millis()
            ));
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
        for code in ["LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "UNBLOCKED"] {
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
        for moved in ["MOVED 305 127.0.0.1:7001", "ASK 305 127.0.0.1:7001"] {
            let reply = format!("-{moved}\r\n");
            let e: RedisError = match redis::parse_redis_value(reply.as_bytes()) {
                Ok(redis::Value::ServerError(e)) => e.into(),
                other => panic!("not a server error: {other:?}"),
            };
            assert_eq!(
                classify(&e),
                ErrorClass::Transient { reconnect: false },
                "{moved}"
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
