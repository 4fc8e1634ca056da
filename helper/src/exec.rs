//! The ONLY place in the helper that starts a process.
//!
//! Every child gets: an absolute path resolved once at start from a fixed
//! list and checked (root-owned, not group/world-writable, all the way up);
//! a cleared environment; stdin from `/dev/null`; its own process group, so
//! a timeout kills it and everything it started; captured output with a cap.
//! Never a shell. Arguments are built by the helper from its own constants
//! and from values it parsed and validated; nothing the agent sends reaches
//! an argv.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};

/// The environment every child runs with, and nothing else.
const BASE_ENV: [(&str, &str); 3] = [
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("LC_ALL", "C"),
    ("DEBIAN_FRONTEND", "noninteractive"),
];

/// Default cap on each of stdout and stderr, in bytes.
pub const OUTPUT_CAP: usize = 512 * 1024;

/// How long to wait for a child's output pipes to close after it exited
/// (a daemon started by a maintainer script may keep them open).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// The programs the helper may run. Nothing else can be spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    AptConfig,
    AptGet,
    AptCache,
    Dpkg,
    DpkgQuery,
    DpkgDeb,
    Dnf,
    Yum,
    Rpm,
    Rpmkeys,
}

impl Tool {
    pub fn name(&self) -> &'static str {
        match self {
            Tool::AptConfig => "apt-config",
            Tool::AptGet => "apt-get",
            Tool::AptCache => "apt-cache",
            Tool::Dpkg => "dpkg",
            Tool::DpkgQuery => "dpkg-query",
            Tool::DpkgDeb => "dpkg-deb",
            Tool::Dnf => "dnf",
            Tool::Yum => "yum",
            Tool::Rpm => "rpm",
            Tool::Rpmkeys => "rpmkeys",
        }
    }

    /// The fixed directories searched, in order.
    const DIRS: [&'static str; 4] = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"];
}

/// An extra environment variable a step may need. A closed set: there is
/// no way to pass an arbitrary variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraEnv {
    /// We hold dpkg's `lock-frontend` ourselves, as a frontend does.
    DpkgFrontendLocked,
}

impl ExtraEnv {
    fn pair(&self) -> (&'static str, &'static str) {
        match self {
            ExtraEnv::DpkgFrontendLocked => ("DPKG_FRONTEND_LOCKED", "1"),
        }
    }
}

/// What to do when a child runs past its time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// Kill its whole process group (metadata and download steps).
    Kill,
    /// Never kill it: an interrupted `dpkg -i` / `rpm -U` is how
    /// half-configured systems are made. Log, keep waiting, report it.
    Wait,
}

/// Errors of this module.
#[derive(Debug)]
pub enum ExecError {
    /// None of the fixed locations holds the program.
    NotFound(Tool),
    /// The program or a directory above it is not safe to run as root.
    Unsafe { path: PathBuf, reason: String },
    /// The tool was not resolved at start (not part of this family).
    NotResolved(Tool),
    /// `fork`/`exec` failed.
    Spawn { tool: Tool, error: io::Error },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NotFound(t) => {
                write!(f, "{} not found in {}", t.name(), Tool::DIRS.join(", "))
            }
            ExecError::Unsafe { path, reason } => {
                write!(f, "refusing to run {}: {reason}", path.display())
            }
            ExecError::NotResolved(t) => write!(f, "{} is not used on this system", t.name()),
            ExecError::Spawn { tool, error } => write!(f, "cannot start {}: {error}", tool.name()),
        }
    }
}

impl std::error::Error for ExecError {}

/// Checks that `path` is safe to execute as root: a regular file, owned by
/// root, not group/world-writable, and every directory above it the same.
/// `path` must be canonical (no symlinks left).
fn check_trusted(path: &Path) -> Result<(), ExecError> {
    let unsafe_because = |reason: String| ExecError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| unsafe_because(e.to_string()))?;
    if !meta.is_file() {
        return Err(unsafe_because("not a regular file".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(unsafe_because("not executable".into()));
    }
    for p in path.ancestors() {
        let m = std::fs::metadata(p).map_err(|e| unsafe_because(e.to_string()))?;
        if m.uid() != 0 {
            return Err(unsafe_because(format!(
                "{} is not owned by root",
                p.display()
            )));
        }
        if m.mode() & 0o022 != 0 {
            return Err(unsafe_because(format!(
                "{} is group- or world-writable",
                p.display()
            )));
        }
    }
    Ok(())
}

/// Finds `tool` in the fixed directories and checks it. Symlinks (merged
/// /usr, `yum` → `dnf-3`) are resolved once here; the canonical path is
/// what runs from then on.
pub fn resolve(tool: Tool) -> Result<PathBuf, ExecError> {
    for dir in Tool::DIRS {
        let candidate = Path::new(dir).join(tool.name());
        if let Ok(canonical) = std::fs::canonicalize(&candidate) {
            check_trusted(&canonical)?;
            return Ok(canonical);
        }
    }
    Err(ExecError::NotFound(tool))
}

/// The programs resolved at start. Only these can run.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    paths: BTreeMap<Tool, PathBuf>,
}

impl Programs {
    /// Resolves every tool in `tools`; fails on the first one missing or
    /// unsafe, so a broken host is reported at start, not mid-update.
    pub fn resolve(tools: &[Tool]) -> Result<Programs, ExecError> {
        let mut paths = BTreeMap::new();
        for &t in tools {
            paths.insert(t, resolve(t)?);
        }
        Ok(Programs { paths })
    }

    pub fn path(&self, tool: Tool) -> Option<&Path> {
        self.paths.get(&tool).map(PathBuf::as_path)
    }

    /// Runs `cmd` to completion (or to its timeout) and returns what it did.
    pub fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let path = self
            .path(cmd.tool)
            .ok_or(ExecError::NotResolved(cmd.tool))?;
        run_path(path, cmd)
    }
}

/// One command line to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub tool: Tool,
    pub args: Vec<OsString>,
    pub timeout: Duration,
    pub on_timeout: OnTimeout,
    pub env: Vec<ExtraEnv>,
    pub output_cap: usize,
}

impl Cmd {
    pub fn new(tool: Tool, timeout: Duration) -> Cmd {
        Cmd {
            tool,
            args: Vec::new(),
            timeout,
            on_timeout: OnTimeout::Kill,
            env: Vec::new(),
            output_cap: OUTPUT_CAP,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, e: ExtraEnv) -> Cmd {
        self.env.push(e);
        self
    }

    /// Never kill this command on timeout (see [`OnTimeout::Wait`]).
    pub fn never_kill(mut self) -> Cmd {
        self.on_timeout = OnTimeout::Wait;
        self
    }

    pub fn output_cap(mut self, cap: usize) -> Cmd {
        self.output_cap = cap;
        self
    }

    /// The command line for logs, one line: an argument with white space,
    /// quotes, backslashes or control characters is shown quoted and
    /// escaped, so a log line can neither be forged nor misread.
    pub fn display(&self) -> String {
        let mut s = self.tool.name().to_string();
        for a in &self.args {
            let a = a.to_string_lossy();
            s.push(' ');
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '\''))
            {
                s.push_str(&format!("{:?}", a.as_ref()));
            } else {
                s.push_str(&a);
            }
        }
        s
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// What a child did.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    /// Either stream was longer than the cap (the rest was read and dropped).
    pub truncated: bool,
    /// The child ran past its timeout (killed, or waited for).
    pub timed_out: bool,
    pub duration: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0) && !self.timed_out
    }

    pub fn code(&self) -> Option<i32> {
        match self.exit {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }

    /// The last `max` bytes of stderr (or stdout if stderr is empty),
    /// trimmed to whole characters, control characters escaped: what a
    /// person needs to see, and nothing a terminal would act on.
    pub fn excerpt(&self, max: usize) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = text.trim();
        let mut start = text.len().saturating_sub(max);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        patchman_shared::escape_controls(&text[start..]).into_owned()
    }
}

/// Reads `r` to its end, keeping at most `cap` bytes.
fn read_capped(mut r: impl Read, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (kept, truncated)
}

/// The environment block of a child: [`BASE_ENV`] and the extras.
fn envp(cmd: &Cmd) -> Vec<CString> {
    BASE_ENV
        .iter()
        .copied()
        .chain(cmd.env.iter().map(ExtraEnv::pair))
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect()
}

/// Starts the child with `posix_spawn`: its own process group, an empty
/// signal mask and default dispositions (the helper blocks the signals it
/// waits for, and Rust ignores SIGPIPE; neither may leak into dpkg, rpm or
/// a maintainer script), stdin from /dev/null, stdout and stderr to pipes.
/// The helper's own working directory is `/` (set at start).
fn spawn(path: &Path, cmd: &Cmd) -> nix::Result<(Pid, File, File)> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
    let mut actions = PosixSpawnFileActions::init()?;
    actions.add_open(0, "/dev/null", OFlag::O_RDONLY, Mode::empty())?;
    actions.add_dup2(out_w.as_raw_fd(), 1)?;
    actions.add_dup2(err_w.as_raw_fd(), 2)?;
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    attr.set_pgroup(Pid::from_raw(0))?;
    attr.set_sigmask(&SigSet::empty())?;
    let defaults: SigSet = [
        Signal::SIGPIPE,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGCHLD,
    ]
    .into_iter()
    .collect();
    attr.set_sigdefault(&defaults)?;
    let mut argv = vec![CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?];
    for a in &cmd.args {
        argv.push(CString::new(a.as_bytes()).map_err(|_| Errno::EINVAL)?);
    }
    let pid = posix_spawn(path, &actions, &attr, &argv, &envp(cmd))?;
    // The parent keeps only the read ends.
    drop(out_w);
    drop(err_w);
    Ok((pid, File::from(out_r), File::from(err_r)))
}

/// Waits for `pid` (retrying on EINTR) and says how it ended.
fn wait_for(pid: Pid) -> Exit {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Exit::Code(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Exit::Signal(sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return Exit::Signal(0),
        }
    }
}

fn run_path(path: &Path, cmd: &Cmd) -> Result<Output, ExecError> {
    let started = Instant::now();
    let (pid, stdout, stderr) = spawn(path, cmd).map_err(|e| ExecError::Spawn {
        tool: cmd.tool,
        error: e.into(),
    })?;
    let pgid = pid;

    let (out_tx, out_rx) = mpsc::channel();
    for (which, pipe) in [(0u8, stdout), (1u8, stderr)] {
        let tx = out_tx.clone();
        let cap = cmd.output_cap;
        thread::spawn(move || {
            let _ = tx.send((which, read_capped(pipe, cap)));
        });
    }
    drop(out_tx);

    let (status_tx, status_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = status_tx.send(wait_for(pid));
    });

    let mut timed_out = false;
    let exit = match status_rx.recv_timeout(cmd.timeout) {
        Ok(s) => s,
        Err(_) => {
            timed_out = true;
            match cmd.on_timeout {
                OnTimeout::Kill => {
                    tracing::warn!(command = %cmd.display(), timeout = ?cmd.timeout, "timed out, killing its process group");
                    // Sent while the leader is not reaped: the group id
                    // cannot have been reused.
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                OnTimeout::Wait => {
                    tracing::warn!(command = %cmd.display(), timeout = ?cmd.timeout, "past its time limit; it must not be interrupted, waiting for it");
                }
            }
            status_rx.recv().unwrap_or(Exit::Signal(0))
        }
    };

    let mut streams: [(Vec<u8>, bool); 2] = Default::default();
    let grace_end = Instant::now() + PIPE_GRACE;
    for _ in 0..2 {
        let left = grace_end.saturating_duration_since(Instant::now());
        match out_rx.recv_timeout(left) {
            Ok((which, result)) => streams[usize::from(which)] = result,
            Err(_) => {
                tracing::warn!(command = %cmd.display(), "output pipe still open after exit (a daemon holds it); not waiting for it");
                streams[0].1 = true;
                break;
            }
        }
    }
    let [(out, out_trunc), (err, err_trunc)] = streams;
    let output = Output {
        exit,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        truncated: out_trunc || err_trunc,
        timed_out,
        duration: started.elapsed(),
    };
    // One line, at a level chosen per call (tracing's levels are static).
    macro_rules! ran_command {
        ($level:ident) => {
            tracing::$level!(
                command = %cmd.display(),
                exit = ?output.exit,
                timed_out = output.timed_out,
                duration_ms = output.duration.as_millis() as u64,
                "ran command"
            )
        };
    }
    if QUIET.with(|q| q.get()) {
        ran_command!(debug);
    } else {
        ran_command!(info);
    }
    Ok(output)
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While held, the commands this thread runs are logged at debug: those
/// of a read-only `Status`, which the agent may ask for in a loop (its
/// request line is bounded per peer; see `server::PeerLog`). The commands
/// of `Check` and `Update` are the audit trail and always logged at info.
pub struct QuietCommands(std::marker::PhantomData<*const ()>);

impl QuietCommands {
    pub fn new() -> QuietCommands {
        QUIET.with(|q| q.set(true));
        QuietCommands(std::marker::PhantomData)
    }
}

impl Default for QuietCommands {
    fn default() -> QuietCommands {
        QuietCommands::new()
    }
}

impl Drop for QuietCommands {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(false));
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Runs arbitrary real programs through the same machinery, for tests.
    use super::*;

    pub fn run_program(
        path: &Path,
        args: &[&str],
        timeout: Duration,
        on_timeout: OnTimeout,
        cap: usize,
    ) -> Output {
        let mut cmd = Cmd::new(Tool::Dpkg, timeout)
            .args(args.iter().copied())
            .output_cap(cap);
        cmd.on_timeout = on_timeout;
        run_path(path, &cmd).expect("spawn")
    }

    /// `/bin/sh -c script` through [`run_program`].
    pub fn sh(script: &str, timeout: Duration, on_timeout: OnTimeout, cap: usize) -> Output {
        run_program(
            Path::new("/bin/sh"),
            &["-c", script],
            timeout,
            on_timeout,
            cap,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{run_program, sh};
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    /// `/bin/sh -c script`, with a long timeout that kills and the usual
    /// output cap.
    fn sh_default(script: &str) -> Output {
        sh(script, LONG, OnTimeout::Kill, OUTPUT_CAP)
    }

    #[test]
    fn environment_is_cleared_and_fixed() {
        std::env::set_var("PATCHMAN_LEAK_TEST", "leaked");
        let out = run_program(
            Path::new("/usr/bin/env"),
            &[],
            LONG,
            OnTimeout::Kill,
            OUTPUT_CAP,
        );
        assert!(out.success());
        let mut lines: Vec<&str> = out.stdout.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "DEBIAN_FRONTEND=noninteractive",
                "LC_ALL=C",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
            ]
        );
    }

    #[test]
    fn extra_env_is_only_the_closed_set() {
        let cmd = Cmd::new(Tool::Dpkg, LONG).env(ExtraEnv::DpkgFrontendLocked);
        let out = run_path(Path::new("/usr/bin/env"), &cmd).unwrap();
        assert!(out.stdout.lines().any(|l| l == "DPKG_FRONTEND_LOCKED=1"));
        assert_eq!(out.stdout.lines().count(), 4);
    }

    #[test]
    fn stdin_is_dev_null() {
        let out = sh_default("cat; readlink /proc/self/fd/0");
        assert_eq!(out.stdout, "/dev/null\n");
    }

    #[test]
    fn children_start_with_no_blocked_or_ignored_signals() {
        // The helper blocks SIGTERM/SIGHUP/SIGINT in every thread (they are
        // waited for in one) and Rust ignores SIGPIPE: none of it may reach
        // dpkg or a maintainer script. Block them here as main does.
        let blocked: SigSet = [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT]
            .into_iter()
            .collect();
        let out = std::thread::spawn(move || {
            blocked.thread_block().unwrap();
            sh_default("grep -E '^Sig(Blk|Ign)' /proc/self/status")
        })
        .join()
        .unwrap();
        let mask = |name: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .expect("the mask")
        };
        assert_eq!(mask("SigBlk:"), 0, "{out:?}");
        // Signals 1–31; glibc keeps its two internal real-time signals
        // (32, 33) ignored across posix_spawn, which no tool uses.
        assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{out:?}");
    }

    #[test]
    fn output_is_capped_and_the_child_still_finishes() {
        // `yes` never stops on its own; head ends it after 8 MiB.
        let out = sh("yes | head -c 8388608", LONG, OnTimeout::Kill, 4096);
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout.len(), 4096);
        assert!(out.truncated);
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let script = format!("sleep 60 & echo $! > {}; wait", marker.path().display());
        let t0 = Instant::now();
        let out = sh(
            &script,
            Duration::from_millis(300),
            OnTimeout::Kill,
            OUTPUT_CAP,
        );
        assert!(out.timed_out);
        assert_eq!(out.exit, Exit::Signal(9));
        assert!(t0.elapsed() < Duration::from_secs(10));
        // The grandchild `sleep` was in the same group: it is gone too.
        let pid: i32 = std::fs::read_to_string(marker.path())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered asynchronously: give it a moment to land.
        let alive = || {
            nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ")
        };
        let t1 = Instant::now();
        while alive() && t1.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "grandchild {pid} survived the timeout");
    }

    #[test]
    fn never_kill_steps_are_waited_for_past_their_limit() {
        let out = sh(
            "sleep 1; echo done",
            Duration::from_millis(100),
            OnTimeout::Wait,
            OUTPUT_CAP,
        );
        assert!(out.timed_out);
        assert_eq!(out.exit, Exit::Code(0));
        assert_eq!(out.stdout, "done\n");
        assert!(
            !out.success(),
            "a step past its limit is reported, not silently successful"
        );
    }

    #[test]
    fn exit_codes_and_signals_are_reported() {
        let out = sh_default("echo oops >&2; exit 3");
        assert_eq!(out.exit, Exit::Code(3));
        assert_eq!(out.excerpt(100), "oops");
        let out = sh_default("kill -TERM $$");
        assert_eq!(out.exit, Exit::Signal(15));
    }

    #[test]
    fn a_daemon_holding_the_pipe_does_not_block_us() {
        let t0 = Instant::now();
        let out = sh_default("setsid sleep 20 & echo started");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert_eq!(out.exit, Exit::Code(0));
    }

    #[test]
    fn display_is_one_unambiguous_line() {
        let cmd = Cmd::new(Tool::DpkgQuery, LONG).args([
            "-W",
            "-f",
            "${Package}\t${Version}\n",
            "a b",
            "",
        ]);
        assert_eq!(
            cmd.display(),
            r#"dpkg-query -W -f "${Package}\t${Version}\n" "a b" """#
        );
        assert!(!cmd.display().contains('\n'));
    }

    #[test]
    fn a_scripts_terminal_escapes_never_reach_the_excerpt() {
        // As a maintainer script would print them: clear the screen, set
        // the title, write the clipboard (OSC 52), overwrite the line, and
        // an 8-bit CSI.
        let out = sh_default(
            r"printf 'ok\033[2J\033]0;t\007\033]52;c;aGk=\007\rX\302\2332J\n' >&2; exit 1",
        );
        assert!(out.stderr.contains('\u{1b}'), "the raw capture keeps them");
        let e = out.excerpt(200);
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
        assert_eq!(e, r"ok\x1b[2J\x1b]0;t\x07\x1b]52;c;aGk=\x07\rX\x9b2J");
    }

    #[test]
    fn excerpt_respects_char_boundaries() {
        let out = Output {
            exit: Exit::Code(1),
            stdout: "ééééé".into(),
            stderr: String::new(),
            truncated: false,
            timed_out: false,
            duration: Duration::ZERO,
        };
        assert_eq!(out.excerpt(3), "é");
    }

    #[test]
    fn resolves_real_tools_and_rejects_unsafe_paths() {
        let p = resolve(Tool::Dpkg).unwrap();
        assert!(p.is_absolute());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("prog");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(check_trusted(&f), Err(ExecError::Unsafe { .. })));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        // /tmp itself is world-writable (sticky): still refused.
        assert!(matches!(check_trusted(&f), Err(ExecError::Unsafe { .. })));
        assert!(matches!(
            Programs::default().run(&Cmd::new(Tool::Rpm, LONG)),
            Err(ExecError::NotResolved(Tool::Rpm))
        ));
    }
}
