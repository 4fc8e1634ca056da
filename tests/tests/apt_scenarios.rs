//! The apt family end to end: the real helper (root) and agent (as
//! `patchman`) in a sandbox, real apt-get / apt-cache / dpkg against signed
//! repositories served over HTTP on 127.0.0.1. Every scenario asserts the
//! final dpkg state, that the sandbox's database changed in nothing but the
//! intended packages, and that the host's did not change at all.

use std::process::Output;
use std::time::Duration;

use patchman_tests::cmd::output_text;
use patchman_tests::sandbox::apt_repo::{AptRepo, SourceFormat};
use patchman_tests::sandbox::fixture::{CLIENT, CONFFILE, NEW_DEP, REALTIME};
use patchman_tests::scenario::{Db, Scenario};
use patchman_tests::updater::Updater;
use patchman_tests::{apt_fixture, host_package_state};

fn text(out: &Output) -> String {
    output_text(out)
}

fn new(repo: &AptRepo, installed: &[(&str, &str)]) -> Scenario {
    with_format(repo, SourceFormat::List, installed, |_| {})
}

fn with_format(
    repo: &AptRepo,
    format: SourceFormat,
    installed: &[(&str, &str)],
    prepare: impl FnOnce(&Updater),
) -> Scenario {
    let host_before = host_package_state();
    let fx = apt_fixture();
    let debs: Vec<&std::path::Path> = installed.iter().map(|(p, v)| fx.deb(p, v)).collect();
    let u = Updater::new(&fx.repos_root, repo, format, &debs).expect("sandbox");
    Scenario::start(Db::Dpkg, u, host_before, prepare)
}

#[test]
fn update_available_is_checked_then_installed() {
    let fx = apt_fixture();
    let mut s = new(&fx.patchman, &[(CLIENT, "1.7.0-1")]);
    let check = s.agent_exits(&["check"], 100);
    // The check refreshed; the update right after it uses that metadata
    // (at most one refresh per `[updates] refresh_interval`).
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("Refreshing the patchman repository metadata…"),
        "{}",
        text(&check)
    );
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("1.7.0-1 → 1.7.1-1 available"),
        "{}",
        text(&check)
    );
    s.assert_nothing_changed();

    let out = s.agent_exits(&["update"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for step in [
        "Reading apt's configuration…",
        "Downloading…",
        "Verifying the downloaded package…",
        "Installing…",
        "Confirming the installed version…",
    ] {
        assert!(stdout.contains(step), "missing step {step:?}:\n{stdout}");
    }
    assert!(
        stdout.contains("patchman-client: 1.7.0-1 → 1.7.1-1"),
        "{stdout}"
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT]);
    assert!(
        s.u.helper_exited_within(Duration::from_secs(5)),
        "the helper exits after a changing update"
    );
    // The vendor's restriction: apt only ever saw the patchman source.
    let log = s.u.helper_log();
    assert!(
        log.contains("Dir::Etc::sourcelist=/etc/apt/sources.list.d/patchman.list"),
        "{log}"
    );
    assert!(
        log.contains("dpkg -i --refuse-downgrade --force-confdef --force-confold"),
        "{log}"
    );
    s.finish();
}

#[test]
fn up_to_date_changes_nothing() {
    let fx = apt_fixture();
    let mut s = new(&fx.patchman, &[(CLIENT, "1.7.1-1")]);
    s.agent_exits(&["check"], 0);
    let out = s.agent_exits(&["update"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Already up to date"),
        "{}",
        text(&out)
    );
    s.assert_nothing_changed();
    assert!(
        !s.u.helper_exited_within(Duration::from_millis(300)),
        "nothing changed: the helper stays"
    );
    s.finish();
}

#[test]
fn client_not_installed_installs_nothing() {
    let fx = apt_fixture();
    let s = new(&fx.patchman, &[]);
    let out = s.agent_exits(&["update"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("patchman-client is not installed"),
        "{}",
        text(&out)
    );
    s.agent_exits(&["check"], 1);
    assert_eq!(s.version(CLIENT), None);
    assert_eq!(s.version(REALTIME), None);
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn realtime_installed_moves_in_one_transaction() {
    let fx = apt_fixture();
    let s = new(&fx.patchman, &[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")]);
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert_eq!(s.version(REALTIME).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT, REALTIME]);
    let log = s.u.helper_log();
    let dpkg_runs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("command=dpkg -i"))
        .collect();
    assert_eq!(dpkg_runs.len(), 1, "one dpkg -i for both:\n{log}");
    assert!(
        dpkg_runs[0].contains("patchman-client_1.7.1-1_all.deb")
            && dpkg_runs[0].contains("patchman-client-realtime_1.7.1-1_all.deb"),
        "{}",
        dpkg_runs[0]
    );
    s.finish();
}

#[test]
fn realtime_in_the_repository_but_not_installed_stays_absent() {
    let fx = apt_fixture();
    let s = new(&fx.patchman, &[(CLIENT, "1.7.0-1")]);
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert_eq!(s.u.dpkg(REALTIME).unwrap(), None);
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn a_new_dependency_missing_from_the_repository_is_refused() {
    let fx = apt_fixture();
    let s = new(&fx.newdep, &[(CLIENT, "1.7.1-1")]);
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manual upgrade required"), "{err}");
    assert!(err.contains(NEW_DEP), "{err}");
    assert!(
        err.contains("apt-get install patchman-client"),
        "the exact manual command: {err}"
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_new_dependency_present_in_the_repository_is_still_refused() {
    let fx = apt_fixture();
    let s = new(&fx.newdep_lib, &[(CLIENT, "1.7.1-1")]);
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("would also change libpatchman-new"), "{err}");
    assert_eq!(s.u.dpkg(NEW_DEP).unwrap(), None);
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn an_epoch_version_is_found_downloaded_and_installed() {
    let fx = apt_fixture();
    let s = new(&fx.epoch, &[(CLIENT, "1.7.1-1")]);
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1:1.2.7-1"));
    assert!(
        s.u.helper_log()
            .contains("patchman-client_1%3a1.2.7-1_all.deb"),
        "{}",
        s.u.helper_log()
    );
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn a_locally_modified_conffile_is_kept_and_the_update_succeeds() {
    let fx = apt_fixture();
    let local = "[updates]\nrepository = patchman\n# edited by the admin\n";
    let s = with_format(
        &fx.patchman,
        SourceFormat::List,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            u.sandbox.write_file(CONFFILE, local).unwrap();
        },
    );
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert_eq!(s.u.sandbox.read_to_string(CONFFILE).unwrap(), local);
    assert!(
        s.u.sandbox
            .exists(&format!("{CONFFILE}.dpkg-dist"))
            .unwrap(),
        "dpkg keeps the new one beside it"
    );
    s.finish();
}

#[test]
fn a_deb822_sources_file_works_like_a_list() {
    let fx = apt_fixture();
    let s = with_format(
        &fx.patchman,
        SourceFormat::Deb822,
        &[(CLIENT, "1.7.0-1")],
        |_| {},
    );
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert!(s.u.helper_log().contains("sources.list.d/patchman.sources"));
    s.finish();
}

#[test]
fn a_lock_held_by_another_frontend_gives_lock_held_after_the_bounded_wait() {
    let fx = apt_fixture();
    let s = with_format(
        &fx.patchman,
        SourceFormat::List,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            u.configure("repository = patchman\nlock_wait = 2s\n")
                .unwrap();
        },
    );
    // Another frontend (here: python holding the same fcntl lock as apt).
    let mut holder = s
        .u
        .sandbox
        .spawn(&[
            "python3",
            "-c",
            "import fcntl,time\nf=open('/var/lib/dpkg/lock-frontend','a')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(120)",
        ])
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let t0 = std::time::Instant::now();
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lock is held by process"),
        "{err}\n{}",
        s.u.helper_log()
    );
    assert!(
        s.u.helper_log()
            .contains("outcome=\"failed: the package manager's lock is held"),
        "{}",
        s.u.helper_log()
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "waited for the bound first"
    );
    let status = s.agent(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["lock"]["held"], true, "{json}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_higher_client_from_another_source_is_ignored() {
    let fx = apt_fixture();
    let s = with_format(
        &fx.patchman,
        SourceFormat::List,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            u.add_source("other", &fx.other).unwrap();
            // The system's own view sees 9.9.9-1 as the candidate.
            u.sandbox.run(&["apt-get", "update"]).unwrap();
            let policy = u
                .sandbox
                .run_stdout(&["apt-cache", "policy", CLIENT])
                .unwrap();
            assert!(policy.contains("Candidate: 9.9.9-1"), "{policy}");
        },
    );
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn only_an_older_version_offered_changes_nothing() {
    let fx = apt_fixture();
    let s = new(&fx.patchman, &[(CLIENT, "1:1.2.7-1")]);
    let out = s.agent_exits(&["update"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Already up to date"),
        "{}",
        text(&out)
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1:1.2.7-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn an_unsigned_repository_is_a_typed_error() {
    let fx = apt_fixture();
    let s = new(&fx.unsigned, &[(CLIENT, "1.7.0-1")]);
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refreshing the patchman repository metadata failed"),
        "{err}"
    );
    assert!(err.contains("not signed"), "{err}");
    s.assert_nothing_changed();
    s.finish();
}

/// Replaces `/usr/bin/apt-get` inside the sandbox with a wrapper that runs
/// the real one and then, after a download, does `sabotage` to the file in
/// the archives: a root process changing the file between apt's download
/// and the helper's verification.
fn sabotage_after_download(u: &Updater, sabotage: &str) {
    u.sandbox
        .run(&["mv", "/usr/bin/apt-get", "/usr/bin/apt-get.real"])
        .unwrap();
    let wrapper = format!(
        "#!/bin/sh\n/usr/bin/apt-get.real \"$@\"\nrc=$?\ncase \" $* \" in *\" -d install \"*) f=/var/cache/apt/archives/patchman-client_1.7.1-1_all.deb; {sabotage} ;; esac\nexit $rc\n"
    );
    u.sandbox
        .write_file_mode("/usr/bin/apt-get", wrapper, 0o755)
        .unwrap();
}

#[test]
fn a_deb_tampered_with_after_download_is_refused() {
    let fx = apt_fixture();
    let s = with_format(
        &fx.patchman,
        SourceFormat::List,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            sabotage_after_download(
                u,
                "printf X | dd of=$f bs=1 seek=200 conv=notrunc 2>/dev/null",
            );
        },
    );
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SHA-256 does not match"), "{err}");
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_symlink_planted_where_the_deb_should_be_is_refused() {
    let fx = apt_fixture();
    let s = with_format(
        &fx.patchman,
        SourceFormat::List,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            sabotage_after_download(u, "mv $f /root/moved.deb; ln -s /root/moved.deb $f");
        },
    );
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a regular file"), "{err}");
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn an_install_left_unpacked_by_a_crash_is_finished_first() {
    let fx = apt_fixture();
    let s = with_format(
        &fx.patchman,
        SourceFormat::List,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            // As if dpkg -i had been killed after unpacking 1.7.1-1.
            u.sandbox
                .copy_in(fx.client("1.7.1-1"), "/root/c.deb")
                .unwrap();
            u.sandbox.run(&["dpkg", "--unpack", "/root/c.deb"]).unwrap();
            let st = u.sandbox.dpkg_status(CLIENT).unwrap().unwrap();
            assert_eq!(
                st,
                ("install ok unpacked".to_string(), "1.7.1-1".to_string())
            );
        },
    );
    let status = s.agent(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("install interrupted"),
        "{}",
        text(&status)
    );
    let out = s.agent_exits(&["update"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Finishing an interrupted install…"),
        "{}",
        text(&out)
    );
    assert_eq!(
        s.u.dpkg(CLIENT).unwrap(),
        Some(("install ok installed".into(), "1.7.1-1".into()))
    );
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn a_second_update_while_one_runs_is_busy() {
    let fx = apt_fixture();
    let s = new(&fx.patchman, &[(CLIENT, "1.7.0-1")]);
    // Slow the repository down so the first update is still running.
    s.u.http.set_hang(true);
    let first = {
        let agent = patchman_tests::workspace_bin("patchman-agent");
        s.u.sandbox
            .spawn_as(
                "patchman",
                &[
                    agent.to_str().unwrap(),
                    "--socket",
                    patchman_tests::updater::SOCKET,
                    "update",
                ],
            )
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(1500));
    let second = s.agent_exits(&["update"], 1);
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        text(&second)
    );
    s.u.http.set_hang(false);
    let first = first.wait_with_output().unwrap();
    // The hung fetch failed or timed out; either way nothing half-done.
    assert!(first.status.code().is_some(), "{}", text(&first));
    assert!(matches!(
        s.version(CLIENT).as_deref(),
        Some("1.7.0-1" | "1.7.1-1")
    ));
    s.finish();
}

#[test]
fn a_flat_repository_works_too() {
    let fx = apt_fixture();
    let s = new(&fx.flat, &[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")]);
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert_eq!(s.version(REALTIME).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT, REALTIME]);
    s.finish();
}
