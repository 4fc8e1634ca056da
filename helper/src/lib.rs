//! The root half of the patchman updater. It decides nothing: it answers a
//! few typed requests from one authenticated peer and runs the fixed command
//! lines of the vendor's update procedure on two allow-listed packages.
#![forbid(unsafe_code)]

pub mod config;
pub mod dispatch;
pub mod exec;
pub mod family;
pub mod files;
pub mod lock;
pub mod os_release;
pub mod parse;
pub mod probation;
pub mod server;
pub mod sha256;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use nix::unistd::{Gid, Uid, User};
use patchman_shared::Family;

pub use config::Config;
pub use exec::Programs;
pub use server::Limits;

/// This helper's version, reported in `Welcome` and `Status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub const DEFAULT_SOCKET: &str = "/run/patchman/helper.sock";
pub const DEFAULT_AGENT_USER: &str = "patchman";

/// The agent's account, looked up once at start.
#[derive(Debug, Clone)]
pub struct AgentUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Errors that stop the helper from starting.
#[derive(Debug)]
pub enum StartError {
    NotRoot,
    UnknownUser(String),
    RootAgent(String),
    Lookup(String, nix::Error),
    Family(os_release::DetectError),
    Program(exec::ExecError),
    Config(config::ConfigError),
    Socket(server::SocketError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotRoot => write!(f, "patchman-helper must run as root"),
            StartError::UnknownUser(u) => write!(
                f,
                "agent user {u:?} does not exist (create it, or pass --agent-user)"
            ),
            StartError::RootAgent(u) => write!(
                f,
                "agent user {u:?} is root; the agent must be unprivileged"
            ),
            StartError::Lookup(u, e) => write!(f, "cannot look up user {u:?}: {e}"),
            StartError::Family(e) => write!(f, "{e}"),
            StartError::Program(e) => write!(f, "{e}"),
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Socket(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Looks up the agent user by name; refuses root.
pub fn agent_user(name: &str) -> Result<AgentUser, StartError> {
    let user = User::from_name(name)
        .map_err(|e| StartError::Lookup(name.to_string(), e))?
        .ok_or_else(|| StartError::UnknownUser(name.to_string()))?;
    if user.uid.is_root() {
        return Err(StartError::RootAgent(name.to_string()));
    }
    Ok(AgentUser {
        name: name.to_string(),
        uid: user.uid,
        gid: user.gid,
    })
}

/// The tools each family's procedure runs, resolved at start.
pub fn tools_for(family: Family) -> &'static [exec::Tool] {
    use exec::Tool::*;
    match family {
        Family::Apt => &[AptConfig, AptGet, AptCache, Dpkg, DpkgQuery, DpkgDeb],
        Family::Dnf => &[Dnf, Rpm, Rpmkeys],
        Family::Yum => &[Yum, Rpm, Rpmkeys],
    }
}

/// How many `Status` queries may run at once: a flood of them from the
/// agent's account gets `Busy`, not a process per connection.
pub const MAX_CONCURRENT_QUERIES: usize = 4;

/// A held query slot; released when dropped.
pub struct QuerySlot<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for QuerySlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Everything a request handler may use. Shared by all connections.
pub struct Helper {
    pub family: Family,
    pub programs: Programs,
    pub agent_uid: u32,
    pub limits: Limits,
    pub config_path: PathBuf,
    config: RwLock<Config>,
    /// Held for the whole of a `Check` or `Update`: one at a time.
    exclusive: Mutex<()>,
    /// `Status` requests running now (each runs one query process).
    queries: std::sync::atomic::AtomicUsize,
    /// Run before the process exits (removes the socket we created).
    on_exit: Box<dyn Fn() + Send + Sync>,
}

impl Helper {
    pub fn new(
        family: Family,
        programs: Programs,
        agent_uid: u32,
        limits: Limits,
        config_path: &Path,
        config: Config,
        on_exit: Box<dyn Fn() + Send + Sync>,
    ) -> Helper {
        Helper {
            family,
            programs,
            agent_uid,
            limits,
            config_path: config_path.to_path_buf(),
            config: RwLock::new(config),
            exclusive: Mutex::new(()),
            queries: std::sync::atomic::AtomicUsize::new(0),
            on_exit,
        }
    }

    /// The current configuration (a copy: a reload never changes it under
    /// a running procedure).
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the configuration file; on error the old one stays.
    pub fn reload(&self) {
        match config::load(&self.config_path) {
            Ok(c) => {
                tracing::info!(repository = %c.repository, "configuration reloaded");
                *self.config.write().unwrap_or_else(|e| e.into_inner()) = c;
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed; keeping the previous one")
            }
        }
    }

    /// Takes the exclusive lock for a `Check`/`Update`, or `None` if busy.
    pub fn try_exclusive(&self) -> Option<MutexGuard<'_, ()>> {
        match self.exclusive.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Waits for a running `Check`/`Update` to finish (SIGTERM never cuts
    /// a `dpkg -i` short), then keeps the lock so none starts.
    pub fn wait_exclusive(&self) -> MutexGuard<'_, ()> {
        self.exclusive.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a read-only query (`Status`), at most
    /// [`MAX_CONCURRENT_QUERIES`] at once, or `None`: busy.
    pub fn try_query(&self) -> Option<QuerySlot<'_>> {
        use std::sync::atomic::Ordering;
        let prev = self.queries.fetch_add(1, Ordering::AcqRel);
        if prev >= MAX_CONCURRENT_QUERIES {
            self.queries.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(QuerySlot(&self.queries))
    }

    pub fn update_running(&self) -> bool {
        self.exclusive.try_lock().is_err()
    }

    /// Cleans up and exits the process.
    pub fn exit(&self, code: i32) -> ! {
        (self.on_exit)();
        std::process::exit(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> Helper {
        Helper::new(
            Family::Apt,
            Programs::default(),
            1000,
            Limits::default(),
            Path::new("/nonexistent.ini"),
            Config::default(),
            Box::new(|| {}),
        )
    }

    #[test]
    fn status_queries_are_bounded_and_slots_come_back() {
        let h = helper();
        let slots: Vec<_> = (0..MAX_CONCURRENT_QUERIES)
            .map(|_| h.try_query().expect("a free slot"))
            .collect();
        assert!(h.try_query().is_none(), "one more than the bound is busy");
        drop(slots);
        assert!(h.try_query().is_some(), "released slots are reusable");
    }

    #[test]
    fn one_exclusive_procedure_at_a_time() {
        let h = helper();
        let held = h.try_exclusive().expect("free");
        assert!(h.try_exclusive().is_none());
        assert!(h.update_running());
        drop(held);
        assert!(!h.update_running());
    }
}
