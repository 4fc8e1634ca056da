//! The dnf (EL 8+) and yum (EL 7) families end to end, and EL 6 refused: the real helper
//! (root) and agent (as `patchman`) in an EL sandbox (AlmaLinux 8 /
//! CentOS 7 / CentOS 6 release files, EL dnf.conf, a fresh rpm database),
//! Debian's real dnf and rpm against signed createrepo_c repositories
//! served over HTTP on 127.0.0.1. Yum is not packaged on Debian: the yum
//! family runs dnf under the name `yum`. Every scenario asserts the final
//! rpm state, that the sandbox's rpm database changed in nothing but the
//! intended packages, and that the host's package state did not change.
//!
//! The scenarios are tables, one per family and release ([`DNF_ROWS`] on
//! AlmaLinux 8 with the rows every family shares,
//! [`EVERY_FAMILY_ROWS`](patchman_tests::scenario::EVERY_FAMILY_ROWS);
//! [`YUM_ROWS`] on CentOS 7), run by the one runner ([`run_host_table`]);
//! only EL 6, where the helper refuses to start, is code.

use patchman_tests::sandbox::el::{ElRelease, ElSandbox};
use patchman_tests::sandbox::fixture::{CLIENT, REALTIME};
use patchman_tests::scenario::{run_host_table, Family, FileState, Row, Step, CHECK_FINDS_1_7_1};
use patchman_tests::updater::Updater;
use patchman_tests::{assert_host_unchanged, el_fixture, host_package_state};

const DNF_ROWS: &[Row] = &[
    Row::standard("dnf_update_available_is_checked_then_installed")
        .steps(&[
            Step::new(&["status", "--json"], 0)
                .json(&[("family", "dnf"), ("installed.client", "1.7.0-1")]),
            CHECK_FINDS_1_7_1,
            Step::update(0).stdout(&[
                "Downloading…",
                "Verifying the downloaded package…",
                "Installing…",
                "Confirming the installed version…",
            ]),
        ])
        .updates_to(&[(CLIENT, "1.7.1-1")])
        .helper_exits(true)
        // Only our repository's metadata expired, never `clean all` (which
        // wipes every repository's cache).
        .helper_log(&[
            "--setopt=patchman.metadata_expire=0",
            "--downloadonly --downloaddir=/var/cache/patchman-helper/",
            "--verbose --disablerepo=* --enablerepo=patchman patchman-client",
            "rpmkeys --checksig",
        ])
        .helper_log_lacks(&["clean all"])
        // The private download dir is emptied after the run (the base keeps
        // only the refresh rate limit's stamp).
        .files(&[(
            "/var/cache/patchman-helper",
            FileState::DirWithOnly(&["last-refresh"]),
        )]),
    Row::standard("dnf_a_package_signed_by_an_unknown_key_is_refused")
        .repo("foreign")
        .steps(&[Step::update(1).stderr(&["signature"])])
        .unchanged(),
    Row::standard("dnf_an_unknown_repository_name_is_a_typed_error")
        .prepare(|u| u.configure("repository = not-configured\n").unwrap())
        .steps(&[Step::update(1).stderr(&["repository \"not-configured\" is not configured"])])
        .unchanged(),
    Row::standard("dnf_a_higher_client_in_another_repository_is_ignored")
        .prepare(|u| {
            u.sandbox
                .add_rpm_repo("other", &el_fixture().other, &u.http.url())
                .unwrap();
        })
        .steps(&[Step::update(0)])
        .updates_to(&[(CLIENT, "1.7.1-1")]),
    Row::standard("dnf_an_rpm_lock_held_gives_lock_held_after_the_bounded_wait")
        .prepare(|u| {
            u.configure("repository = patchman\nlock_wait = 2s\n")
                .unwrap();
        })
        .lock_held("/var/lib/rpm/.rpm.lock")
        .steps(&[Step::update(1).stderr(&["lock is held"])])
        .unchanged(),
    Row::standard("dnf_an_rpm_tampered_with_after_download_is_refused")
        .prepare(tamper_after_dnf_download)
        .steps(&[Step::update(1).stderr(&["refused patchman-client"])])
        .unchanged()
        // The wrapper ran.
        .files(&[("/root/tampered", FileState::Exists)]),
];

/// A root process changing the downloaded file after dnf's own checks and
/// before ours: wraps dnf and flips a byte of each package it left.
fn tamper_after_dnf_download(u: &Updater) {
    u.sandbox
        .run(&["mv", "/usr/bin/dnf-3", "/usr/bin/dnf-3.real"])
        .unwrap();
    let wrapper = "#!/bin/sh\n/usr/bin/dnf-3.real \"$@\"\nrc=$?\nfor a in \"$@\"; do case \"$a\" in --downloaddir=*) d=${a#--downloaddir=}; for f in \"$d\"/*.rpm; do [ -f \"$f\" ] && s=$(stat -c %s \"$f\") && printf X | dd of=\"$f\" bs=1 seek=$((s-40)) conv=notrunc 2>/dev/null && echo tampered >> /root/tampered; done;; esac; done\nexit $rc\n";
    u.sandbox
        .write_file_mode("/usr/bin/dnf-3", wrapper, 0o755)
        .unwrap();
}

const YUM_ROWS: &[Row] = &[
    Row::new(
        "yum_on_centos_7_updates_through_the_yum_command_line",
        "patchman",
    )
    .installed(&[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")])
    .steps(&[
        Step::new(&["status", "--json"], 0).json(&[("family", "yum")]),
        Step::check(100),
        Step::update(0),
    ])
    .updates_to(&[(CLIENT, "1.7.1-1"), (REALTIME, "1.7.1-1")])
    .helper_log(&["install -y --downloadonly --downloaddir="])
    // yum's command line: no --verbose (that is dnf's).
    .helper_log_lacks(&["--verbose"]),
    Row::new("yum_a_new_dependency_missing_is_refused", "newdep")
        .installed(&[(CLIENT, "1.7.1-1")])
        .steps(&[Step::update(1).stderr(&["manual upgrade required"])])
        .unchanged(),
];

#[test]
fn dnf_table() {
    run_host_table(Family::El(ElRelease::AlmaLinux8), DNF_ROWS, true);
}

#[test]
fn yum_table() {
    run_host_table(Family::El(ElRelease::CentOS7), YUM_ROWS, false);
}

#[test]
fn centos_6_with_only_redhat_release_is_refused_as_unsupported() {
    // EL 6's glibc 2.12 cannot run the shipped binaries; the helper says so
    // at start instead of taking a yum path.
    let host_before = host_package_state();
    let fx = el_fixture();
    let mut u = Updater::new_el(
        ElRelease::CentOS6,
        &fx.patchman,
        &[fx.rpm(CLIENT, "1.7.0-1")],
    )
    .expect("EL sandbox");
    assert!(!u.sandbox.exists("/etc/os-release").unwrap());
    let err = u.start_helper().expect_err("the helper must refuse EL 6");
    let message = format!("{err:#}");
    assert!(
        message.contains("/etc/redhat-release says \"CentOS release 6.10 (Final)\"")
            && message.contains("Enterprise Linux 6 is not supported"),
        "{message}"
    );
    let q = u
        .sandbox
        .run(&["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", CLIENT])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&q.stdout), "1.7.0-1");
    drop(u);
    assert_host_unchanged(&host_before);
}
