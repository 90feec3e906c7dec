//! The redis-server a run starts on a free loopback port (never 6379), killed when dropped,
//! and the figures it reports about itself: `INFO memory` and `INFO cpu`.

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use taskfleet::testing::RedisServer;

/// A redis-server owned by this run, with one connection for INFO and SCRIPT LOAD.
pub struct Server {
    redis: RedisServer,
    conn: MultiplexedConnection,
}

impl Server {
    /// Starts a fresh redis-server (no persistence, `noeviction`) on a free port.
    pub async fn start() -> Result<Server> {
        // RedisServer::start polls the port synchronously: keep it off the runtime's threads.
        let redis = tokio::task::spawn_blocking(RedisServer::start).await?;
        let client = redis::Client::open(redis.url())?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .context("connecting to the bench redis-server")?;
        Ok(Server { redis, conn })
    }

    pub fn url(&self) -> String {
        self.redis.url()
    }

    pub fn port(&self) -> u16 {
        self.redis.port()
    }

    /// One field of `INFO <section>`, as text.
    pub async fn info_field(&mut self, section: &str, field: &str) -> Result<String> {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.conn)
            .await?;
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
        Ok(redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(body)
            .query_async(&mut self.conn)
            .await?)
    }

    /// Deletes every key (`FLUSHALL SYNC`; the script cache stays): between rounds, so that
    /// each round starts from the same empty keyspace.
    pub async fn flush(&mut self) -> Result<()> {
        let _: () = redis::cmd("FLUSHALL")
            .arg("SYNC")
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Zeroes the per-command counters (`CONFIG RESETSTAT`).
    pub async fn reset_stats(&mut self) -> Result<()> {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// `INFO commandstats`: calls and microseconds per command since the last reset,
    /// commands run inside scripts included.
    pub async fn command_stats(&mut self) -> Result<Vec<CommandStat>> {
        let text: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn)
            .await?;
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
