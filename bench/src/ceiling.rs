//! The machine's ceiling on the same server in the same run: `redis-benchmark` of `SET` and of
//! `EVALSHA` of a one-line script (`return 1`), 50 clients, no pipelining, and the same EVALSHA
//! from one client (`-c 1`), the ceiling of one call at a time. Every taskfleet case is
//! reported as a ratio to the 50-client EVALSHA figure: each of our calls is one EVALSHA.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::server::Server;

/// The script whose EVALSHA is the ceiling: the cheapest possible script call.
pub const TRIVIAL_SCRIPT: &str = "return 1";
/// A redis-benchmark run that has not finished by then is killed and reported as an error.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// One redis-benchmark figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceiling {
    /// What redis-benchmark ran, as it names it (`SET`, `EVALSHA <sha> 0`).
    pub test: String,
    pub ops_per_sec: f64,
    /// redis-benchmark's own p50 in ms, when it prints one.
    pub p50_ms: Option<f64>,
    /// Redis CPU microseconds per operation during the run (0 until measured).
    pub server_us_per_op: f64,
}

/// The ceilings of one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceilings {
    pub set: Ceiling,
    /// EVALSHA of `return 1` from `clients` clients: the ceiling every ratio uses.
    pub evalsha: Ceiling,
    /// The same EVALSHA from one client, one request at a time: what one call at a time can
    /// reach on this machine (a round trip per call, nothing overlapping).
    pub evalsha_one_client: Ceiling,
}

/// How redis-benchmark is run.
#[derive(Debug, Clone)]
pub struct CeilingArgs {
    pub clients: usize,
    pub requests: usize,
    /// The redis-benchmark binary.
    pub bin: String,
}

impl CeilingArgs {
    /// The same binary, one client, `requests` requests.
    pub fn one_client(&self, requests: usize) -> CeilingArgs {
        CeilingArgs {
            clients: 1,
            requests: requests.max(1),
            bin: self.bin.clone(),
        }
    }

    /// The command line of one run, for the report.
    pub fn command(&self, test: &[&str]) -> String {
        let mut parts = vec![
            self.bin.clone(),
            "-p PORT".into(),
            format!("-c {}", self.clients),
            format!("-n {}", self.requests),
            "-q".into(),
        ];
        parts.extend(test.iter().map(|s| s.to_string()));
        parts.join(" ")
    }
}

/// Runs redis-benchmark of SET, then of EVALSHA of [`TRIVIAL_SCRIPT`] (loaded first), then
/// of the same EVALSHA from one client with `one_client_requests` requests.
pub async fn measure(
    server: &mut Server,
    args: &CeilingArgs,
    one_client_requests: usize,
) -> Result<Ceilings> {
    let sha = server.script_load(TRIVIAL_SCRIPT).await?;
    let set = run_measured(server, args, &["-t", "set"]).await?;
    let evalsha = run_measured(server, args, &["EVALSHA", &sha, "0"]).await?;
    let one = args.one_client(one_client_requests);
    let evalsha_one_client = run_measured(server, &one, &["EVALSHA", &sha, "0"]).await?;
    Ok(Ceilings {
        set,
        evalsha,
        evalsha_one_client,
    })
}

/// [`run`], with the server's CPU time per operation.
pub async fn run_measured(
    server: &mut Server,
    args: &CeilingArgs,
    test: &[&str],
) -> Result<Ceiling> {
    let cpu = server.cpu_seconds().await?;
    let mut c = run(server.port(), args, test).await?;
    let used = server.cpu_seconds().await? - cpu;
    c.server_us_per_op = used * 1e6 / args.requests.max(1) as f64;
    Ok(c)
}

/// One redis-benchmark run of `test` (either `-t name` or a literal command).
pub async fn run(port: u16, args: &CeilingArgs, test: &[&str]) -> Result<Ceiling> {
    let mut cmd = Command::new(&args.bin);
    cmd.arg("-h")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .arg("-c")
        .arg(args.clients.to_string())
        .arg("-n")
        .arg(args.requests.to_string())
        .arg("-q")
        .args(test)
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("redis-benchmark {test:?} ran longer than {RUN_TIMEOUT:?}"))?
        .with_context(|| format!("running {} (is redis-tools installed?)", args.bin))?;
    if !out.status.success() {
        bail!(
            "redis-benchmark {test:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("redis-benchmark {test:?} printed no result"))
}

/// Reads the final `NAME: N requests per second, p50=X msec` line of a `-q` run; the progress
/// lines before it are separated by carriage returns.
pub fn parse(output: &str) -> Option<Ceiling> {
    let line = output
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?;
    let (test, rest) = line.rsplit_once(": ")?;
    let ops_per_sec = rest.split_whitespace().next()?.parse().ok()?;
    let p50_ms = rest
        .split_once("p50=")
        .and_then(|(_, p)| p.split_whitespace().next())
        .and_then(|p| p.parse().ok());
    Some(Ceiling {
        test: test.trim().to_string(),
        ops_per_sec,
        p50_ms,
        server_us_per_op: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_the_final_line_after_the_progress_lines() {
        let out = "\rSET: rps=0.0 (overall: 0.0) avg_msec=-nan (overall: -nan)\r      \r\
                   SET: 87719.30 requests per second, p50=0.287 msec\n\n";
        let c = parse(out).unwrap();
        assert_eq!(c.test, "SET");
        assert_eq!(c.ops_per_sec, 87719.30);
        assert_eq!(c.p50_ms, Some(0.287));
    }

    #[test]
    fn parse_keeps_a_literal_command_with_its_arguments() {
        let out = "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 0: 95693.77 requests per second, p50=0.279 msec\n";
        let c = parse(out).unwrap();
        assert_eq!(c.test, "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 0");
        assert_eq!(c.ops_per_sec, 95693.77);
    }

    #[test]
    fn parse_gives_nothing_without_a_result_line() {
        assert_eq!(parse("Could not connect to Redis at 127.0.0.1:1\n"), None);
    }
}
