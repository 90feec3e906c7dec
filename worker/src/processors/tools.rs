//! The external programs processors run (espeak-ng, ffmpeg): finding them, and running one as a
//! child process that dies with its task and sees none of the worker's environment.
//!
//! Why the environment is cleared: the worker's holds the Redis URL (with its password), the
//! providers' API keys and the object store's credentials. A child gets [`CHILD_ENV`] only,
//! what a program needs to find itself, its data and its locale; an ffmpeg or espeak-ng fed
//! hostile input, or anything they run, has nothing of ours to read.
//!
//! Why kill and wait rather than just drop: `kill_on_drop` alone sends SIGKILL but leaves the
//! reaping to tokio's background orphan queue, so for a moment a zombie is still listed. On
//! cancellation we kill *and* wait, so when `run` returns the child is gone; `kill_on_drop`
//! stays as the backstop for a future that is dropped mid-run (a timed-out task).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::TaskError;

/// The external programs processors use, by path or by name looked up in `PATH`.
#[derive(Debug, Clone)]
pub struct Tools {
    pub espeak: PathBuf,
    pub ffmpeg: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            espeak: PathBuf::from(ESPEAK),
            ffmpeg: PathBuf::from(FFMPEG),
        }
    }
}

pub const ESPEAK: &str = "espeak-ng";
pub const FFMPEG: &str = "ffmpeg";

/// The worker's environment variables a child process gets (when set): where programs are, a
/// home and a temp directory, the locale, and where espeak-ng's voices are when not in the
/// default place. Nothing else.
pub const CHILD_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "ESPEAK_DATA_PATH",
];

/// A command for `tool` with the environment cleared but for [`CHILD_ENV`].
pub fn command(tool: &Path) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env_clear();
    for k in CHILD_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd
}

impl Tools {
    /// Fails `Permanent`, naming the program, if `tool` cannot be found.
    pub fn require(&self, tool: &Path, name: &str, for_type: &str) -> Result<(), TaskError> {
        if resolve(tool).is_some() {
            Ok(())
        } else {
            Err(TaskError::Permanent(missing_message(name, tool, for_type)))
        }
    }

    pub fn require_espeak(&self, for_type: &str) -> Result<(), TaskError> {
        self.require(&self.espeak, ESPEAK, for_type)
    }

    pub fn require_ffmpeg(&self, for_type: &str) -> Result<(), TaskError> {
        self.require(&self.ffmpeg, FFMPEG, for_type)
    }

    /// The programs that cannot be found.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if resolve(&self.espeak).is_none() {
            out.push(ESPEAK);
        }
        if resolve(&self.ffmpeg).is_none() {
            out.push(FFMPEG);
        }
        out
    }
}

/// Where the program was looked for goes to the log, not into the task's error.
fn missing_message(name: &str, tool: &Path, for_type: &str) -> String {
    tracing::warn!(program = name, path = %tool.display(), "program not found");
    let package = if name == ESPEAK {
        "espeak-ng"
    } else {
        "ffmpeg"
    };
    format!(
        "{name} is not installed on this worker; {for_type} needs it \
         (Debian/Ubuntu: apt-get install {package})"
    )
}

/// The executable a tool path names: itself if it has a directory part, else the first match
/// in `PATH`.
pub fn resolve(tool: &Path) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if tool.components().count() > 1 {
        return is_exec(tool).then(|| tool.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| is_exec(p))
}

/// Runs `tool` with `args`, feeding it `stdin`; returns its stdout. Cancellation kills it and
/// returns `Retry("cancelled")` (the runner discards the outcome of a cancelled task). A
/// missing program is `Permanent`; a non-zero exit is `Permanent` (our inputs are generated, so
/// a failure would fail again), unless a signal killed it. The error stored on the task says
/// only what failed (`ffmpeg failed (exit 1)`): the end of the program's stderr, which names
/// scratch files and may echo anything, goes to the worker's log at warn.
pub async fn run<I, S>(
    cancel: &CancellationToken,
    tool: &Path,
    name: &str,
    args: I,
    stdin: Option<Vec<u8>>,
) -> Result<Vec<u8>, TaskError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    if cancel.is_cancelled() {
        return Err(TaskError::Retry("cancelled".into()));
    }
    let mut child = command(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TaskError::Permanent(missing_message(name, tool, "this task"))
            } else {
                tracing::warn!(program = name, path = %tool.display(), error = %e, "could not start");
                TaskError::Retry(format!("could not start {name}"))
            }
        })?;
    let feeder = match (stdin, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => Some(tokio::spawn(async move {
            // A child that exits early closes the pipe: not our error to report.
            let _ = pipe.write_all(&bytes).await;
            let _ = pipe.shutdown().await;
        })),
        _ => None,
    };
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = tokio::spawn(async move {
        let mut o = Vec::new();
        let mut e = Vec::new();
        let _ = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
        (o, e)
    });
    let status = tokio::select! {
        s = child.wait() => s,
        _ = cancel.cancelled() => {
            // Kill and reap, so nothing of this task outlives it.
            let _ = child.kill().await;
            if let Some(f) = feeder { f.abort(); }
            reader.abort();
            return Err(TaskError::Retry("cancelled".into()));
        }
    }
    .map_err(|e| TaskError::Retry(format!("waiting for {name}: {e}")))?;
    if let Some(f) = feeder {
        let _ = f.await;
    }
    let (stdout, stderr) = reader.await.unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&stderr);
    let tail: String = {
        let t = stderr.trim();
        let start = t.char_indices().rev().nth(600).map(|(i, _)| i).unwrap_or(0);
        t[start..].to_string()
    };
    tracing::warn!(program = name, status = %status, stderr = %tail, "program failed");
    match status.code() {
        Some(code) => Err(TaskError::Permanent(format!("{name} failed (exit {code})"))),
        None => Err(TaskError::Retry(format!("{name} was killed by a signal"))),
    }
}

/// A scratch directory of one attempt, removed when dropped. Each attempt starts from an
/// empty one, so a retried attempt never sees half-written files of an earlier one.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub async fn new(base: &Path, attempt: u32) -> Result<Scratch, TaskError> {
        let path = base.join(format!("work-{attempt}-{:x}", rand::random::<u32>()));
        tokio::fs::create_dir_all(&path).await.map_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "could not create a scratch directory");
            TaskError::Retry(format!("could not create a scratch directory: {}", e.kind()))
        })?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// An I/O failure on the worker's own disk: worth another attempt. The error's kind (`no
/// space left on device`, `permission denied`) is what the task says; std's messages carry no
/// path, and the log has the rest.
pub fn io_retry(what: &str) -> impl Fn(std::io::Error) -> TaskError + '_ {
    move |e| {
        tracing::warn!(error = %e, "{what}");
        TaskError::Retry(format!("{what}: {}", e.kind()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_finds_programs_in_path_and_not_missing_ones() {
        assert!(resolve(Path::new("sh")).is_some());
        assert!(resolve(Path::new("/nonexistent/ffmpeg")).is_none());
        assert!(resolve(Path::new("no-such-program-tf")).is_none());
    }

    #[tokio::test]
    async fn run_returns_stdout_and_names_a_missing_program() {
        let c = CancellationToken::new();
        let out = run(&c, Path::new("cat"), "cat", ["-"], Some(b"hello".to_vec()))
            .await
            .unwrap();
        assert_eq!(out, b"hello");
        let e = run(&c, Path::new("/nonexistent/ffmpeg"), "ffmpeg", ["-h"], None)
            .await
            .unwrap_err();
        assert!(matches!(&e, TaskError::Permanent(m) if m.contains("ffmpeg is not installed")));
        let e = run(
            &c,
            Path::new("sh"),
            "sh",
            ["-c", "echo bad things in /tmp/x/y >&2; exit 3"],
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(e, TaskError::Permanent("sh failed (exit 3)".into()));
    }

    #[tokio::test]
    async fn a_child_gets_only_the_essential_environment() {
        // This test process has cargo's CARGO_* variables and more: none may reach the child.
        let c = CancellationToken::new();
        let out = run(&c, Path::new("env"), "env", Vec::<&str>::new(), None)
            .await
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        let keys: Vec<&str> = out.lines().filter_map(|l| l.split('=').next()).collect();
        assert!(keys.contains(&"PATH"), "{out}");
        for k in keys {
            assert!(CHILD_ENV.contains(&k), "{k} reached the child: {out}");
        }
    }

    #[tokio::test]
    async fn cancellation_kills_the_child() {
        let c = CancellationToken::new();
        let c2 = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            c2.cancel();
        });
        let e = run(&c, Path::new("sleep"), "sleep", ["30"], None)
            .await
            .unwrap_err();
        assert_eq!(e, TaskError::Retry("cancelled".into()));
    }
}
