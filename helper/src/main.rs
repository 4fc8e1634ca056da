//! `patchman-helper [--socket PATH] [--config PATH] [--agent-user NAME]`
//! `patchman-helper [--config PATH] --rollback-due`
//!
//! Thin: parses arguments, sets up logging and signals, calls the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{umask, Mode};
use patchman_helper::{config, exec, os_release, probation, server, Helper, Limits, StartError};

const USAGE: &str = "\
Usage: patchman-helper [--socket PATH] [--config PATH] [--agent-user NAME]
       patchman-helper [--config PATH] --rollback-due

The root helper of the patchman updater. Runs in the foreground and answers
typed requests from the agent user over a Unix socket. Under systemd socket
activation it takes the socket from fd 3 and exits when idle.

Options:
  --socket PATH       socket to create (default /run/patchman/helper.sock)
  --config PATH       configuration file (default /etc/patchman/patchman.ini)
  --agent-user NAME   the only user served (default patchman)
  --rollback-due      do not serve: if the probation of the last update
                      passed its deadline without the new agent's Confirm,
                      roll back to the recorded previous versions; else
                      exit 0 (run by patchman-rollback.service from the
                      rescue copy of the previous helper)
  -h, --help          this text
  -V, --version       the version
";

struct Args {
    socket: PathBuf,
    config: PathBuf,
    agent_user: String,
    rollback_due: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        socket: PathBuf::from(patchman_helper::DEFAULT_SOCKET),
        config: PathBuf::from(config::DEFAULT_CONFIG),
        agent_user: patchman_helper::DEFAULT_AGENT_USER.to_string(),
        rollback_due: false,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .with_context(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--socket" => args.socket = PathBuf::from(value()?),
            "--config" => args.config = PathBuf::from(value()?),
            "--agent-user" => args.agent_user = value()?,
            "--rollback-due" => args.rollback_due = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("patchman-helper {}", patchman_helper::VERSION);
                return Ok(None);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(Some(args))
}

/// Info by default, in the journal and on stderr alike; debug (every
/// accepted connection, every peer that hung up) with
/// `PATCHMAN_HELPER_LOG=debug` in the environment (`systemctl edit
/// patchman-helper.service`: `Environment=PATCHMAN_HELPER_LOG=debug`).
fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    let level = match std::env::var("PATCHMAN_HELPER_LOG").as_deref() {
        Ok("debug") => LevelFilter::DEBUG,
        _ => LevelFilter::INFO,
    };
    let under_systemd =
        std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some();
    if under_systemd {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(
                    journald
                        .with_syslog_identifier("patchman-helper".into())
                        .with_filter(level),
                )
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .init();
}

fn main() {
    if let Err(e) = run() {
        eprintln!("patchman-helper: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    // First: which file is running, before a package manager could
    // replace it (serve exits when it is).
    let own_binary = server::OwnBinary::at_start();
    // Before any thread exists: the socket from systemd, and the signals
    // we handle synchronously in one thread (children get a clean mask).
    let activated = server::activated_socket()?;
    {
        use std::os::fd::AsRawFd;
        let keep: Vec<_> = activated.iter().map(|l| l.as_raw_fd()).collect();
        patchman_helper::close_inherited_fds(&keep)
            .context("closing inherited file descriptors")?;
    }
    let signals = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]);
    signals.thread_block().context("blocking signals")?;
    umask(Mode::from_bits_truncate(0o022));
    // Children inherit it (posix_spawn cannot change it per child).
    std::env::set_current_dir("/").context("changing to /")?;
    init_logging();

    if !nix::unistd::geteuid().is_root() {
        return Err(StartError::NotRoot.into());
    }
    let family = os_release::detect(std::path::Path::new("/")).map_err(StartError::Family)?;
    let programs =
        exec::Programs::resolve(patchman_helper::tools_for(family)).map_err(StartError::Program)?;
    let config = config::load(&args.config).map_err(StartError::Config)?;
    match patchman_helper::files::sweep_stale(std::path::Path::new(
        patchman_helper::files::PRIVATE_BASE,
    )) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            "removed private directories of runs that crashed"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot sweep private directories of earlier runs"),
    }
    if args.rollback_due {
        // Serves nobody: no agent uid matches u32::MAX.
        let helper = Helper::new(
            family,
            programs,
            u32::MAX,
            Limits::default(),
            &args.config,
            config,
            Box::new(|| {}),
        );
        return rollback_due(&helper);
    }
    let agent = patchman_helper::agent_user(
        &args.agent_user,
        std::path::Path::new(patchman_helper::LOGIN_DEFS),
    )?;

    let mut limits = Limits::default();
    let bound = match activated {
        Some(listener) => {
            limits.idle_exit = Some(std::time::Duration::from_secs(60));
            server::Bound::Activated(listener)
        }
        None => server::bind(&args.socket, agent.gid).map_err(StartError::Socket)?,
    };
    let bound = Arc::new(bound);
    let on_exit = {
        let bound = Arc::clone(&bound);
        Box::new(move || bound.cleanup())
    };
    let helper = Arc::new(Helper::new(
        family,
        programs,
        agent.uid.as_raw(),
        limits,
        &args.config,
        config,
        on_exit,
    ));
    tracing::info!(
        version = patchman_helper::VERSION,
        family = %family,
        agent_user = %agent.name,
        agent_uid = agent.uid.as_raw(),
        repository = %helper.config().repository,
        socket = %args.socket.display(),
        activated = matches!(*bound, server::Bound::Activated(_)),
        "patchman-helper started"
    );

    // Covers hosts without the rollback timer: a probation past its
    // deadline is rolled back before anything is served.
    if matches!(
        rollback_due_logged(&helper),
        Some(probation::Checked::RolledBack { .. })
    ) {
        tracing::info!("rolled back: exiting so the next start runs the previous helper");
        helper.exit(0);
    }

    {
        let helper = Arc::clone(&helper);
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                match signals.wait() {
                    Ok(Signal::SIGHUP) => helper.reload(),
                    Ok(sig) => {
                        tracing::info!(signal = ?sig, "stopping (after any running update)");
                        helper.stop_after_running_update(0);
                    }
                    Err(e) => tracing::error!(error = %e, "waiting for signals failed"),
                }
            })
            .context("starting the signal thread")?;
    }

    let own_binary = own_binary
        .map_err(|e| tracing::warn!(error = %e, "cannot read /proc/self/exe: a replaced binary will not be noticed"))
        .ok();
    if let Err(e) = server::serve(&bound, Arc::clone(&helper), own_binary.as_ref()) {
        // Never mid-update: dpkg -i is not cut short because accept failed.
        tracing::error!(error = %e, "accepting connections failed; stopping after any running update");
        eprintln!("patchman-helper: accepting connections: {e}");
        helper.stop_after_running_update(1);
    }
    helper.exit(0)
}

/// The rollback check, logged; `None` when it failed.
fn rollback_due_logged(helper: &Helper) -> Option<probation::Checked> {
    match probation::run_due(helper) {
        Ok(checked) => {
            match &checked {
                probation::Checked::Nothing => {
                    tracing::debug!("rollback check: no probation pending")
                }
                probation::Checked::NotYet { deadline } => {
                    tracing::info!(
                        deadline,
                        "rollback check: probation pending, deadline not passed"
                    )
                }
                probation::Checked::Abandoned => {
                    tracing::warn!("rollback check: probation dropped, nothing rolled back")
                }
                probation::Checked::RolledBack { from, to } => tracing::warn!(
                    from = ?probation::to_map(from),
                    to = ?probation::to_map(to),
                    "rollback check: rolled back"
                ),
            }
            Some(checked)
        }
        Err(e) => {
            tracing::error!(error = %e, "rollback check failed");
            None
        }
    }
}

/// `--rollback-due`: exit 0 unless the check itself failed.
fn rollback_due(helper: &Helper) -> Result<()> {
    match rollback_due_logged(helper) {
        Some(_) => Ok(()),
        None => bail!("the rollback check failed (see the log above)"),
    }
}
