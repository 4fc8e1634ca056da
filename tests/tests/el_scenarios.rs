//! The dnf (EL 8+) and yum (EL 6/7) families end to end: the real helper
//! (root) and agent (as `patchman`) in an EL sandbox (AlmaLinux 8 /
//! CentOS 7 / CentOS 6 release files, EL dnf.conf, a fresh rpm database),
//! Debian's real dnf and rpm against signed createrepo_c repositories
//! served over HTTP on 127.0.0.1. Yum is not packaged on Debian: the yum
//! family runs dnf under the name `yum`. Every scenario asserts the final
//! rpm state, that the sandbox's rpm database changed in nothing but the
//! intended packages, and that the host's package state did not change.

use std::process::Output;
use std::time::Duration;

use patchman_tests::cmd::output_text;
use patchman_tests::sandbox::el::{ElRelease, ElSandbox};
use patchman_tests::sandbox::fixture::{CLIENT, NEW_DEP, REALTIME};
use patchman_tests::sandbox::RpmRepo;
use patchman_tests::scenario::{Db, Scenario};
use patchman_tests::updater::Updater;
use patchman_tests::{el_fixture, host_package_state};

fn text(out: &Output) -> String {
    output_text(out)
}

fn new(release: ElRelease, repo: &RpmRepo, installed: &[(&str, &str)]) -> Scenario {
    prepared(release, repo, installed, |_| {})
}

fn prepared(
    release: ElRelease,
    repo: &RpmRepo,
    installed: &[(&str, &str)],
    prepare: impl FnOnce(&Updater),
) -> Scenario {
    let host_before = host_package_state();
    let fx = el_fixture();
    let rpms: Vec<&std::path::Path> = installed.iter().map(|(p, v)| fx.rpm(p, v)).collect();
    let u = Updater::new_el(release, repo, &rpms).expect("EL sandbox");
    Scenario::start(Db::Rpm, u, host_before, prepare)
}

#[test]
fn dnf_update_available_is_checked_then_installed() {
    let fx = el_fixture();
    let mut s = new(ElRelease::AlmaLinux8, &fx.patchman, &[(CLIENT, "1.7.0-1")]);
    let status = s.agent(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["family"], "dnf", "{}", text(&status));
    assert_eq!(json["installed"]["client"], "1.7.0-1");
    let check = s.agent_exits(&["check"], 100);
    // The check refreshed; the update right after it uses that metadata
    // (at most one refresh per `[updates] refresh_interval`).
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("Refreshing the patchman repository metadata…"),
        "{}",
        text(&check)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("1.7.0-1 → 1.7.1-1 available"));
    s.assert_nothing_changed();
    let out = s.agent_exits(&["update"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for step in [
        "Downloading…",
        "Verifying the downloaded package…",
        "Installing…",
        "Confirming the installed version…",
    ] {
        assert!(stdout.contains(step), "missing {step:?}:\n{stdout}");
    }
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT]);
    let log = s.u.helper_log();
    // Only our repository's metadata expired, never `clean all` (which
    // wipes every repository's cache).
    assert!(
        log.contains("--setopt=patchman.metadata_expire=0") && !log.contains("clean all"),
        "{log}"
    );
    assert!(
        log.contains("--downloadonly --downloaddir=/var/cache/patchman-helper/"),
        "{log}"
    );
    assert!(
        log.contains("--verbose --disablerepo=* --enablerepo=patchman patchman-client"),
        "{log}"
    );
    assert!(log.contains("rpmkeys --checksig"), "{log}");
    assert!(s.u.helper_exited_within(Duration::from_secs(5)));
    // The private download dir is emptied after the run (the base keeps
    // only the refresh rate limit's stamp).
    let left =
        s.u.sandbox
            .run_stdout(&[
                "sh",
                "-c",
                "set -e; l=$(ls -A /var/cache/patchman-helper); \
                 printf '%s\\n' \"$l\" | grep -vx last-refresh || true",
            ])
            .unwrap();
    assert_eq!(left.trim(), "", "left behind: {left}");
    s.finish();
}

#[test]
fn dnf_up_to_date_changes_nothing() {
    let fx = el_fixture();
    let s = new(ElRelease::AlmaLinux8, &fx.patchman, &[(CLIENT, "1.7.1-1")]);
    s.agent_exits(&["check"], 0);
    let out = s.agent_exits(&["update"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Already up to date"),
        "{}",
        text(&out)
    );
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_client_not_installed_installs_nothing() {
    let fx = el_fixture();
    let s = new(ElRelease::AlmaLinux8, &fx.patchman, &[]);
    let out = s.agent_exits(&["update"], 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("patchman-client is not installed"));
    assert_eq!(s.version(CLIENT), None);
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_realtime_installed_moves_in_one_transaction() {
    let fx = el_fixture();
    let s = new(
        ElRelease::AlmaLinux8,
        &fx.patchman,
        &[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")],
    );
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert_eq!(s.version(REALTIME).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT, REALTIME]);
    let log = s.u.helper_log();
    let runs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("command=rpm -U"))
        .collect();
    assert_eq!(runs.len(), 1, "one rpm -U for both:\n{log}");
    assert!(
        runs[0].contains("patchman-client-1.7.1-1")
            && runs[0].contains("patchman-client-realtime-1.7.1-1"),
        "{}",
        runs[0]
    );
    s.finish();
}

#[test]
fn dnf_realtime_in_the_repository_but_not_installed_stays_absent() {
    let fx = el_fixture();
    let s = new(ElRelease::AlmaLinux8, &fx.patchman, &[(CLIENT, "1.7.0-1")]);
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(REALTIME), None);
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn dnf_a_new_dependency_missing_from_the_repository_is_refused() {
    let fx = el_fixture();
    let s = new(ElRelease::AlmaLinux8, &fx.newdep, &[(CLIENT, "1.7.1-1")]);
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manual upgrade required"), "{err}");
    assert!(err.contains(NEW_DEP), "{err}");
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_a_new_dependency_present_in_the_repository_is_still_refused() {
    let fx = el_fixture();
    let s = new(
        ElRelease::AlmaLinux8,
        &fx.newdep_lib,
        &[(CLIENT, "1.7.1-1")],
    );
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("would also install libpatchman-new"), "{err}");
    assert_eq!(s.version(NEW_DEP), None);
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_an_epoch_version_is_installed() {
    let fx = el_fixture();
    let s = new(ElRelease::AlmaLinux8, &fx.epoch, &[(CLIENT, "1.7.1-1")]);
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1:1.2.7-1"));
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn dnf_an_unsigned_repository_is_refused() {
    let fx = el_fixture();
    let s = new(
        ElRelease::AlmaLinux8,
        &fx.unsigned_repo,
        &[(CLIENT, "1.7.0-1")],
    );
    let out = s.agent_exits(&["update"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature"),
        "{}",
        text(&out)
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_a_package_signed_by_an_unknown_key_is_refused() {
    let fx = el_fixture();
    let s = new(
        ElRelease::AlmaLinux8,
        &fx.foreign_repo,
        &[(CLIENT, "1.7.0-1")],
    );
    let out = s.agent_exits(&["update"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature"),
        "{}",
        text(&out)
    );
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_an_unknown_repository_name_is_a_typed_error() {
    let fx = el_fixture();
    let s = prepared(
        ElRelease::AlmaLinux8,
        &fx.patchman,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            u.configure("repository = not-configured\n").unwrap();
        },
    );
    let out = s.agent_exits(&["update"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("repository \"not-configured\" is not configured"),
        "{}",
        text(&out)
    );
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_a_higher_client_in_another_repository_is_ignored() {
    let fx = el_fixture();
    let s = prepared(
        ElRelease::AlmaLinux8,
        &fx.patchman,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            u.sandbox
                .add_rpm_repo("other", &fx.other, &u.http.url())
                .unwrap();
        },
    );
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.finish();
}

#[test]
fn dnf_an_rpm_lock_held_gives_lock_held_after_the_bounded_wait() {
    let fx = el_fixture();
    let s = prepared(
        ElRelease::AlmaLinux8,
        &fx.patchman,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            u.configure("repository = patchman\nlock_wait = 2s\n")
                .unwrap();
        },
    );
    let mut holder = s
        .u
        .sandbox
        .spawn(&[
            "python3",
            "-c",
            "import fcntl,time\nf=open('/var/lib/rpm/.rpm.lock','a')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(120)",
        ])
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let out = s.agent(&["update"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lock is held"),
        "{}",
        text(&out)
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_an_rpm_tampered_with_after_download_is_refused() {
    let fx = el_fixture();
    let s = prepared(
        ElRelease::AlmaLinux8,
        &fx.patchman,
        &[(CLIENT, "1.7.0-1")],
        |u| {
            // A root process changing the downloaded file after dnf's own
            // checks and before ours: wrap dnf and flip a byte of what it left.
            u.sandbox
                .run(&["mv", "/usr/bin/dnf-3", "/usr/bin/dnf-3.real"])
                .unwrap();
            let wrapper = "#!/bin/sh\n/usr/bin/dnf-3.real \"$@\"\nrc=$?\nfor a in \"$@\"; do case \"$a\" in --downloaddir=*) d=${a#--downloaddir=}; for f in \"$d\"/*.rpm; do [ -f \"$f\" ] && s=$(stat -c %s \"$f\") && printf X | dd of=\"$f\" bs=1 seek=$((s-40)) conv=notrunc 2>/dev/null && echo tampered >> /root/tampered; done;; esac; done\nexit $rc\n";
            u.sandbox
                .write_file_mode("/usr/bin/dnf-3", wrapper, 0o755)
                .unwrap();
        },
    );
    let out = s.agent(&["update"]);
    assert!(
        s.u.sandbox.exists("/root/tampered").unwrap(),
        "the wrapper ran"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused patchman-client"), "{err}");
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn yum_on_centos_7_updates_through_the_yum_command_line() {
    let fx = el_fixture();
    let s = new(
        ElRelease::CentOS7,
        &fx.patchman,
        &[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")],
    );
    let status = s.agent(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["family"], "yum", "{}", text(&status));
    s.agent_exits(&["check"], 100);
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert_eq!(s.version(REALTIME).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT, REALTIME]);
    let log = s.u.helper_log();
    // yum's command line: no --verbose (that is dnf's).
    assert!(
        log.contains("install -y --downloadonly --downloaddir="),
        "{log}"
    );
    assert!(!log.contains("--verbose"), "{log}");
    s.finish();
}

#[test]
fn yum_a_new_dependency_missing_is_refused() {
    let fx = el_fixture();
    let s = new(ElRelease::CentOS7, &fx.newdep, &[(CLIENT, "1.7.1-1")]);
    let out = s.agent_exits(&["update"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("manual upgrade required"),
        "{}",
        text(&out)
    );
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn centos_6_with_only_redhat_release_is_the_yum_family() {
    let fx = el_fixture();
    let s = new(ElRelease::CentOS6, &fx.patchman, &[(CLIENT, "1.7.0-1")]);
    assert!(!s.u.sandbox.exists("/etc/os-release").unwrap());
    let status = s.agent(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["family"], "yum", "{}", text(&status));
    assert_eq!(json["installed"]["client"], "1.7.0-1");
    s.agent_exits(&["update"], 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.finish();
}
