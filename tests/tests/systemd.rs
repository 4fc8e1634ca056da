//! The systemd tier: the shipped `patchman-client` `.deb` (built by
//! `deploy/package/build.sh` from the shipped binaries) in Debian 13 booted
//! with systemd as PID 1 (`tests/src/container.rs`). Each test boots its own
//! container, once; the tests run in parallel (the containers are mostly
//! idle, waiting on timers).
//!
//! * `lifecycle`: `dpkg -i` enables and starts the socket and the agent; the
//!   first connection starts the helper (socket activation), which exits
//!   after 60 s idle; `service patchman reload` (the vendor's command)
//!   reaches the agent and the running helper; the agent under its unit
//!   cannot reach the system bus, `/run/systemd/notify` or a varlink socket
//!   but reaches the helper; `apt-get remove`, `apt-get purge`: no unit,
//!   user or file left.
//! * `reinstall_after_remove_runs_both_units`: `apt-get remove`, `dpkg -i`
//!   again: both units run (issue 14 item 5).
//! * `person_upgrade_replaces_helper`: the helper kept busy by a `status`
//!   every 5 s, a person's `dpkg -i` of a newer build makes the new binary
//!   serve (issue 14 item 1).
//! * `login_user_patchman_refused`: an existing login user `patchman` makes
//!   the install fail, and nothing is adopted (issue 14 item 3).
//! * `self_update_under_systemd`: the running `patchman-agent.service`
//!   updates its own package from a signed repository over HTTP through the
//!   socket-activated helper, re-executes, and reports the new version; the
//!   helper's restart queued by its own postinst kills nothing; its journal
//!   lines carry their structured fields.
//! * `journal_flood_summarised`: tens of thousands of connections from the
//!   agent's uid and from another uid make a bounded number of helper
//!   lines, with per-uid summaries; the other uid's `denied` line and a
//!   check's audit line are kept; journald suppresses nothing (issue 14
//!   item 7).
//!
//! Each also checks the host's package state is unchanged.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use patchman_tests::container::{Container, SHARED};
use patchman_tests::sandbox::apt_repo::{build_repo, native_arch, GpgHome, RepoLayout, RepoSpec};
use patchman_tests::sandbox::HttpServer;
use patchman_tests::{cmd, packages};

use patchman_tests::installed::{
    AGENT_UNIT, CONFIG_PATH, PACKAGE, QUIET_CONFIG, SETTLE_WITHIN, USER, X, X1,
};

const SUITE: &str = "trixie";
const HELPER_UNIT: &str = "patchman-helper.service";
const SOCKET_UNIT: &str = "patchman-helper.socket";
/// The helper's idle timeout under socket activation is 60 s.
const IDLE_EXIT_WITHIN: Duration = Duration::from_secs(100);

/// X and X+1, built once per test process from the shipped binaries, into
/// `<target>/patchman-tests/systemd-debs` (replaced on each run).
fn debs() -> &'static [PathBuf] {
    static DEBS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DEBS.get_or_init(|| {
        let bin_dir = packages::shipped_bin_dir().unwrap();
        let out = packages::target_dir().join("patchman-tests/systemd-debs");
        if out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        packages::build_packages(&bin_dir, packages::Format::Deb, &[X, X1], &out).unwrap()
    })
}

fn deb(version: &str) -> &'static Path {
    let i = if version == X { 0 } else { 1 };
    &debs()[i]
}

/// Copies `deb` into the shared directory; its path inside.
fn share(c: &Container, deb: &Path) -> String {
    let name = deb.file_name().unwrap().to_str().unwrap();
    let dest = c.shared().join(name);
    // Never copy onto an earlier link of the same file: that truncates it.
    let _ = std::fs::remove_file(&dest);
    if std::fs::hard_link(deb, &dest).is_err() {
        std::fs::copy(deb, &dest).unwrap();
    }
    format!("{SHARED}/{name}")
}

fn dpkg_install(c: &Container, version: &str) -> String {
    let inside = share(c, deb(version));
    c.run(&["dpkg", "-i", &inside]).unwrap()
}

/// `dpkg-query` status and version, if dpkg knows the package.
fn dpkg_status(c: &Container) -> Option<(String, String)> {
    let out = c
        .exec(&["dpkg-query", "-W", "-f", "${Status}|${Version}", PACKAGE])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (s, v) = text.split_once('|')?;
    out.status.success().then(|| (s.to_owned(), v.to_owned()))
}

fn installed_version(c: &Container) -> Option<String> {
    dpkg_status(c)
        .filter(|(s, _)| s == "install ok installed")
        .map(|(_, v)| v)
}

fn write_config(c: &Container, text: &str) {
    std::fs::write(c.host_path(CONFIG_PATH), text).unwrap();
}

fn is_active(c: &Container, unit: &str) -> bool {
    c.active_state(unit).unwrap() == "active"
}

/// Asserts that `unit` is active; the message says `what` and shows the
/// unit's journal.
fn assert_active(c: &Container, unit: &str, what: &str) {
    assert!(
        is_active(c, unit),
        "{unit} not active ({what}):\n{}",
        journal_of(c, unit)
    );
}

/// Asserts that `systemctl is-enabled` says `enabled` for `unit`.
fn assert_enabled(c: &Container, unit: &str) {
    let enabled = c.exec(&["systemctl", "is-enabled", unit]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&enabled.stdout).trim(),
        "enabled",
        "{unit}: {}",
        cmd::output_text(&enabled)
    );
}

/// The journal of `unit` as text, for messages.
fn journal_of(c: &Container, unit: &str) -> String {
    c.journal("short-precise", &["-u", unit])
        .unwrap_or_default()
}

/// How many of `unit`'s journal messages contain `needle`.
fn journal_count(c: &Container, unit: &str, needle: &str) -> usize {
    journal_of(c, unit).matches(needle).count()
}

/// `readlink /proc/<pid>/exe` inside the container.
fn exe_of(c: &Container, pid: u32) -> String {
    c.run(&["readlink", &format!("/proc/{pid}/exe")])
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `systemctl list-unit-files patchman*` (exits 1 when none match).
fn unit_files(c: &Container) -> String {
    let out = c
        .exec(&["systemctl", "list-unit-files", "--no-legend", "patchman*"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every path in the container (/ and /run) whose name has `patchman` in
/// it, but the shared directory.
fn named_patchman(c: &Container) -> String {
    c.sh(&format!(
        "find / /run -xdev -path {SHARED} -prune -o -name '*patchman*' -print | sort -u"
    ))
    .unwrap()
}

fn helper_inactive(c: &Container) -> Result<bool> {
    Ok(matches!(
        c.active_state(HELPER_UNIT)?.as_str(),
        "inactive" | "failed"
    ))
}

/// One test's booted container, and what every test checks at its end:
/// that the host's package state is what it was before the test.
struct Run {
    c: Container,
    run: patchman_tests::sdtests::Run,
}

impl Run {
    /// Notes the host's package state, builds X and X+1 (once per
    /// process) and boots the container.
    fn start() -> Run {
        let run = patchman_tests::sdtests::Run::start();
        debs();
        let t0 = Instant::now();
        let c = Container::boot(SUITE).unwrap();
        eprintln!("booted {SUITE} in {:.1} s", t0.elapsed().as_secs_f64());
        Run { c, run }
    }

    /// Powers the container off, prints `summary` with the time in all,
    /// and checks the host's package state.
    fn finish(self, summary: std::fmt::Arguments) {
        self.c.poweroff().unwrap();
        self.run.finish(summary);
    }
}

impl std::ops::Deref for Run {
    type Target = Container;
    fn deref(&self) -> &Container {
        &self.c
    }
}

/// A Python probe: connects to each path given (a stream socket, else a
/// datagram one) and prints `path ok` or `path <errno name>`.
const CONNECT_PROBE: &str = r#"
import errno, glob, socket, sys
paths = []
for a in sys.argv[1:]:
    paths += sorted(glob.glob(a)) or [a]
for p in paths:
    result = None
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_UNIX, kind)
        try:
            s.connect(p)
            result = "ok"
            break
        except OSError as e:
            result = errno.errorcode.get(e.errno, str(e.errno))
            if e.errno != errno.EPROTOTYPE:
                break
        finally:
            s.close()
    print(p, result)
"#;

const FORBIDDEN_SOCKETS: &[&str] = &[
    "/run/dbus/system_bus_socket",
    "/run/systemd/notify",
    "/run/systemd/private",
    "/run/systemd/io.systemd.*",
    "/run/systemd/userdb/io.systemd.*",
];

/// Runs the probe as `patchman`, in the agent's namespaces when `agent_pid`
/// is given (its mount namespace is what its unit built), else in the
/// container's; returns `path → result`.
fn probe_sockets(c: &Container, agent_pid: Option<u32>, paths: &[&str]) -> Vec<(String, String)> {
    let mut argv: Vec<String> = Vec::new();
    if let Some(pid) = agent_pid {
        argv.extend(["nsenter", "--target"].map(String::from));
        argv.push(pid.to_string());
        argv.extend(["--mount", "--user", "--preserve-credentials", "--"].map(String::from));
    }
    // In the agent's user namespace setgroups(2) is denied: keep root's
    // (mapped) groups there; what is probed is which sockets exist.
    let groups = if agent_pid.is_some() {
        "--keep-groups"
    } else {
        "--init-groups"
    };
    argv.extend(
        [
            "setpriv",
            "--reuid",
            USER,
            "--regid",
            USER,
            groups,
            "python3",
            "-c",
            CONNECT_PROBE,
        ]
        .map(String::from),
    );
    argv.extend(paths.iter().map(|p| p.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = c.run(&argv).unwrap();
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, r)| (p.to_owned(), r.to_owned()))
        .collect()
}

#[test]
fn lifecycle() {
    let c = Run::start();

    // Install: enabled and running.
    let before_install = named_patchman(&c);
    let out = dpkg_install(&c, X);
    eprintln!("dpkg -i {X}:\n{out}");
    assert_eq!(installed_version(&c).as_deref(), Some(X));
    for unit in [SOCKET_UNIT, AGENT_UNIT] {
        assert_enabled(&c, unit);
        assert_active(&c, unit, "after the install");
    }
    assert_eq!(
        c.unit_property("patchman.service", "Id").unwrap(),
        AGENT_UNIT,
        "patchman.service is not the agent's alias"
    );
    write_config(&c, QUIET_CONFIG);
    c.run(&["systemctl", "reload", AGENT_UNIT]).unwrap();

    // Socket activation: nothing connected yet (or it idled out), then the
    // first connection starts the helper.
    c.wait_for(
        "the helper to be inactive",
        IDLE_EXIT_WITHIN,
        helper_inactive,
    )
    .unwrap();
    let status = c.exec_as(USER, &["patchman-agent", "status"]).unwrap();
    assert!(
        status.status.success(),
        "status: {}",
        cmd::output_text(&status)
    );
    assert_active(&c, HELPER_UNIT, "the connection did not start the helper");
    let helper_pid = helper_running(&c)
        .unwrap()
        .expect("the helper runs its file");
    assert_eq!(
        c.unit_property(HELPER_UNIT, "TriggeredBy").unwrap(),
        SOCKET_UNIT
    );

    // `service patchman reload` reaches the agent and the running helper.
    let agent_reloads = journal_count(&c, AGENT_UNIT, "configuration reloaded");
    let helper_reloads = journal_count(&c, HELPER_UNIT, "configuration reloaded");
    let out = c.exec(&["service", "patchman", "reload"]).unwrap();
    assert!(
        out.status.success(),
        "service patchman reload: {}",
        cmd::output_text(&out)
    );
    c.wait_for("both to log the reload", Duration::from_secs(20), |c| {
        Ok(
            journal_count(c, AGENT_UNIT, "configuration reloaded") > agent_reloads
                && journal_count(c, HELPER_UNIT, "configuration reloaded") > helper_reloads,
        )
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- agent\n{}\n--- helper\n{}",
            journal_of(&c, AGENT_UNIT),
            journal_of(&c, HELPER_UNIT)
        )
    });
    assert_eq!(
        c.main_pid(HELPER_UNIT).unwrap(),
        Some(helper_pid),
        "reload restarted the helper"
    );

    // The agent's sandbox: no bus, no notify socket, no varlink; the helper
    // and the journal reachable. The same probe outside the unit reaches
    // the bus, so the probe can tell.
    let agent_pid = c.main_pid(AGENT_UNIT).unwrap().expect("the agent's pid");
    let outside = probe_sockets(&c, None, &["/run/dbus/system_bus_socket"]);
    assert_eq!(
        outside,
        [("/run/dbus/system_bus_socket".into(), "ok".into())]
    );
    let mut paths = FORBIDDEN_SOCKETS.to_vec();
    paths.extend(["/run/patchman/helper.sock", "/run/systemd/journal/socket"]);
    let inside = probe_sockets(&c, Some(agent_pid), &paths);
    eprintln!("connect() from the agent's namespaces: {inside:?}");
    for (path, result) in &inside {
        let reachable =
            path == "/run/patchman/helper.sock" || path == "/run/systemd/journal/socket";
        if reachable {
            assert_eq!(
                result, "ok",
                "{path} not reachable by the agent: {inside:?}"
            );
        } else {
            assert_ne!(result, "ok", "the agent can connect to {path}: {inside:?}");
        }
    }
    let ls = c
        .run(&["ls", "-A", &format!("/proc/{agent_pid}/root/run")])
        .unwrap();
    let mut entries: Vec<&str> = ls.split_whitespace().collect();
    entries.sort_unstable();
    assert_eq!(entries, ["patchman", "systemd"], "the agent's /run: {ls}");

    // The helper exits after 60 s without a connection.
    let t0 = Instant::now();
    c.wait_for(
        "the helper to exit when idle",
        IDLE_EXIT_WITHIN,
        helper_inactive,
    )
    .unwrap();
    let idle_after = t0.elapsed();
    assert!(
        journal_of(&c, HELPER_UNIT)
            .contains("idle: exiting until the next connection activates us"),
        "{}",
        journal_of(&c, HELPER_UNIT)
    );
    assert_active(
        &c,
        SOCKET_UNIT,
        "the helper exited when idle, the socket listens on",
    );

    // Remove and purge: nothing left.
    c.run(&["apt-get", "remove", "-y", PACKAGE]).unwrap();
    let out = c.run(&["apt-get", "purge", "-y", PACKAGE]).unwrap();
    eprintln!("apt-get purge:\n{out}");
    assert_eq!(dpkg_status(&c), None, "dpkg still knows {PACKAGE}");
    assert_eq!(
        c.exec(&["getent", "passwd", USER]).unwrap().status.code(),
        Some(2)
    );
    assert_eq!(
        c.exec(&["getent", "group", USER]).unwrap().status.code(),
        Some(2)
    );
    assert_eq!(
        named_patchman(&c),
        before_install,
        "left behind after purge"
    );
    assert_eq!(unit_files(&c), "", "units left after purge");
    for unit in [SOCKET_UNIT, AGENT_UNIT, HELPER_UNIT] {
        assert_eq!(
            c.unit_property(unit, "LoadState").unwrap(),
            "not-found",
            "{unit}"
        );
    }

    c.finish(format_args!(
        "lifecycle: helper idle exit {:.1} s after the last connection",
        idle_after.as_secs_f64()
    ));
}

/// Installs X with no check scheduled for an hour.
fn install_quiet(c: &Container) {
    dpkg_install(c, X);
    write_config(c, QUIET_CONFIG);
    c.run(&["systemctl", "reload", AGENT_UNIT]).unwrap();
}

/// Installs X with no check scheduled, then starts a client that connects
/// every 5 s: far inside the helper's 60 s idle timeout, so the helper never
/// exits on its own (what a status every 30 s, or a compromised agent, does
/// too). Returns the helper's pid once it runs.
fn install_and_keep_helper_busy(c: &Container) -> u32 {
    install_quiet(c);
    c.run(&[
        "systemd-run",
        "--unit=status-loop",
        "-p",
        "User=patchman",
        "sh",
        "-c",
        "while :; do patchman-agent status >/dev/null 2>&1; sleep 5; done",
    ])
    .unwrap();
    let mut pid = None;
    c.wait_for("the helper to run", SETTLE_WITHIN, |c| {
        pid = helper_running(c)?;
        Ok(pid.is_some())
    })
    .unwrap();
    pid.unwrap()
}

/// The helper's pid once it is active and runs the installed file (a
/// starting unit's main pid is systemd's executor for a moment).
fn helper_running(c: &Container) -> Result<Option<u32>> {
    if c.active_state(HELPER_UNIT)? != "active" {
        return Ok(None);
    }
    Ok(c.main_pid(HELPER_UNIT)?
        .filter(|p| exe_of(c, *p) == "/usr/sbin/patchman-helper"))
}

/// A person's `dpkg -i` of `deb`: waits (bounded) until a helper other than
/// `old` runs, and checks it runs the installed file and serves.
fn upgrade_replaces_helper(c: &Container, deb: &Path, old: u32) -> Duration {
    let t0 = Instant::now();
    let out = c.run(&["dpkg", "-i", &share(c, deb)]).unwrap();
    eprintln!("dpkg -i {}:\n{out}", deb.display());
    assert_eq!(installed_version(c).as_deref(), Some(X1));
    let mut new = None;
    c.wait_for("a new helper", Duration::from_secs(45), |c| {
        new = helper_running(c)?.filter(|p| *p != old);
        Ok(new.is_some())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: the old helper (pid {old}, {}) still serves:\n{}",
            exe_of(c, old),
            journal_of(c, HELPER_UNIT)
        )
    });
    let replaced_after = t0.elapsed();
    // It serves (the socket may be restarting, just now).
    c.wait_for("a status answered", Duration::from_secs(20), |c| {
        Ok(c.exec_as(USER, &["patchman-agent", "status"])?
            .status
            .success())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}:\n{}",
            c.journal("short-precise", &["-u", HELPER_UNIT, "-u", SOCKET_UNIT])
                .unwrap_or_default()
        )
    });
    replaced_after
}

#[test]
fn person_upgrade_replaces_helper() {
    let c = Run::start();
    let old = install_and_keep_helper_busy(&c);
    let old_agent = c.main_pid(AGENT_UNIT).unwrap().unwrap();

    let replaced_after = upgrade_replaces_helper(&c, deb(X1), old);
    // A person's upgrade restarts the agent too.
    let agent = c.main_pid(AGENT_UNIT).unwrap().expect("the agent runs");
    assert_ne!(agent, old_agent, "the agent was not restarted");
    assert_eq!(exe_of(&c, agent), "/usr/bin/patchman-agent");

    c.run(&["systemctl", "stop", "status-loop.service"])
        .unwrap();
    c.finish(format_args!(
        "person_upgrade_replaces_helper: new helper {:.1} s after dpkg -i began",
        replaced_after.as_secs_f64()
    ));
}

/// X+1 repacked with one more setting in its socket unit.
fn x1_with_changed_socket(work: &Path) -> PathBuf {
    x1_variant(work, |tree| {
        let unit = tree.join("usr/lib/systemd/system/patchman-helper.socket");
        let text = std::fs::read_to_string(&unit).unwrap();
        assert!(text.contains("\nAccept=no\n"), "{text}");
        std::fs::write(
            &unit,
            text.replace("\nAccept=no\n", "\nAccept=no\nBacklog=77\n"),
        )
        .unwrap();
    })
}

/// X+1 whose preinst, on an upgrade, says it waits ([`GATE_WAITING`]) and
/// then waits (at most 60 s) for [`GATE_OPEN`]: the test's hold on a
/// running install.
fn x1_with_gated_preinst(work: &Path) -> PathBuf {
    x1_variant(work, |tree| {
        let preinst = tree.join("DEBIAN/preinst");
        let text = std::fs::read_to_string(&preinst).unwrap();
        let (shebang, rest) = text.split_once('\n').unwrap();
        let gate = format!(
            "if [ \"$1\" = upgrade ]; then touch {GATE_WAITING}; i=0; \
             while [ ! -e {GATE_OPEN} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi"
        );
        std::fs::write(&preinst, format!("{shebang}\n{gate}\n{rest}")).unwrap();
    })
}

/// X+1 unpacked, changed by `edit`, and built again (md5sums renewed).
fn x1_variant(work: &Path, edit: impl FnOnce(&Path)) -> PathBuf {
    patchman_tests::installed::repack_deb(deb(X1), work, edit)
}

#[test]
fn changed_socket_settings_restart_the_socket() {
    let c = Run::start();
    let work = tempfile::tempdir().unwrap();
    let changed = x1_with_changed_socket(work.path());
    let old = install_and_keep_helper_busy(&c);
    let socket_inode = || {
        std::os::unix::fs::MetadataExt::ino(
            &std::fs::symlink_metadata(c.host_path("/run/patchman/helper.sock")).unwrap(),
        )
    };
    let (inode, since) = (
        socket_inode(),
        c.unit_property(SOCKET_UNIT, "ActiveEnterTimestampMonotonic")
            .unwrap(),
    );
    assert_ne!(c.unit_property(SOCKET_UNIT, "Backlog").unwrap(), "77");

    upgrade_replaces_helper(&c, &changed, old);
    c.wait_for("the socket restarted", SETTLE_WITHIN, |c| {
        Ok(
            c.unit_property(SOCKET_UNIT, "ActiveEnterTimestampMonotonic")? != since
                && c.active_state(SOCKET_UNIT)? == "active",
        )
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", journal_of(&c, SOCKET_UNIT)));
    assert_eq!(c.unit_property(SOCKET_UNIT, "Backlog").unwrap(), "77");
    assert_ne!(
        socket_inode(),
        inode,
        "the listening socket was not made again"
    );
    let failed = c.run(&["systemctl", "--failed", "--no-legend"]).unwrap();
    assert_eq!(failed.trim(), "", "failed units");

    c.run(&["systemctl", "stop", "status-loop.service"])
        .unwrap();
    c.finish(format_args!("changed_socket_settings_restart_the_socket"));
}

#[test]
fn reinstall_after_remove_runs_both_units() {
    let c = Run::start();
    dpkg_install(&c, X);
    for unit in [SOCKET_UNIT, AGENT_UNIT] {
        assert_active(&c, unit, "after the install");
    }

    // Remove, then install again from the config-files state (dpkg passes
    // postinst the old version, as for an upgrade): both run.
    let out = c.run(&["apt-get", "remove", "-y", PACKAGE]).unwrap();
    eprintln!("apt-get remove:\n{out}");
    assert_eq!(
        dpkg_status(&c).map(|(s, _)| s).as_deref(),
        Some("deinstall ok config-files")
    );
    for unit in [SOCKET_UNIT, AGENT_UNIT, HELPER_UNIT] {
        assert!(!is_active(&c, unit), "{unit} still active after remove");
    }
    dpkg_install(&c, X);
    for unit in [SOCKET_UNIT, AGENT_UNIT] {
        c.wait_for(
            &format!("{unit} active after the reinstall"),
            SETTLE_WITHIN,
            |c| Ok(c.active_state(unit)? == "active"),
        )
        .unwrap_or_else(|e| panic!("{e}:\n{}", journal_of(&c, unit)));
        assert_enabled(&c, unit);
    }
    let status = c.exec_as(USER, &["patchman-agent", "status"]).unwrap();
    assert!(status.status.success(), "{}", cmd::output_text(&status));

    c.finish(format_args!("reinstall_after_remove_runs_both_units"));
}

#[test]
fn login_user_patchman_refused() {
    let c = Run::start();
    c.run(&[
        "useradd",
        "--uid",
        "1000",
        "--create-home",
        "--shell",
        "/bin/bash",
        USER,
    ])
    .unwrap();
    let passwd_before = c.run(&["getent", "passwd", USER]).unwrap();
    let inside = share(&c, deb(X));
    let out = c.exec(&["dpkg", "-i", &inside]).unwrap();
    let text = cmd::output_text(&out);
    eprintln!("dpkg -i over a login user patchman:\n{text}");
    assert!(
        !out.status.success(),
        "installed over a login user:\n{text}"
    );
    assert!(text.contains("is not a system account"), "{text}");
    assert!(text.contains("uid 1000"), "{text}");
    // Nothing adopted: not installed, nothing made for or owned by it.
    assert!(
        dpkg_status(&c).is_none_or(|(s, _)| !s.ends_with(" installed") && !s.contains("unpacked")),
        "{:?}",
        dpkg_status(&c)
    );
    assert!(!c.host_path("/var/lib/patchman").exists());
    assert!(!c.host_path("/usr/sbin/patchman-helper").exists());
    assert_eq!(c.run(&["getent", "passwd", USER]).unwrap(), passwd_before);
    assert_eq!(unit_files(&c), "");
    c.finish(format_args!("login_user_patchman_refused"));
}

patchman_tests::test_cases! { self_update:
    self_update_under_systemd => (Variant::Plain),
    /// The same, where X+1 changes the socket unit: the helper's own
    /// postinst then queues a restart of the socket and (PartOf=) of the
    /// helper running that very dpkg.
    self_update_with_changed_socket_under_systemd => (Variant::ChangedSocket),
    /// The same, where a person restarts the agent while the helper's dpkg
    /// installs X+1 (the agent waits for the answer before it stops). The
    /// postinst must not wait for any job then: a start job of the socket
    /// is ordered after the agent's stop (a stop always goes first), which
    /// waits for the agent, which waits for the helper, which waits for
    /// dpkg: 90 s until systemd kills the agent and its record of the
    /// update is lost.
    agent_restarted_during_the_install_under_systemd => (Variant::RestartDuringInstall),
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Variant {
    Plain,
    ChangedSocket,
    RestartDuringInstall,
}

/// What the gated X+1's preinst creates once it waits, and waits for.
const GATE_WAITING: &str = "/run/patchman-test-preinst-waiting";
const GATE_OPEN: &str = "/run/patchman-test-preinst-go";

fn self_update(variant: Variant) {
    let changed_socket = variant == Variant::ChangedSocket;
    let c = Run::start();
    // The signed repository with X+1, over HTTP on 127.0.0.1.
    let work = tempfile::Builder::new()
        .prefix("patchman-systemd-repo.")
        .tempdir()
        .unwrap();
    let gpg_dir = tempfile::Builder::new()
        .prefix("pmsdgpg")
        .tempdir()
        .unwrap();
    let gpg = GpgHome::new(gpg_dir.path()).unwrap();
    let key = gpg
        .generate_key("patchman", &work.path().join("keys"))
        .unwrap();
    let repos_root = work.path().join("repos");
    let published = match variant {
        Variant::Plain => deb(X1).to_path_buf(),
        Variant::ChangedSocket => x1_with_changed_socket(work.path()),
        Variant::RestartDuringInstall => x1_with_gated_preinst(work.path()),
    };
    let repo = build_repo(
        &repos_root,
        &RepoSpec {
            name: "patchman",
            layout: RepoLayout::stable_main(),
            debs: &[published],
            key: Some(&key),
        },
        Some(&gpg),
        &native_arch().unwrap(),
    )
    .unwrap();
    drop(gpg);
    let http = HttpServer::start(&repos_root).unwrap();

    let keyring = repo.sandbox_keyring_path().unwrap();
    std::fs::create_dir_all(c.host_path("/etc/apt/keyrings")).unwrap();
    std::fs::copy(&key.keyring, c.host_path(&keyring)).unwrap();
    std::fs::write(
        c.host_path("/etc/apt/sources.list.d/patchman.list"),
        repo.list_line(&http.url()),
    )
    .unwrap();
    dpkg_install(&c, X);
    // The first check at once after the restart (jitter 0).
    write_config(&c, QUIET_CONFIG);
    let socket_since = c
        .unit_property(SOCKET_UNIT, "ActiveEnterTimestampMonotonic")
        .unwrap();
    c.run(&["systemctl", "restart", AGENT_UNIT]).unwrap();
    let t0 = Instant::now();
    let mut agent = c.main_pid(AGENT_UNIT).unwrap().expect("the agent runs");

    if variant == Variant::RestartDuringInstall {
        c.wait_for(
            "the preinst of X+1 to wait",
            Duration::from_secs(120),
            |c| Ok(c.host_path(GATE_WAITING).exists()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", journal_of(&c, HELPER_UNIT)));
        c.run(&["systemctl", "--no-block", "restart", AGENT_UNIT])
            .unwrap();
        c.wait_for("the agent's stop job", Duration::from_secs(30), |c| {
            Ok(c.active_state(AGENT_UNIT)? == "deactivating")
        })
        .unwrap();
        std::fs::write(c.host_path(GATE_OPEN), "").unwrap();
        let stopping = Instant::now();
        // The old agent exits once the helper has answered; systemd then
        // starts a new one (a new pid: no re-execution this time).
        c.wait_for("the agent restarted", Duration::from_secs(45), |c| {
            Ok(c.main_pid(AGENT_UNIT)?.is_some_and(|p| p != agent) && is_active(c, AGENT_UNIT))
        })
        .unwrap_or_else(|e| panic!("{e}{}", c.dump()));
        eprintln!(
            "the agent stopped and started again {:.1} s after the install went on",
            stopping.elapsed().as_secs_f64()
        );
        agent = c.main_pid(AGENT_UNIT).unwrap().expect("the agent runs");
    }

    c.wait_for(&format!("{X1} installed"), Duration::from_secs(180), |c| {
        Ok(installed_version(c).as_deref() == Some(X1))
    })
    .unwrap_or_else(|e| panic!("{e}{}", c.dump()));
    let updated_after = t0.elapsed();

    // The agent re-executed: same pid, same unit, the new file.
    let mut json = serde_json::Value::Null;
    c.wait_for("the restart into X+1 confirmed", SETTLE_WITHIN, |c| {
        let out = c.exec_as(USER, &["patchman-agent", "status", "--json"])?;
        json = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(json["restart"]["confirmed"] == true)
    })
    .unwrap_or_else(|e| panic!("{e}: {json}{}", c.dump()));
    eprintln!("status --json: {json}");
    assert_eq!(json["installed"]["client"], X1, "{json}");
    assert_eq!(json["restart"]["version"], X1, "{json}");
    assert_eq!(json["last_result"], "updated", "{json}");
    assert_eq!(json["daemon"]["running"], true, "{json}");
    assert_eq!(
        c.main_pid(AGENT_UNIT).unwrap(),
        Some(agent),
        "not re-executed in place"
    );
    assert_eq!(exe_of(&c, agent), "/usr/bin/patchman-agent");
    assert_active(&c, AGENT_UNIT, "after the self-update");

    // dpkg finished (the restart its postinst queued killed nothing) and
    // the helper that answers now is the new file.
    assert_eq!(
        dpkg_status(&c),
        Some(("install ok installed".to_owned(), X1.to_owned()))
    );
    let audit = c.run(&["dpkg", "--audit"]).unwrap();
    assert_eq!(audit.trim(), "", "dpkg --audit");
    let status = c.exec_as(USER, &["patchman-agent", "status"]).unwrap();
    assert!(status.status.success(), "{}", cmd::output_text(&status));
    assert!(
        helper_running(&c).unwrap().is_some(),
        "the helper serving is not the installed file"
    );

    // The helper's journal lines, with their structured fields.
    let records = c
        .journal(
            "json",
            &["-u", HELPER_UNIT, "SYSLOG_IDENTIFIER=patchman-helper"],
        )
        .unwrap();
    let records: Vec<serde_json::Value> = records
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let started: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["MESSAGE"] == "patchman-helper started")
        .collect();
    assert!(
        started.len() >= 2,
        "the old and the new helper: {records:#?}"
    );
    let fields_of = |r: &serde_json::Value| -> Vec<String> {
        r.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let fields = fields_of(started[0]);
    for want in [
        "VERSION",
        "FAMILY",
        "AGENT_USER",
        "AGENT_UID",
        "ACTIVATED",
        "PRIORITY",
    ] {
        assert!(
            fields
                .iter()
                .any(|f| f == want || f.ends_with(&format!("_{want}"))),
            "no field {want} in {:#?}",
            started[0]
        );
    }
    assert!(
        records.iter().any(|r| r["MESSAGE"]
            .as_str()
            .is_some_and(|m| m.contains("exiting so the next connection runs the new helper"))),
        "{records:#?}"
    );

    if changed_socket {
        assert_eq!(c.unit_property(SOCKET_UNIT, "Backlog").unwrap(), "77");
        assert_active(&c, SOCKET_UNIT, "after the changed socket's restart");
        assert_ne!(
            c.unit_property(SOCKET_UNIT, "ActiveEnterTimestampMonotonic")
                .unwrap(),
            socket_since,
            "the socket was not restarted:\n{}",
            journal_of(&c, SOCKET_UNIT)
        );
        let failed = c.run(&["systemctl", "--failed", "--no-legend"]).unwrap();
        assert_eq!(failed.trim(), "", "failed units");
    }

    c.finish(format_args!(
        "self_update ({variant:?}): updated {:.1} s after the agent started",
        updated_after.as_secs_f64()
    ));
    drop(http);
}

/// The flood client: `python3 flood.py MODE COUNT SECONDS` connects to the
/// helper up to COUNT times, one connection after another, for at most
/// SECONDS; prints what it sent as JSON. `agent`: mostly a Hello, every
/// 10th a bad frame (a length past the limit), every 500th a Hello then a
/// Status. `denied`: connects and reads the refusal.
const FLOOD: &str = r#"
import json, socket, struct, sys, time
mode, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
HELLO = bytes([2, 0, 0, 0, 0, 1])   # Hello { protocol: 1 }
STATUS = bytes([1, 0, 0, 0, 1])
TOO_LARGE = b"\xff\xff\xff\xff"
def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data
def recv_frame(s):
    (n,) = struct.unpack("<I", recv_exact(s, 4))
    return recv_exact(s, n)
def ask(s, frame, counter):
    if frame:
        s.sendall(frame)
    recv_frame(s)
    sent[counter] += 1
sent = {"connections": 0, "hello": 0, "status": 0, "bad_frames": 0,
        "denied": 0, "errors": 0}
start = time.time()
deadline = time.monotonic() + seconds
for i in range(count):
    if time.monotonic() > deadline:
        break
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect("/run/patchman/helper.sock")
        sent["connections"] += 1
        if mode == "denied":
            ask(s, None, "denied")
        elif i % 10 == 0:
            ask(s, TOO_LARGE, "bad_frames")
        else:
            ask(s, HELLO, "hello")
            if i % 500 == 1:
                ask(s, STATUS, "status")
    except (OSError, EOFError):
        sent["errors"] += 1
    finally:
        s.close()
sent["start_us"] = int(start * 1e6)
sent["end_us"] = int(time.time() * 1e6)
print(json.dumps(sent))
"#;

/// A journal field of `r` by its name (tracing's fields may carry a prefix).
fn journal_field<'a>(r: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    r.as_object()?
        .iter()
        .find(|(k, _)| *k == name || k.ends_with(&format!("_{name}")))
        .and_then(|(_, v)| v.as_str())
}

/// The helper's journal records logged at or after `since_us` (realtime).
fn helper_records_since(c: &Container, since_us: u64) -> Vec<serde_json::Value> {
    c.journal("json", &["-u", HELPER_UNIT])
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| {
            r["__REALTIME_TIMESTAMP"]
                .as_str()
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|t| t >= since_us)
        })
        .collect()
}

/// `peer summary` counts of `uid` in `records`: connections, denied, bad
/// frames, summed over the windows; and how many summaries.
fn peer_summaries(records: &[serde_json::Value], uid: u32) -> (u64, u64, u64, usize) {
    let mut sums = (0, 0, 0, 0);
    for r in records {
        let message = r["MESSAGE"].as_str().unwrap_or_default();
        if !message.starts_with("peer summary: ")
            || journal_field(r, "PEER_UID") != Some(uid.to_string().as_str())
        {
            continue;
        }
        let count = |name: &str| -> u64 {
            journal_field(r, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {r:#}"))
        };
        sums.0 += count("CONNECTIONS");
        sums.1 += count("DENIED");
        sums.2 += count("BAD_FRAMES");
        sums.3 += 1;
    }
    sums
}

/// Issue 14 item 7: a flood of connections from the agent's uid (bad
/// frames, Hellos, some Status) and from another uid (denied) makes a
/// bounded number of helper lines, summarised per uid and window; the other
/// uid's `denied` line and a check's audit line survive, and journald
/// suppresses nothing. The helper before the fix logged one line per
/// connection (`accepted`, at info) and one per request or bad frame.
#[test]
fn journal_flood_summarised() {
    let c = Run::start();
    install_quiet(&c);
    // In the socket's group (else it cannot reach the socket at all), but
    // not the agent's uid: the helper refuses it.
    c.run(&[
        "useradd",
        "--system",
        "--groups",
        USER,
        "--shell",
        "/usr/sbin/nologin",
        "intruder",
    ])
    .unwrap();
    let uid_of =
        |user: &str| -> u32 { c.run(&["id", "-u", user]).unwrap().trim().parse().unwrap() };
    let (agent_uid, intruder_uid) = (uid_of(USER), uid_of("intruder"));
    std::fs::write(c.shared().join("flood.py"), FLOOD).unwrap();
    let script = format!("{SHARED}/flood.py");
    // The helper runs before the flood starts.
    let status = c.exec_as(USER, &["patchman-agent", "status"]).unwrap();
    assert!(status.status.success(), "{}", cmd::output_text(&status));

    const FLOOD_SECONDS: &str = "30";
    let flood = |user: &str, mode: &str, count: &str| -> serde_json::Value {
        let out = c
            .exec_as(user, &["python3", &script, mode, count, FLOOD_SECONDS])
            .unwrap();
        assert!(out.status.success(), "flood: {}", cmd::output_text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (agent_sent, intruder_sent, checks) = std::thread::scope(|s| {
        let agent = s.spawn(|| flood(USER, "agent", "40000"));
        let intruder = s.spawn(|| flood("intruder", "denied", "10000"));
        // A check in the middle of the flood: its audit line is never
        // limited (retried while the helper answers Busy).
        std::thread::sleep(Duration::from_secs(8));
        let mut checks = Vec::new();
        for _ in 0..5 {
            let out = c.exec_as(USER, &["patchman-agent", "check"]).unwrap();
            checks.push(cmd::output_text(&out));
            if !checks.last().unwrap().to_lowercase().contains("busy") {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        (agent.join().unwrap(), intruder.join().unwrap(), checks)
    });
    eprintln!(
        "flood as {USER}: {agent_sent}\nflood as intruder: {intruder_sent}\ncheck: {checks:#?}"
    );
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    let start_us = n(&agent_sent, "start_us").min(n(&intruder_sent, "start_us"));
    let end_us = n(&agent_sent, "end_us").max(n(&intruder_sent, "end_us"));
    let connections = n(&agent_sent, "connections") + n(&intruder_sent, "connections");
    assert!(
        connections >= 10_000,
        "too small a flood to tell: {connections}"
    );

    // The windows the flood spans, and the one after it that summarises
    // its end (the accept loop wakes every 2 s).
    let windows = (end_us - start_us) / 10_000_000 + 2;
    let _ = c.wait_for(
        "the summary of the flood's last window",
        Duration::from_secs(20),
        |c| {
            Ok(helper_records_since(c, end_us).iter().any(|r| {
                r["MESSAGE"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("peer summary: "))
            }))
        },
    );
    let records = helper_records_since(&c, start_us);
    let text: Vec<&str> = records
        .iter()
        .filter_map(|r| r["MESSAGE"].as_str())
        .collect();
    let (a_conn, a_denied, a_bad, a_summaries) = peer_summaries(&records, agent_uid);
    let (i_conn, i_denied, _, i_summaries) = peer_summaries(&records, intruder_uid);
    eprintln!(
        "{connections} connections in {:.1} s; {} helper lines; summaries: {USER} {a_summaries} \
         ({a_conn} connections, {a_bad} bad frames), intruder {i_summaries} ({i_conn} connections, \
         {i_denied} denied)",
        (end_us - start_us) as f64 / 1e6,
        records.len()
    );

    // Bounded: per uid (the two, and the shared entry) and window, five
    // lines of each of four kinds and one summary; a few lines of the
    // helper's own (start, idle exit) and the check's.
    let bound = windows * 3 * (4 * 5 + 1) + 20;
    assert!(
        (records.len() as u64) <= bound,
        "{} lines for {connections} connections (bound {bound}):\n{text:#?}",
        records.len()
    );
    // Summarised, with the counts: every connection past a window's first
    // five of its kind is in a summary.
    // The connections of the checks and of the first status (in the
    // flood's first window) count as the agent's too.
    let slack = windows * 5;
    let checks_made = checks.len() as u64 + 1;
    for (what, counted, sent, extra) in [
        (
            "agent connections",
            a_conn,
            n(&agent_sent, "connections"),
            3 * checks_made,
        ),
        ("agent bad frames", a_bad, n(&agent_sent, "bad_frames"), 0),
        (
            "intruder connections",
            i_conn,
            n(&intruder_sent, "connections"),
            0,
        ),
        ("intruder denials", i_denied, n(&intruder_sent, "denied"), 0),
    ] {
        assert!(
            counted <= sent + extra && counted + slack >= sent,
            "{what}: {counted} in the summaries, {sent} sent:\n{text:#?}"
        );
    }
    assert_eq!(a_denied, 0);
    // The other uid's refusal has its own line.
    assert!(
        records
            .iter()
            .any(|r| r["MESSAGE"] == "denied: not the agent user"
                && journal_field(r, "PEER_UID") == Some(intruder_uid.to_string().as_str())),
        "{text:#?}"
    );
    // The check's audit line, whatever its outcome but Busy.
    assert!(
        records.iter().any(|r| r["MESSAGE"] == "request"
            && journal_field(r, "REQUEST") == Some("check")
            && journal_field(r, "OUTCOME").is_some_and(|o| !o.starts_with("busy"))),
        "no check line: {checks:#?}\n{text:#?}"
    );
    // journald dropped nothing of the helper's.
    let suppressed: Vec<String> = c
        .journal("short-precise", &[])
        .unwrap()
        .lines()
        .filter(|l| l.contains("Suppressed") && l.contains("patchman"))
        .map(str::to_owned)
        .collect();
    assert!(
        suppressed.is_empty(),
        "journald suppressed: {suppressed:#?}"
    );

    c.finish(format_args!("journal_flood_summarised"));
}
