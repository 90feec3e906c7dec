//! The command line: `taskfleet-api [--listen ADDR] [--redis-url URL] [--test-processors]`
//! serves the API; `taskfleet-api keys create|list|revoke` manages API keys.
//!
//! Shutdown order on SIGTERM/SIGINT: stop accepting connections, end the event streams (they
//! would otherwise hold the drain open for up to their lifetime), let in-flight requests finish
//! for up to [`DRAIN_TIMEOUT`], then exit 0 (the accept loop is [`crate::server`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use taskfleet::{Broker, Settings};

use crate::state::{AppState, Options};
use taskfleet::Role;

pub use crate::server::DRAIN_TIMEOUT;

#[derive(Debug, Parser)]
#[command(name = "taskfleet-api", version, about = "taskfleet REST API")]
pub struct Cli {
    /// Settings file (default: ./taskfleet.toml if present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Redis URL (also REDIS_URL, TASKFLEET__REDIS__URL).
    #[arg(long, global = true)]
    pub redis_url: Option<String>,
    /// Address to listen on (also TASKFLEET__API__LISTEN).
    #[arg(long)]
    pub listen: Option<String>,
    /// Also serve the queue `test` of the worker's test processors (end-to-end tests).
    #[arg(long, env = "TASKFLEET__API__TEST_PROCESSORS",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub test_processors: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Prints the OpenAPI document (what GET /openapi.json serves) and exits: the input of the
    /// generated clients (clients/typescript), without a running server or Redis.
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key; prints only the key, once, on stdout.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        user: String,
        /// An admin key (queue start, stop, cleanup; sees every account's tasks).
        #[arg(long, conflicts_with = "account_admin")]
        admin: bool,
        /// An account admin's key: every task of its account, any user's (not the admin
        /// endpoints). Without --admin or --account-admin: a user's key (its own tasks only).
        #[arg(long)]
        account_admin: bool,
        /// A label for `keys list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Lists keys by id (a prefix of the key's SHA-256), never the keys themselves.
    List,
    /// Revokes a key, given as the key or its id from `keys list`.
    Revoke { key_or_id: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut s = Settings::load(cli.config.as_deref())?;
    if let Some(url) = &cli.redis_url {
        s.redis.url = url.clone();
    }
    if let Some(listen) = &cli.listen {
        s.api.listen = listen.clone();
    }
    Ok(s)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Openapi) = cli.command {
        println!("{}", crate::openapi::document_json());
        return Ok(());
    }
    let settings = settings(&cli)?;
    match cli.command {
        None => {
            serve(
                settings,
                Options {
                    test_processors: cli.test_processors,
                },
            )
            .await
        }
        Some(Command::Keys { action }) => keys(&settings, action).await,
        Some(Command::Openapi) => unreachable!("answered before the settings are read"),
    }
}

async fn keys(settings: &Settings, action: KeysCommand) -> anyhow::Result<()> {
    let broker = Broker::from_settings(settings)?;
    match action {
        KeysCommand::Create {
            account,
            user,
            admin,
            account_admin,
            name,
        } => {
            let now = broker.server_time_ms().await.context("reading Redis")?;
            let role = match (admin, account_admin) {
                (true, _) => Role::Admin,
                (false, true) => Role::AccountAdmin,
                (false, false) => Role::User,
            };
            let key = broker
                .create_api_key(&account, &user, role, &name, now)
                .await?;
            println!("{key}");
        }
        KeysCommand::List => {
            println!("id\taccount\tuser\trole\tname\tcreated_at");
            for k in broker.api_keys().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    &k.sha256[..12],
                    k.account_id,
                    k.user_id,
                    k.role.as_str(),
                    k.name,
                    k.created_at
                );
            }
        }
        KeysCommand::Revoke { key_or_id } => {
            let sha = broker.revoke_api_key(&key_or_id).await?;
            eprintln!("revoked {}", &sha[..12]);
        }
    }
    Ok(())
}

/// Serves until SIGTERM or SIGINT.
pub async fn serve(settings: Settings, options: Options) -> anyhow::Result<()> {
    let state = AppState::new(&settings, options).await?;
    // A deployment that is not what the settings say (a cluster named as a single server, a
    // dead seed node, a shard count that disagrees with Redis's) stops the API here; a
    // Redis that does not answer yet does not: `/ready` says 503 and checks again.
    match state.check_deployment().await {
        Err(e @ taskfleet::Error::InvalidInput { .. }) => {
            return Err(anyhow::Error::new(e).context("the redis deployment"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "redis does not answer yet; /ready says 503 until it does")
        }
        Ok(()) => {}
    }
    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .with_context(|| format!("listening on {}", settings.api.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        redis = %redact(&settings.redis.url),
        prefix = %settings.redis.prefix,
        test_processors = state.test_processors,
        "taskfleet-api listening"
    );
    if state.admin_key_sha.is_some() {
        tracing::info!("admin key from TASKFLEET__AUTH__ADMIN_KEY is active");
    }
    tokio::spawn(follow_redis_clock(state.clone()));
    tokio::spawn(cancel_on_signal(state.shutdown.clone()));
    crate::server::serve(listener, state).await;
    tracing::info!("taskfleet-api stopped");
    Ok(())
}

/// The clock follows Redis's `TIME` once Redis answers (the API may start before Redis).
async fn follow_redis_clock(state: AppState) {
    while !state.clock.try_sync(&state.broker).await {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
    if let Some(clock) = state.clock.redis() {
        clock
            .run(state.broker.clone(), state.shutdown.clone())
            .await;
    }
}

async fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "no SIGTERM handler");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: draining requests");
    token.cancel();
}

/// A Redis URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_key_commands_parse() {
        let cli = Cli::try_parse_from([
            "taskfleet-api",
            "--listen",
            "127.0.0.1:9000",
            "--test-processors",
        ])
        .unwrap();
        assert!(cli.test_processors);
        assert_eq!(cli.listen.as_deref(), Some("127.0.0.1:9000"));
        let cli = Cli::try_parse_from([
            "taskfleet-api",
            "keys",
            "create",
            "--account",
            "a",
            "--user",
            "u",
            "--admin",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Keys {
                action: KeysCommand::Create { admin: true, .. }
            })
        ));
        let cli = Cli::try_parse_from([
            "taskfleet-api",
            "keys",
            "create",
            "--account",
            "a",
            "--user",
            "u",
            "--account-admin",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Keys {
                action: KeysCommand::Create {
                    account_admin: true,
                    admin: false,
                    ..
                }
            })
        ));
        let both = Cli::try_parse_from([
            "taskfleet-api",
            "keys",
            "create",
            "--account",
            "a",
            "--user",
            "u",
            "--admin",
            "--account-admin",
        ]);
        assert!(both.is_err(), "a key has one role");
    }

    #[test]
    fn redis_passwords_stay_out_of_logs() {
        assert_eq!(
            redact("redis://:hunter2@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6390"), "redis://127.0.0.1:6390");
    }
}
