//! The worker registry: each worker's heartbeat hash `tf:{workers}:worker:<id>` (with a TTL: it expires
//! when the worker stops beating) and its score in `tf:{workers}:all` (the last beat). Workers write
//! it, recoverers find dead workers in it, the API shows the live ones. The only code that
//! reads or writes those keys.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::error::Result;
use crate::task::Millis;

/// One worker, as its heartbeat describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: Option<u32>,
    /// The types it claims; empty = every type.
    pub types: Vec<String>,
    pub concurrency: u32,
    pub started_at: Option<Millis>,
    /// Tasks it runs now.
    pub in_flight: u32,
    /// When it last beat (its estimate of the server's time).
    pub last_beat: Option<Millis>,
}

impl WorkerInfo {
    /// Whether it claims tasks of `task_type`.
    pub fn serves(&self, task_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == task_type || t == "*")
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.clone()),
            ("host", self.host.clone()),
            ("pid", self.pid.map(|p| p.to_string()).unwrap_or_default()),
            ("types", self.types.join(",")),
            ("concurrency", self.concurrency.to_string()),
            (
                "started_at",
                self.started_at.map(|t| t.to_string()).unwrap_or_default(),
            ),
            ("in_flight", self.in_flight.to_string()),
            (
                "last_beat",
                self.last_beat.map(|t| t.to_string()).unwrap_or_default(),
            ),
        ]
    }

    fn from_hash(id: String, mut h: HashMap<String, String>) -> WorkerInfo {
        let num = |v: Option<String>| v.and_then(|s| s.parse::<i64>().ok());
        WorkerInfo {
            id,
            host: h.remove("host").unwrap_or_default(),
            pid: num(h.remove("pid")).map(|p| p as u32),
            types: h
                .remove("types")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            concurrency: num(h.remove("concurrency")).unwrap_or(1).max(0) as u32,
            started_at: num(h.remove("started_at")),
            in_flight: num(h.remove("in_flight")).unwrap_or(0).max(0) as u32,
            last_beat: num(h.remove("last_beat")),
        }
    }
}

impl Broker {
    /// Writes a worker's heartbeat: its hash, alive for `ttl`, and its score in the registry.
    pub async fn register_worker(&self, w: &WorkerInfo, ttl: Duration) -> Result<()> {
        let k = self.keys();
        let key = k.worker(&w.id);
        let set = k.workers();
        let fields = w.fields();
        let score = w.last_beat.unwrap_or(0);
        let ttl_ms = ttl.as_millis().max(1) as i64;
        self.with_conn(async |c| {
            redis::pipe()
                .atomic()
                .hset_multiple(&key, &fields)
                .ignore()
                .pexpire(&key, ttl_ms)
                .ignore()
                .zadd(&set, &w.id, score)
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
    }

    /// A worker that stops says so: its leases need not wait to expire.
    pub async fn unregister_worker(&self, id: &str) -> Result<()> {
        let k = self.keys();
        let key = k.worker(id);
        let set = k.workers();
        self.with_conn(async |c| {
            redis::pipe()
                .del(&key)
                .ignore()
                .zrem(&set, id)
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
    }

    /// Registered workers (at most `limit`: the newest beats first, or the oldest first when
    /// looking for dead ones), each with its heartbeat, `None` if its key is gone (the worker
    /// stopped beating or said it stopped). Two round trips.
    async fn registered(
        &self,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<(String, Option<WorkerInfo>)>> {
        let set = self.keys().workers();
        let range = if newest_first { "ZREVRANGE" } else { "ZRANGE" };
        let ids: Vec<String> = self
            .with_conn(async |c| {
                redis::cmd(range)
                    .arg(&set)
                    .arg(0)
                    .arg(limit as i64 - 1)
                    .query_async(c)
                    .await
            })
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.keys().worker(id));
        }
        let hashes: Vec<HashMap<String, String>> =
            self.with_conn(async |c| pipe.query_async(c).await).await?;
        Ok(ids
            .into_iter()
            .zip(hashes)
            .map(|(id, h)| {
                let info = (!h.is_empty()).then(|| WorkerInfo::from_hash(id.clone(), h));
                (id, info)
            })
            .collect())
    }

    /// The live workers, newest heartbeat first, at most `limit`.
    pub async fn live_workers(&self, limit: usize) -> Result<Vec<WorkerInfo>> {
        Ok(self
            .registered(true, limit)
            .await?
            .into_iter()
            .filter_map(|(_, w)| w)
            .collect())
    }

    /// Workers still listed whose heartbeat key is gone, oldest beat first, among the
    /// `limit` oldest registered.
    pub async fn dead_workers(&self, limit: usize) -> Result<Vec<String>> {
        Ok(self
            .registered(false, limit)
            .await?
            .into_iter()
            .filter(|(_, w)| w.is_none())
            .map(|(id, _)| id)
            .collect())
    }

    /// Takes workers off the registry (after their tasks were recovered).
    pub async fn forget_workers(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let set = self.keys().workers();
        self.with_conn(async |c| {
            redis::cmd("ZREM")
                .arg(&set)
                .arg(ids)
                .query_async::<()>(c)
                .await
        })
        .await
    }
}
