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
use patchman_tests::sandbox::fixture::{CLIENT, NEW_DEP, REALTIME};
use patchman_tests::scenario::{run_host_table, Family, FileState, Row, Step, CHECK_FINDS_1_7_1};
use patchman_tests::updater::Updater;
use patchman_tests::{assert_host_unchanged, el_fixture, host_package_state};

const DNF_ROWS: &[Row] = &[
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        steps: &[
            Step::new(&["status", "--json"], 0)
                .json(&[("family", "dnf"), ("installed.client", "1.7.0-1")]),
            CHECK_FINDS_1_7_1,
            Step::new(&["update"], 0).stdout(&[
                "Downloading…",
                "Verifying the downloaded package…",
                "Installing…",
                "Confirming the installed version…",
            ]),
        ],
        expect: &[(CLIENT, Some("1.7.1-1"))],
        changed: &[CLIENT],
        helper_exits: Some(true),
        // Only our repository's metadata expired, never `clean all` (which
        // wipes every repository's cache).
        helper_log: &[
            "--setopt=patchman.metadata_expire=0",
            "--downloadonly --downloaddir=/var/cache/patchman-helper/",
            "--verbose --disablerepo=* --enablerepo=patchman patchman-client",
            "rpmkeys --checksig",
        ],
        helper_log_lacks: &["clean all"],
        // The private download dir is emptied after the run (the base keeps
        // only the refresh rate limit's stamp).
        files: &[(
            "/var/cache/patchman-helper",
            FileState::DirWithOnly(&["last-refresh"]),
        )],
        ..Row::new("dnf_update_available_is_checked_then_installed", "patchman")
    },
    Row {
        installed: &[(CLIENT, "1.7.1-1")],
        steps: &[Step::new(&["update"], 1).stderr(&["manual upgrade required", NEW_DEP])],
        ..Row::new(
            "dnf_a_new_dependency_missing_from_the_repository_is_refused",
            "newdep",
        )
    },
    Row {
        installed: &[(CLIENT, "1.7.1-1")],
        steps: &[Step::new(&["update"], 1).stderr(&["would also install libpatchman-new"])],
        expect: &[(NEW_DEP, None)],
        ..Row::new(
            "dnf_a_new_dependency_present_in_the_repository_is_still_refused",
            "newdep_lib",
        )
    },
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        steps: &[Step::new(&["update"], 1).stderr(&["signature"])],
        expect: &[(CLIENT, Some("1.7.0-1"))],
        ..Row::new("dnf_an_unsigned_repository_is_refused", "unsigned")
    },
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        steps: &[Step::new(&["update"], 1).stderr(&["signature"])],
        ..Row::new(
            "dnf_a_package_signed_by_an_unknown_key_is_refused",
            "foreign",
        )
    },
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        prepare: Some(|u| u.configure("repository = not-configured\n").unwrap()),
        steps: &[
            Step::new(&["update"], 1).stderr(&["repository \"not-configured\" is not configured"])
        ],
        ..Row::new(
            "dnf_an_unknown_repository_name_is_a_typed_error",
            "patchman",
        )
    },
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        prepare: Some(|u| {
            u.sandbox
                .add_rpm_repo("other", &el_fixture().other, &u.http.url())
                .unwrap();
        }),
        steps: &[Step::new(&["update"], 0)],
        expect: &[(CLIENT, Some("1.7.1-1"))],
        changed: &[CLIENT],
        ..Row::new(
            "dnf_a_higher_client_in_another_repository_is_ignored",
            "patchman",
        )
    },
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        prepare: Some(|u| {
            u.configure("repository = patchman\nlock_wait = 2s\n")
                .unwrap();
        }),
        lock_held: Some("/var/lib/rpm/.rpm.lock"),
        steps: &[Step::new(&["update"], 1).stderr(&["lock is held"])],
        expect: &[(CLIENT, Some("1.7.0-1"))],
        ..Row::new(
            "dnf_an_rpm_lock_held_gives_lock_held_after_the_bounded_wait",
            "patchman",
        )
    },
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        prepare: Some(|u| {
            // A root process changing the downloaded file after dnf's own
            // checks and before ours: wrap dnf and flip a byte of what it left.
            u.sandbox
                .run(&["mv", "/usr/bin/dnf-3", "/usr/bin/dnf-3.real"])
                .unwrap();
            let wrapper = "#!/bin/sh\n/usr/bin/dnf-3.real \"$@\"\nrc=$?\nfor a in \"$@\"; do case \"$a\" in --downloaddir=*) d=${a#--downloaddir=}; for f in \"$d\"/*.rpm; do [ -f \"$f\" ] && s=$(stat -c %s \"$f\") && printf X | dd of=\"$f\" bs=1 seek=$((s-40)) conv=notrunc 2>/dev/null && echo tampered >> /root/tampered; done;; esac; done\nexit $rc\n";
            u.sandbox
                .write_file_mode("/usr/bin/dnf-3", wrapper, 0o755)
                .unwrap();
        }),
        steps: &[Step::new(&["update"], 1).stderr(&["refused patchman-client"])],
        expect: &[(CLIENT, Some("1.7.0-1"))],
        // The wrapper ran.
        files: &[("/root/tampered", FileState::Exists)],
        ..Row::new(
            "dnf_an_rpm_tampered_with_after_download_is_refused",
            "patchman",
        )
    },
];

const YUM_ROWS: &[Row] = &[
    Row {
        installed: &[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")],
        steps: &[
            Step::new(&["status", "--json"], 0).json(&[("family", "yum")]),
            Step::new(&["check"], 100),
            Step::new(&["update"], 0),
        ],
        expect: &[(CLIENT, Some("1.7.1-1")), (REALTIME, Some("1.7.1-1"))],
        changed: &[CLIENT, REALTIME],
        helper_log: &["install -y --downloadonly --downloaddir="],
        // yum's command line: no --verbose (that is dnf's).
        helper_log_lacks: &["--verbose"],
        ..Row::new(
            "yum_on_centos_7_updates_through_the_yum_command_line",
            "patchman",
        )
    },
    Row {
        installed: &[(CLIENT, "1.7.1-1")],
        steps: &[Step::new(&["update"], 1).stderr(&["manual upgrade required"])],
        ..Row::new("yum_a_new_dependency_missing_is_refused", "newdep")
    },
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
