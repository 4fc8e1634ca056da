//! Accepting connections: the socket, peer authentication, and the limits
//! that keep one client (or a thousand) from hurting the others.
//!
//! * Each connection is authenticated by `SO_PEERCRED` before a byte is
//!   read: only the agent user's uid is served; anyone else gets `Denied`.
//! * Every frame must arrive whole within [`Limits::frame_deadline`] (not
//!   per `read`: a peer trickling one byte at a time is dropped too).
//! * At most [`Limits::max_connections`] connections live at once. When full,
//!   the connection that has been idle longest (waiting for a frame for at
//!   least [`Limits::evictable_after`]) is closed to make room; if every
//!   connection is running a request, the new one is closed instead. So
//!   idle connections can never lock the agent out.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use interprocess::local_socket::traits::{Listener as _, Stream as _, StreamCommon as _};
use interprocess::os::unix::uds_local_socket::{Listener, Stream};
use nix::unistd::{Gid, Uid};
use patchman_shared::{read_frame, write_frame, FrameError, Reply, Request};

use crate::dispatch::{self, Connection};
use crate::Helper;

/// The bounds of the server. The defaults are what production uses; tests
/// may shorten the times.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub frame_deadline: Duration,
    pub write_timeout: Duration,
    pub evictable_after: Duration,
    /// Under socket activation: exit after this long with no connection.
    pub idle_exit: Option<Duration>,
    /// How often the accept loop wakes with nothing to accept: to end a
    /// window of the per-peer log, and to notice a replaced binary.
    pub tick: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            frame_deadline: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            evictable_after: Duration::from_secs(1),
            idle_exit: None,
            tick: Duration::from_secs(2),
        }
    }
}

/// Why the socket could not be set up.
#[derive(Debug)]
pub enum SocketError {
    Parent {
        path: PathBuf,
        why: String,
    },
    Occupied(PathBuf),
    Io {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    Activation(io::Error),
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::Parent { path, why } => {
                write!(f, "unsafe socket directory {}: {why}", path.display())
            }
            SocketError::Occupied(p) => {
                write!(
                    f,
                    "{} exists and is not a socket; refusing to replace it",
                    p.display()
                )
            }
            SocketError::Io { what, path, error } => {
                write!(f, "cannot {what} {}: {error}", path.display())
            }
            SocketError::Activation(e) => write!(f, "bad socket-activation file descriptor: {e}"),
        }
    }
}

impl std::error::Error for SocketError {}

/// Where the listening socket came from.
pub enum Bound {
    /// We created it at this path (and remove it on exit).
    Created {
        listener: UnixListener,
        path: PathBuf,
        ino: u64,
    },
    /// systemd passed it (fd 3); systemd owns the path.
    Activated(UnixListener),
}

impl Bound {
    /// Removes the socket file if it is still the one we created.
    pub fn cleanup(&self) {
        if let Bound::Created { path, ino, .. } = self {
            if fs::symlink_metadata(path)
                .map(|m| m.ino() == *ino)
                .unwrap_or(false)
            {
                let _ = fs::remove_file(path);
            }
        }
    }

    fn listener(&self) -> &UnixListener {
        match self {
            Bound::Created { listener, .. } | Bound::Activated(listener) => listener,
        }
    }
}

/// Takes the socket passed by systemd, if this process was socket-activated
/// (`LISTEN_PID` must name us, `LISTEN_FDS` ≥ 1). Call before any thread.
pub fn activated_socket() -> Result<Option<UnixListener>, SocketError> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        return Ok(None);
    }
    let mut fds = listenfd::ListenFd::from_env();
    fds.take_unix_listener(0).map_err(SocketError::Activation)
}

/// Creates the socket at `path`: the directory (if missing) `0750
/// root:<agent group>`, the socket `0660 root:<agent group>`. An existing
/// directory must be root-owned and writable by no one else, sticky or not;
/// a stale socket is replaced, anything else at the path is refused.
pub fn bind(path: &Path, gid: Gid) -> Result<Bound, SocketError> {
    let io_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |error| SocketError::Io { what, path, error }
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| SocketError::Parent {
            path: path.to_path_buf(),
            why: "no parent directory".into(),
        })?;
    match fs::symlink_metadata(parent) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o750)
                .create(parent)
                .map_err(io_err("create", parent))?;
            nix::unistd::chown(parent, Some(Uid::from_raw(0)), Some(gid))
                .map_err(|e| io_err("chown", parent)(e.into()))?;
            fs::set_permissions(parent, fs::Permissions::from_mode(0o750))
                .map_err(io_err("chmod", parent))?;
        }
        Err(e) => return Err(io_err("inspect", parent)(e)),
        Ok(m) => {
            let why = if !m.is_dir() {
                Some("not a directory")
            } else if m.uid() != 0 {
                Some("not owned by root")
            } else if m.mode() & 0o022 != 0 {
                // Writable by others: without the sticky bit anyone could
                // replace our socket; with it (/tmp) they cannot, but they
                // can bind the path first, before we start, and serve the
                // agent invented replies. Only a directory of root's alone.
                Some("group- or world-writable (sticky or not); use a directory only root can write, such as /run/patchman")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(SocketError::Parent {
                    path: parent.to_path_buf(),
                    why: why.into(),
                });
            }
        }
    }
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(SocketError::Occupied(path.to_path_buf()))
        }
        // A stale socket is replaced by the rename below.
        _ => {}
    }
    // Bound under a temporary name, given its owner and mode, then renamed
    // into place: a client can never find the socket before its mode is
    // right (nor is refused for connecting in between).
    let file_name = path
        .file_name()
        .ok_or_else(|| SocketError::Parent {
            path: path.to_path_buf(),
            why: "no file name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let staging = parent.join(format!(".{file_name}.{}.new", std::process::id()));
    let _ = fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).map_err(io_err("bind", &staging))?;
    nix::unistd::chown(&staging, Some(Uid::from_raw(0)), Some(gid))
        .map_err(|e| io_err("chown", &staging)(e.into()))?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o660))
        .map_err(io_err("chmod", &staging))?;
    fs::rename(&staging, path).map_err(io_err("move into place", path))?;
    let ino = fs::symlink_metadata(path)
        .map_err(io_err("inspect", path))?
        .ino();
    Ok(Bound::Created {
        listener,
        path: path.to_path_buf(),
        ino,
    })
}

/// What a peer did that would otherwise be one log line each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerEvent {
    /// A connection was accepted (any uid).
    Connection,
    /// A connection from a uid that is not the agent's.
    Denied,
    /// A bad, oversized, late or missing frame.
    BadFrame,
    /// A read-only request (`Status`), a `Busy`, an unanswerable peer.
    Routine,
}

/// Individual lines per peer, per kind of event, per window; the rest of
/// the window is counted and summarised in one line when it ends.
pub const PEER_LINES_PER_WINDOW: u32 = 5;
/// The summary interval.
pub const PEER_LOG_WINDOW: Duration = Duration::from_secs(10);
/// Distinct uids tracked in one window; further ones share one entry.
const MAX_TRACKED_PEERS: usize = 256;
/// The entry of uids past [`MAX_TRACKED_PEERS`], and of events with no
/// peer yet (an eviction).
const OTHER_PEERS: u32 = u32::MAX;

#[derive(Debug, Default, Clone, Copy)]
struct PeerCounts {
    /// Per [`PeerEvent`], in its order: seen, and logged on their own.
    seen: [u64; 4],
    logged: [u32; 4],
}

/// Bounds the helper's log lines per peer, so that a flood of connections
/// from one uid can neither fill the journal nor make journald's rate
/// limit drop the `denied` lines of another uid or the audit lines of an
/// update (`Check`/`Update` outcomes and steps are never counted here).
pub(crate) struct PeerLog {
    window: Duration,
    inner: Mutex<(Instant, BTreeMap<u32, PeerCounts>)>,
}

impl PeerLog {
    pub(crate) fn new(window: Duration) -> PeerLog {
        PeerLog {
            window,
            inner: Mutex::new((Instant::now(), BTreeMap::new())),
        }
    }

    /// Counts `event` for `uid`; `true` when it may have a line of its own.
    pub(crate) fn note(&self, uid: u32, event: PeerEvent) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut guard);
        let table = &mut guard.1;
        let key = if table.contains_key(&uid) || table.len() < MAX_TRACKED_PEERS {
            uid
        } else {
            OTHER_PEERS
        };
        let counts = table.entry(key).or_default();
        let i = event as usize;
        counts.seen[i] += 1;
        if counts.logged[i] < PEER_LINES_PER_WINDOW {
            counts.logged[i] += 1;
            true
        } else {
            false
        }
    }

    /// Ends the window if it is over (called on a timer too, so the last
    /// window of a flood is summarised even if nothing follows it).
    pub(crate) fn flush_if_due(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut guard);
    }

    /// Summarises the window so far at once: before the process exits.
    pub(crate) fn flush_now(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.summarise(&mut guard);
    }

    fn roll(&self, guard: &mut (Instant, BTreeMap<u32, PeerCounts>)) {
        if guard.0.elapsed() >= self.window {
            self.summarise(guard);
        }
    }

    fn summarise(&self, guard: &mut (Instant, BTreeMap<u32, PeerCounts>)) {
        let (start, table) = guard;
        let seconds = start.elapsed().as_secs().min(self.window.as_secs());
        for (uid, c) in std::mem::take(table) {
            let suppressed: u64 = c
                .seen
                .iter()
                .zip(c.logged)
                .map(|(seen, logged)| seen - u64::from(logged))
                .sum();
            if suppressed == 0 {
                continue;
            }
            let [connections, denied, bad_frames, routine] = c.seen;
            tracing::warn!(
                peer_uid = (uid != OTHER_PEERS).then_some(uid),
                connections,
                denied,
                bad_frames,
                routine,
                suppressed,
                window_s = seconds,
                "peer summary: {connections} connections, {denied} denied, {bad_frames} bad frames, {routine} routine events in the last {seconds} s ({suppressed} lines not logged one by one)"
            );
        }
        *start = Instant::now();
    }
}

/// One live connection in the slot table.
struct Slot {
    /// A second handle on the socket, to shut it down when evicted.
    handle: UnixStream,
    /// `Some(since)` while waiting for the peer's next frame.
    idle_since: Option<Instant>,
}

/// The connection table: bounded, and evicts the longest-idle peer.
#[derive(Default)]
pub(crate) struct Slots {
    table: Mutex<(u64, BTreeMap<u64, Slot>)>,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Slot>)> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection, evicting the longest-idle one if full.
    fn admit(&self, handle: UnixStream, limits: &Limits, log: &PeerLog) -> Option<u64> {
        let mut guard = self.lock();
        let (next, table) = &mut *guard;
        if table.len() >= limits.max_connections {
            let now = Instant::now();
            let victim = table
                .iter()
                .filter_map(|(id, s)| s.idle_since.map(|t| (t, *id)))
                .filter(|(t, _)| now.duration_since(*t) >= limits.evictable_after)
                .min()
                .map(|(_, id)| id);
            match victim {
                Some(id) => {
                    if let Some(slot) = table.remove(&id) {
                        let _ = slot.handle.shutdown(std::net::Shutdown::Both);
                        if log.note(OTHER_PEERS, PeerEvent::Routine) {
                            tracing::warn!(
                                evicted = id,
                                "connection limit reached: closed the longest-idle connection"
                            );
                        }
                    }
                }
                None => return None,
            }
        }
        *next += 1;
        let id = *next;
        table.insert(
            id,
            Slot {
                handle,
                idle_since: Some(Instant::now()),
            },
        );
        Some(id)
    }

    pub(crate) fn set_idle(&self, id: u64, idle: bool) {
        if let Some(slot) = self.lock().1.get_mut(&id) {
            slot.idle_since = idle.then(Instant::now);
        }
    }

    fn release(&self, id: u64) {
        self.lock().1.remove(&id);
    }

    pub(crate) fn count(&self) -> usize {
        self.lock().1.len()
    }

    /// Connections running a request now (not waiting for a frame).
    fn busy(&self) -> usize {
        self.lock()
            .1
            .values()
            .filter(|s| s.idle_since.is_none())
            .count()
    }
}

/// Reads from a stream with a deadline for the whole frame, however the
/// peer slices it.
pub(crate) struct DeadlineReader<'a> {
    stream: &'a Stream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_recv_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

/// Reads the next request within the frame deadline.
pub(crate) fn read_request(stream: &Stream, limits: &Limits) -> Result<Request, FrameError> {
    let mut r = DeadlineReader {
        stream,
        deadline: Instant::now() + limits.frame_deadline,
    };
    read_frame(&mut r)
}

/// Writes one reply; errors mean the peer is gone or too slow.
pub(crate) fn send(stream: &Stream, reply: &Reply) -> Result<(), FrameError> {
    let mut s = stream;
    write_frame(&mut s, reply)
}

/// The helper's own executable as it was at start. A person's `dpkg -i`
/// or `rpm -U` renames a new file over it; the running process would go on
/// serving from the old, deleted one (perhaps the vulnerable one the
/// upgrade fixed) for as long as connections keep it from going idle.
#[derive(Debug, Clone)]
pub struct OwnBinary {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl OwnBinary {
    /// Reads `/proc/self/exe`: the path we were started from and the file
    /// that is running. Call at start, before anything could replace it.
    pub fn at_start() -> io::Result<OwnBinary> {
        let path = fs::read_link("/proc/self/exe")?;
        let running = fs::metadata("/proc/self/exe")?;
        Ok(OwnBinary {
            path,
            dev: running.dev(),
            ino: running.ino(),
        })
    }

    /// Whether the path now names another file, or none (one `stat`).
    pub fn replaced(&self) -> bool {
        match fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) != (self.dev, self.ino),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How long a replaced helper waits for requests other than `Check` and
/// `Update` (which it always waits for) to be answered before it exits.
const DRAIN_FOR: Duration = Duration::from_secs(30);

/// The accept loop. Returns only when the listener fails, or (socket
/// activation) when idle for `limits.idle_exit`. With `own_binary`, exits
/// the process (0) once that file is replaced on disk, after any running
/// request: checked at every wake, at least every `limits.tick`.
pub fn serve(bound: &Bound, helper: Arc<Helper>, own_binary: Option<&OwnBinary>) -> io::Result<()> {
    let listener = Listener::from(bound.listener().try_clone()?);
    let slots = Arc::new(Slots::default());
    let mut last_activity = Instant::now();
    loop {
        let readable = wait_readable(bound.listener(), helper.limits.tick)?;
        helper.peer_log.flush_if_due();
        if let Some(own) = own_binary.filter(|o| o.replaced()) {
            tracing::info!(
                path = %own.path().display(),
                "this program was replaced on disk (a package upgrade): exiting after any running request, so the next connection runs the new one"
            );
            helper.begin_stop();
            let drain_end = Instant::now() + DRAIN_FOR;
            while slots.busy() > 0 && Instant::now() < drain_end {
                thread::sleep(Duration::from_millis(50));
            }
            helper.stop_after_running_update(0);
        }
        if !readable {
            if slots.count() > 0 || helper.update_running() {
                last_activity = Instant::now();
            } else if helper
                .limits
                .idle_exit
                .is_some_and(|idle| last_activity.elapsed() >= idle)
            {
                tracing::info!("idle: exiting until the next connection activates us");
                return Ok(());
            }
            continue;
        }
        last_activity = Instant::now();
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                if helper.peer_log.note(OTHER_PEERS, PeerEvent::Routine) {
                    tracing::error!(error = %e, "accept failed");
                }
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let handle = match stream.inner().try_clone() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot duplicate the connection handle");
                continue;
            }
        };
        let Some(id) = slots.admit(handle, &helper.limits, &helper.peer_log) else {
            if helper.peer_log.note(OTHER_PEERS, PeerEvent::Routine) {
                tracing::warn!(
                    "connection limit reached and every connection is busy: refused one"
                );
            }
            continue;
        };
        let helper = Arc::clone(&helper);
        let slots_for_thread = Arc::clone(&slots);
        let spawned = thread::Builder::new()
            .name(format!("conn-{id}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = stream.set_send_timeout(Some(helper.limits.write_timeout));
                let conn = Connection {
                    stream: &stream,
                    id,
                    slots: &slots_for_thread,
                };
                dispatch::handle(&helper, conn);
                slots_for_thread.release(id);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a connection thread");
            slots.release(id);
        }
    }
}

/// Waits until the listener has a pending connection, at most `timeout`.
fn wait_readable(listener: &UnixListener, timeout: Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The peer's credentials as the kernel recorded them at `connect()`.
pub(crate) fn peer(stream: &Stream) -> io::Result<(u32, Option<i32>)> {
    let creds = stream.peer_creds()?;
    let uid = creds
        .euid()
        .ok_or_else(|| io::Error::other("no peer uid"))?;
    Ok((uid, creds.pid()))
}
