//! The authenticated agent↔helper channel, through the real socket: the
//! real `patchman-helper` binary as root on a temporary socket, clients as
//! the agent user (`nobody` here) and as other uids, switched with
//! `Command::uid`. Needs root: fails (never skips) without it.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patchman_tests::workspace_bin;

/// The agent user for these tests: present on every Debian system.
const AGENT: &str = "nobody";
const AGENT_UID: u32 = 65534;
const AGENT_GID: u32 = 65534;

/// The command line that runs `program` with a `login.defs` whose system
/// uid range includes `nobody`, this file's agent (the host's own puts
/// 65534 outside it, and the helper refuses such an agent, as
/// `the_helper_refuses_to_start_wrongly` checks): in a private mount
/// namespace, over the real one. `unshare` and `sh` exec in place, so the
/// helper keeps the pid (signals, `LISTEN_PID`).
fn helper_command_line(program: &Path) -> Vec<std::ffi::OsString> {
    // Written once per run: tests in parallel must never see it empty.
    static DEFS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let defs = DEFS.get_or_init(|| {
        let defs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("channel-login.defs");
        let staged = defs.with_extension(format!("{}", std::process::id()));
        std::fs::write(&staged, "SYS_UID_MIN 100\nSYS_UID_MAX 65534\n").unwrap();
        std::fs::rename(&staged, &defs).unwrap();
        defs
    });
    let mut line: Vec<std::ffi::OsString> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        r#"mount --bind "$0" /etc/login.defs && exec "$@""#,
    ]
    .iter()
    .map(Into::into)
    .collect();
    line.push(defs.into());
    line.push(program.into());
    line
}

fn helper_command(program: &Path) -> Command {
    let line = helper_command_line(program);
    let mut cmd = Command::new(&line[0]);
    cmd.args(&line[1..]);
    cmd
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests start the real helper and must run as root (sudo cargo test)"
    );
}

/// A temporary directory that other users may enter (mode 0755): the
/// agent user reaches the helper's socket below it.
fn enterable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

struct Helper {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
}

impl Helper {
    fn start() -> Helper {
        Helper::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Helper {
        require_root();
        let dir = enterable_tempdir();
        let socket = dir.path().join("run/helper.sock");
        let config = dir.path().join("patchman.ini");
        std::fs::write(&config, "[updates]\nrepository = patchman\n").unwrap();
        let log = dir.path().join("helper.log");
        let child = helper_command(&workspace_bin("patchman-helper"))
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(&config)
            .args(["--agent-user", AGENT])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let h = Helper {
            child,
            dir,
            socket,
            log,
        };
        wait_for_socket(&h.socket, || h.log());
        h
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// Runs `probe` with `actions` as `uid:gid`; returns its stdout.
    fn probe(&self, uid: u32, gid: u32, actions: &[&str]) -> String {
        String::from_utf8(probe_at(&self.socket, uid, gid, actions).stdout).unwrap()
    }

    fn agent(&self, args: &[&str]) -> Output {
        agent_at(&self.socket, AGENT_UID, AGENT_GID, args)
    }

    /// A new directory `name` beside the helper's files.
    fn new_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    /// Writes `ini` to its patchman.ini, sends SIGHUP, and waits until it
    /// logs `logged`.
    fn reload_with(&self, ini: &str, logged: &str) {
        std::fs::write(self.dir.path().join("patchman.ini"), ini).unwrap();
        kill(self.pid(), Signal::SIGHUP).unwrap();
        self.wait_for_log(logged, 1);
    }

    /// Waits (at most 5 s) until the log holds `what` `n` times.
    fn wait_for_log(&self, what: &str, n: usize) {
        let t0 = Instant::now();
        while self.log().matches(what).count() < n {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "no {what:?} (#{n}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(mut self) -> (std::process::ExitStatus, String) {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        (status, self.log())
    }
}

/// Waits (at most 10 s) for the helper to create `socket`; `log` is what
/// it logged, shown when it does not.
fn wait_for_socket(socket: &Path, log: impl Fn() -> String) {
    let t0 = Instant::now();
    while !socket.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the helper did not create {}:\n{}",
            socket.display(),
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `probe <socket> <actions>` as `uid:gid`.
fn probe_at(socket: &Path, uid: u32, gid: u32, actions: &[&str]) -> Output {
    Command::new(workspace_bin("probe"))
        .arg(socket)
        .args(actions)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

/// Runs `patchman-agent --socket <socket> <args>` as `uid:gid`.
fn agent_at(socket: &Path, uid: u32, gid: u32, args: &[&str]) -> Output {
    Command::new(workspace_bin("patchman-agent"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "agent status failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the host's own dpkg database says about a package (read-only).
fn host_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev} ${Version}", package])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (state, version) = text.split_once(' ')?;
    state.starts_with("ii").then(|| version.trim().to_string())
}

#[test]
fn socket_and_directory_have_the_designed_owners_and_modes() {
    let h = Helper::start();
    let dir = std::fs::metadata(h.socket.parent().unwrap()).unwrap();
    assert_eq!(
        (dir.uid(), dir.gid(), dir.mode() & 0o7777),
        (0, AGENT_GID, 0o750)
    );
    let sock = std::fs::metadata(&h.socket).unwrap();
    assert_eq!(
        (sock.uid(), sock.gid(), sock.mode() & 0o7777),
        (0, AGENT_GID, 0o660)
    );
}

#[test]
fn the_agent_user_is_served_status_with_the_interface_fields() {
    let h = Helper::start();
    let json = status_json(&h.agent(&["status", "--json"]));
    assert_eq!(json["family"], "apt", "this test host is Debian: {json}");
    for p in ["client", "realtime"] {
        let name = if p == "client" {
            "patchman-client"
        } else {
            "patchman-client-realtime"
        };
        let want = host_version(name)
            .map(serde_json::Value::String)
            .unwrap_or(serde_json::Value::Null);
        assert_eq!(json["installed"][p], want, "{json}");
    }
    assert_eq!(json["helper_version"], env!("CARGO_PKG_VERSION"));
    let human = h.agent(&["status"]);
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stdout).contains("family:                   apt"));
    assert!(
        h.log().contains("request=\"status\""),
        "requests are logged:\n{}",
        h.log()
    );
}

#[test]
fn other_uids_are_denied_or_cannot_connect() {
    let h = Helper::start();
    // In the socket's group but not the agent's uid: SO_PEERCRED denies it.
    let out = h.probe(12345, AGENT_GID, &["hello", "recv"]);
    assert!(out.contains("reply Denied"), "{out}");
    // Root is not the agent either.
    let out = h.probe(0, 0, &["hello", "recv"]);
    assert!(out.contains("reply Denied"), "{out}");
    // Neither uid nor group: the socket's mode keeps it out entirely.
    let out = h.probe(12345, 12345, &["hello", "recv"]);
    assert!(out.contains("connect-error PermissionDenied"), "{out}");
    let denied = agent_at(&h.socket, 12345, AGENT_GID, &["status"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("refused this user"));
    assert!(
        h.log().contains("denied: not the agent user"),
        "{}",
        h.log()
    );
    assert!(h.log().contains("peer_uid=12345"), "{}", h.log());
}

#[test]
fn a_4_gib_length_prefix_closes_that_connection_and_the_helper_keeps_serving() {
    let h = Helper::start();
    let rss_before = h.rss_kib();
    let out = h.probe(AGENT_UID, AGENT_GID, &["raw:ffffffff", "recv", "recv"]);
    assert!(out.contains("reply Failed(Protocol"), "{out}");
    assert!(out.contains("exceeds the 65536-byte limit"), "{out}");
    assert!(out.contains("closed"), "{out}");
    // Also after Hello, and with garbage instead of a frame.
    let out = h.probe(
        AGENT_UID,
        AGENT_GID,
        &["hello", "recv", "raw:ffffffff00", "recv", "recv"],
    );
    assert!(out.contains("reply Welcome"), "{out}");
    assert!(out.contains("closed"), "{out}");
    let out = h.probe(AGENT_UID, AGENT_GID, &["raw:0100000063", "recv"]);
    assert!(
        out.contains("reply Failed(Protocol"),
        "unknown variant: {out}"
    );
    let out = h.probe(AGENT_UID, AGENT_GID, &["raw:020000000200", "recv"]);
    assert!(
        out.contains("reply Failed(Protocol"),
        "trailing bytes: {out}"
    );
    status_json(&h.agent(&["status", "--json"]));
    assert!(
        h.rss_kib() < rss_before + 8 * 1024,
        "RSS grew from {rss_before} KiB to {} KiB",
        h.rss_kib()
    );
}

#[test]
fn wrong_protocol_version_gets_unsupported() {
    let h = Helper::start();
    let out = h.probe(AGENT_UID, AGENT_GID, &["hello:999", "recv", "recv"]);
    assert!(
        out.contains("reply Unsupported { helper_protocol: 1 }"),
        "{out}"
    );
    assert!(out.contains("closed"), "{out}");
}

#[test]
fn requests_before_hello_and_a_second_hello_are_refused() {
    let h = Helper::start();
    let out = h.probe(AGENT_UID, AGENT_GID, &["req:update", "recv", "recv"]);
    assert!(out.contains("update is not allowed here"), "{out}");
    assert!(out.contains("closed"), "{out}");
    let out = h.probe(AGENT_UID, AGENT_GID, &["hello", "recv", "hello", "recv"]);
    assert!(out.contains("hello is not allowed here"), "{out}");
}

#[test]
fn two_hundred_idle_connections_do_not_lock_out_the_agent() {
    let h = Helper::start();
    let mut hog = Command::new(workspace_bin("probe"))
        .arg(&h.socket)
        .arg("hold:200:8000")
        .uid(AGENT_UID)
        .gid(AGENT_GID)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(hog.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("holding 200"), "{line}");
    let t0 = Instant::now();
    let json = status_json(&h.agent(&["status", "--json"]));
    let took = t0.elapsed();
    assert_eq!(json["family"], "apt");
    assert!(took < Duration::from_secs(5), "served after {took:?}");
    assert!(
        h.rss_kib() < 32 * 1024,
        "helper RSS {} KiB with 200 connections",
        h.rss_kib()
    );
    assert!(h.log().contains("connection limit reached"), "{}", h.log());
    hog.kill().unwrap();
    hog.wait().unwrap();
}

#[test]
fn a_slow_sender_is_dropped_after_the_frame_deadline() {
    let h = Helper::start();
    // Hello, one byte every 3 s: the whole frame would take 18 s; the
    // helper allows 10 s for a frame, however it is sliced.
    let out = h.probe(AGENT_UID, AGENT_GID, &["drip:020000000001:3000", "recv"]);
    assert!(out.contains("closed"), "{out}");
    let elapsed: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("elapsed_ms "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (9_000..17_000).contains(&elapsed),
        "dropped after {elapsed} ms: {out}"
    );
    assert!(h.log().contains("timed out"), "{}", h.log());
    status_json(&h.agent(&["status", "--json"]));
}

#[test]
fn sigterm_removes_the_socket_and_exits_0() {
    let h = Helper::start();
    let socket = h.socket.clone();
    let (status, log) = h.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!socket.exists());
}

#[test]
fn sighup_rereads_the_repository_name() {
    let h = Helper::start();
    h.reload_with(
        "[updates]\nrepository = patchman-beta\n",
        "repository=patchman-beta",
    );
    // A bad value is refused and the old one kept.
    h.reload_with(
        "[updates]\nrepository = -o evil\n",
        "keeping the previous one",
    );
    status_json(&h.agent(&["status", "--json"]));
}

#[test]
fn the_helper_refuses_to_start_wrongly() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/helper.sock");
    let run = |uid: u32, args: &[&str]| {
        let mut cmd = if uid == 0 {
            helper_command(&workspace_bin("patchman-helper"))
        } else {
            Command::new(workspace_bin("patchman-helper"))
        };
        cmd.arg("--socket")
            .arg(&socket)
            .args(args)
            .uid(uid)
            .output()
            .unwrap()
    };
    let out = run(AGENT_UID, &["--agent-user", AGENT]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"));
    let out = run(0, &["--agent-user", "root"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be unprivileged"));
    let out = run(0, &["--agent-user", "no-such-user-here"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = run(0, &["--bogus"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
    // With the host's own login.defs (Debian: 100..999), `nobody` (65534)
    // is not a system account: refused, as a login user `patchman` is.
    let out = Command::new(workspace_bin("patchman-helper"))
        .arg("--socket")
        .arg(&socket)
        .args(["--agent-user", AGENT])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("agent user \"nobody\" has uid 65534, outside the system range 100..=999"),
        "{err}"
    );
    assert!(err.contains("adduser --system"), "{err}");
    assert!(!Path::new(&socket).exists());
    // A world-writable socket directory is refused.
    std::fs::create_dir(dir.path().join("run")).unwrap();
    std::fs::set_permissions(
        dir.path().join("run"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let out = run(0, &["--agent-user", AGENT]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("group- or world-writable"),
        "{out:?}"
    );
    assert!(!Path::new(&socket).exists());
}

#[test]
fn the_agent_refuses_root_and_explains_an_unreachable_helper() {
    let agent = workspace_bin("patchman-agent");
    let out = Command::new(&agent).args(["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not run as root"));
    let out = Command::new(&agent)
        .args(["--socket", "/nonexistent/helper.sock", "status"])
        .uid(AGENT_UID)
        .gid(AGENT_GID)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the helper at /nonexistent/helper.sock"),
        "{err}"
    );
    assert!(err.contains("is patchman-helper running"), "{err}");
    let out = Command::new(&agent).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
}

#[test]
fn a_sticky_world_writable_directory_like_tmp_is_refused() {
    require_root();
    // In /tmp another user can bind the path before the helper starts and
    // serve the agent; the helper will not use such a directory.
    let name = format!("/tmp/patchman-helper-test-{}.sock", std::process::id());
    let mut cmd = helper_command(&workspace_bin("patchman-helper"));
    cmd.args([
        "--socket",
        &name,
        "--agent-user",
        AGENT,
        "--config",
        "/nonexistent.ini",
    ]);
    let out = output_within(cmd, Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unsafe socket directory /tmp"), "{err}");
    assert!(err.contains("sticky or not"), "{err}");
    assert!(!Path::new(&name).exists());
}

/// A relay a compromised (or any other) non-root account could run: it
/// listens on `listen` and forwards every connection, both ways, to the
/// real helper at `target`.
const RELAY: &str = r#"
import os, socket, sys, threading
listen, target = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX)
srv.bind(listen)
os.chmod(listen, 0o666)
srv.listen(8)
print("listening", flush=True)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    u = socket.socket(socket.AF_UNIX)
    u.connect(target)
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"#;

#[test]
fn the_agent_refuses_a_relay_that_is_not_root() {
    let h = Helper::start();
    // The relay runs as the agent's own uid, so the real helper serves it:
    // only the agent's check of who listens can tell it from the helper.
    let relay_dir = h.new_dir("relay");
    nix::unistd::chown(
        &relay_dir,
        Some(nix::unistd::Uid::from_raw(AGENT_UID)),
        Some(nix::unistd::Gid::from_raw(AGENT_GID)),
    )
    .unwrap();
    let relay_sock = relay_dir.join("helper.sock");
    let mut relay = KillOnDrop(
        Command::new("/usr/bin/python3")
            .args(["-c", RELAY])
            .arg(&relay_sock)
            .arg(&h.socket)
            .uid(AGENT_UID)
            .gid(AGENT_GID)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (in tests/ci.sh's packages)"),
    );
    let mut line = String::new();
    BufReader::new(relay.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening");
    // Control: the relay really reaches the helper and is served.
    let out = probe_at(&relay_sock, AGENT_UID, AGENT_GID, &["hello", "recv"]);
    let probe = String::from_utf8_lossy(&out.stdout);
    assert!(probe.contains("reply Welcome"), "relay forwards: {probe}");
    let out = agent_at(&relay_sock, AGENT_UID, AGENT_GID, &["status", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the agent used the relay: {out:?}"
    );
    assert!(
        err.contains(&format!("runs as uid {AGENT_UID}, not root")),
        "{err}"
    );
    assert!(err.contains("it is not patchman-helper"), "{err}");
    assert!(out.stdout.is_empty(), "nothing printed as the helper's");
    // The same agent through the real socket is served.
    status_json(&h.agent(&["status", "--json"]));
}

/// Runs `cmd` to its end, or kills it after `limit` and fails the test.
fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // Not reaped yet (the waiting thread holds it): the pid is ours.
            let _ = kill(pid, Signal::SIGKILL);
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A process the test started, killed and reaped however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn socket_activation_takes_the_socket_from_systemd() {
    require_root();
    let dir = enterable_tempdir();
    let socket = dir.path().join("helper.sock");
    let log = dir.path().join("helper.log");
    // systemd-socket-activate binds the socket and passes it as fd 3 with
    // LISTEN_FDS/LISTEN_PID, as systemd does for patchman-helper.socket.
    let mut child = Command::new("systemd-socket-activate")
        .arg("--listen")
        .arg(&socket)
        .args(helper_command_line(&workspace_bin("patchman-helper")))
        .args(["--agent-user", AGENT, "--config", "/nonexistent.ini"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("systemd-socket-activate (package systemd) is needed");
    wait_for_socket(&socket, || {
        std::fs::read_to_string(&log).unwrap_or_default()
    });
    // systemd's SocketMode=0660/SocketGroup= are the unit's job; here, open it.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let json = status_json(&agent_at(
        &socket,
        AGENT_UID,
        AGENT_GID,
        &["status", "--json"],
    ));
    assert_eq!(json["family"], "apt");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("activated=true"), "{text}");
    // Another uid on the activated socket is still denied by SO_PEERCRED.
    let out = probe_at(&socket, 12345, 12345, &["hello", "recv"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("reply Denied"));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // systemd owns an activated socket: the helper leaves it in place.
    assert!(socket.exists());
}

#[test]
fn the_agent_drops_capabilities_it_was_given() {
    let h = Helper::start();
    // Start the agent as nobody with capabilities in its inheritable and
    // ambient sets (as a careless unit file might): it must shed them all.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_bind_service,+dac_read_search",
            "--ambient-caps=+net_bind_service,+dac_read_search",
            "--",
        ])
        .arg(workspace_bin("patchman-agent"))
        .arg("--socket")
        .arg(&h.socket)
        .args(["status", "--json"])
        .output()
        .expect("setpriv (util-linux)");
    let json = status_json(&out);
    let p = &json["agent_privileges"];
    assert_eq!(p["no_new_privs"], true, "{json}");
    assert_eq!(p["holds_capabilities"], false, "{json}");
    assert_eq!(p["cap_ambient"], "0000000000000000", "{json}");
    assert_eq!(p["cap_effective"], "0000000000000000", "{json}");
    // Control: the same setpriv really hands the capabilities over.
    let control = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_bind_service",
            "--ambient-caps=+net_bind_service",
            "--",
            "grep",
            "CapAmb",
            "/proc/self/status",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&control.stdout).contains("0000000000000400"),
        "{control:?}"
    );
}

#[test]
fn status_prints_planted_escape_sequences_escaped() {
    let h = Helper::start();
    let state_dir = h.new_dir("state");
    // What a compromised `patchman` could write into its own state file:
    // clear the screen, set the title, write the clipboard (OSC 52), hide
    // text, return to the line start, and an 8-bit CSI (U+009B).
    let hostile = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{1b}]52;c;aGk=\u{7}\u{1b}[8mhidden\r\u{9b}2J";
    let state = serde_json::json!({
        "last_error": hostile,
        "last_error_at": 1_700_000_000u64,
        "last_result": hostile,
        "last_result_detail": hostile,
        "last_check": 1_700_000_000u64,
    });
    std::fs::write(state_dir.join("state.json"), state.to_string()).unwrap();
    let run = |json: bool| {
        let mut args = vec!["--state-dir", state_dir.to_str().unwrap(), "status"];
        if json {
            args.push("--json");
        }
        let out = h.agent(&args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let human = run(false);
    let raw: Vec<char> = human
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(
        raw.is_empty(),
        "control characters reached the terminal: {raw:?}\n{human}"
    );
    assert!(
        human.contains(r"last error:") && human.contains(r"\x1b[2J\x1b]0;owned\x07"),
        "shown escaped: {human}"
    );
    assert!(human.contains(r"hidden\r\x9b2J"), "{human}");
    let json = run(true);
    assert!(
        !json.chars().any(|c| c.is_control() && c != '\n'),
        "control characters in JSON output: {json:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["last_error"], hostile, "JSON keeps the exact string");
}

/// Connects `n` times as the agent's uid and sends an oversized length
/// prefix on each: `n` bad frames.
const BAD_FRAME_FLOOD: &str = r#"
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    try:
        s.sendall(b"\xff\xff\xff\xff")
        s.recv(64)
    except OSError:
        pass
    s.close()
print("done", flush=True)
"#;

#[test]
fn a_connection_flood_is_summarised_per_peer_and_another_uids_denial_still_logged() {
    use std::os::unix::net::UnixStream;
    let h = Helper::start();
    let started_lines = h.log().lines().count();
    // Root is not the agent: 3000 denied connections from this process.
    let t0 = Instant::now();
    for _ in 0..3000 {
        let s = UnixStream::connect(&h.socket).unwrap();
        drop(s);
    }
    // And 1000 bad frames from the agent's own uid.
    let flood = Command::new("/usr/bin/python3")
        .args(["-c", BAD_FRAME_FLOOD])
        .arg(&h.socket)
        .arg("1000")
        .uid(AGENT_UID)
        .gid(AGENT_GID)
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&flood.stdout).trim(),
        "done",
        "{flood:?}"
    );
    let flood_took = t0.elapsed();
    // And 30 Status requests from the agent: read-only, a loop of them
    // is routine too (each runs dpkg-query).
    let mut actions = vec!["hello", "recv"];
    for _ in 0..30 {
        actions.extend_from_slice(&["req:status", "final"]);
    }
    let out = h.probe(AGENT_UID, AGENT_GID, &actions);
    assert_eq!(out.matches("reply Status").count(), 30, "{out}");
    // During the flood's window: another uid (in the socket's group) is
    // denied, and its line is there.
    let out = h.probe(12345, AGENT_GID, &["hello", "recv"]);
    assert!(out.contains("reply Denied"), "{out}");
    // The window ends (10 s): a summary line per flooding uid. (Some of
    // root's connections find the table full and are refused before their
    // uid is read: those are counted without one.)
    let t1 = Instant::now();
    while !(summed(&h.log(), "peer_uid=0 ", "denied") >= 1000
        && summed(&h.log(), "peer_uid=65534 ", "bad_frames") >= 500)
    {
        assert!(
            t1.elapsed() < Duration::from_secs(25),
            "no summaries:\n{}",
            h.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = h.log();
    assert!(
        log.lines()
            .any(|l| l.contains("denied: not the agent user") && l.contains("peer_uid=12345")),
        "the other uid's denial is logged:\n{log}"
    );
    assert!(
        log.matches("request=\"status\"").count() <= 5 && log.matches("ran command").count() <= 5,
        "Status lines are bounded too:\n{log}"
    );
    let lines = log.lines().count() - started_lines;
    assert!(
        lines <= 40,
        "{lines} log lines for 4002 connections in {flood_took:?}:\n{log}"
    );
    // The helper still serves the agent.
    status_json(&h.agent(&["status", "--json"]));
}

/// The sum of `field=N` over the peer summary lines that contain `peer`.
fn summed(log: &str, peer: &str, field: &str) -> u64 {
    let key = format!(" {field}=");
    log.lines()
        .filter(|l| l.contains("peer summary") && l.contains(peer))
        .filter_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn the_helper_exits_0_once_its_binary_is_replaced_on_disk() {
    require_root();
    let dir = enterable_tempdir();
    // A copy of the helper, replaced as dpkg and rpm replace a file: a new
    // file renamed over the old path.
    let installed = dir.path().join("patchman-helper");
    std::fs::copy(workspace_bin("patchman-helper"), &installed).unwrap();
    let socket = dir.path().join("run/helper.sock");
    let log = dir.path().join("helper.log");
    let child = helper_command(&installed)
        .arg("--socket")
        .arg(&socket)
        .args(["--agent-user", AGENT, "--config", "/nonexistent.ini"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    wait_for_socket(&socket, || {
        std::fs::read_to_string(&log).unwrap_or_default()
    });
    let agent = |socket: &Path| agent_at(socket, AGENT_UID, AGENT_GID, &["status", "--json"]);
    status_json(&agent(&socket));
    // Some seconds of ordinary service: the helper stays.
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.0.try_wait().unwrap().is_none(), "exited unprompted");
    status_json(&agent(&socket));
    let staged = dir.path().join(".patchman-helper.dpkg-new");
    std::fs::copy(workspace_bin("patchman-helper"), &staged).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "still serving 10 s after its binary was replaced:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("replaced on disk"), "{text}");
    assert!(!socket.exists(), "the socket it created is removed");
}

#[test]
fn the_server_group_file_is_root_s_and_the_state_dir_copy_is_ignored() {
    use std::os::unix::fs::PermissionsExt as _;
    let h = Helper::start();
    // The agent's own directory: a file there is no longer the portal's.
    let state_dir = h.new_dir("state");
    std::fs::write(
        state_dir.join("server-group.json"),
        r#"{"automatic_updates": false}"#,
    )
    .unwrap();
    let group = h.dir.path().join("server-group.json");
    let code = |args: &[&str]| {
        let mut all = vec!["--state-dir", state_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["status", "--json"]);
        let json = status_json(&h.agent(&all));
        json["automatic"]["code"].as_str().unwrap().to_string()
    };
    let group_arg = ["--server-group", group.to_str().unwrap()];
    // No root file: the state-dir copy does not switch anything off (the
    // host has no patchman-client, so the version gate answers).
    assert_ne!(code(&group_arg), "disabled_by_server_group");
    std::fs::write(&group, r#"{"automatic_updates": false}"#).unwrap();
    assert_eq!(code(&group_arg), "disabled_by_server_group");
    // Writable by others: not the portal's word; automatic stays off.
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(code(&group_arg), "server_group_file_invalid");
}

#[test]
fn an_unsafe_patchman_ini_is_refused_on_reload_and_the_previous_settings_kept() {
    use std::os::unix::fs::PermissionsExt as _;
    let h = Helper::start();
    let ini = h.dir.path().join("patchman.ini");
    let hup = || kill(h.pid(), Signal::SIGHUP).unwrap();
    // A FIFO no one writes: refused at once (before, the reload blocked in
    // open() for good, and with it every later SIGHUP and SIGTERM).
    std::fs::remove_file(&ini).unwrap();
    nix::unistd::mkfifo(&ini, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    hup();
    h.wait_for_log("is not a regular file", 1);
    // A symlink to a good file, a group-writable file, a file not root's.
    std::fs::remove_file(&ini).unwrap();
    let target = h.dir.path().join("elsewhere.ini");
    std::fs::write(&target, "[updates]\nrepository = evil-link\n").unwrap();
    std::os::unix::fs::symlink(&target, &ini).unwrap();
    hup();
    h.wait_for_log("is a symbolic link", 1);
    std::fs::remove_file(&ini).unwrap();
    std::fs::write(&ini, "[updates]\nrepository = evil-writable\n").unwrap();
    std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o664)).unwrap();
    hup();
    h.wait_for_log("is group- or world-writable", 1);
    std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::chown(&ini, Some(nix::unistd::Uid::from_raw(AGENT_UID)), None).unwrap();
    hup();
    h.wait_for_log("is not owned by root", 1);
    h.wait_for_log("keeping the previous one", 4);
    assert!(!h.log().contains("repository=evil"), "{}", h.log());
    // A good file is still picked up: the signal thread was never stuck.
    std::fs::remove_file(&ini).unwrap();
    h.reload_with(
        "[updates]\nrepository = patchman-beta\n",
        "repository=patchman-beta",
    );
    let (status, log) = h.stop();
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn inherited_file_descriptors_are_closed_at_start() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/helper.sock");
    let leak = dir.path().join("leaked");
    std::fs::write(&leak, "").unwrap();
    // Whatever starts the helper leaks two descriptors (7 and 9) into it.
    let mut line = helper_command_line(&workspace_bin("patchman-helper"));
    let program = line.pop().unwrap();
    let defs = line.pop().unwrap();
    let script = line.pop().unwrap();
    let script = format!(
        "exec 7<\"$LEAK\" 9>>\"$LEAK\"; {}",
        script.to_str().unwrap()
    );
    line.push(script.into());
    line.push(defs);
    line.push(program);
    let child = Command::new(&line[0])
        .args(&line[1..])
        .env("LEAK", &leak)
        .arg("--socket")
        .arg(&socket)
        .args(["--agent-user", AGENT, "--config", "/nonexistent.ini"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    wait_for_socket(&socket, String::new);
    let fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{}/fd", child.0.id()))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    let leaked: Vec<_> = fds
        .iter()
        .filter(|(_, target)| target.contains("leaked"))
        .collect();
    assert!(
        leaked.is_empty(),
        "inherited descriptors still open: {fds:?}"
    );
    // What is left: stdio, the listening socket and the helper's own.
    assert!(fds.iter().any(|(_, t)| t.starts_with("socket:")), "{fds:?}");
}

#[test]
fn during_sigterm_the_running_update_finishes_and_new_requests_get_busy_at_once() {
    use patchman_tests::attack_support::{
        helper_pid, hold_download, probe as probe_in, release_download, spawn_agent,
        wait_for_held_download, wait_until,
    };
    use patchman_tests::sandbox::apt_repo::SourceFormat;
    use patchman_tests::sandbox::fixture::CLIENT;
    use patchman_tests::scenario::{Db, Scenario};
    use patchman_tests::updater::Updater;
    let fx = patchman_tests::apt_fixture();
    let host_before = patchman_tests::host_package_state();
    let u = Updater::new(
        &fx.repos_root,
        &fx.patchman,
        SourceFormat::List,
        &[fx.client("1.7.0-1")],
    )
    .expect("sandbox");
    // The download waits for the test's go-ahead: an update held mid-way.
    let s = Scenario::start(Db::Dpkg, u, host_before, hold_download);
    let agent = spawn_agent(&s.u, &["update"]);
    wait_for_held_download(&s.u);
    let pid = helper_pid(&s.u).expect("the helper's pid");
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    assert!(wait_until(Duration::from_secs(5), || s
        .u
        .helper_log()
        .contains("stopping (after any running update)")));
    // A new request while it stops: Busy, at once (before, a Status was
    // served as usual by a process about to exit).
    let t0 = Instant::now();
    let out = probe_in(&s.u, &["hello", "recv", "req:status", "final"]);
    assert!(out.contains("reply Welcome"), "{out}");
    assert!(out.contains("reply Busy"), "{out}\n{}", s.u.helper_log());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(helper_pid(&s.u).is_some(), "it waits for the update");
    release_download(&s.u);
    let out = agent.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.u.helper_log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || helper_pid(&s.u).is_none()),
        "the helper exits once the update is done:\n{}",
        s.u.helper_log()
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}
