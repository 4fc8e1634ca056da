//! The Debian release matrix: the same scenarios on Debian 11, 12 and 13,
//! each in its own root file system (`tests/rootfs.sh`, an overlay over the
//! cached tree: [`Sandbox::with_rootfs`](patchman_tests::Sandbox)), with that
//! release's own apt, dpkg, dnf and rpm, and the SHIPPED binaries (the
//! glibc 2.17 builds, unpacked from the packages `build.sh` makes:
//! [`patchman_tests::release`]).
//!
//! The scenarios are one table, [`ROWS`], run for both families: apt
//! against the apt fixture's signed repositories, dnf (an EL 8 os-release,
//! EL dnf.conf, a fresh rpm database: `ElSandbox::make_el`) against the EL
//! fixture's signed ones, both served over HTTP on 127.0.0.1 from the
//! host. Every row asserts the final package state, that nothing else in
//! the release's package database changed, and that the host's did not
//! change at all. A new release is one line in [`releases!`].

use patchman_tests::packages::Format;
use patchman_tests::release::{self, install_shipped_binaries, Suite};
use patchman_tests::sandbox::el::ElRelease;
use patchman_tests::sandbox::fixture::{CLIENT, NEW_DEP, REALTIME};
use patchman_tests::scenario::{run_table, start_row, Family, Row, Step, CHECK_FINDS_1_7_1};
use patchman_tests::{assert_host_unchanged, host_package_state};

/// The scenarios of every release and family.
const ROWS: &[Row] = &[
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        steps: &[Step::new(&["update"], 0).stdout(&["patchman-client: 1.7.0-1 → 1.7.1-1"])],
        expect: &[(CLIENT, Some("1.7.1-1")), (REALTIME, None)],
        changed: &[CLIENT],
        helper_exits: Some(true),
        ..Row::new("update_available", "patchman")
    },
    Row {
        installed: &[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")],
        steps: &[Step::new(&["update"], 0).stdout(&[
            "patchman-client: 1.7.0-1 → 1.7.1-1",
            "patchman-client-realtime: 1.7.0-1 → 1.7.1-1",
        ])],
        expect: &[(CLIENT, Some("1.7.1-1")), (REALTIME, Some("1.7.1-1"))],
        changed: &[CLIENT, REALTIME],
        helper_exits: Some(true),
        ..Row::new("realtime_in_lock_step", "patchman")
    },
    Row {
        installed: &[(CLIENT, "1.7.1-1")],
        steps: &[Step::new(&["update"], 0).stdout(&["Already up to date"])],
        expect: &[(CLIENT, Some("1.7.1-1"))],
        helper_exits: Some(false),
        ..Row::new("up_to_date", "patchman")
    },
    Row {
        installed: &[(CLIENT, "1.7.1-1")],
        steps: &[Step::new(&["update"], 1).stderr(&["manual upgrade required", NEW_DEP])],
        expect: &[(CLIENT, Some("1.7.1-1")), (NEW_DEP, None)],
        helper_exits: Some(false),
        ..Row::new("new_dependency_refused", "newdep")
    },
    Row {
        installed: &[(CLIENT, "1.7.0-1")],
        steps: &[
            CHECK_FINDS_1_7_1,
            Step::new(&["update"], 0),
            Step::new(&["check"], 0).after_helper_exit(),
        ],
        expect: &[(CLIENT, Some("1.7.1-1"))],
        changed: &[CLIENT],
        helper_exits: Some(false),
        ..Row::new("check_exit_100_then_0", "patchman")
    },
];

/// `family`'s rows on `suite`: the shipped package's binaries (the `.deb`'s
/// for apt, the `.rpm`'s for dnf) in a sandbox over the release's tree;
/// for dnf an EL 8 system made of the release's own dnf and rpm.
fn run(suite: Suite, family: Family) {
    let format = match family {
        Family::Apt => Format::Deb,
        Family::El(_) => Format::Rpm,
    };
    release::shipped();
    run_table(ROWS, |row| {
        let s = start_row(family, row, || {
            let sandbox = suite.sandbox()?;
            let bins = install_shipped_binaries(&sandbox, format)?;
            Ok((sandbox, bins))
        });
        if let Family::El(_) = family {
            let os_release = s.u.sandbox.read_to_string("/etc/os-release").unwrap();
            assert!(
                os_release.contains("PLATFORM_ID=\"platform:el8\""),
                "{os_release}"
            );
        }
        s
    });
}

/// The shipped `.deb` itself on `suite`: `dpkg -i` with the release's dpkg
/// (its dependencies met by the release, its maintainer scripts run), then
/// its binaries run; only `patchman-client` changed in the database, the
/// host's not at all.
fn shipped_deb_installs(suite: Suite) {
    let host_before = host_package_state();
    let deb = &release::shipped().deb;
    let sandbox = suite.sandbox().expect("the release's sandbox");
    let before = sandbox.package_db_snapshot().unwrap();
    sandbox
        .install_debs(&[deb])
        .expect("dpkg -i of the shipped .deb");
    assert_eq!(
        sandbox.dpkg_status(CLIENT).unwrap(),
        Some((
            "install ok installed".to_owned(),
            release::SHIPPED_VERSION.to_owned()
        ))
    );
    let after = sandbox.package_db_snapshot().unwrap();
    let changes = patchman_tests::updater::db_changes(&before, &after);
    assert_eq!(
        patchman_tests::updater::changed_packages(&changes),
        [CLIENT.to_owned()].into(),
        "{changes:?}"
    );
    for bin in ["/usr/sbin/patchman-helper", "/usr/bin/patchman-agent"] {
        let version = sandbox.run_stdout(&[bin, "--version"]).unwrap();
        assert!(version.starts_with("patchman-"), "{bin}: {version}");
    }
    sandbox
        .passwd_entry("patchman")
        .expect("the postinst creates the user patchman");
    drop(sandbox);
    assert_host_unchanged(&host_before);
}

/// The root-file-system mode itself: commands run in the release's tree
/// (its `debian_version`, its own `/proc`, fresh `/tmp`), what they write
/// lands in the sandbox's layer, never in the cached tree, and nothing of
/// the host's file system shows inside.
#[test]
fn the_tree_is_used_and_never_written() {
    let tree = Suite::Trixie.tree().unwrap();
    let sandbox = Suite::Trixie.sandbox().unwrap();
    assert_eq!(sandbox.rootfs(), Some(tree.as_path()));
    let version = sandbox.read_to_string("/etc/debian_version").unwrap();
    assert_eq!(
        version,
        std::fs::read_to_string(tree.join("etc/debian_version")).unwrap()
    );
    assert!(version.starts_with("13"), "{version}");
    sandbox
        .write_file("/usr/share/patchman-tests-written", "x")
        .unwrap();
    assert!(sandbox.exists("/usr/share/patchman-tests-written").unwrap());
    assert!(!tree.join("usr/share/patchman-tests-written").exists());
    // The host's workspace (where this test runs from) is not inside.
    let here = env!("CARGO_MANIFEST_DIR");
    assert!(!sandbox.exists(here).unwrap(), "{here} is visible inside");
    let mounts = sandbox
        .run_stdout(&["cat", "/proc/self/mountinfo"])
        .unwrap();
    for point in [" / ", " /proc ", " /sys ", " /dev ", " /run ", " /tmp "] {
        assert!(
            mounts.contains(point),
            "no {point:?} mount inside:\n{mounts}"
        );
    }
    let pid = sandbox.run_stdout(&["sh", "-c", "echo $$"]).unwrap();
    assert!(pid.trim().parse::<u32>().unwrap() > 1, "{pid}");
    // Every process of the namespace runs in the tree: the holder's root
    // is not the host's.
    let holder_root = std::fs::read_link(format!("/proc/{}/root", sandbox.holder_pid())).unwrap();
    assert_ne!(holder_root, std::path::Path::new("/"));
    drop(sandbox);
    assert!(!tree.join("usr/share/patchman-tests-written").exists());
}

/// One module per release: `<suite>::apt`, `<suite>::dnf`,
/// `<suite>::shipped_deb_installs`.
macro_rules! releases {
    ($($name:ident => $suite:expr),* $(,)?) => {$(
        mod $name {
            #[test]
            fn apt() {
                super::run($suite, super::Family::Apt);
            }
            #[test]
            fn dnf() {
                super::run($suite, super::Family::El(super::ElRelease::AlmaLinux8));
            }
            #[test]
            fn shipped_deb_installs() {
                super::shipped_deb_installs($suite);
            }
        }
    )*};
}

releases! {
    bullseye => patchman_tests::release::Suite::Bullseye,
    bookworm => patchman_tests::release::Suite::Bookworm,
    trixie => patchman_tests::release::Suite::Trixie,
}
