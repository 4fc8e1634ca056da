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

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patchman_tests::attack_support::{
    helper_pid, processes_named, spawn_agent, text, wait_until, wrap_tool,
};
use patchman_tests::sandbox::apt_repo::{AptRepo, SourceFormat};
use patchman_tests::sandbox::attack_fixture::{
    attack_fixture, el_attack_fixture, FAILURE_MARKER, SLOW_MARKER,
};
use patchman_tests::sandbox::el::ElRelease;
use patchman_tests::sandbox::fixture::CLIENT;
use patchman_tests::sandbox::rpm_repo::repo_file;
use patchman_tests::sandbox::{HttpServer, RpmRepo};
use patchman_tests::scenario::{Db, Scenario};
use patchman_tests::updater::{Updater, AGENT_USER, SOCKET};
use patchman_tests::{apt_fixture, el_fixture, host_package_state};

/// Short network timeouts for apt inside the sandbox, no retries.
const APT_QUICK: &str = "Acquire::http::Timeout \"3\";\nAcquire::Retries \"0\";\n";

fn apt(
    repos_root: &Path,
    repo: &AptRepo,
    installed: &[&Path],
    prepare: impl FnOnce(&Updater),
) -> Scenario {
    let host_before = host_package_state();
    let u = Updater::new(repos_root, repo, SourceFormat::List, installed).expect("sandbox");
    Scenario::start(Db::Dpkg, u, host_before, prepare)
}

fn standard(prepare: impl FnOnce(&Updater)) -> Scenario {
    let fx = apt_fixture();
    apt(
        &fx.repos_root,
        &fx.patchman,
        &[fx.client("1.7.0-1")],
        prepare,
    )
}

/// An AlmaLinux 8 sandbox with client 1.7.0-1, whose `patchman`
/// repository is `repo` served by `server` with `gpgcheck=0`.
fn el(repo: &RpmRepo, server: &HttpServer, prepare: impl FnOnce(&Updater)) -> Scenario {
    let fx = el_fixture();
    let host_before = host_package_state();
    let u = Updater::new_el(ElRelease::AlmaLinux8, &fx.patchman, &[fx.client("1.7.0-1")])
        .expect("EL sandbox");
    let url = server.url();
    Scenario::start(Db::Rpm, u, host_before, |u| {
        u.sandbox
            .write_file(
                "/etc/yum.repos.d/patchman.repo",
                repo_file("patchman", &repo.base_url(&url), false),
            )
            .unwrap();
        prepare(u);
    })
}

fn update_fails(s: &Scenario) -> String {
    let out = s.agent(&["update"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn update_succeeds(s: &Scenario) -> String {
    let out = s.agent(&["update"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the sandbox's helper with SIGKILL once the slow maintainer script
/// runs, then waits for the package manager `tool` to be gone.
fn kill_helper_mid_install(s: &Scenario, tool: &str) -> Child {
    let agent = spawn_agent(&s.u, &["update"]);
    assert!(
        wait_until(Duration::from_secs(60), || s
            .u
            .sandbox
            .exists(SLOW_MARKER)
            .unwrap()),
        "the maintainer script never ran:\n{}",
        s.u.helper_log()
    );
    let pid = helper_pid(&s.u).expect("the helper's pid");
    assert!(!processes_named(&s.u, tool).is_empty(), "{tool} is running");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || processes_named(&s.u, tool)
            .is_empty()),
        "{tool} still running a minute after the helper died"
    );
    agent
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
    let fx = apt_fixture();
    let afx = attack_fixture();
    let mut s = apt(
        &afx.repos_root,
        &afx.slow_repo,
        &[fx.client("1.7.0-1")],
        |_| {},
    );
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
    assert_eq!(
        s.u.dpkg(CLIENT).unwrap(),
        Some(("install ok installed".into(), "1.7.1-1".into()))
    );
    assert_eq!(s.u.sandbox.run_stdout(&["dpkg", "--audit"]).unwrap(), "");
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
    let fx = apt_fixture();
    let afx = attack_fixture();
    let mut s = apt(
        &afx.repos_root,
        &afx.slow_repo,
        &[fx.client("1.7.0-1")],
        |_| {},
    );
    let agent = spawn_agent(&s.u, &["update"]);
    assert!(
        wait_until(Duration::from_secs(60), || s
            .u
            .sandbox
            .exists(SLOW_MARKER)
            .unwrap()),
        "{}",
        s.u.helper_log()
    );
    let helper = helper_pid(&s.u).expect("the helper's pid");
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
    assert!(
        s.u.helper_log().contains("dpkg --configure"),
        "{}",
        s.u.helper_log()
    );
    assert_eq!(
        s.u.dpkg(CLIENT).unwrap(),
        Some(("install ok installed".into(), "1.7.1-1".into()))
    );
    assert_eq!(s.u.sandbox.run_stdout(&["dpkg", "--audit"]).unwrap(), "");
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
    let out = s.agent(&["update"]);
    eprintln!("the next update: {}", text(&out));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    let q = s.u.sandbox.run_stdout(&["rpm", "-q", CLIENT]).unwrap();
    assert_eq!(
        q.trim(),
        "patchman-client-1.7.1-1.noarch",
        "exactly one, the new one"
    );
    let verify = s.u.sandbox.run_unchecked(&["rpm", "-V", CLIENT]).unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

// ------------------------------------------------------- the network

#[test]
fn a_hung_repository_during_refresh_is_a_typed_error() {
    let s = standard(|u| {
        u.sandbox
            .write_file("/etc/apt/apt.conf.d/99patchman-tests-quick", APT_QUICK)
            .unwrap();
    });
    s.u.http.set_hang(true);
    let err = update_fails(&s);
    assert!(
        err.contains("refreshing the patchman repository metadata failed"),
        "{err}"
    );
    assert!(
        s.u.helper_log().contains("outcome=\"failed: refreshing"),
        "{}",
        s.u.helper_log()
    );
    s.u.http.set_hang(false);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_hung_repository_during_the_download_is_a_typed_error() {
    // The download waits for the test's go-ahead; by then the server hangs.
    let s = standard(|u| {
        u.sandbox
            .write_file("/etc/apt/apt.conf.d/99patchman-tests-quick", APT_QUICK)
            .unwrap();
        wrap_tool(
            u,
            "/usr/bin/apt-get",
            "case \" $* \" in *\" -d install \"*) touch /run/atk-waiting; i=0; \
             while [ ! -e /run/atk-go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;; esac",
        );
    });
    let agent = spawn_agent(&s.u, &["update"]);
    assert!(wait_until(Duration::from_secs(60), || s
        .u
        .sandbox
        .exists("/run/atk-waiting")
        .unwrap()));
    s.u.http.set_hang(true);
    s.u.sandbox.run(&["touch", "/run/atk-go"]).unwrap();
    let out = agent.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("downloading failed with exit code 100"),
        "{err}"
    );
    s.u.http.set_hang(false);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
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
    let s = standard(|u| {
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
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
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
    let s = standard(|u| {
        mount_full_tmpfs(
            u,
            "/var/cache/apt/archives",
            "size=64k,mode=0755",
            "mkdir -p /var/cache/apt/archives/partial &&",
        );
    });
    let err = update_fails(&s);
    assert!(err.contains("downloading failed"), "{err}");
    assert!(!s.u.helper_log().contains("command=dpkg -i"));
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_full_private_directory_is_a_typed_error() {
    let s = standard(|u| {
        mount_full_tmpfs(u, "/var/cache/patchman-helper", "size=64k,mode=0700", "");
    });
    let err = update_fails(&s);
    // apt keeps its binary caches of this run in the private directory, so
    // a full one is met at the refresh already, before any download.
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!s.u.helper_log().contains("command=dpkg -i"));
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_a_full_download_directory_is_a_typed_error() {
    let fx = el_fixture();
    let host_before = host_package_state();
    let u = Updater::new_el(ElRelease::AlmaLinux8, &fx.patchman, &[fx.client("1.7.0-1")])
        .expect("EL sandbox");
    let s = Scenario::start(Db::Rpm, u, host_before, |u| {
        mount_full_tmpfs(u, "/var/cache/patchman-helper", "size=64k,mode=0700", "");
    });
    let err = update_fails(&s);
    assert!(err.contains("downloading failed"), "{err}");
    assert!(!s.u.helper_log().contains("command=rpm -U"));
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

// ------------------------------------------------------------ locks

/// Holds an fcntl lock on `path` inside the sandbox (as apt and dpkg do)
/// until the returned child is killed.
fn hold_lock(u: &Updater, path: &str) -> Child {
    let mut holder = u
        .sandbox
        .spawn(&[
            "python3",
            "-c",
            &format!(
                "import fcntl,time\nf=open('{path}','a')\nfcntl.lockf(f,fcntl.LOCK_EX)\n\
                 print('locked',flush=True)\ntime.sleep(120)"
            ),
        ])
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    holder
}

#[test]
fn the_dpkg_database_lock_held_gives_lock_held() {
    let s = standard(|u| {
        u.configure("repository = patchman\nlock_wait = 2s\n")
            .unwrap();
    });
    let mut holder = hold_lock(&s.u, "/var/lib/dpkg/lock");
    let err = update_fails(&s);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    // apt waited the bound (DPkg::Lock::Timeout = lock_wait) for dpkg's
    // database lock; the answer must be the typed LockHeld, which the
    // agent retries sooner, not a failed download.
    assert!(err.contains("lock is held"), "{err}\n{}", s.u.helper_log());
    // Released: the retry works.
    update_succeeds(&s);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn the_apt_lists_lock_held_gives_lock_held() {
    let s = standard(|u| {
        u.configure("repository = patchman\nlock_wait = 2s\n")
            .unwrap();
    });
    let mut holder = hold_lock(&s.u, "/var/lib/apt/lists/lock");
    let err = update_fails(&s);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(err.contains("lock is held"), "{err}\n{}", s.u.helper_log());
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

// ------------------------------------------------ maintainer scripts

#[test]
fn a_failing_postinst_is_reported_recorded_and_backed_off() {
    const STATE_DIR: &str = "/var/lib/patchman";
    let fx = apt_fixture();
    let afx = attack_fixture();
    let s = apt(
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
    let state = || -> serde_json::Value {
        s.u.sandbox
            .read_file(&format!("{STATE_DIR}/state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    let mut json = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(90), || {
            json = state();
            !json["last_result"].is_null()
        }),
        "{json}\n{}",
        s.u.helper_log()
    );
    assert_eq!(json["last_result"], "failed", "{json}");
    let daemon_err = json["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        daemon_err.contains("installing failed with exit code 1"),
        "{json}"
    );
    assert_eq!(json["consecutive_failures"], 1, "{json}");
    let wait = json["next_check"].as_u64().unwrap() - json["last_check"].as_u64().unwrap();
    assert!(
        (45..=60).contains(&wait),
        "back-off, not a retry storm: {json}"
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
