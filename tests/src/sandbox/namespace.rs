//! [`Sandbox`]: a private mount namespace in which `/etc`, `/var`, `/opt`,
//! `/usr` (and `/root`, `/home`, `/srv`) are overlays over the host's, and
//! `/run` and `/tmp` are fresh tmpfs. The real dpkg and apt run inside it
//! against a copy-on-write view of the host's package database; the host
//! never changes.
//!
//! A holder process (`sandbox-init`, this crate's binary) creates the
//! namespace and its mounts and then just waits; every command of a test
//! enters it with `nsenter --target <holder> --mount`. Dropping the
//! [`Sandbox`] kills every process in the namespace and the holder, which
//! frees the mounts (they exist only in the namespace), then removes the
//! sandbox's temporary directory. Should the test process die without
//! dropping it, the holder sees its stdin close and exits by itself.
//!
//! Processes share the host's network (so `127.0.0.1` reaches an
//! [`HttpServer`](super::http::HttpServer)), `/proc`, `/sys` and `/dev`.
//!
//! [`Sandbox::with_rootfs`] is the root-file-system mode: the namespace's
//! root is an overlay over another system's tree (a Debian release made by
//! `tests/rootfs.sh`, never written), with its own `/proc`, the host's
//! `/sys` and `/dev`, fresh `/run` and `/tmp`; commands enter it with
//! `nsenter --mount --root --wd`, so they run that release's own apt,
//! dpkg, dnf and rpm. Every method works the same in both modes: a
//! scenario written against [`Sandbox`] runs on either.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::apt_repo::{AptRepo, SourceFormat};
use crate::cmd;

/// How long the holder may take to set up the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory (inside the sandbox) where [`Sandbox::install_debs`] copies
/// the packages it installs.
pub const SANDBOX_DEB_DIR: &str = "/var/cache/patchman-tests/debs";

/// `PATH` of every command run inside.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Setup run once inside every new sandbox:
/// * `docker-clean` (present in Debian's container images) deletes archived
///   `.deb`s after every apt run, which would hide exactly what the helper
///   downloads: remove it;
/// * hide the host's apt sources, lists and binary caches, so apt sees only
///   the sources a test adds (and does not try to reach the internet);
/// * create `/etc/apt/keyrings` for [`Sandbox::add_apt_repo`].
const SETUP_SCRIPT: &str = r#"set -e
rm -f /etc/apt/apt.conf.d/docker-clean
rm -f /etc/apt/sources.list
find /etc/apt/sources.list.d -mindepth 1 -maxdepth 1 -exec rm -rf {} +
mkdir -p /var/lib/apt/lists/partial /etc/apt/keyrings /var/cache/apt/archives/partial
find /var/lib/apt/lists -maxdepth 1 -type f ! -name lock -delete
rm -f /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*
"#;

/// [`SETUP_SCRIPT`] for [`Sandbox::with_host_indexes`]: the host's sources,
/// lists and binary caches stay, as on a real server.
const HOST_INDEXES_SETUP_SCRIPT: &str = r#"set -e
rm -f /etc/apt/apt.conf.d/docker-clean
mkdir -p /var/lib/apt/lists/partial /etc/apt/keyrings /var/cache/apt/archives/partial
"#;

/// A private mount namespace whose package state is a throwaway overlay of
/// the host's; see the module documentation.
#[derive(Debug)]
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    holder: Option<Child>,
    /// Kept open: the holder exits when it reads end-of-file here.
    holder_stdin: Option<ChildStdin>,
    holder_pid: u32,
    /// `readlink /proc/<holder>/ns/mnt`, e.g. `mnt:[4026532345]`.
    mount_ns: String,
    /// The tree under the overlay root, in the root-file-system mode.
    rootfs: Option<PathBuf>,
}

impl Sandbox {
    /// Starts a sandbox, with the workspace's build directory bound in when
    /// the fresh `/tmp` or `/run` would hide it (a `CARGO_TARGET_DIR` under
    /// `/tmp`), so [`workspace_bin`](crate::workspace_bin) paths work inside.
    ///
    /// Fails with a clear message without root, without the `sandbox-init`
    /// binary, or without `nsenter`.
    pub fn new() -> Result<Sandbox> {
        Self::start(None, &Self::build_dir_binds(), SETUP_SCRIPT)
    }

    /// Like [`new`](Self::new), but apt inside keeps the host's sources,
    /// lists and binary caches (what a server's apt sees; the benchmark's
    /// second setup). Commands that fetch then reach the host's sources.
    pub fn with_host_indexes() -> Result<Sandbox> {
        Self::start(None, &Self::build_dir_binds(), HOST_INDEXES_SETUP_SCRIPT)
    }

    fn build_dir_binds() -> Vec<PathBuf> {
        let mut binds = Vec::new();
        if let Some(dir) = crate::profile_dir().and_then(|d| d.canonicalize().ok()) {
            if dir.starts_with("/tmp") || dir.starts_with("/run") {
                binds.push(dir);
            }
        }
        binds
    }

    /// Starts a sandbox with these host paths bound read-only at the same
    /// paths inside (and nothing else bound).
    pub fn with_binds(binds: &[PathBuf]) -> Result<Sandbox> {
        Self::start(None, binds, SETUP_SCRIPT)
    }

    /// Starts a sandbox in the root-file-system mode over `tree` (see the
    /// module documentation); nothing of the host's file system is visible
    /// inside but `/sys` and `/dev`.
    pub fn with_rootfs(tree: &Path) -> Result<Sandbox> {
        Self::start(Some(tree), &[], SETUP_SCRIPT)
    }

    fn start(rootfs: Option<&Path>, binds: &[PathBuf], setup: &str) -> Result<Sandbox> {
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "the sandbox needs root: it mounts overlayfs and tmpfs in a private \
                 mount namespace (run the tests as root)"
            );
        }
        let init = crate::try_workspace_bin("sandbox-init")?;
        // `<tmp>/patchman-sandboxes/<pid>-XXXXXX`: the pid lets a later run
        // remove what a test process killed outright left behind.
        let parent = std::env::temp_dir().join("patchman-sandboxes");
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        crate::remove_stale_dirs(&parent, "");
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempdir_in(&parent)
            .context("creating the sandbox's temporary directory")?;
        let mut command = Command::new(&init);
        command.arg(dir.path());
        if let Some(tree) = rootfs {
            command.arg("--rootfs").arg(tree);
        }
        for b in binds {
            command.arg("--bind-ro").arg(b);
        }
        let mut holder = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", init.display()))?;
        let holder_pid = holder.id();
        let stdout = holder.stdout.take().context("holder stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
        });
        let mut sandbox = Sandbox {
            holder_stdin: holder.stdin.take(),
            holder: Some(holder),
            dir: Some(dir),
            holder_pid,
            mount_ns: String::new(),
            rootfs: rootfs.map(Path::to_path_buf),
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) if line.trim() == "ready" => {}
            other => {
                let stderr = sandbox.holder_stderr();
                bail!(
                    "the sandbox holder {} did not get ready ({}): {}",
                    init.display(),
                    match other {
                        Ok(Ok(line)) => format!("it printed {line:?}"),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer in {READY_TIMEOUT:?}"),
                    },
                    stderr.trim()
                );
            }
        }
        let mount_ns = mount_ns_of(holder_pid)?;
        if mount_ns == mount_ns_of(std::process::id())? {
            bail!("the sandbox holder shares the host's mount namespace; refusing to go on");
        }
        // Only now: Drop kills every process of this namespace.
        sandbox.mount_ns = mount_ns;
        sandbox
            .run(&["sh", "-c", setup])
            .context("preparing apt inside the sandbox")?;
        Ok(sandbox)
    }

    /// Stops the holder (if still running) and returns what it wrote on stderr.
    fn holder_stderr(&mut self) -> String {
        let Some(mut holder) = self.holder.take() else {
            return String::new();
        };
        let _ = holder.kill();
        let _ = holder.wait();
        let mut s = String::new();
        if let Some(mut e) = holder.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// The holder's pid (on the host), the target of `nsenter`.
    pub fn holder_pid(&self) -> u32 {
        self.holder_pid
    }

    /// The tree under the overlay root in the root-file-system mode, `None`
    /// in the host mode.
    pub fn rootfs(&self) -> Option<&Path> {
        self.rootfs.as_deref()
    }

    /// The namespace's identity, as `readlink /proc/<pid>/ns/mnt` shows it.
    pub fn mount_namespace(&self) -> &str {
        &self.mount_ns
    }

    /// The sandbox's temporary directory on the host (its writable layers
    /// are a tmpfs mounted on `<dir>/layers` visible only inside).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// A `Command` running `argv` inside the sandbox as root:
    /// `nsenter --target <holder> --mount -- argv…` (plus `--root --wd` in
    /// the root-file-system mode: the holder's root and cwd), with a clean
    /// environment (`PATH`, `LC_ALL=C`, `HOME=/root`,
    /// `DEBIAN_FRONTEND=noninteractive`), cwd `/` and stdin `/dev/null`.
    /// Add to it (env, stdin, …) before running.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.holder_pid))
            .arg("--mount");
        if self.rootfs.is_some() {
            c.args(["--root", "--wd"]);
        }
        c.arg("--")
            .args(argv)
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("HOME", "/root")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .current_dir("/")
            .stdin(Stdio::null());
        c
    }

    /// A `Command` running `argv` inside the sandbox as `user` (a name in the
    /// sandbox's `/etc/passwd`), through `setpriv --reuid --regid
    /// --init-groups` (so no capability is kept), with `HOME`, `USER` and
    /// `LOGNAME` from that passwd entry.
    pub fn command_as(&self, user: &str, argv: &[&str]) -> Result<Command> {
        let entry = self.passwd_entry(user)?;
        let mut setpriv = vec![
            "setpriv".to_owned(),
            format!("--reuid={}", entry.uid),
            format!("--regid={}", entry.gid),
            "--init-groups".to_owned(),
            "--".to_owned(),
        ];
        setpriv.extend(argv.iter().map(|s| (*s).to_owned()));
        let refs: Vec<&str> = setpriv.iter().map(String::as_str).collect();
        let mut c = self.command(&refs);
        c.env("HOME", &entry.home)
            .env("USER", user)
            .env("LOGNAME", user);
        Ok(c)
    }

    /// Runs `argv` inside as root; fails unless it exits 0, with the argv,
    /// status and stderr in the error.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        cmd::output(&mut self.command(argv))
    }

    /// Runs `argv` inside as root and returns its output whatever its status.
    pub fn run_unchecked(&self, argv: &[&str]) -> Result<Output> {
        cmd::output_unchecked(&mut self.command(argv))
    }

    /// Runs `argv` inside as root and returns its stdout (as [`run`](Self::run)).
    pub fn run_stdout(&self, argv: &[&str]) -> Result<String> {
        cmd::stdout(&mut self.command(argv))
    }

    /// Runs `argv` inside as `user`; fails unless it exits 0.
    pub fn run_as(&self, user: &str, argv: &[&str]) -> Result<Output> {
        cmd::output(&mut self.command_as(user, argv)?)
    }

    /// Runs `argv` inside as `user`, whatever its status.
    pub fn run_as_unchecked(&self, user: &str, argv: &[&str]) -> Result<Output> {
        cmd::output_unchecked(&mut self.command_as(user, argv)?)
    }

    /// Starts `argv` inside as root without waiting (stdout and stderr
    /// piped). The child's pid is the program's own: `nsenter` without
    /// `--pid` execs it in place, so signals sent to the child reach it.
    /// Whatever is still running when the sandbox is dropped is killed.
    ///
    /// Returns once the child has entered the namespace (or exited), so a
    /// [`Sandbox`] dropped right after still finds and kills it.
    pub fn spawn(&self, argv: &[&str]) -> Result<Child> {
        self.spawn_command(self.command(argv))
    }

    /// Like [`spawn`](Self::spawn), as `user`.
    pub fn spawn_as(&self, user: &str, argv: &[&str]) -> Result<Child> {
        self.spawn_command(self.command_as(user, argv)?)
    }

    /// Spawns `c` (from [`command`](Self::command) or
    /// [`command_as`](Self::command_as)) with stdout and stderr piped unless
    /// set otherwise, and waits until it has entered the namespace.
    pub fn spawn_command(&self, mut c: Command) -> Result<Child> {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .with_context(|| format!("starting `{}` in the sandbox", cmd::describe(&c)))?;
        // nsenter runs for a moment in the host's namespace before setns();
        // a Drop scanning the namespace in that moment would miss it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none()
            && !mount_ns_of(child.id()).is_ok_and(|ns| ns == self.mount_ns)
        {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`{}` did not enter the sandbox in 10 s", cmd::describe(&c));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(child)
    }

    /// Holds an exclusive fcntl lock on `path` inside the sandbox (as apt,
    /// dpkg and rpm take theirs: another frontend at work) from a process of
    /// its own, until the returned [`LockHolder`] is dropped. Returns once
    /// the lock is taken.
    pub fn hold_lock(&self, path: &str) -> Result<LockHolder> {
        let mut child = self.spawn(&["python3", "-c", HOLD_LOCK, path])?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("the lock holder's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
        });
        let holder = LockHolder { child };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(l)) if l.trim() == "locked" => Ok(holder),
            other => bail!("the lock holder on {path} did not take it: {other:?}"),
        }
    }

    /// Writes `contents` to `path` inside the sandbox (parents created,
    /// mode 0644 for a new file, as root).
    ///
    /// Done by a process inside rather than through `/proc/<pid>/root`:
    /// absolute symlinks met on that path (`/var/run` → `/run`) would resolve
    /// against the *host's* root.
    pub fn write_file(&self, path: &str, contents: impl AsRef<[u8]>) -> Result<()> {
        let mut c = self.command(&[
            "sh",
            "-c",
            r#"mkdir -p -- "$(dirname -- "$1")" && cat > "$1""#,
            "sh",
            path,
        ]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .with_context(|| format!("writing {path} in the sandbox"))?;
        let mut stdin = child.stdin.take().context("stdin")?;
        let contents = contents.as_ref().to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&contents));
        let out = child.wait_with_output()?;
        let written = writer
            .join()
            .map_err(|_| anyhow!("writer thread panicked"))?;
        cmd::check(&c, &out).with_context(|| format!("writing {path} in the sandbox"))?;
        written.with_context(|| format!("writing {path} in the sandbox"))
    }

    /// [`write_file`](Self::write_file), then `chmod mode`.
    pub fn write_file_mode(&self, path: &str, contents: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        self.write_file(path, contents)?;
        self.run(&["chmod", &format!("{mode:o}"), "--", path])?;
        Ok(())
    }

    /// The contents of `path` inside the sandbox.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        Ok(self
            .run(&["cat", "--", path])
            .with_context(|| format!("reading {path} in the sandbox"))?
            .stdout)
    }

    /// The contents of `path` inside the sandbox, as UTF-8.
    pub fn read_to_string(&self, path: &str) -> Result<String> {
        String::from_utf8(self.read_file(path)?).with_context(|| format!("{path} is not UTF-8"))
    }

    /// Whether `path` exists inside the sandbox (without following a final
    /// symlink).
    pub fn exists(&self, path: &str) -> Result<bool> {
        let out =
            self.run_unchecked(&["sh", "-c", r#"test -e "$1" || test -L "$1""#, "sh", path])?;
        Ok(out.status.success())
    }

    /// Copies the host file `host_path` to `path` inside the sandbox.
    pub fn copy_in(&self, host_path: &Path, path: &str) -> Result<()> {
        let bytes =
            std::fs::read(host_path).with_context(|| format!("reading {}", host_path.display()))?;
        self.write_file(path, bytes)
    }

    /// Creates a system user and group `name` (`useradd --system
    /// --user-group`, no home, shell `nologin`); only the sandbox's overlaid
    /// `/etc` changes.
    pub fn add_system_user(&self, name: &str) -> Result<()> {
        self.run(&[
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--",
            name,
        ])
        .with_context(|| format!("adding the system user {name} in the sandbox"))?;
        Ok(())
    }

    /// `user`'s uid, gid and home in the sandbox's `/etc/passwd`.
    pub fn passwd_entry(&self, user: &str) -> Result<PasswdEntry> {
        let passwd = self.read_to_string("/etc/passwd")?;
        passwd
            .lines()
            .find_map(|l| PasswdEntry::parse(l).filter(|e| e.name == user))
            .with_context(|| format!("no user {user:?} in the sandbox's /etc/passwd"))
    }

    /// Writes `/etc/apt/sources.list.d/<name>.list` (or `.sources`) and
    /// returns its path.
    pub fn add_apt_source(
        &self,
        name: &str,
        format: SourceFormat,
        content: &str,
    ) -> Result<String> {
        let path = format!("/etc/apt/sources.list.d/{name}.{}", format.extension());
        self.write_file(&path, content)?;
        Ok(path)
    }

    /// Installs `repo`'s keyring at its
    /// [`sandbox_keyring_path`](AptRepo::sandbox_keyring_path) and adds it
    /// as the source `name`, served at `base_url`
    /// ([`HttpServer::url`](super::http::HttpServer::url)). Returns the
    /// source file's path.
    pub fn add_apt_repo(
        &self,
        name: &str,
        repo: &AptRepo,
        base_url: &str,
        format: SourceFormat,
    ) -> Result<String> {
        if let (Some(host), Some(inside)) = (&repo.keyring, repo.sandbox_keyring_path()) {
            self.copy_in(host, &inside)?;
        }
        self.add_apt_source(name, format, &repo.source(base_url, format))
    }

    /// Copies the host `.deb`s into [`SANDBOX_DEB_DIR`] and installs them
    /// in one `dpkg -i`; fails unless dpkg exits 0.
    pub fn install_debs(&self, debs: &[&Path]) -> Result<Output> {
        self.install_package_files(&["dpkg", "-i"], debs, SANDBOX_DEB_DIR)
    }

    /// Copies the host package files `files` into `dir` inside and runs
    /// `command` on them there, in one transaction; fails unless it exits 0.
    pub(crate) fn install_package_files(
        &self,
        command: &[&str],
        files: &[&Path],
        dir: &str,
    ) -> Result<Output> {
        let mut argv: Vec<String> = command.iter().map(|a| a.to_string()).collect();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("bad package path {}", file.display()))?;
            let inside = format!("{dir}/{name}");
            self.copy_in(file, &inside)?;
            argv.push(inside);
        }
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.run(&refs)
            .with_context(|| format!("installing packages in the sandbox ({})", command.join(" ")))
    }

    /// `(status, version)` of `package` from `dpkg-query`, e.g.
    /// `("install ok installed", "1.7.0-1")`; `None` when dpkg does not
    /// know it or its status ends in `not-installed`.
    pub fn dpkg_status(&self, package: &str) -> Result<Option<(String, String)>> {
        let out = self.run_unchecked(&[
            "dpkg-query",
            "--show",
            "--showformat=${Status}\t${Version}",
            "--",
            package,
        ])?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (status, version) = text.split_once('\t').unwrap_or((&text, ""));
        if status.ends_with("not-installed") {
            return Ok(None);
        }
        Ok(Some((status.to_owned(), version.to_owned())))
    }

    /// The whole package database as
    /// `dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\n'`
    /// prints it (sorted by package), for before/after comparisons.
    pub fn package_db_snapshot(&self) -> Result<String> {
        self.run_stdout(&[
            "dpkg-query",
            "--show",
            "--showformat=${Package} ${Version} ${db:Status-Abbrev}\n",
        ])
    }

    /// The namespace's mount table, as `/proc/<holder>/mountinfo` lists it.
    pub fn mountinfo(&self) -> Result<String> {
        std::fs::read_to_string(format!("/proc/{}/mountinfo", self.holder_pid))
            .context("reading the sandbox's mountinfo")
    }

    /// Pids (on the host) of every process in the namespace but the holder.
    pub fn processes(&self) -> Vec<u32> {
        pids_in_namespace(&self.mount_ns)
            .into_iter()
            .filter(|p| *p != self.holder_pid)
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Kill every process in the namespace, the holder last: the mounts
        // go when the last process holding the namespace is gone.
        let ours = mount_ns_of(std::process::id()).unwrap_or_default();
        if !self.mount_ns.is_empty() && self.mount_ns != ours {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let pids = self.processes();
                if pids.is_empty() || Instant::now() > deadline {
                    break;
                }
                for pid in pids {
                    if let Ok(pid) = i32::try_from(pid) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.holder_stdin.take();
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Python taking an exclusive fcntl lock on `argv[1]` (created if missing),
/// saying `locked`, then holding it until killed (or 120 s).
const HOLD_LOCK: &str = "import fcntl,sys,time\nf=open(sys.argv[1],'a')\n\
fcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(120)";

/// A process inside a [`Sandbox`] holding a lock
/// ([`Sandbox::hold_lock`]); killed when dropped.
#[derive(Debug)]
pub struct LockHolder {
    child: Child,
}

impl LockHolder {
    /// Kills the holder and waits for it: the lock is free on return.
    pub fn release(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// Numeric uid.
    pub uid: u32,
    /// Numeric primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

impl PasswdEntry {
    /// Parses `name:x:uid:gid:gecos:home:shell`.
    pub fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0].to_owned(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_owned(),
        })
    }
}

fn mount_ns_of(pid: u32) -> Result<String> {
    let link = format!("/proc/{pid}/ns/mnt");
    Ok(std::fs::read_link(&link)
        .with_context(|| format!("reading {link}"))?
        .to_string_lossy()
        .into_owned())
}

/// Pids of the processes whose mount namespace is `ns`.
fn pids_in_namespace(ns: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| mount_ns_of(*pid).is_ok_and(|n| n == ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        assert_eq!(
            PasswdEntry::parse("patchman:x:998:998::/nonexistent:/usr/sbin/nologin"),
            Some(PasswdEntry {
                name: "patchman".into(),
                uid: 998,
                gid: 998,
                home: "/nonexistent".into()
            })
        );
        assert_eq!(PasswdEntry::parse("broken:x:1"), None);
    }
}
