//! `patchman-agent`: thin. Parses arguments, refuses root, drops every
//! capability, sets up logging (and, for `run`, signals), runs the command.
#![forbid(unsafe_code)]

use std::sync::mpsc;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use patchman_agent::cli::{self, Command};
use patchman_agent::daemon::{self, Event};
use patchman_agent::restart::Relaunch;
use patchman_agent::schedule::Urandom;
use patchman_agent::{commands, privs};

fn main() {
    // First, while the path still names the running binary.
    let relaunch = Relaunch::at_start();
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("patchman-agent: {e}");
            std::process::exit(2);
        }
    };
    match args.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            return;
        }
        Command::Version => {
            println!("patchman-agent {}", patchman_agent::VERSION);
            return;
        }
        _ => {}
    }
    if let Err(e) = privs::refuse_root().and_then(|()| privs::drop_all()) {
        eprintln!("patchman-agent: {e}");
        std::process::exit(commands::EXIT_FAILED);
    }
    let code = match args.command {
        Command::Status { json } => {
            init_logging(false);
            commands::status(
                &args.socket,
                &args.config,
                &args.state_dir,
                &args.server_group,
                json,
            )
        }
        Command::Check => {
            init_logging(false);
            commands::check(&args.socket)
        }
        Command::Update => {
            init_logging(false);
            commands::update(&args, relaunch.as_ref().ok())
        }
        Command::Confirm => {
            init_logging(false);
            commands::confirm(&args.socket, &args.config, &args.state_dir)
        }
        Command::Run => match run_daemon(&args, relaunch) {
            Ok(()) => commands::EXIT_OK,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "patchman-agent daemon stopped");
                eprintln!("patchman-agent: {e:#}");
                commands::EXIT_FAILED
            }
        },
        Command::Help | Command::Version => commands::EXIT_OK,
    };
    std::process::exit(code);
}

fn run_daemon(args: &cli::Args, relaunch: std::io::Result<Relaunch>) -> Result<()> {
    // Before any thread exists: the signals handled synchronously by one
    // thread (as the helper does), which wakes the daemon through a channel.
    let signals = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]);
    signals.thread_block().context("blocking signals")?;
    init_logging(true);
    let relaunch =
        relaunch.context("finding this program's own path (needed to restart after an update)")?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let event = match signals.wait() {
                Ok(Signal::SIGHUP) => Event::Reload,
                Ok(sig) => {
                    tracing::info!(signal = ?sig, "stop requested");
                    Event::Stop
                }
                Err(e) => {
                    tracing::error!(error = %e, "waiting for signals failed");
                    continue;
                }
            };
            if tx.send(event).is_err() {
                return;
            }
        })
        .context("starting the signal thread")?;
    let opts = daemon::Options {
        socket: args.socket.clone(),
        config_path: args.config.clone(),
        state_dir: args.state_dir.clone(),
        server_group: args.server_group.clone(),
        relaunch,
    };
    daemon::run(&opts, &rx, &mut Urandom).context("patchman-agent run")?;
    Ok(())
}

/// The daemon logs at info to the journal under systemd, else to stderr;
/// the commands a person runs print their own output and log only warnings.
fn init_logging(daemon: bool) {
    use tracing_subscriber::prelude::*;
    let under_systemd =
        std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some();
    if daemon && under_systemd {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(journald.with_syslog_identifier("patchman-agent".into()))
                .init();
            return;
        }
    }
    let level = if daemon {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .init();
}
