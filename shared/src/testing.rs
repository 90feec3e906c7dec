//! Test support (feature `testing`): a real redis-server on a free loopback port, and a fresh
//! key prefix per test so that all tests share one server and run in parallel.
//!
//! Never port 6379, never FLUSHDB. Each server runs under a small shell watchdog that kills it
//! when the test process is gone, so a crashed or killed test binary leaves no server behind.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::config::QueueConfig;

/// A redis-server process owned by a test.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    appendonly: bool,
    /// More `redis-server` arguments (a cluster node's).
    extra: String,
    watchdog: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port, without persistence.
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// Starts a server that writes every change to its append-only file before answering
    /// (`appendfsync always`), so it survives [`RedisServer::kill`] and
    /// [`RedisServer::restart`].
    pub fn start_durable() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(appendonly: bool) -> RedisServer {
        for _ in 0..20 {
            let port = free_port();
            let mut s = RedisServer {
                port,
                dir: tempfile::tempdir().expect("temp dir for redis"),
                appendonly,
                extra: String::new(),
                watchdog: None,
            };
            if s.spawn() {
                return s;
            }
        }
        panic!("could not start redis-server on a free port (is redis-server installed?)");
    }

    /// Starts a server with more arguments on a port whose cluster bus port (+10000) is
    /// free too.
    fn start_node(extra: &str) -> RedisServer {
        for _ in 0..50 {
            let port = rand::random_range(20_000..30_000u16);
            let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
            if !free(port) || !free(port + 10_000) {
                continue;
            }
            let mut s = RedisServer {
                port,
                dir: tempfile::tempdir().expect("temp dir for redis"),
                appendonly: false,
                extra: extra.to_string(),
                watchdog: None,
            };
            if s.spawn() {
                return s;
            }
        }
        panic!("could not start a redis-server cluster node on a free port pair");
    }

    fn spawn(&mut self) -> bool {
        assert_ne!(self.port, 6379, "tests never use the developer's Redis");
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = self.dir.path().display().to_string();
        let aof = if self.appendonly {
            "--appendonly yes --appendfsync always"
        } else {
            "--appendonly no"
        };
        let script = format!(
            "{bin} --port {port} --bind 127.0.0.1 --save '' {aof} --dir '{dir}' \
             --maxmemory-policy noeviction --logfile '{dir}/redis.log' {extra} & rp=$!; \
             echo $rp > '{dir}/redis.pid'; \
             while kill -0 {parent} 2>/dev/null && kill -0 $rp 2>/dev/null; do sleep 0.3; done; \
             kill -9 $rp 2>/dev/null",
            port = self.port,
            extra = self.extra,
            parent = std::process::id(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh for redis-server");
        self.watchdog = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return true;
            }
            if let Some(Ok(Some(_))) = self.watchdog.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("redis.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILLs the server (a crash); [`RedisServer::restart`] brings it back on the same port.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ping(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and directory (with its data if durable).
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not come back on port {}", self.port);
    }

    /// Runs one command with redis-cli-like simplicity (inline protocol); returns the raw reply.
    pub fn raw(&self, command: &str) -> String {
        raw_command(self.port, command).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind a free port");
        if port != 6379 {
            return port;
        }
    }
}

fn raw_command(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn ping(port: u16) -> bool {
    raw_command(port, "PING").is_some_and(|r| r.starts_with("+PONG"))
}

/// The server shared by every test of this test binary, started on first use.
pub fn shared_redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A key prefix no other test of any process uses.
pub fn fresh_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}x{}x{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// A broker on the shared server under a fresh prefix, with the given queues.
pub fn broker(queues: &[(&str, QueueConfig)]) -> Broker {
    broker_on(&shared_redis().url(), queues)
}

/// A broker on `url` under a fresh prefix, with the given queues.
pub fn broker_on(url: &str, queues: &[(&str, QueueConfig)]) -> Broker {
    let mut b = Broker::builder(url).prefix(fresh_prefix());
    for (name, cfg) in queues {
        b = b.queue(*name, cfg.clone());
    }
    b.build().expect("test broker")
}

/// A Redis Cluster of real redis-server processes on free loopback ports (each node's port
/// and its cluster bus port, port + 10000, both free), formed with `redis-cli --cluster
/// create`. Every node runs under the same watchdog as [`RedisServer`]; dropping the cluster
/// kills them.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`: a node's port, whether it is a primary, the primary it
/// replicates (a replica's), whether it is failing, and the slots it serves.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub port: u16,
    pub id: String,
    pub primary: bool,
    pub replica_of: Option<String>,
    pub failed: bool,
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts `primaries` primaries (1 or more) with `replicas` replicas each and waits until
    /// every node says `cluster_state:ok` and every replica is in sync. Three or more
    /// primaries are formed by `redis-cli --cluster create`; one or two (which it refuses) by
    /// hand, as `scripts/cluster.sh` does: each primary takes an even range of the slots
    /// (`CLUSTER ADDSLOTSRANGE`), the others `CLUSTER MEET` the first, and once every node
    /// knows every other each replica `CLUSTER REPLICATE`s its primary.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        assert!(primaries >= 1, "a cluster has at least one primary");
        let total = primaries * (1 + replicas);
        let mut nodes = Vec::with_capacity(total);
        while nodes.len() < total {
            nodes.push(RedisServer::start_node(
                "--cluster-enabled yes --cluster-config-file nodes.conf \
                 --cluster-node-timeout 2000",
            ));
        }
        let cluster = RedisCluster { nodes };
        if primaries >= 3 {
            cluster.create_with_redis_cli(replicas);
        } else {
            cluster.create_by_hand(primaries);
        }
        assert!(
            cluster.wait_ok(Duration::from_secs(30)),
            "the test cluster did not reach cluster_state:ok"
        );
        cluster
    }

    fn create_with_redis_cli(&self, replicas: usize) {
        let mut create =
            Command::new(std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into()));
        create.arg("--cluster").arg("create");
        for p in self.ports() {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create (is redis-tools installed?)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One or two primaries: the first `primaries` nodes take even slot ranges, the rest
    /// (replicas) follow them round robin.
    fn create_by_hand(&self, primaries: usize) {
        let ports = self.ports();
        let per = 16_384 / primaries;
        for (i, &port) in ports.iter().take(primaries).enumerate() {
            let lo = i * per;
            let hi = if i == primaries - 1 {
                16_383
            } else {
                (i + 1) * per - 1
            };
            let ok: Option<String> = self.node_command(
                port,
                &["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()],
            );
            assert!(ok.is_some(), "CLUSTER ADDSLOTSRANGE {lo} {hi} on {port}");
        }
        for &port in &ports[1..] {
            let ok: Option<String> = self.node_command(
                port,
                &["CLUSTER", "MEET", "127.0.0.1", &ports[0].to_string()],
            );
            assert!(ok.is_some(), "CLUSTER MEET from {port}");
        }
        if ports.len() == primaries {
            return;
        }
        // A replica can follow only a primary it knows: wait until every node knows all.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ports.iter().all(|&p| {
            self.node_command::<String>(p, &["CLUSTER", "NODES"])
                .is_some_and(|t| t.lines().count() == ports.len())
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster's nodes did not meet each other in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for (r, &port) in ports.iter().enumerate().skip(primaries) {
            let primary = ports[(r - primaries) % primaries];
            let id: String = self
                .node_command(primary, &["CLUSTER", "MYID"])
                .expect("CLUSTER MYID of a primary");
            let ok: Option<String> = self.node_command(port, &["CLUSTER", "REPLICATE", &id]);
            assert!(ok.is_some(), "CLUSTER REPLICATE from {port} to {primary}");
        }
    }

    /// Every node's port, live or not.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The seed nodes, as `TASKFLEET__REDIS__CLUSTER_NODES` takes them.
    pub fn nodes_setting(&self) -> String {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The deployment a broker on this cluster uses.
    pub fn deployment(&self) -> crate::broker::Deployment {
        crate::broker::Deployment::Cluster {
            nodes: self
                .ports()
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect(),
        }
    }

    fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.watchdog.is_some())
    }

    /// A command on one node; `None` if it did not answer.
    pub fn node_command<T: redis::FromRedisValue>(&self, port: u16, args: &[&str]) -> Option<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let (name, rest) = args.split_first()?;
        redis::cmd(name).arg(rest).query(&mut conn).ok()
    }

    /// The cluster as a live node sees it (`CLUSTER NODES`).
    pub fn topology(&self) -> Vec<ClusterNode> {
        for n in self.live() {
            if let Some(text) = self.node_command::<String>(n.port, &["CLUSTER", "NODES"]) {
                return text.lines().filter_map(parse_node_line).collect();
            }
        }
        Vec::new()
    }

    /// The ports of the current primaries that are not failing.
    pub fn primaries(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self
            .topology()
            .into_iter()
            .filter(|n| n.primary && !n.failed)
            .map(|n| n.port)
            .collect();
        p.sort();
        p
    }

    /// A replica of the primary on `port`.
    pub fn replica_of(&self, port: u16) -> Option<u16> {
        let nodes = self.topology();
        let id = nodes.iter().find(|n| n.port == port)?.id.clone();
        nodes
            .iter()
            .find(|n| n.replica_of.as_deref() == Some(id.as_str()) && !n.failed)
            .map(|n| n.port)
    }

    /// The port of the primary serving `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> Option<u16> {
        self.topology()
            .into_iter()
            .find(|n| {
                n.primary && !n.failed && n.slots.iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot))
            })
            .map(|n| n.port)
    }

    /// Whether every live node says `cluster_state:ok`, knows as many primaries as serve
    /// slots, and every live replica's link to its primary is up; waits up to `limit`.
    pub fn wait_ok(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let ok = self.live().all(|n| {
                let info: Option<String> = self.node_command(n.port, &["CLUSTER", "INFO"]);
                let repl: Option<String> = self.node_command(n.port, &["INFO", "replication"]);
                info.is_some_and(|i| i.contains("cluster_state:ok"))
                    && repl.is_some_and(|r| {
                        r.contains("role:master") || r.contains("master_link_status:up")
                    })
            });
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILLs the node on `port` (a crash); it stays down.
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
            .kill();
    }

    /// Sends `CLUSTER FAILOVER` to the replica on `port` and waits (up to `limit`) until it
    /// serves as a primary.
    pub fn failover(&self, replica: u16, limit: Duration) -> bool {
        let _ = self.node(replica);
        let _: Option<String> = self.node_command(replica, &["CLUSTER", "FAILOVER"]);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let role: Option<String> = self.node_command(replica, &["INFO", "replication"]);
            if role.is_some_and(|r| r.contains("role:master")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `INFO <section>` of one node.
    pub fn info(&self, port: u16, section: &str) -> String {
        self.node_command(port, &["INFO", section])
            .unwrap_or_default()
    }
}

fn parse_node_line(line: &str) -> Option<ClusterNode> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    // <id> <ip:port@bus> <flags> <primary id or -> <ping> <pong> <epoch> <link> <slots>...
    let port: u16 = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
    let flags = f[2];
    let slots = f[8..]
        .iter()
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| match s.split_once('-') {
            Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
            None => s.parse().ok().map(|x| (x, x)),
        })
        .collect();
    Some(ClusterNode {
        port,
        id: f[0].to_string(),
        primary: flags.contains("master"),
        replica_of: (f[3] != "-").then(|| f[3].to_string()),
        // `fail` or `fail?` (suspected).
        failed: flags.contains("fail"),
        slots,
    })
}

/// The 3-primary cluster shared by every test of this test binary, started on first use.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3, 0))
}

/// A broker on the shared cluster under a fresh prefix, with the given queues (16 shards
/// each unless a queue's config says otherwise).
pub fn cluster_broker(queues: &[(&str, QueueConfig)]) -> Broker {
    let mut b = Broker::builder_for(shared_cluster().deployment()).prefix(fresh_prefix());
    for (name, cfg) in queues {
        b = b.queue(*name, cfg.clone());
    }
    b.build().expect("test broker on the cluster")
}

/// The path of a workspace binary built by cargo (`target/<profile>/<name>`), next to the
/// running test executable.
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-hash → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir of the test executable");
    dir.join(name)
}

/// A TCP proxy in front of a Redis server that can swallow the server's replies: a call sent
/// through it while replies are dropped runs on the server, but its caller never hears back
/// (a reply lost on the network). Runs until dropped.
pub struct LossyProxy {
    port: u16,
    drop_replies: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    /// Starts a proxy to `127.0.0.1:upstream` on a free port (inside a tokio runtime).
    pub async fn start(upstream: u16) -> LossyProxy {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let drop_replies = Arc::new(AtomicBool::new(false));
        let flag = drop_replies.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let flag = flag.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if flag.load(Ordering::SeqCst) {
                                    continue;
                                }
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    up.abort();
                });
            }
        });
        LossyProxy {
            port,
            drop_replies,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// While true, the server's replies are swallowed.
    pub fn drop_replies(&self, yes: bool) {
        self.drop_replies.store(yes, Ordering::SeqCst);
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw command on the broker's server, for what a test sets up or inspects that no library
/// call does (a key of the wrong type, a registration whose key vanished, what is stored):
/// the harness speaks Redis, the test names keys through [`Broker::keys`].
pub async fn command<T: redis::FromRedisValue>(broker: &Broker, args: &[&str]) -> T {
    let (name, rest) = args.split_first().expect("a command");
    broker
        .with_conn(async |c| redis::cmd(name).arg(rest).query_async(c).await)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Every key under the broker's prefix (sorted: a cluster's nodes answer in any order), with
/// its Redis type and its contents (fields and values, members or the value, flattened), for
/// tests that check what is stored.
pub async fn dump(broker: &Broker) -> Vec<(String, String, Vec<String>)> {
    let pattern = format!("{}:*", broker.keys().prefix());
    let mut keys: Vec<String> = command(broker, &["KEYS", &pattern]).await;
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let t: String = command(broker, &["TYPE", &k]).await;
        let contents: Vec<String> = match t.as_str() {
            "hash" => command(broker, &["HGETALL", &k]).await,
            "set" => command(broker, &["SMEMBERS", &k]).await,
            "zset" => command(broker, &["ZRANGE", &k, "0", "-1"]).await,
            "list" => command(broker, &["LRANGE", &k, "0", "-1"]).await,
            "string" => vec![command::<String>(broker, &["GET", &k]).await],
            _ => Vec::new(),
        };
        out.push((k, t, contents));
    }
    out
}

/// How many keys exist under the broker's prefix.
pub async fn key_count(broker: &Broker) -> usize {
    let pattern = format!("{}:*", broker.keys().prefix());
    command::<Vec<String>>(broker, &["KEYS", &pattern])
        .await
        .len()
}

/// Flushes the server's script cache (what a restart or an operator's SCRIPT FLUSH does).
pub async fn flush_scripts(broker: &Broker) {
    command::<()>(broker, &["SCRIPT", "FLUSH"]).await
}

/// A worker listed in the registry whose heartbeat key is gone: what a crashed worker leaves.
pub async fn register_vanished_worker(broker: &Broker, id: &str, last_beat: i64) {
    let set = broker.keys().workers();
    command::<()>(broker, &["ZADD", &set, &last_beat.to_string(), id]).await
}

/// Administration of a server a test or the benchmark owns (INFO, SCRIPT LOAD, FLUSHALL,
/// CONFIG RESETSTAT), each call with a response timeout sized by its caller to what it does:
/// a `FLUSHALL SYNC` of a benchmark round's keys takes seconds on a busy machine, an INFO
/// waits behind many clients' commands.
pub struct Admin {
    conn: redis::aio::MultiplexedConnection,
}

impl Admin {
    /// Connects to `url` within `connect`.
    pub async fn connect(url: &str, connect: Duration) -> crate::Result<Admin> {
        let client = redis::Client::open(url)
            .map_err(|e| crate::Error::invalid("redis.url", e.to_string()))?;
        // No default response timeout: every call sets its own.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(None);
        Ok(Admin {
            conn: client
                .get_multiplexed_async_connection_with_config(&config)
                .await?,
        })
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        args: &[&str],
        limit: Duration,
    ) -> crate::Result<T> {
        let mut conn = self.conn.clone();
        conn.set_response_timeout(limit);
        let (name, rest) = args.split_first().expect("a command");
        Ok(redis::cmd(name).arg(rest).query_async(&mut conn).await?)
    }

    /// `INFO <section>` as text.
    pub async fn info(&self, section: &str, limit: Duration) -> crate::Result<String> {
        self.run(&["INFO", section], limit).await
    }

    /// Loads a script into the server's cache; its SHA1.
    pub async fn script_load(&self, body: &str, limit: Duration) -> crate::Result<String> {
        self.run(&["SCRIPT", "LOAD", body], limit).await
    }

    /// Deletes every key, freeing the memory before it answers (the script cache stays).
    pub async fn flush_all(&self, limit: Duration) -> crate::Result<()> {
        self.run(&["FLUSHALL", "SYNC"], limit).await
    }

    /// Zeroes the per-command counters of `INFO commandstats`.
    pub async fn reset_stats(&self, limit: Duration) -> crate::Result<()> {
        self.run(&["CONFIG", "RESETSTAT"], limit).await
    }
}
