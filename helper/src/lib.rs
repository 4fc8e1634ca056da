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
/// For the fuzz targets, a workspace of their own that reaches the protocol
/// crate through the helper.
pub use patchman_shared;
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
    /// The agent account is not a system account: a login user (or a
    /// directory user) named like the agent must not be served as root's
    /// one peer.
    NotSystemUser {
        name: String,
        uid: u32,
        range: std::ops::RangeInclusive<u32>,
    },
    /// `/etc/login.defs` could not be read or has a bad system range.
    LoginDefs(String),
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
            StartError::NotSystemUser { name, uid, range } => write!(
                f,
                "agent user {name:?} has uid {uid}, outside the system range {}..={} (SYS_UID_MIN..SYS_UID_MAX in {LOGIN_DEFS}): it is not a system account; remove or rename it and create the agent with `adduser --system {name}`",
                range.start(),
                range.end()
            ),
            StartError::LoginDefs(why) => write!(f, "{LOGIN_DEFS}: {why}"),
            StartError::Family(e) => write!(f, "{e}"),
            StartError::Program(e) => write!(f, "{e}"),
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Socket(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Where the system uid range is defined.
pub const LOGIN_DEFS: &str = "/etc/login.defs";
/// The range when `login.defs` does not set it (Debian's adduser.conf and
/// shadow's documented defaults).
pub const DEFAULT_SYS_UIDS: std::ops::RangeInclusive<u32> = 100..=999;

/// `SYS_UID_MIN..=SYS_UID_MAX` from the text of `login.defs`; a key it
/// does not set has its default. A value that is not a number is an
/// error, not a default: the range decides whom root serves.
pub fn system_uid_range(text: &str) -> Result<std::ops::RangeInclusive<u32>, String> {
    let (mut min, mut max) = (*DEFAULT_SYS_UIDS.start(), *DEFAULT_SYS_UIDS.end());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), value) = (words.next(), words.next()) else {
            continue;
        };
        let slot = match key {
            "SYS_UID_MIN" => &mut min,
            "SYS_UID_MAX" => &mut max,
            _ => continue,
        };
        *slot = value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{key} is not a number: {:?}", line.trim()))?;
    }
    if min > max {
        return Err(format!("SYS_UID_MIN {min} is above SYS_UID_MAX {max}"));
    }
    Ok(min..=max)
}

/// Looks up the agent user by name; refuses root and any account outside
/// the system uid range of `login_defs`.
pub fn agent_user(name: &str, login_defs: &Path) -> Result<AgentUser, StartError> {
    let user = User::from_name(name)
        .map_err(|e| StartError::Lookup(name.to_string(), e))?
        .ok_or_else(|| StartError::UnknownUser(name.to_string()))?;
    if user.uid.is_root() {
        return Err(StartError::RootAgent(name.to_string()));
    }
    let range = match patchman_shared::read_config(login_defs) {
        Ok(Some(text)) => system_uid_range(&text).map_err(StartError::LoginDefs)?,
        Ok(None) => DEFAULT_SYS_UIDS,
        Err(e) => return Err(StartError::LoginDefs(e.to_string())),
    };
    if !range.contains(&user.uid.as_raw()) {
        return Err(StartError::NotSystemUser {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            range,
        });
    }
    Ok(AgentUser {
        name: name.to_string(),
        uid: user.uid,
        gid: user.gid,
    })
}

/// Closes every file descriptor above 2 but those in `keep` (the socket
/// systemd passed): whatever started us may have leaked some (a log file,
/// the write end of a pipe, a socket), and dpkg, rpm and maintainer
/// scripts would inherit them. Call at start, before any thread, as the
/// descriptors are read from `/proc/self/fd`. Returns how many it closed.
pub fn close_inherited_fds(keep: &[std::os::fd::RawFd]) -> std::io::Result<usize> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(fd);
        }
    }
    // The directory's own descriptor is closed by now: EBADF, ignored.
    let mut closed = 0;
    for fd in fds.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        if nix::unistd::close(fd).is_ok() {
            closed += 1;
        }
    }
    Ok(closed)
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

thread_local! {
    /// The configuration snapshot of the request this thread serves.
    static PINNED_CONFIG: std::cell::RefCell<Option<Config>> = const { std::cell::RefCell::new(None) };
}

/// One request's configuration snapshot; unpinned when dropped. Not
/// `Send`: it belongs to the thread that serves the request.
pub struct PinnedConfig(std::marker::PhantomData<*const ()>);

impl Drop for PinnedConfig {
    fn drop(&mut self) {
        PINNED_CONFIG.with(|p| *p.borrow_mut() = None);
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
    /// The rate limit on refreshing the repository's metadata.
    pub refresh: family::RefreshClock,
    /// Set when the process is about to exit: new requests get `Busy`.
    stopping: std::sync::atomic::AtomicBool,
    /// Bounds the log lines of each peer (see [`server::PeerLog`]).
    pub(crate) peer_log: server::PeerLog,
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
            refresh: family::RefreshClock::persistent(Path::new(files::PRIVATE_BASE)),
            stopping: std::sync::atomic::AtomicBool::new(false),
            peer_log: server::PeerLog::new(server::PEER_LOG_WINDOW),
        }
    }

    /// The configuration of the request this thread is serving (see
    /// [`Helper::pin_config`]), else the current one. A procedure reads it
    /// at each step; pinned, a SIGHUP between two steps cannot make one
    /// update use two repositories or two lock waits.
    pub fn config(&self) -> Config {
        PINNED_CONFIG
            .with(|p| p.borrow().clone())
            .unwrap_or_else(|| self.current_config())
    }

    fn current_config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes one snapshot of the configuration for the request this
    /// thread serves until the guard is dropped.
    pub fn pin_config(&self) -> PinnedConfig {
        let snapshot = self.current_config();
        PINNED_CONFIG.with(|p| *p.borrow_mut() = Some(snapshot));
        PinnedConfig(std::marker::PhantomData)
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

    /// From now on every new request is answered `Busy` at once.
    pub fn begin_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops: new requests get `Busy`, a running update finishes, then
    /// the process exits with `code`.
    pub fn stop_after_running_update(&self, code: i32) -> ! {
        self.begin_stop();
        let _held = self.wait_exclusive();
        self.exit(code)
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
        // The counts of the last window are not lost with the process.
        self.peer_log.flush_now();
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
    fn the_system_uid_range_of_login_defs() {
        assert_eq!(system_uid_range(""), Ok(100..=999));
        // Debian's shipped file comments both keys out.
        let debian = "UID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\n#SYS_UID_MIN\t\t  100\n#SYS_UID_MAX\t\t  999\n";
        assert_eq!(system_uid_range(debian), Ok(100..=999));
        assert_eq!(
            system_uid_range("SYS_UID_MIN 201\nSYS_UID_MAX   499 # x\n"),
            Ok(201..=499)
        );
        assert!(system_uid_range("SYS_UID_MAX lots\n").is_err());
        assert!(system_uid_range("SYS_UID_MAX\n").is_err());
        assert!(system_uid_range("SYS_UID_MIN 900\nSYS_UID_MAX 100\n").is_err());
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
    fn a_reload_mid_request_does_not_change_that_requests_configuration() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("patchman.ini");
        let write = |repo: &str| {
            std::fs::write(&ini, format!("[updates]\nrepository = {repo}\n")).unwrap();
            std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644)).unwrap();
        };
        write("first");
        let h = Helper::new(
            Family::Apt,
            Programs::default(),
            1000,
            Limits::default(),
            &ini,
            config::load(&ini).unwrap(),
            Box::new(|| {}),
        );
        let pinned = h.pin_config();
        write("second");
        h.reload();
        // The request's later steps (family code calls config() at each)
        // still see the snapshot; another thread sees the reload.
        assert_eq!(h.config().repository.as_str(), "first");
        let other = std::thread::scope(|s| {
            s.spawn(|| h.config().repository.to_string())
                .join()
                .unwrap()
        });
        assert_eq!(other, "second");
        drop(pinned);
        assert_eq!(h.config().repository.as_str(), "second");
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
