//! The apt family end to end: the real helper (root) and agent (as
//! `patchman`) in a sandbox, real apt-get / apt-cache / dpkg against signed
//! repositories served over HTTP on 127.0.0.1. Every scenario asserts the
//! final dpkg state, that the sandbox's database changed in nothing but the
//! intended packages, and that the host's did not change at all.
//!
//! The scenarios are the table [`ROWS`] and the rows every family shares
//! ([`EVERY_FAMILY_ROWS`](patchman_tests::scenario::EVERY_FAMILY_ROWS)),
//! run by the one runner ([`run_host_table`]); only the one that needs two
//! agents at once is code.

use std::time::Duration;

use patchman_tests::apt_fixture;
use patchman_tests::cmd::output_text;
use patchman_tests::sandbox::apt_repo::SourceFormat;
use patchman_tests::sandbox::fixture::{CLIENT, CONFFILE, REALTIME};
use patchman_tests::scenario::{
    host_sandbox, run_host_table, start_row, Family, FileState, Row, Step, CHECK_FINDS_1_7_1,
};
use patchman_tests::updater::Updater;

/// What the administrator made of the conffile in `conffile_kept`.
const LOCAL_CONFFILE: &str = "[updates]\nrepository = patchman\n# edited by the admin\n";

const ROWS: &[Row] = &[
    Row::standard("update_available_is_checked_then_installed")
        .steps(&[
            CHECK_FINDS_1_7_1,
            Step::update(0).stdout(&[
                "Reading apt's configuration…",
                "Downloading…",
                "Verifying the downloaded package…",
                "Installing…",
                "Confirming the installed version…",
                "patchman-client: 1.7.0-1 → 1.7.1-1",
            ]),
        ])
        .updates_to(&[(CLIENT, "1.7.1-1")])
        // The helper exits after a changing update.
        .helper_exits(true)
        // The vendor's restriction: apt only ever saw the patchman source.
        .helper_log(&[
            "Dir::Etc::sourcelist=/etc/apt/sources.list.d/patchman.list",
            "dpkg -i --refuse-downgrade --force-confdef --force-confold",
        ]),
    Row::standard("a_locally_modified_conffile_is_kept_and_the_update_succeeds")
        .prepare(|u| u.sandbox.write_file(CONFFILE, LOCAL_CONFFILE).unwrap())
        .steps(&[Step::update(0)])
        .updates_to(&[(CLIENT, "1.7.1-1")])
        .files(&[
            (CONFFILE, FileState::Contents(LOCAL_CONFFILE)),
            // dpkg keeps the new one beside it.
            ("/etc/patchman/patchman.ini.dpkg-dist", FileState::Exists),
        ]),
    Row::standard("a_deb822_sources_file_works_like_a_list")
        .prepare(|u| {
            // The same source as a deb822 `.sources` file instead.
            let fx = apt_fixture();
            u.sandbox
                .run(&["rm", "/etc/apt/sources.list.d/patchman.list"])
                .unwrap();
            u.sandbox
                .add_apt_repo(
                    "patchman",
                    &fx.patchman,
                    &u.http.url(),
                    SourceFormat::Deb822,
                )
                .unwrap();
        })
        .steps(&[Step::update(0)])
        .updates_to(&[(CLIENT, "1.7.1-1")])
        .helper_log(&["sources.list.d/patchman.sources"])
        .files(&[("/etc/apt/sources.list.d/patchman.list", FileState::Absent)]),
    Row::standard("a_lock_held_by_another_frontend_gives_lock_held_after_the_bounded_wait")
        .prepare(|u| {
            u.configure("repository = patchman\nlock_wait = 2s\n")
                .unwrap();
        })
        // Another frontend (a process holding the same fcntl lock as apt).
        .lock_held("/var/lib/dpkg/lock-frontend")
        .steps(&[
            // It waits for the bound first.
            Step::update(1)
                .stderr(&["lock is held by process"])
                .at_least(2),
            Step::new(&["status", "--json"], 0).json(&[("lock.held", "true")]),
        ])
        .unchanged()
        .helper_log(&["outcome=\"failed: the package manager's lock is held"]),
    Row::standard("a_higher_client_from_another_source_is_ignored")
        .prepare(|u| {
            u.add_source("other", &apt_fixture().other).unwrap();
            // The system's own view sees 9.9.9-1 as the candidate.
            u.sandbox.run(&["apt-get", "update"]).unwrap();
            let policy = u
                .sandbox
                .run_stdout(&["apt-cache", "policy", CLIENT])
                .unwrap();
            assert!(policy.contains("Candidate: 9.9.9-1"), "{policy}");
        })
        .steps(&[Step::update(0)])
        .updates_to(&[(CLIENT, "1.7.1-1")]),
    Row::new("only_an_older_version_offered_changes_nothing", "patchman")
        .installed(&[(CLIENT, "1:1.2.7-1")])
        .steps(&[Step::update(0).stdout(&["Already up to date"])])
        .unchanged(),
    Row::standard("a_deb_tampered_with_after_download_is_refused")
        .prepare(|u| {
            sabotage_after_download(
                u,
                "printf X | dd of=$f bs=1 seek=200 conv=notrunc 2>/dev/null",
            )
        })
        .steps(&[Step::update(1).stderr(&["SHA-256 does not match"])])
        .unchanged(),
    Row::standard("a_symlink_planted_where_the_deb_should_be_is_refused")
        .prepare(|u| sabotage_after_download(u, "mv $f /root/moved.deb; ln -s /root/moved.deb $f"))
        .steps(&[Step::update(1).stderr(&["not a regular file"])])
        .unchanged(),
    // Ends `install ok installed` at 1.7.1-1.
    Row::standard("an_install_left_unpacked_by_a_crash_is_finished_first")
        .prepare(|u| {
            // As if dpkg -i had been killed after unpacking 1.7.1-1.
            u.sandbox
                .copy_in(apt_fixture().client("1.7.1-1"), "/root/c.deb")
                .unwrap();
            u.sandbox.run(&["dpkg", "--unpack", "/root/c.deb"]).unwrap();
            let st = u.sandbox.dpkg_status(CLIENT).unwrap().unwrap();
            assert_eq!(
                st,
                ("install ok unpacked".to_string(), "1.7.1-1".to_string())
            );
        })
        .steps(&[
            Step::new(&["status"], 0).stdout(&["install interrupted"]),
            Step::update(0).stdout(&["Finishing an interrupted install…"]),
        ])
        .updates_to(&[(CLIENT, "1.7.1-1")]),
    Row::new("a_flat_repository_works_too", "flat")
        .installed(&[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")])
        .steps(&[Step::update(0)])
        .updates_to(&[(CLIENT, "1.7.1-1"), (REALTIME, "1.7.1-1")]),
];

#[test]
fn apt_table() {
    run_host_table(Family::Apt, ROWS, true);
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

/// Two agents at once: not a row (the first runs while the second asks).
#[test]
fn a_second_update_while_one_runs_is_busy() {
    let row = Row::standard("a_second_update_while_one_runs_is_busy");
    let s = start_row(Family::Apt, &row, host_sandbox);
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
        output_text(&second)
    );
    s.u.http.set_hang(false);
    let first = first.wait_with_output().unwrap();
    // The hung fetch failed or timed out; either way nothing half-done.
    assert!(first.status.code().is_some(), "{}", output_text(&first));
    assert!(matches!(
        s.version(CLIENT).as_deref(),
        Some("1.7.0-1" | "1.7.1-1")
    ));
    s.finish();
}
