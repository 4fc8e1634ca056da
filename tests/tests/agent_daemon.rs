//! `patchman-agent run` end to end: the real daemon as `patchman` and the
//! real helper as root in a sandbox, against the fixture's repositories
//! over HTTP. With `interval = 1h` and `jitter = 0s` the first check comes
//! at once and the next an hour later, so everything a test waits for
//! happens in the first check (or the restart after it).

use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use patchman_tests::attack_support::wait_until;
use patchman_tests::daemon::Daemon;
use patchman_tests::sandbox::agent_fixture::{agent_fixture, AGENT_PATH};
use patchman_tests::sandbox::apt_repo::{AptRepo, SourceFormat};
use patchman_tests::sandbox::fixture::CLIENT;
use patchman_tests::updater::{assert_first_failure_backed_off, Updater, AGENT_USER, SOCKET};
use patchman_tests::{apt_fixture, assert_host_unchanged, host_package_state, workspace_bin};

const STATE_DIR: &str = "/var/lib/patchman";
/// Generous bounds: a loaded 2-core CI machine runs several sandboxes.
const FIRST_CHECK_WITHIN: Duration = Duration::from_secs(90);
/// How long the daemon may take to exit on SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(15);

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A sandbox with the helper running, the state directory owned by
/// `patchman`, and patchman.ini's `[updates]` set to `updates`.
struct Scenario {
    host_before: String,
    u: Updater,
}

impl Scenario {
    /// The sandbox with the packages `installed`, patchman.ini and the
    /// state directory; no helper yet ([`Scenario::with_helper`]).
    fn new(
        repos_root: &std::path::Path,
        repo: &AptRepo,
        installed: &[&std::path::Path],
        updates: &str,
    ) -> Scenario {
        let host_before = host_package_state();
        let u = Updater::new(repos_root, repo, SourceFormat::List, installed).expect("sandbox");
        u.configure(updates).unwrap();
        u.sandbox
            .run(&[
                "install", "-d", "-o", AGENT_USER, "-g", AGENT_USER, "-m", "0755", STATE_DIR,
            ])
            .unwrap();
        Scenario { host_before, u }
    }

    /// Starts the helper.
    fn with_helper(mut self) -> Scenario {
        self.u.start_helper().expect("helper");
        self
    }

    /// The fixture's `patchman` repository, its client `installed`.
    fn standard(installed: &str, updates: &str) -> Scenario {
        Scenario::standard_without_helper(installed, updates).with_helper()
    }

    fn standard_without_helper(installed: &str, updates: &str) -> Scenario {
        let fx = apt_fixture();
        Scenario::new(
            &fx.repos_root,
            &fx.patchman,
            &[fx.client(installed)],
            updates,
        )
    }

    /// Starts `<agent> --socket SOCKET --state-dir STATE_DIR run` as
    /// `patchman`.
    fn start_daemon_from(&self, agent: &str) -> Daemon {
        let child = self
            .u
            .sandbox
            .spawn_as(
                AGENT_USER,
                &[agent, "--socket", SOCKET, "--state-dir", STATE_DIR, "run"],
            )
            .unwrap();
        // nsenter execs setpriv, which execs the agent, all in place: wait
        // until the pid runs the agent (its argv[0]). Both wrappers' command
        // lines also hold "run"; taking nsenter's for the agent's made the
        // re-execution test read nsenter's image (found by CI).
        Daemon::started(child, Duration::from_secs(10), |pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(agent.as_bytes()))
        })
    }

    fn start_daemon(&self) -> Daemon {
        self.start_daemon_from(workspace_bin("patchman-agent").to_str().unwrap())
    }

    fn agent(&self, args: &[&str]) -> Output {
        let mut argv = vec!["--state-dir", STATE_DIR];
        argv.extend_from_slice(args);
        self.u.agent(&argv).unwrap()
    }

    fn status_json(&self) -> serde_json::Value {
        let out = self.agent(&["status", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    }

    fn version(&self) -> Option<String> {
        self.u.installed(CLIENT).unwrap()
    }

    /// Waits for the daemon's first check to be recorded; returns status.
    fn wait_for_first_check(&self, d: &Daemon) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let done = wait_until(FIRST_CHECK_WITHIN, || {
            last = self.status_json();
            !last["last_result"].is_null()
        });
        assert!(
            done,
            "no check recorded: {last}\n{}\n{}",
            d.log(),
            self.u.helper_log()
        );
        last
    }

    /// Waits up to `within` for `version` of the client to be installed
    /// (by the daemon `d`); `failure` says what went wrong otherwise.
    fn wait_for_version(&self, d: &Daemon, version: &str, within: Duration, failure: &str) {
        assert!(
            wait_until(within, || self.version().as_deref() == Some(version)),
            "{failure} within {within:?}:\n{}\n{}",
            d.log(),
            self.u.helper_log()
        );
    }

    /// Waits for `status` to say the restart after the update was
    /// confirmed; returns that status.
    fn wait_for_confirmed_restart(&self, d: &Daemon) -> serde_json::Value {
        let mut json = serde_json::Value::Null;
        assert!(
            wait_until(Duration::from_secs(90), || {
                json = self.status_json();
                json["restart"]["confirmed"] == true
            }),
            "the restart was not confirmed: {json}\n{}",
            d.log()
        );
        json
    }

    fn finish(self) {
        let host_before = self.host_before.clone();
        drop(self);
        assert_host_unchanged(&host_before);
    }
}

/// Voluntary + involuntary context switches of every thread of `pid`.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some((k, v)) = line.split_once(':') {
                if k.ends_with("ctxt_switches") {
                    total += v.trim().parse::<u64>().unwrap();
                }
            }
        }
    }
    total
}

#[test]
fn run_updates_1_7_0_to_1_7_1_restarts_itself_and_reconnects() {
    let mut s = Scenario::standard("1.7.0-1", "interval = 1h\njitter = 0s\n");
    let mut d = s.start_daemon();
    let pid = d.pid();
    let t0 = Instant::now();
    s.wait_for_version(&d, "1.7.1-1", FIRST_CHECK_WITHIN, "not updated");
    eprintln!(
        "updated {:.1} s after the daemon started",
        t0.elapsed().as_secs_f64()
    );
    // Its own package changed: it re-executes itself, keeping its pid.
    d.assert_logs("re-executing the agent by path", Duration::from_secs(30));
    assert!(
        d.wait_for_log("resumed_after_update=true", Duration::from_secs(30)),
        "the new process did not start:\n{}",
        d.log()
    );
    assert!(d.alive(), "{}", d.log());
    assert_eq!(d.pid(), pid);
    // The helper exits after a changing update; until it is back (socket
    // activation in production; here we start it) the agent retries.
    assert!(
        s.u.helper_exited_within(Duration::from_secs(10)),
        "{}",
        s.u.helper_log()
    );
    d.assert_logs("the helper is not reachable yet", Duration::from_secs(30));
    s.u.start_helper().unwrap();
    let json = s.wait_for_confirmed_restart(&d);
    assert!(
        d.log().contains("the new agent runs after the update"),
        "{}",
        d.log()
    );
    eprintln!("status --json after the update: {json}");
    assert_eq!(json["last_result"], "updated", "{json}");
    assert_eq!(
        json["last_result_detail"], "patchman-client: 1.7.0-1 → 1.7.1-1",
        "{json}"
    );
    assert_eq!(json["installed"]["client"], "1.7.1-1", "{json}");
    assert_eq!(json["family"], "apt", "{json}");
    assert_eq!(json["automatic"]["enabled"], true, "{json}");
    assert_eq!(json["daemon"]["running"], true, "{json}");
    assert_eq!(json["daemon"]["pid"], pid, "{json}");
    assert!(json["next_check"].is_string(), "{json}");
    assert!(json["last_check"].is_string(), "{json}");
    assert_eq!(d.stop(STOP_WITHIN), Some(0));
    s.finish();
}

/// A gate is closed: the daemon checks, records why, changes nothing; a
/// person's `update` still works.
fn gated(installed: &str, updates: &str, group_file: Option<&str>, code: &str) {
    let s = Scenario::standard(installed, updates);
    if let Some(g) = group_file {
        s.u.sandbox
            .write_file("/etc/patchman/server-group.json", g)
            .unwrap();
    }
    let d = s.start_daemon();
    let json = s.wait_for_first_check(&d);
    assert_eq!(
        json["last_result"],
        "automatic_updates_off",
        "{json}\n{}",
        d.log()
    );
    assert_eq!(json["automatic"]["enabled"], false, "{json}");
    assert_eq!(json["automatic"]["code"], code, "{json}");
    assert!(
        json["automatic"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{json}"
    );
    assert!(d.log().contains(&format!("gate=\"{code}\"")), "{}", d.log());
    assert_eq!(s.version().as_deref(), Some(installed));
    assert!(
        !s.u.helper_log().contains("dpkg -i"),
        "nothing may be installed:\n{}",
        s.u.helper_log()
    );
    assert_eq!(d.stop(STOP_WITHIN), Some(0));
    // Attended: not gated.
    let out = s.agent(&["update"]);
    s.u.assert_agent_exited(&["update"], &out, 0);
    assert_eq!(s.version().as_deref(), Some("1.7.1-1"));
    s.finish();
}

// (the installed client, patchman.ini's [updates], the server-group file,
// the gate's code)
patchman_tests::test_cases! { gated:
    the_group_switch_off_leaves_the_version_and_update_by_hand_works => (
        "1.7.0-1",
        "interval = 1h\njitter = 0s\n",
        Some(r#"{"automatic_updates": false}"#),
        "disabled_by_server_group",
    ),
    the_local_switch_off_leaves_the_version_and_update_by_hand_works => (
        "1.7.0-1",
        "automatic = no\ninterval = 1h\njitter = 0s\n",
        Some(r#"{"automatic_updates": true}"#),
        "disabled_locally",
    ),
    a_client_below_1_7_0_needs_a_manual_upgrade_which_works => (
        "1.6.9-1",
        "interval = 1h\njitter = 0s\n",
        None,
        "client_too_old",
    ),
    a_malformed_server_group_file_means_not_allowed => (
        "1.7.0-1",
        "interval = 1h\njitter = 0s\n",
        Some("{\"automatic_updates\": tru"),
        "server_group_file_invalid",
    ),
}

#[test]
fn sleeps_without_waking_reloads_on_sighup_and_stops_on_sigterm() {
    let s = Scenario::standard("1.7.1-1", "interval = 1h\njitter = 0s\n");
    let d = s.start_daemon();
    let json = s.wait_for_first_check(&d);
    assert_eq!(json["last_result"], "up_to_date", "{json}\n{}", d.log());
    // Let the check's connection and state write settle, then count.
    d.assert_logs("check finished", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let before = context_switches(d.pid());
    std::thread::sleep(Duration::from_secs(6));
    let after = context_switches(d.pid());
    eprintln!(
        "context switches of the sleeping daemon over 6 s: {}",
        after - before
    );
    assert_eq!(
        after,
        before,
        "the daemon woke up between checks:\n{}",
        d.log()
    );

    // SIGHUP: patchman.ini is read again (no check is made for it).
    s.u.configure("automatic = no\ninterval = 2h\njitter = 0s\n")
        .unwrap();
    d.signal(Signal::SIGHUP);
    d.assert_logs("configuration reloaded", Duration::from_secs(15));
    let log = d.log();
    let reload = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(
        reload.contains("automatic=false") && reload.contains("interval_s=7200"),
        "{reload}"
    );
    assert_eq!(log.matches("checking for updates").count(), 1, "{log}");
    let json = s.status_json();
    assert_eq!(json["automatic"]["code"], "disabled_locally", "{json}");
    // A broken file on SIGHUP keeps the previous configuration.
    s.u.configure("interval = soon\n").unwrap();
    d.signal(Signal::SIGHUP);
    d.assert_logs("configuration not reloaded", Duration::from_secs(15));
    assert_eq!(d.stop(STOP_WITHIN), Some(0));
    s.finish();
}

#[test]
fn a_missing_helper_is_logged_and_retried_with_back_off() {
    // No helper started: its socket does not exist.
    let mut s = Scenario::standard_without_helper("1.7.0-1", "interval = 1h\njitter = 0s\n");
    assert!(!s.u.sandbox.exists(SOCKET).unwrap());
    let mut d = s.start_daemon();
    // `status` needs the helper; the daemon's state file says it all.
    let (recorded, json) = s.u.wait_for_recorded_result(STATE_DIR, FIRST_CHECK_WITHIN);
    assert!(recorded, "{json}\n{}", d.log());
    // The retry is the back-off's first step (45–60 s), not the interval.
    let err = assert_first_failure_backed_off(&json);
    assert!(err.contains("is patchman-helper running"), "{json}");
    let log = d.log();
    assert!(log.contains("check failed; backing off"), "{log}");
    assert!(log.contains("is patchman-helper running"), "{log}");
    assert!(d.alive(), "a missing helper is not fatal:\n{log}");
    // The helper comes back: the retry finds it and the update happens.
    s.u.start_helper().unwrap();
    s.wait_for_version(
        &d,
        "1.7.1-1",
        Duration::from_secs(120),
        "not updated after the helper came back",
    );
    // Stop it once the re-executed process runs (its signals are set up
    // before it logs its start), not in the instant of the exec itself.
    d.assert_logs("resumed_after_update=true", Duration::from_secs(30));
    assert_eq!(d.stop(STOP_WITHIN), Some(0));
    s.finish();
}

#[test]
fn the_new_binary_runs_after_the_daemon_updates_its_own_package() {
    let fx = agent_fixture();
    let mut s = Scenario::new(
        &fx.repos_root,
        &fx.repo,
        &[fx.deb("1.7.0-1")],
        "interval = 1h\njitter = 0s\n",
    )
    .with_helper();
    let image = |pid: u32| -> String {
        let bytes = std::fs::read(format!("/proc/{pid}/exe")).unwrap_or_default();
        patchman_tests::host::sha256_hex(&bytes).unwrap()
    };
    let mut d = s.start_daemon_from(AGENT_PATH);
    let pid = d.pid();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(
        image(pid),
        fx.payload_sha256("1.7.0-1"),
        "runs the packaged 1.7.0-1 binary"
    );
    s.wait_for_version(&d, "1.7.1-1", FIRST_CHECK_WITHIN, "not updated");
    let new = fx.payload_sha256("1.7.1-1").to_owned();
    assert!(
        wait_until(Duration::from_secs(30), || image(pid) == new),
        "the process does not run the new binary:\n{}",
        d.log()
    );
    d.assert_reexecuted(std::path::Path::new(AGENT_PATH), &cmdline);
    s.u.helper_exited_within(Duration::from_secs(10));
    s.u.start_helper().unwrap();
    let json = s.wait_for_confirmed_restart(&d);
    assert_eq!(json["restart"]["version"], "1.7.1-1", "{json}");
    assert_eq!(d.stop(STOP_WITHIN), Some(0));
    s.finish();
}
