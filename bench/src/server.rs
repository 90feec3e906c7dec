//! The redis-server a run starts on a free loopback port (never 6379), killed when dropped,
//! and the figures it reports about itself: `INFO memory` and `INFO cpu`.
//!
//! The bench's own admin calls (INFO, CONFIG, SCRIPT LOAD, FLUSHALL) each get a response
//! timeout sized to what the call does, not redis-rs's default of 500 ms: on a slower or busier
//! machine a `FLUSHALL SYNC` of a round's keys (a few hundred MB) takes seconds, and an INFO
//! waits behind 50 benchmark clients' commands.

use std::time::Duration;

use anyhow::{Context, Result};
use taskfleet::testing::{Admin, RedisServer};

/// Connecting to the run's own redis-server on loopback.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// INFO and CONFIG RESETSTAT: a read or a reset of counters, answered as soon as the server
/// gets to it, which under load can be after a queue of benchmark commands.
const INFO_TIMEOUT: Duration = Duration::from_secs(10);
/// SCRIPT LOAD: compiles one script (the largest is a few KB of Lua).
const SCRIPT_LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// FLUSHALL SYNC between rounds frees every key of the round in the server's main thread:
/// several hundred thousand task hashes and index entries, a second or more on 2 cores,
/// and on a slower or busier machine past redis-rs's default 500 ms many times over.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// A redis-server owned by this run, with the harness's admin connection for INFO, SCRIPT
/// LOAD, FLUSHALL and CONFIG.
pub struct Server {
    redis: RedisServer,
    admin: Admin,
}

impl Server {
    /// Starts a fresh redis-server (no persistence, `noeviction`) on a free port.
    pub async fn start() -> Result<Server> {
        // RedisServer::start polls the port synchronously: keep it off the runtime's threads.
        let redis = tokio::task::spawn_blocking(RedisServer::start).await?;
        let admin = Admin::connect(&redis.url(), CONNECT_TIMEOUT)
            .await
            .context("connecting to the bench redis-server")?;
        Ok(Server { redis, admin })
    }

    pub fn url(&self) -> String {
        self.redis.url()
    }

    pub fn port(&self) -> u16 {
        self.redis.port()
    }

    /// One field of `INFO <section>`, as text.
    pub async fn info_field(&self, section: &str, field: &str) -> Result<String> {
        let text = self
            .admin
            .info(section, INFO_TIMEOUT)
            .await
            .with_context(|| format!("INFO {section} (limit {INFO_TIMEOUT:?})"))?;
        info_value(&text, field).with_context(|| format!("INFO {section} has no {field}"))
    }

    /// `used_memory` in bytes.
    pub async fn used_memory(&mut self) -> Result<u64> {
        Ok(self.info_field("memory", "used_memory").await?.parse()?)
    }

    /// CPU seconds the server has used (user + system, all threads).
    pub async fn cpu_seconds(&mut self) -> Result<f64> {
        let user: f64 = self.info_field("cpu", "used_cpu_user").await?.parse()?;
        let sys: f64 = self.info_field("cpu", "used_cpu_sys").await?.parse()?;
        Ok(user + sys)
    }

    pub async fn version(&mut self) -> Result<String> {
        self.info_field("server", "redis_version").await
    }

    /// Loads a Lua script into the server's cache; returns its SHA1 for EVALSHA.
    pub async fn script_load(&mut self, body: &str) -> Result<String> {
        self.admin
            .script_load(body, SCRIPT_LOAD_TIMEOUT)
            .await
            .with_context(|| format!("SCRIPT LOAD (limit {SCRIPT_LOAD_TIMEOUT:?})"))
    }

    /// Deletes every key (`FLUSHALL SYNC`; the script cache stays): between rounds, so that
    /// each round starts from the same empty keyspace. SYNC, not ASYNC: the memory is free
    /// when this returns, so no background freeing takes CPU from the next round's ceiling.
    pub async fn flush(&mut self) -> Result<()> {
        self.admin
            .flush_all(FLUSH_TIMEOUT)
            .await
            .with_context(|| format!("FLUSHALL SYNC (limit {FLUSH_TIMEOUT:?})"))
    }

    /// Zeroes the per-command counters (`CONFIG RESETSTAT`).
    pub async fn reset_stats(&mut self) -> Result<()> {
        self.admin
            .reset_stats(INFO_TIMEOUT)
            .await
            .with_context(|| format!("CONFIG RESETSTAT (limit {INFO_TIMEOUT:?})"))
    }

    /// `INFO commandstats`: calls and microseconds per command since the last reset,
    /// commands run inside scripts included.
    pub async fn command_stats(&mut self) -> Result<Vec<CommandStat>> {
        let text = self
            .admin
            .info("commandstats", INFO_TIMEOUT)
            .await
            .with_context(|| format!("INFO commandstats (limit {INFO_TIMEOUT:?})"))?;
        Ok(parse_command_stats(&text))
    }
}

/// One line of `INFO commandstats`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandStat {
    /// Lower case, as Redis names it (`evalsha`, `hset`, `config|resetstat`).
    pub name: String,
    pub calls: u64,
    pub usec: u64,
}

/// Reads `cmdstat_<name>:calls=N,usec=N,...` lines.
pub fn parse_command_stats(info: &str) -> Vec<CommandStat> {
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |f: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
            };
            Some(CommandStat {
                name: name.to_string(),
                calls: field("calls")?,
                usec: field("usec")?,
            })
        })
        .collect()
}

/// The value of `field` in the `field:value` lines of an INFO reply.
pub fn info_value(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == field).then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_value_finds_a_field_by_its_exact_name() {
        let info = "# Memory\r\nused_memory:1234\r\nused_memory_human:1.21K\r\n";
        assert_eq!(info_value(info, "used_memory").as_deref(), Some("1234"));
        assert_eq!(info_value(info, "used_memory_rss"), None);
    }

    #[test]
    fn command_stats_are_read_per_command() {
        let info = "# Commandstats\r\n\
            cmdstat_hset:calls=200,usec=300,usec_per_call=1.50,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_config|resetstat:calls=1,usec=9,usec_per_call=9.00,rejected_calls=0,failed_calls=0\r\n";
        let s = parse_command_stats(info);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[0].calls, s[0].usec),
            ("hset", 200, 300)
        );
        assert_eq!(s[1].name, "config|resetstat");
    }
}
