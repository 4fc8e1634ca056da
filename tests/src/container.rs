//! A Debian system booted with systemd as PID 1, for the systemd tier:
//! `systemd-nspawn --register=no --keep-unit --boot` over an overlay of a
//! cached root file system from `tests/rootfs.sh SUITE`.
//!
//! How it is held:
//! * A holder process, `unshare --mount --propagation private sh -c …`, runs
//!   in a private mount namespace: it mounts a tmpfs in the test's directory,
//!   an overlay from it over the cached tree (which is never written), and
//!   starts `systemd-nspawn` on the overlay. The mounts live in that
//!   namespace only and go with its last process. A container booted with
//!   [`Container::boot_rebootable`] keeps the upper dir on disk in the
//!   test's directory instead, so [`Container::reboot`] can power it off
//!   and boot a new holder over the same file system.
//! * The holder's stdin is a pipe whose write end only this process holds.
//!   When it reaches end-of-file (the [`Container`] is dropped, or the test
//!   process is killed outright), a watchdog in the holder asks nspawn for
//!   an orderly shutdown (SIGTERM: nspawn tells PID 1 to halt), and after
//!   30 s SIGKILLs the container's PID 1 (which ends its whole PID
//!   namespace) and nspawn. So no container outlives its test.
//! * Commands run inside with `nsenter --target <PID 1> --all`: the
//!   container's mount, PID, IPC, UTS and cgroup namespaces (the network is
//!   the host's, so the container reaches the tests' HTTP servers on
//!   127.0.0.1). That needs nothing in the container (`--register=no` leaves
//!   machinectl out), works before and after any unit of ours exists, and
//!   returns the command's exit status and output directly. Every command
//!   is bounded by `timeout` inside the container, where the process tree
//!   it kills lives.
//! * A directory of the test is bind-mounted at [`SHARED`] for packages and
//!   results; files of the container are also reachable from the host at
//!   `/proc/<PID 1>/root/…`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd;

/// Where the test's shared directory appears inside the container.
pub const SHARED: &str = "/patchman-test";

/// How long a command inside may run unless the caller says otherwise.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Bounds of the boot and the shutdown.
const BOOT_WITHIN: Duration = Duration::from_secs(120);
const SHUTDOWN_WITHIN: Duration = Duration::from_secs(45);

/// The holder: mounts, then nspawn in the background, then the watchdog on
/// stdin (fd 3: a background list's stdin is /dev/null in sh). `mode`:
/// `tmpfs` (the upper dir dies with the holder), `disk` (the upper dir in
/// the test's directory, kept for [`Container::reboot`]), `again` (boot
/// once more over the upper dir a `disk` holder left).
const HOLDER: &str = r#"set -eu
lower=$1 layers=$2 shared=$3 console=$4 mode=$5
case $mode in
tmpfs) mount -t tmpfs -o mode=0700 patchman-container "$layers" ;;
esac
case $mode in
tmpfs | disk) mkdir "$layers/upper" "$layers/work" "$layers/root" ;;
esac
mount -t overlay overlay \
    -o "lowerdir=$lower,upperdir=$layers/upper,workdir=$layers/work" "$layers/root"
exec 3<&0 </dev/null
systemd-nspawn --quiet --register=no --keep-unit --boot \
    --directory="$layers/root" --bind="$shared:/patchman-test" \
    >>"$console" 2>&1 3<&- &
nspawn=$!
echo "nspawn $nspawn"
(
    cat <&3 >/dev/null
    kill -TERM "$nspawn" 2>/dev/null || exit 0
    i=0
    while kill -0 "$nspawn" 2>/dev/null && [ "$i" -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    for p in $(pgrep -P "$nspawn"); do kill -KILL "$p" 2>/dev/null; done
    kill -KILL "$nspawn" 2>/dev/null
) >/dev/null 2>&1 &
exec 3<&-
rc=0
wait "$nspawn" || rc=$?
exit "$rc"
"#;

/// A booted container; powered off when dropped.
pub struct Container {
    holder: Child,
    watchdog: Option<ChildStdin>,
    nspawn: u32,
    init: u32,
    lower: PathBuf,
    /// Whether the upper dir is on disk, kept across [`Container::reboot`].
    rebootable: bool,
    dir: tempfile::TempDir,
}

impl Container {
    /// Boots `suite` (`trixie`, …) from its cached tree, and waits until
    /// systemd reports the boot finished (`running` or `degraded`).
    pub fn boot(suite: &str) -> Result<Container> {
        Container::boot_with(suite, false)
    }

    /// Like [`boot`](Self::boot), with the overlay's upper dir on disk in
    /// the test's directory instead of a tmpfs, so that
    /// [`reboot`](Self::reboot) boots again over the same file system.
    pub fn boot_rebootable(suite: &str) -> Result<Container> {
        Container::boot_with(suite, true)
    }

    fn boot_with(suite: &str, rebootable: bool) -> Result<Container> {
        for tool in ["systemd-nspawn", "unshare", "nsenter", "pgrep"] {
            if which(tool).is_none() {
                bail!("`{tool}` not found: apt-get install systemd-container util-linux procps");
            }
        }
        if !nix::unistd::geteuid().is_root() {
            bail!("the systemd tier must run as root (it mounts overlays and boots containers)");
        }
        let lower = rootfs(suite)?;
        let dir = tempfile::Builder::new()
            .prefix("patchman-container.")
            .tempdir()
            .context("creating the container's directory")?;
        let layers = dir.path().join("layers");
        let shared = dir.path().join("shared");
        for d in [&layers, &shared] {
            std::fs::create_dir(d).with_context(|| format!("mkdir {}", d.display()))?;
        }
        for p in [&lower, &layers] {
            if p.to_string_lossy().contains([',', ':', '\\']) {
                bail!("{} cannot be an overlayfs option", p.display());
            }
        }
        let (holder, watchdog, nspawn) = start_holder(
            &lower,
            dir.path(),
            if rebootable { "disk" } else { "tmpfs" },
        )?;
        let mut container = Container {
            holder,
            watchdog,
            nspawn: 0,
            init: 0,
            lower,
            rebootable,
            dir,
        };
        container.started(nspawn)?;
        Ok(container)
    }

    /// Powers the container off (orderly, bounded as [`poweroff`]) and
    /// boots it again over the same upper dir: what was written inside
    /// survives, as on a machine's disk. Only for
    /// [`boot_rebootable`](Self::boot_rebootable).
    ///
    /// [`poweroff`]: Self::poweroff
    pub fn reboot(&mut self) -> Result<()> {
        if !self.rebootable {
            bail!("Container::reboot needs Container::boot_rebootable (the upper dir on disk)");
        }
        self.shutdown()?;
        let before = self.init;
        let (holder, watchdog, nspawn) = start_holder(&self.lower, self.dir.path(), "again")?;
        self.holder = holder;
        self.watchdog = watchdog;
        self.init = 0;
        self.started(nspawn)?;
        if self.init == before {
            bail!("the container's PID 1 is still {before} after the reboot");
        }
        Ok(())
    }

    /// After the holder printed its first line: nspawn's pid, the
    /// container's PID 1, the boot finished.
    fn started(&mut self, nspawn: Result<u32, String>) -> Result<()> {
        match nspawn {
            Ok(pid) => self.nspawn = pid,
            Err(line) => {
                let status = self.holder.wait().ok();
                bail!(
                    "the container holder failed ({status:?}; it printed {line:?}); console:\n{}",
                    self.console()
                );
            }
        }
        self.init = self.find_init()?;
        self.wait_booted()
    }

    /// The host's pid of the container's PID 1.
    pub fn init_pid(&self) -> u32 {
        self.init
    }

    /// The host side of [`SHARED`].
    pub fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    /// A path of the container's file system, as the host reaches it
    /// (through `/proc/<PID 1>/root`).
    pub fn host_path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/{}",
            self.init,
            inside.trim_start_matches('/')
        ))
    }

    /// What nspawn and the container's console printed.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// `nsenter … timeout LIMIT argv…` as root inside, with a clean
    /// environment; its output whatever the exit status.
    pub fn exec_within(&self, limit: Duration, argv: &[&str]) -> Result<Output> {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.init))
            .args(["--all", "--", "timeout", "--kill-after=5"])
            .arg(format!("{}", limit.as_secs().max(1)))
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .current_dir("/")
            .stdin(Stdio::null());
        cmd::output_unchecked(&mut c)
    }

    /// [`exec_within`](Self::exec_within) with [`COMMAND_TIMEOUT`].
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        self.exec_within(COMMAND_TIMEOUT, argv)
    }

    /// Runs `argv` inside; fails unless it exits 0; returns its stdout.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let out = self.exec(argv)?;
        if !out.status.success() {
            bail!(
                "`{}` in the container failed ({}):\n{}",
                argv.join(" "),
                out.status,
                cmd::output_text(&out)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `sh -c script` inside, as root; fails unless it exits 0.
    pub fn sh(&self, script: &str) -> Result<String> {
        self.run(&["sh", "-c", script])
    }

    /// Runs `argv` as `user` (its uid, gid and groups, no capability),
    /// output whatever the exit status.
    pub fn exec_as(&self, user: &str, argv: &[&str]) -> Result<Output> {
        let mut full = vec![
            "setpriv",
            "--reuid",
            user,
            "--regid",
            user,
            "--init-groups",
            "--inh-caps=-all",
            "--",
        ];
        full.extend_from_slice(argv);
        self.exec(&full)
    }

    /// `systemctl show -p PROPERTY --value UNIT`.
    pub fn unit_property(&self, unit: &str, property: &str) -> Result<String> {
        Ok(self
            .run(&["systemctl", "show", "-p", property, "--value", unit])?
            .trim()
            .to_owned())
    }

    /// `ActiveState` of `unit` (`active`, `inactive`, `failed`, …).
    pub fn active_state(&self, unit: &str) -> Result<String> {
        self.unit_property(unit, "ActiveState")
    }

    /// The main pid of `unit` (in the container's PID namespace), if any.
    pub fn main_pid(&self, unit: &str) -> Result<Option<u32>> {
        let pid: u32 = self.unit_property(unit, "MainPID")?.parse().unwrap_or(0);
        Ok((pid != 0).then_some(pid))
    }

    /// `journalctl --no-pager -o FORMAT ARGS…` (everything since boot).
    pub fn journal(&self, format: &str, args: &[&str]) -> Result<String> {
        let mut argv = vec!["journalctl", "--no-pager", "-o", format];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// Makes `repo` (signed with `keyring`, served at `url`) the apt source
    /// `patchman` inside.
    pub fn add_apt_repo(
        &self,
        repo: &crate::sandbox::apt_repo::AptRepo,
        keyring: &Path,
        url: &str,
    ) -> Result<()> {
        let inside = repo.sandbox_keyring_path().context("a signed repository")?;
        std::fs::create_dir_all(self.host_path("/etc/apt/keyrings"))?;
        std::fs::copy(keyring, self.host_path(&inside))?;
        std::fs::write(
            self.host_path("/etc/apt/sources.list.d/patchman.list"),
            repo.list_line(url),
        )?;
        Ok(())
    }

    /// What a failed wait in the container shows: the queued systemd jobs
    /// and the whole journal (each empty when unreadable).
    pub fn dump(&self) -> String {
        format!(
            "\n--- jobs\n{}\n--- journal\n{}",
            self.run(&["systemctl", "list-jobs"]).unwrap_or_default(),
            self.journal("short-precise", &[]).unwrap_or_default()
        )
    }

    /// Polls `f` every 200 ms until it returns `Ok(true)`, for at most
    /// `within`; an error from `f` ends the wait at once.
    pub fn wait_for(
        &self,
        what: &str,
        within: Duration,
        mut f: impl FnMut(&Container) -> Result<bool>,
    ) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if f(self)? {
                return Ok(());
            }
            if t0.elapsed() > within {
                bail!("timed out after {within:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Powers the container off and waits (bounded) for nspawn to exit;
    /// kills what is left after that.
    pub fn poweroff(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        // End-of-file on the watchdog's pipe: orderly shutdown, then kill.
        drop(self.watchdog.take());
        let t0 = Instant::now();
        while t0.elapsed() < SHUTDOWN_WITHIN {
            if self.holder.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in [self.init, self.nspawn] {
            if pid != 0 {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        bail!("the container did not power off within {SHUTDOWN_WITHIN:?}: killed")
    }

    /// The container's PID 1: nspawn's child, PID 1 in its own namespace.
    fn find_init(&mut self) -> Result<u32> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            for entry in std::fs::read_dir("/proc")?.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    continue;
                };
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.split_whitespace().collect::<Vec<_>>())
                        .unwrap_or_default()
                };
                let ppid = field("PPid:");
                let nspid = field("NSpid:");
                if ppid.first() == Some(&self.nspawn.to_string().as_str())
                    && nspid.len() >= 2
                    && nspid.last() == Some(&"1")
                {
                    return Ok(pid);
                }
            }
            if self.holder.try_wait()?.is_some() {
                bail!(
                    "systemd-nspawn exited at start; console:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "no container PID 1 under nspawn (pid {}) within 30 s",
            self.nspawn
        )
    }

    fn holder_exited(&self) -> bool {
        std::fs::metadata(format!("/proc/{}", self.nspawn)).is_err()
    }

    fn wait_booted(&self) -> Result<()> {
        // "offline" until PID 1 listens on its private socket; then --wait
        // returns when the boot's jobs are done. Both bounded.
        let t0 = Instant::now();
        let out = loop {
            let left = BOOT_WITHIN.saturating_sub(t0.elapsed());
            let out = self.exec_within(left, &["systemctl", "is-system-running", "--wait"])?;
            // Nothing on stdout: the socket does not exist yet.
            let offline = matches!(String::from_utf8_lossy(&out.stdout).trim(), "offline" | "");
            if !offline || left.is_zero() {
                break out;
            }
            if self.holder_exited() {
                bail!(
                    "systemd-nspawn exited while booting; console:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match state.as_str() {
            "running" => Ok(()),
            "degraded" => {
                let failed = self
                    .exec(&["systemctl", "--failed", "--no-legend"])
                    .map(|o| cmd::output_text(&o))
                    .unwrap_or_default();
                eprintln!("container: booted degraded; failed units:\n{failed}");
                Ok(())
            }
            _ => bail!(
                "the container did not finish booting within {BOOT_WITHIN:?} (state {state:?}, {}):\n{}\nconsole:\n{}",
                out.status,
                cmd::output_text(&out),
                self.console()
            ),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            if let Err(e) = self.shutdown() {
                eprintln!("container: {e:#}");
            }
        }
    }
}

/// The cached root file system of `suite`, from `tests/rootfs.sh` (which
/// builds it with debootstrap when the cache lacks it). Asked once per suite
/// and process: tests booting in parallel must not start one debootstrap
/// each.
pub fn rootfs(suite: &str) -> Result<PathBuf> {
    static KNOWN: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = known.get(suite) {
        return Ok(path.clone());
    }
    let path = rootfs_uncached(suite)?;
    known.insert(suite.to_owned(), path.clone());
    Ok(path)
}

fn rootfs_uncached(suite: &str) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs.sh");
    let mut c = Command::new("bash");
    c.arg(&script).arg(suite).stdin(Stdio::null());
    let out = cmd::stdout(&mut c)?;
    let path = PathBuf::from(
        out.lines()
            .last()
            .context("tests/rootfs.sh printed nothing")?
            .trim(),
    );
    if !path.join("usr/lib/systemd/systemd").is_file() {
        bail!(
            "{} has no systemd (tests/rootfs.sh {suite})",
            path.display()
        );
    }
    Ok(path)
}

/// Starts the holder (`HOLDER`) in `mode` over `lower` and `dir`'s layers;
/// returns it, its watchdog pipe, and nspawn's pid or the line it printed
/// instead.
fn start_holder(
    lower: &Path,
    dir: &Path,
    mode: &str,
) -> Result<(Child, Option<ChildStdin>, Result<u32, String>)> {
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        HOLDER,
        "sh",
    ])
    .arg(lower)
    .arg(dir.join("layers"))
    .arg(dir.join("shared"))
    .arg(dir.join("console.log"))
    .arg(mode)
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut holder = c.spawn().with_context(|| cmd::describe(&c))?;
    let watchdog = holder.stdin.take();
    let stdout = holder.stdout.take().context("the holder's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the holder's first line")?;
    let nspawn = line
        .strip_prefix("nspawn ")
        .and_then(|p| p.trim().parse::<u32>().ok())
        .ok_or(line);
    Ok((holder, watchdog, nspawn))
}

fn which(tool: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}
