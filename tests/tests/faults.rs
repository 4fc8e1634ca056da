//! Faults survived: the real helper and agent in a sandbox with the real
//! apt, dpkg, dnf and rpm, and something going wrong underneath them — the
//! helper killed mid-install, the repository hung or gone, a full disk,
//! another program's locks, a failing maintainer script. Each test asserts
//! the typed error the agent reports, what dpkg / rpm really say
//! afterwards, and that the sandbox's package database changed in nothing
//! beyond that (the host's in nothing at all). Needs root: fails (never
//! skips) without it.
//!
//! | fault                                                   | typed error observed | test |
//! |---------------------------------------------------------|----------------------|------|
//! | `kill -9` of the helper while `dpkg -i` runs a postinst | (none: no answer) → the next `Update` finishes the install or updates normally | `kill_9_of_the_helper_during_dpkg_i_then_the_next_update_recovers` |
//! | `kill -9` of the helper and dpkg's process group mid-postinst | (none) → dpkg `half-configured` → the next `Update` runs `dpkg --configure` first | `kill_9_of_the_helper_and_dpkg_mid_postinst_then_the_next_update_finishes_it` |
//! | `kill -9` of the helper while `rpm -U` runs a `%post`   | (none) → the next `Update` is consistent | `kill_9_of_the_helper_during_rpm_u_then_the_next_update_recovers` |
//! | repository hung (accepts, never answers) during refresh | `CommandFailed { RefreshMetadata }` | `a_hung_repository_during_refresh_is_a_typed_error` |
//! | repository hung during the download                     | `CommandFailed { Download }` | `a_hung_repository_during_the_download_is_a_typed_error` |
//! | repository down (connection refused)                    | `CommandFailed { RefreshMetadata }` | `the_repository_down_is_a_typed_error` |
//! | archives dir full (tmpfs)                               | `CommandFailed { Download }` (apt: not enough free space) | `a_full_archives_directory_is_a_typed_error` |
//! | helper's private dir full (tmpfs)                       | `Internal` ("cannot write …: No space left on device") | `a_full_private_directory_is_a_typed_error` |
//! | dnf's download dir (the private dir) full               | `CommandFailed { Download }` | `dnf_a_full_download_directory_is_a_typed_error` |
//! | `lock-frontend` held past the bound                     | `LockHeld { pid }` | `a_lock_held_by_another_frontend_gives_lock_held_after_the_bounded_wait` (apt_scenarios.rs) |
//! | rpm's lock held past the bound                          | `LockHeld { pid }` | `dnf_an_rpm_lock_held_gives_lock_held_after_the_bounded_wait` (el_scenarios.rs) |
//! | `/var/lib/dpkg/lock` held                               | `LockHeld` | `the_dpkg_database_lock_held_gives_lock_held` |
//! | `/var/lib/apt/lists/lock` held                          | `LockHeld` | `the_apt_lists_lock_held_gives_lock_held` |
//! | postinst exits 1, under the daemon                      | `CommandFailed { Install, 1, <its output> }`, dpkg `half-configured`; one attempt, back-off 45–60 s | `a_failing_postinst_is_reported_recorded_and_backed_off` |
//! | `%post` exits 1                                         | `CommandFailed { Install }` ("scriptlet failed"), rpm: new version installed | `a_failing_rpm_post_is_reported_and_recorded` |

use std::process::Child;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patchman_tests::apt_fixture;
use patchman_tests::attack_support::{
    helper_pid, hold_download, processes_named, release_download, spawn_agent, text,
    wait_for_held_download, wait_for_slow_script, wait_until,
};
use patchman_tests::sandbox::apt_repo::SourceFormat;
use patchman_tests::sandbox::attack_fixture::{
    attack_fixture, el_attack_fixture, FAILURE_MARKER, SLOW_MARKER,
};
use patchman_tests::sandbox::fixture::CLIENT;
use patchman_tests::sandbox::rpm_repo::repo_file;
use patchman_tests::sandbox::{HttpServer, RpmRepo};
use patchman_tests::scenario::Scenario;
use patchman_tests::updater::{assert_first_failure_backed_off, Updater, AGENT_USER, SOCKET};

/// Short network timeouts for apt inside the sandbox, no retries.
fn quick_apt_timeouts(u: &Updater) {
    u.sandbox
        .write_file(
            "/etc/apt/apt.conf.d/99patchman-tests-quick",
            "Acquire::http::Timeout \"3\";\nAcquire::Retries \"0\";\n",
        )
        .unwrap();
}

/// An AlmaLinux 8 sandbox with client 1.7.0-1, whose `patchman`
/// repository is `repo` served by `server` with `gpgcheck=0`.
fn el(repo: &RpmRepo, server: &HttpServer, prepare: impl FnOnce(&Updater)) -> Scenario {
    let url = server.url();
    Scenario::standard_el(|u| {
        u.sandbox
            .write_file(
                "/etc/yum.repos.d/patchman.repo",
                repo_file("patchman", &repo.base_url(&url), false),
            )
            .unwrap();
        prepare(u);
    })
}

/// The update failed before anything was installed: its error says
/// `expected`, the helper never ran `install_command`, and nothing
/// changed.
fn failed_before_installing(s: Scenario, expected: &str, install_command: &str) {
    let err = update_fails(&s);
    assert!(err.contains(expected), "{err}");
    assert!(!s.u.helper_log().contains(install_command));
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

fn update_fails(s: &Scenario) -> String {
    let out = s.agent_exits(&["update"], 1);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn update_succeeds(s: &Scenario) -> String {
    let out = s.agent_exits(&["update"], 0);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for the slow maintainer script to run under the update the test
/// started; returns the helper's pid.
fn wait_for_the_slow_script(s: &Scenario) -> u32 {
    wait_for_slow_script(&s.u);
    helper_pid(&s.u).expect("the helper's pid")
}

/// Kills the sandbox's helper with SIGKILL once the slow maintainer script
/// runs, then waits for the package manager `tool` to be gone.
fn kill_helper_mid_install(s: &Scenario, tool: &str) -> Child {
    let agent = spawn_agent(&s.u, &["update"]);
    let pid = wait_for_the_slow_script(s);
    assert!(!processes_named(&s.u, tool).is_empty(), "{tool} is running");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || processes_named(&s.u, tool)
            .is_empty()),
        "{tool} still running a minute after the helper died"
    );
    agent
}

/// Client 1.7.0-1 installed, and a repository whose 1.7.1-1 has a
/// postinst that waits (the test's window to kill something mid-install).
fn slow_postinst() -> Scenario {
    let fx = apt_fixture();
    let afx = attack_fixture();
    Scenario::apt(
        &afx.repos_root,
        &afx.slow_repo,
        &[fx.client("1.7.0-1")],
        |_| {},
    )
}

/// dpkg has the client installed at `version`, and nothing half done.
fn assert_dpkg_consistent_at(s: &Scenario, version: &str) {
    assert_eq!(
        s.u.dpkg(CLIENT).unwrap(),
        Some(("install ok installed".into(), version.into()))
    );
    assert_eq!(s.u.sandbox.run_stdout(&["dpkg", "--audit"]).unwrap(), "");
}

/// Starts a new helper after the old one was killed (its stale socket
/// would make `start_helper` return before the new one listens).
fn restart_helper(s: &mut Scenario) {
    s.u.sandbox.run(&["rm", "-f", SOCKET]).unwrap();
    s.u.start_helper().unwrap();
}

// ---------------------------------------------------------- kill -9

#[test]
fn kill_9_of_the_helper_during_dpkg_i_then_the_next_update_recovers() {
    let mut s = slow_postinst();
    let agent = kill_helper_mid_install(&s, "dpkg");
    let out = agent.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the agent reports the lost helper: {}",
        text(&out)
    );
    // What dpkg was left with: the helper's death closed dpkg's output
    // pipe; the state is either finished or interrupted, never anything
    // else, and never the old version half-removed.
    let after_kill = s.u.dpkg(CLIENT).unwrap().unwrap();
    eprintln!("after kill -9: {after_kill:?}");
    assert_eq!(after_kill.1, "1.7.1-1");
    assert!(
        [
            "install ok installed",
            "install ok half-configured",
            "install ok unpacked"
        ]
        .contains(&after_kill.0.as_str()),
        "{after_kill:?}"
    );
    restart_helper(&mut s);
    let stdout = update_succeeds(&s);
    if after_kill.0 != "install ok installed" {
        assert!(
            stdout.contains("Finishing an interrupted install…"),
            "{stdout}"
        );
    }
    assert_dpkg_consistent_at(&s, "1.7.1-1");
    s.u.sandbox.run(&["apt-get", "check"]).unwrap();
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

/// As above, but dpkg dies with the helper (its whole process group
/// killed, as the OOM killer or a power cut would): dpkg's database says
/// `half-configured`, and the next `Update` takes the helper's
/// `dpkg --configure` path first.
#[test]
fn kill_9_of_the_helper_and_dpkg_mid_postinst_then_the_next_update_finishes_it() {
    let mut s = slow_postinst();
    let agent = spawn_agent(&s.u, &["update"]);
    let helper = wait_for_the_slow_script(&s);
    let dpkg = processes_named(&s.u, "dpkg");
    assert!(!dpkg.is_empty());
    kill(Pid::from_raw(helper as i32), Signal::SIGKILL).unwrap();
    for pid in dpkg {
        // The helper runs every child in its own process group.
        let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
    }
    assert!(wait_until(Duration::from_secs(60), || processes_named(
        &s.u, "dpkg"
    )
    .is_empty()
        && processes_named(&s.u, "sleep").is_empty()));
    let _ = agent.wait_with_output().unwrap();
    assert_eq!(
        s.u.dpkg(CLIENT).unwrap(),
        Some(("install ok half-configured".into(), "1.7.1-1".into()))
    );
    s.u.sandbox.run(&["rm", "-f", SLOW_MARKER]).unwrap();
    restart_helper(&mut s);
    let stdout = update_succeeds(&s);
    assert!(
        stdout.contains("Finishing an interrupted install…"),
        "{stdout}"
    );
    s.u.assert_helper_logged("dpkg --configure");
    assert_dpkg_consistent_at(&s, "1.7.1-1");
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn kill_9_of_the_helper_during_rpm_u_then_the_next_update_recovers() {
    let efx = el_attack_fixture();
    let server = HttpServer::start(&efx.repos_root).unwrap();
    let mut s = el(&efx.slow, &server, |_| {});
    let agent = kill_helper_mid_install(&s, "rpm");
    let out = agent.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let after_kill =
        s.u.sandbox
            .run_unchecked(&["rpm", "-q", CLIENT])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap();
    eprintln!("after kill -9: rpm -q says {after_kill:?}");
    restart_helper(&mut s);
    let out = s.agent_exits(&["update"], 0);
    eprintln!("the next update: {}", text(&out));
    let q = s.u.sandbox.run_stdout(&["rpm", "-q", CLIENT]).unwrap();
    assert_eq!(
        q.trim(),
        "patchman-client-1.7.1-1.noarch",
        "exactly one, the new one"
    );
    let verify = s.u.sandbox.run_unchecked(&["rpm", "-V", CLIENT]).unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    s.finish_updated(CLIENT, "1.7.1-1");
}

// ------------------------------------------------------- the network

#[test]
fn a_hung_repository_during_refresh_is_a_typed_error() {
    let s = Scenario::standard_apt(quick_apt_timeouts);
    s.u.http.set_hang(true);
    let err = update_fails(&s);
    assert!(
        err.contains("refreshing the patchman repository metadata failed"),
        "{err}"
    );
    s.u.assert_helper_logged("outcome=\"failed: refreshing");
    s.u.http.set_hang(false);
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

#[test]
fn a_hung_repository_during_the_download_is_a_typed_error() {
    // The download waits for the test's go-ahead; by then the server hangs.
    let s = Scenario::standard_apt(|u| {
        quick_apt_timeouts(u);
        hold_download(u);
    });
    let agent = spawn_agent(&s.u, &["update"]);
    wait_for_held_download(&s.u);
    s.u.http.set_hang(true);
    release_download(&s.u);
    let out = s.exited(&["update"], agent.wait_with_output().unwrap(), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("downloading failed with exit code 100"),
        "{err}"
    );
    s.u.http.set_hang(false);
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

#[test]
fn the_repository_down_is_a_typed_error() {
    let fx = apt_fixture();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Scenario::standard_apt(|u| {
        u.sandbox
            .add_apt_repo(
                "patchman",
                &fx.patchman,
                &format!("http://127.0.0.1:{port}"),
                SourceFormat::List,
            )
            .unwrap();
    });
    let err = update_fails(&s);
    assert!(
        err.contains("refreshing the patchman repository metadata failed"),
        "{err}"
    );
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

// ------------------------------------------------------- disk full

/// Mounts a small tmpfs (`options`) over `dir` inside the sandbox and
/// fills it up.
fn mount_full_tmpfs(u: &Updater, dir: &str, options: &str, then: &str) {
    u.sandbox
        .run(&[
            "sh",
            "-c",
            &format!(
                "mkdir -p {dir} && mount -t tmpfs -o {options} patchman-tests-full {dir} && {then} \
                 (dd if=/dev/zero of={dir}/filler bs=4k 2>/dev/null || true) && \
                 [ \"$(df --output=avail -k {dir} | tail -1 | tr -d ' ')\" -eq 0 ]"
            ),
        ])
        .unwrap();
}

#[test]
fn a_full_archives_directory_is_a_typed_error() {
    let s = Scenario::standard_apt(|u| {
        mount_full_tmpfs(
            u,
            "/var/cache/apt/archives",
            "size=64k,mode=0755",
            "mkdir -p /var/cache/apt/archives/partial &&",
        );
    });
    failed_before_installing(s, "downloading failed", "command=dpkg -i");
}

#[test]
fn a_full_private_directory_is_a_typed_error() {
    let s = Scenario::standard_apt(|u| {
        mount_full_tmpfs(u, "/var/cache/patchman-helper", "size=64k,mode=0700", "");
    });
    // apt keeps its binary caches of this run in the private directory, so
    // a full one is met at the refresh already, before any download.
    failed_before_installing(s, "No space left on device", "command=dpkg -i");
}

#[test]
fn dnf_a_full_download_directory_is_a_typed_error() {
    let s = Scenario::standard_el(|u| {
        mount_full_tmpfs(u, "/var/cache/patchman-helper", "size=64k,mode=0700", "");
    });
    failed_before_installing(s, "downloading failed", "command=rpm -U");
}

// ------------------------------------------------------------ locks

/// The standard apt scenario with `lock_wait = 2s`: `update` while `lock`
/// is held fails with the typed `LockHeld`, which the agent retries
/// sooner, not a failed download. Returns the scenario, the lock released.
fn update_with_the_lock_held(lock: &str) -> Scenario {
    let s = Scenario::standard_apt(|u| {
        u.configure("repository = patchman\nlock_wait = 2s\n")
            .unwrap();
    });
    let holder = s.u.sandbox.hold_lock(lock).unwrap();
    let err = update_fails(&s);
    holder.release();
    assert!(err.contains("lock is held"), "{err}\n{}", s.u.helper_log());
    s
}

#[test]
fn the_dpkg_database_lock_held_gives_lock_held() {
    // apt waits the bound (DPkg::Lock::Timeout = lock_wait) for dpkg's
    // database lock.
    let s = update_with_the_lock_held("/var/lib/dpkg/lock");
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    // Released: the retry works.
    update_succeeds(&s);
    s.finish_updated(CLIENT, "1.7.1-1");
}

#[test]
fn the_apt_lists_lock_held_gives_lock_held() {
    update_with_the_lock_held("/var/lib/apt/lists/lock").finish_unchanged(CLIENT, "1.7.0-1");
}

// ------------------------------------------------ maintainer scripts

#[test]
fn a_failing_postinst_is_reported_recorded_and_backed_off() {
    const STATE_DIR: &str = "/var/lib/patchman";
    let fx = apt_fixture();
    let afx = attack_fixture();
    let s = Scenario::apt(
        &afx.repos_root,
        &afx.failing_repo,
        &[fx.client("1.7.0-1")],
        |u| {
            u.configure("repository = patchman\ninterval = 1h\njitter = 0s\n")
                .unwrap();
            u.sandbox
                .run(&[
                    "install", "-d", "-o", AGENT_USER, "-g", AGENT_USER, "-m", "0755", STATE_DIR,
                ])
                .unwrap();
        },
    );
    // One unattended cycle of the daemon.
    let mut daemon = spawn_agent(&s.u, &["--state-dir", STATE_DIR, "run"]);
    let (recorded, json) =
        s.u.wait_for_recorded_result(STATE_DIR, Duration::from_secs(90));
    assert!(recorded, "{json}\n{}", s.u.helper_log());
    let daemon_err = assert_first_failure_backed_off(&json);
    assert!(
        daemon_err.contains("installing failed with exit code 1"),
        "{json}"
    );
    // No retry storm: still one update request a few seconds later.
    std::thread::sleep(Duration::from_secs(3));
    let updates = |log: &str| log.matches("request=\"update\"").count();
    assert_eq!(updates(&s.u.helper_log()), 1, "{}", s.u.helper_log());
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // What dpkg recorded: unpacked, configuration failed.
    assert_eq!(
        s.u.dpkg(CLIENT).unwrap(),
        Some(("install ok half-configured".into(), "1.7.1-1".into()))
    );
    let audit = s.u.sandbox.run_stdout(&["dpkg", "--audit"]).unwrap();
    assert!(audit.contains(CLIENT), "{audit}");
    // By hand: the helper first tries to finish it, which fails the same way.
    let err = update_fails(&s);
    assert!(
        err.contains("finishing an interrupted install failed"),
        "{err}"
    );
    s.assert_only_changed(&[CLIENT]);
    // The script's own words (why it failed) are part of the report, in
    // both the install and the finishing attempt.
    assert!(
        daemon_err.contains(FAILURE_MARKER),
        "the postinst's output is not in the report: {daemon_err:?}\n{}",
        s.u.helper_log()
    );
    assert!(err.contains(FAILURE_MARKER), "{err}");
    s.finish();
}

#[test]
fn a_failing_rpm_post_is_reported_and_recorded() {
    let efx = el_attack_fixture();
    let server = HttpServer::start(&efx.repos_root).unwrap();
    let s = el(&efx.failing, &server, |_| {});
    let err = update_fails(&s);
    assert!(err.contains("installing failed"), "{err}");
    assert!(err.contains("scriptlet failed"), "{err}");
    // rpm counts a failed %post as a warning: the new version is installed.
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    let q = s.u.sandbox.run_stdout(&["rpm", "-q", CLIENT]).unwrap();
    assert_eq!(q.trim(), "patchman-client-1.7.1-1.noarch");
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}
