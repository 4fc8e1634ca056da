//! The attack catalogue: every point of DESIGN.md's threat model as at
//! least one test, through the real helper (root) and, where it matters,
//! the real agent (as `patchman`) in a sandbox running the real apt, dpkg,
//! dnf and rpm. Every attack added here ends with the scenario harness's
//! check that the sandbox's package database changed in nothing (or only
//! in the one intended update), and that the host's did not change at all.
//! Needs root: fails (never skips) without it or a tool.
//!
//! # The catalogue
//!
//! Threat-model points (DESIGN.md, "Threat model"): **P1** any bytes, any
//! order, any speed, any number of connections; **P2** cannot install,
//! remove or downgrade; **P3** cannot install realtime where absent;
//! **P4** cannot make the helper read/write/open/stat/execute a path of its
//! choosing; **P5** cannot pass an option to a package manager; **P6**
//! cannot hang or crash the helper for others; **P7** cannot fill its
//! memory; **P8** other local users cannot talk to it at all; **P9** the
//! repository and signatures are trusted only through the package
//! manager's own chain, never disabled.
//!
//! | #  | attack                                                        | points     | test (file) |
//! |----|---------------------------------------------------------------|------------|-------------|
//! | 1  | another uid in the agent's group; root; a uid outside the group | P8       | `other_uids_are_denied_or_cannot_connect` (channel.rs) |
//! | 2  | socket and its directory with the designed owners and modes   | P8         | `socket_and_directory_have_the_designed_owners_and_modes` (channel.rs) |
//! | 3  | another uid on the systemd-activated socket                   | P8         | `socket_activation_takes_the_socket_from_systemd` (channel.rs) |
//! | 4  | a 4 GiB length prefix, before and after `Hello`               | P1 P6 P7   | `a_4_gib_length_prefix_closes_that_connection_and_the_helper_keeps_serving` (channel.rs) |
//! | 5  | unknown variant 99; trailing bytes                            | P1 P6      | same (channel.rs) |
//! | 6  | wrong protocol version                                        | P1         | `wrong_protocol_version_gets_unsupported` (channel.rs) |
//! | 7  | `Update` before `Hello`; a second `Hello`                     | P1         | `requests_before_hello_and_a_second_hello_are_refused` (channel.rs) |
//! | 8  | 200 idle connections                                          | P1 P6      | `two_hundred_idle_connections_do_not_lock_out_the_agent` (channel.rs) |
//! | 9  | a slow sender (one byte every 3 s)                            | P1 P6      | `a_slow_sender_is_dropped_after_the_frame_deadline` (channel.rs) |
//! | 10 | a hostile `repository` value (`-o evil`) on SIGHUP            | P4 P5      | `sighup_rereads_the_repository_name` (channel.rs); `hostile_repository_names_are_refused` (helper/src/config.rs: `-o`, `../x`, `--`…, at start and reload) |
//! | 11 | no request carries a path, option, package or version         | P2 P4 P5   | `every_request_round_trips` (shared/tests/frame.rs: `Request` is `Hello{u32}`/`Status`/`Check`/`Update`); `the_table_is_exactly_as_documented` (helper/src/dispatch.rs); `extra_env_is_only_the_closed_set`, `resolves_real_tools_and_rejects_unsafe_paths` (helper/src/exec.rs) |
//! | 12 | frame decoder: huge inner length, truncated, zero, cap ± 1, arbitrary bytes | P1 P7 | `huge_inner_length_is_refused_without_allocating`, `arbitrary_bytes_never_panic`, … (shared/tests/frame.rs) |
//! | 13 | a second `Update` while one runs                              | P6         | `a_second_update_while_one_runs_is_busy` (apt_scenarios.rs) |
//! | 14 | a higher `patchman-client` from another source / repository   | P2 P9      | `a_higher_client_from_another_source_is_ignored` (apt_scenarios.rs), `dnf_a_higher_client_in_another_repository_is_ignored` (el_scenarios.rs) |
//! | 15 | a downgrade: the repository offers only lower versions        | P2         | `only_an_older_version_offered_changes_nothing` (apt_scenarios.rs) |
//! | 16 | a `.deb` tampered with after download                         | P9         | `a_deb_tampered_with_after_download_is_refused` (apt_scenarios.rs) |
//! | 17 | an `.rpm` tampered with after download                        | P9         | `dnf_an_rpm_tampered_with_after_download_is_refused` (el_scenarios.rs) |
//! | 18 | an unsigned repository (apt) / unsigned packages (dnf)        | P9         | `an_unsigned_repository_is_a_typed_error` (apt_scenarios.rs), `dnf_an_unsigned_repository_is_refused` (el_scenarios.rs) |
//! | 19 | packages signed by a key that is not trusted                  | P9         | `dnf_a_package_signed_by_an_unknown_key_is_refused` (el_scenarios.rs) |
//! | 20 | a symlink planted where the `.deb` should be                  | P4         | `a_symlink_planted_where_the_deb_should_be_is_refused` (apt_scenarios.rs) |
//! | 21 | an update that would pull in another package                  | P2         | `a_new_dependency_present_in_the_repository_is_still_refused` (apt_scenarios.rs), `dnf_…_is_still_refused` (el_scenarios.rs) |
//! | 22 | realtime offered but not installed                            | P3         | `realtime_in_the_repository_but_not_installed_stays_absent` (apt_scenarios.rs), `dnf_…_stays_absent` (el_scenarios.rs) |
//! | 23 | capabilities handed to the agent                              | —          | `the_agent_drops_capabilities_it_was_given` (channel.rs) |
//! | 24 | 1,000 connections at once                                     | P1 P6 P7   | `a_thousand_connections_at_once_leave_the_agent_served_with_bounded_memory_and_threads` |
//! | 25 | a flood of `Update`/`Check`/`Status` from 16 clients during an `Update` (Busy; Status answered or Busy past the query cap) | P1 P6 | `a_request_flood_during_an_update_gets_busy_and_the_update_completes` |
//! | 26 | 200 requests pipelined on one connection                      | P1 P7      | `two_hundred_pipelined_requests_are_answered_in_order_with_bounded_memory` |
//! | 27 | through the socket: u64-wide variant tag, u64-wide `protocol`, empty frame, exactly 64 KiB of garbage, 64 KiB + 1, a frame inside a frame, a truncated frame then close, an unknown variant after `Hello` | P1 P6 P7 | `hostile_frames_through_the_real_socket_close_only_their_connection` |
//! | 28 | a hard link to the dpkg database planted as the `.deb`        | P4         | `a_hard_link_planted_as_the_deb_is_refused_before_reading` |
//! | 29 | the archives directory replaced by a symlink                  | P4         | `a_symlinked_archives_directory_is_refused` |
//! | 30 | a world-writable archives directory                           | P4         | `a_world_writable_archives_directory_is_refused` |
//! | 31 | a symlink at `/var/cache/patchman-helper` (apt and dnf)       | P4         | `a_symlink_at_the_private_base_is_refused`, `dnf_a_symlink_at_the_private_base_is_refused` |
//! | 32 | a world-writable, an agent-owned, a 0755 private base         | P4         | `an_unsafe_private_base_is_refused` |
//! | 33 | the archive swapped between verification and install         | P4 P9      | `a_deb_swapped_after_verification_is_not_what_gets_installed` |
//! | 34 | a pinned downgrade (apt's own candidate is lower)             | P2         | `a_pinned_downgrade_candidate_is_not_installed` |
//! | 35 | `patchman-client-evil` in the repository and installed        | P2         | `a_look_alike_package_installed_and_offered_is_untouched` |
//! | 36 | `patchman-client-evil` in the repository, not installed       | P2         | `a_look_alike_package_offered_is_not_installed` |
//! | 37 | a `.deb` whose control says `patchman-client-evil`, indexed and named as `patchman-client` | P2 P9 | `a_deb_whose_embedded_name_differs_from_its_index_is_refused` |
//! | 38 | the agent killed while `dpkg -i` runs                         | P6         | `an_agent_killed_mid_install_leaves_the_update_whole_and_the_helper_serving` |
//! | 39 | rollback early: `Update`/`Check`/`Status` during probation, and the rollback check before the deadline | P2 | `a_release_whose_agent_exits_at_start_is_rolled_back_by_the_rescue_helper_and_quarantined` (rollback.rs) |
//! | 40 | rollback to another version: no request carries one; the target is the root-owned record's | P2 P4 | same (rollback.rs); `a_record_naming_anything_else_is_refused` (helper/src/probation.rs) |
//! | 41 | rollback twice: a second rollback check after the rollback changes nothing | P2 | same (rollback.rs); `the_rollback_rows_of_the_table` (helper/src/probation.rs) |
//! | 42 | `Confirm` outside probation: typed no-op `NothingPending`; past the deadline `PastDeadline` | P2 | same (rollback.rs); `the_confirm_rows_of_the_table` (helper/src/probation.rs) |
//! | 43 | a new release whose helper exits at start cannot stop its rollback (the rescue copy of the old helper runs it) | P6 | `a_release_whose_helper_exits_at_start_is_rolled_back_by_the_rescue_helper_and_quarantined` (rollback.rs) |

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patchman_tests::attack_support::{
    helper_pid, probe, proc_status, spawn_agent, spawn_probe, text, wait_until, wrap_tool,
    wrap_tool_after,
};
use patchman_tests::sandbox::apt_repo::{AptRepo, SourceFormat};
use patchman_tests::sandbox::attack_fixture::{attack_fixture, EVIL, EVIL_PAYLOAD, SLOW_MARKER};
use patchman_tests::sandbox::el::ElRelease;
use patchman_tests::sandbox::fixture::{CLIENT, POSTINST_LOG};
use patchman_tests::scenario::{Db, Scenario};
use patchman_tests::updater::Updater;
use patchman_tests::{apt_fixture, el_fixture, host_package_state};

const VERSION_FILE: &str = "/usr/share/patchman-client/VERSION";
const ARCHIVE: &str = "/var/cache/apt/archives/patchman-client_1.7.1-1_all.deb";

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

/// The standard repository, client 1.7.0-1 installed (1.7.1-1 offered).
fn standard(prepare: impl FnOnce(&Updater)) -> Scenario {
    let fx = apt_fixture();
    apt(
        &fx.repos_root,
        &fx.patchman,
        &[fx.client("1.7.0-1")],
        prepare,
    )
}

/// `update` as the agent must fail (exit 1); returns its stderr.
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

fn status_ok(s: &Scenario) -> serde_json::Value {
    let out = s.agent(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("status json")
}

fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("reading a line");
    line
}

// ------------------------------------------------------------ P1 P6 P7

#[test]
fn a_thousand_connections_at_once_leave_the_agent_served_with_bounded_memory_and_threads() {
    let fx = apt_fixture();
    let s = apt(
        &fx.repos_root,
        &fx.patchman,
        &[fx.client("1.7.1-1")],
        |_| {},
    );
    let pid = helper_pid(&s.u).expect("the helper's pid");
    let rss_before = proc_status(pid, "VmRSS").unwrap();
    // Sample the helper's RSS and thread count all along.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut rss, mut threads) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                rss = rss.max(proc_status(pid, "VmRSS").unwrap_or(0));
                threads = threads.max(proc_status(pid, "Threads").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            (rss, threads)
        })
    };
    // Four clients as `patchman`, 250 connections each, all at once,
    // held silent for 30 s.
    let mut hogs: Vec<Child> = (0..4)
        .map(|_| spawn_probe(&s.u, &["hold:250:30000"]))
        .collect();
    let held: u32 = hogs
        .iter_mut()
        .map(|h| {
            let line = first_line(h);
            line.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or_else(|| panic!("{line}"))
        })
        .sum();
    assert_eq!(held, 1000, "the kernel accepted every connect()");
    // The agent is still served, at once, while they are held.
    let t0 = Instant::now();
    let json = status_ok(&s);
    assert_eq!(json["installed"]["client"], "1.7.1-1", "{json}");
    let check = s.agent(&["check"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}\n{}",
        text(&check),
        s.u.helper_log()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "served after {:?}",
        t0.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    let (max_rss, max_threads) = sampler.join().unwrap();
    eprintln!(
        "helper: RSS {rss_before} KiB before, at most {max_rss} KiB; at most {max_threads} threads"
    );
    // At most 64 connection threads (256 KiB stacks, mostly untouched),
    // plus main and a few exiting while their successors start.
    assert!(max_threads <= 64 + 32, "{max_threads} threads");
    assert!(
        max_rss < rss_before + 24 * 1024,
        "RSS grew from {rss_before} to {max_rss} KiB"
    );
    assert!(s.u.helper_log().contains("connection limit reached"));
    for mut h in hogs {
        h.kill().unwrap();
        h.wait().unwrap();
    }
    status_ok(&s);
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_request_flood_during_an_update_gets_busy_and_the_update_completes() {
    // The download waits for the test's go-ahead, so the update is
    // certainly running while the flood comes.
    let s = standard(|u| {
        wrap_tool(
            u,
            "/usr/bin/apt-get",
            "case \" $* \" in *\" -d install \"*) touch /run/atk-waiting; i=0; \
             while [ ! -e /run/atk-go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;; esac",
        );
    });
    let agent = spawn_agent(&s.u, &["update"]);
    assert!(
        wait_until(Duration::from_secs(60), || s
            .u
            .sandbox
            .exists("/run/atk-waiting")
            .unwrap()),
        "the update never reached the download:\n{}",
        s.u.helper_log()
    );
    let flood: Vec<Child> = (0..16)
        .map(|_| {
            spawn_probe(
                &s.u,
                &[
                    "hello",
                    "recv",
                    "req:update",
                    "recv",
                    "req:check",
                    "recv",
                    "req:update",
                    "recv",
                    "req:status",
                    "recv",
                ],
            )
        })
        .collect();
    for p in flood {
        let out = p.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        // Update, Check, Update: Busy. Status: answered, or Busy when more
        // than the helper's few concurrent queries arrive at once.
        let busy = out.matches("reply Busy").count();
        let status = out.matches("reply Status(").count();
        assert!(
            (busy == 3 && status == 1) || (busy == 4 && status == 0),
            "{out}"
        );
    }
    // Once the flood is over, status is served while the update still runs.
    let out = probe(&s.u, &["hello", "recv", "req:status", "recv"]);
    assert!(out.contains("reply Status("), "{out}");
    s.u.sandbox.run(&["touch", "/run/atk-go"]).unwrap();
    let out = agent.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    let log = s.u.helper_log();
    assert!(log.matches("outcome=\"busy\"").count() >= 48, "{log}");
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn two_hundred_pipelined_requests_are_answered_in_order_with_bounded_memory() {
    let fx = apt_fixture();
    let s = apt(
        &fx.repos_root,
        &fx.patchman,
        &[fx.client("1.7.0-1")],
        |_| {},
    );
    let pid = helper_pid(&s.u).unwrap();
    let rss_before = proc_status(pid, "VmRSS").unwrap();
    // Hello, then 200 Status frames in one write, then read them all.
    let frames = format!("raw:{}", "0100000001".repeat(200));
    let mut actions = vec!["hello", "recv", frames.as_str()];
    actions.extend(std::iter::repeat_n("recv", 200));
    let out = probe(&s.u, &actions);
    assert_eq!(out.matches("reply Status(").count(), 200, "{out}");
    assert!(proc_status(pid, "VmRSS").unwrap() < rss_before + 8 * 1024);
    status_ok(&s);
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn hostile_frames_through_the_real_socket_close_only_their_connection() {
    let s = standard(|_| {});
    let pid = helper_pid(&s.u).unwrap();
    let rss_before = proc_status(pid, "VmRSS").unwrap();
    let garbage = format!("raw:{}", "ab".repeat(32 * 1024));
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        // The variant tag as bincode's u64 varint (0xfd + 8 bytes).
        (
            "u64 variant tag",
            vec!["raw:09000000fdffffffffffffffff", "recv", "recv"],
            "reply Failed(Protocol",
        ),
        // Hello whose u32 protocol is sent as a u64 varint.
        (
            "u64-wide protocol",
            vec!["raw:0a00000000fdffffffffffffffff", "recv", "recv"],
            "reply Failed(Protocol",
        ),
        (
            "empty frame",
            vec!["raw:00000000", "recv", "recv"],
            "reply Failed(Protocol",
        ),
        // Exactly the 64 KiB cap: allocated, decoded, refused.
        (
            "64 KiB of garbage",
            vec!["raw:00000100", &garbage, &garbage, "recv", "recv"],
            "reply Failed(Protocol",
        ),
        (
            "64 KiB + 1",
            vec!["raw:01000100", "recv", "recv"],
            "exceeds the 65536-byte limit",
        ),
        // A whole frame (length + Check) as the payload of another.
        (
            "frame inside a frame",
            vec!["raw:080000000400000002", "raw:000000", "recv", "recv"],
            "reply Failed(Protocol",
        ),
        (
            "unknown variant after Hello",
            vec!["hello", "recv", "raw:0100000009", "recv", "recv"],
            "reply Failed(Protocol",
        ),
    ];
    for (what, actions, want) in &cases {
        let out = probe(&s.u, actions);
        assert!(out.contains(want), "{what}: {out}");
        assert!(
            out.contains("closed"),
            "{what}: the connection is closed: {out}"
        );
    }
    // A frame announced as 10 bytes, 2 sent, then the peer is gone.
    let out = probe(&s.u, &["raw:0a0000000001"]);
    assert!(out.contains("sent 6 bytes"), "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || s
            .u
            .helper_log()
            .contains("bad or missing frame")),
        "{}",
        s.u.helper_log()
    );
    // The helper is the same process, still serving, memory bounded.
    assert_eq!(helper_pid(&s.u), Some(pid));
    status_ok(&s);
    let check = s.agent(&["check"]);
    assert_eq!(check.status.code(), Some(100), "{}", text(&check));
    assert!(proc_status(pid, "VmRSS").unwrap() < rss_before + 8 * 1024);
    assert!(
        !s.u.helper_log().contains("panicked"),
        "{}",
        s.u.helper_log()
    );
    s.assert_nothing_changed();
    s.finish();
}

// ------------------------------------------------------------------ P4

#[test]
fn a_hard_link_planted_as_the_deb_is_refused_before_reading() {
    // Right after apt's download, a root process replaces the archive by a
    // hard link to dpkg's database (same file system): the helper must not
    // read, copy or install it.
    let s = standard(|u| {
        wrap_tool_after(
            u,
            "/usr/bin/apt-get",
            &format!(
                "case \" $* \" in *\" -d install \"*) ln -f /var/lib/dpkg/status {ARCHIVE}; \
                 touch /root/linked;; esac"
            ),
        );
    });
    let err = update_fails(&s);
    assert!(
        s.u.sandbox.exists("/root/linked").unwrap(),
        "the wrapper ran"
    );
    assert!(
        err.contains("refused patchman-client: the downloaded file is not a regular file"),
        "{err}"
    );
    assert!(
        !s.u.helper_log().contains("command=dpkg -i"),
        "{}",
        s.u.helper_log()
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_symlinked_archives_directory_is_refused() {
    let s = standard(|u| {
        u.sandbox
            .run(&[
                "sh",
                "-c",
                "mv /var/cache/apt/archives /var/cache/apt-archives-moved && \
                 ln -s /var/cache/apt-archives-moved /var/cache/apt/archives",
            ])
            .unwrap();
    });
    let err = update_fails(&s);
    assert!(
        err.contains("unsafe directory /var/cache/apt/archives") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_world_writable_archives_directory_is_refused() {
    let s = standard(|u| {
        u.sandbox
            .run(&["chmod", "1777", "/var/cache/apt/archives"])
            .unwrap();
    });
    let err = update_fails(&s);
    assert!(
        err.contains("unsafe directory /var/cache/apt/archives")
            && err.contains("group- or world-writable"),
        "{err}"
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_symlink_at_the_private_base_is_refused() {
    let s = standard(|u| {
        u.sandbox
            .run(&[
                "sh",
                "-c",
                "install -d -m 0700 /root/elsewhere && \
                 ln -s /root/elsewhere /var/cache/patchman-helper",
            ])
            .unwrap();
    });
    let err = update_fails(&s);
    assert!(
        err.contains("unsafe directory /var/cache/patchman-helper: is a symbolic link"),
        "{err}"
    );
    let left =
        s.u.sandbox
            .run_stdout(&["ls", "-A", "/root/elsewhere"])
            .unwrap();
    assert_eq!(left, "", "nothing written through the link");
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn an_unsafe_private_base_is_refused() {
    let s = standard(|u| {
        u.sandbox
            .run(&["install", "-d", "-m", "0777", "/var/cache/patchman-helper"])
            .unwrap();
    });
    let base = "unsafe directory /var/cache/patchman-helper";
    let err = update_fails(&s);
    assert!(
        err.contains(base) && err.contains("world-writable"),
        "{err}"
    );
    // Owned by the agent user, 0700.
    s.u.sandbox
        .run(&[
            "sh",
            "-c",
            "chmod 0700 /var/cache/patchman-helper && chown patchman /var/cache/patchman-helper",
        ])
        .unwrap();
    let err = update_fails(&s);
    assert!(
        err.contains(base) && err.contains("not owned by root"),
        "{err}"
    );
    // Root's, but readable by others.
    s.u.sandbox
        .run(&[
            "sh",
            "-c",
            "chown root /var/cache/patchman-helper && chmod 0755 /var/cache/patchman-helper",
        ])
        .unwrap();
    let err = update_fails(&s);
    assert!(err.contains("want 0700"), "{err}");
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn dnf_a_symlink_at_the_private_base_is_refused() {
    let fx = el_fixture();
    let host_before = host_package_state();
    let u = Updater::new_el(ElRelease::AlmaLinux8, &fx.patchman, &[fx.client("1.7.0-1")])
        .expect("EL sandbox");
    let s = Scenario::start(Db::Rpm, u, host_before, |u| {
        u.sandbox
            .run(&[
                "sh",
                "-c",
                "install -d -m 0700 /root/elsewhere && \
                 ln -s /root/elsewhere /var/cache/patchman-helper",
            ])
            .unwrap();
    });
    let err = update_fails(&s);
    assert!(
        err.contains("unsafe directory /var/cache/patchman-helper: is a symbolic link"),
        "{err}"
    );
    assert!(
        !s.u.helper_log().contains("--downloadonly"),
        "refused before dnf downloads"
    );
    let left =
        s.u.sandbox
            .run_stdout(&["ls", "-A", "/root/elsewhere"])
            .unwrap();
    assert_eq!(left, "");
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    s.assert_nothing_changed();
    s.finish();
}

/// Why a swap cannot work: the helper reads the archive once, hashing it
/// while copying it into a fresh 0700 root directory, and everything after
/// (`dpkg-deb --field`, `dpkg -i`) uses the copy. Here a root process
/// replaces the archive with a validly-named, same-version package whose
/// payload differs, right after the helper's read (when it runs
/// `dpkg-deb --field` on its copy): the installed payload is the verified
/// one.
#[test]
fn a_deb_swapped_after_verification_is_not_what_gets_installed() {
    let afx = attack_fixture();
    let s = standard(|u| {
        u.sandbox
            .copy_in(&afx.swapped_in, "/root/swapped.deb")
            .unwrap();
        wrap_tool(
            u,
            "/usr/bin/dpkg-deb",
            &format!(
                "case \" $* \" in *\" --field \"*) cp /root/swapped.deb {ARCHIVE} && \
                 touch /root/swapped;; esac"
            ),
        );
    });
    let out = s.agent(&["update"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    assert!(
        s.u.sandbox.exists("/root/swapped").unwrap(),
        "the swap happened"
    );
    let archived = s.u.sandbox.read_file(ARCHIVE).unwrap();
    assert_eq!(archived, std::fs::read(&afx.swapped_in).unwrap());
    assert_eq!(
        s.u.sandbox.read_to_string(VERSION_FILE).unwrap(),
        "1.7.1-1\n"
    );
    assert_ne!(
        s.u.sandbox.read_to_string(VERSION_FILE).unwrap(),
        EVIL_PAYLOAD
    );
    let log = s.u.helper_log();
    let dpkg_i = log.lines().find(|l| l.contains("command=dpkg -i")).unwrap();
    assert!(
        dpkg_i.contains("/var/cache/patchman-helper/run-") && !dpkg_i.contains("/var/cache/apt/"),
        "{dpkg_i}"
    );
    // And the agent cannot reach the copy: the base is root's, 0700.
    let ls =
        s.u.sandbox
            .run_as_unchecked("patchman", &["ls", "/var/cache/patchman-helper"])
            .unwrap();
    assert!(!ls.status.success(), "{}", text(&ls));
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

// ------------------------------------------------------------------ P2

#[test]
fn a_pinned_downgrade_candidate_is_not_installed() {
    let fx = apt_fixture();
    let s = apt(&fx.repos_root, &fx.patchman, &[fx.client("1.7.1-1")], |u| {
        u.sandbox
            .write_file(
                "/etc/apt/preferences.d/downgrade",
                "Package: patchman-client\nPin: version 1.7.0-1\nPin-Priority: 1001\n",
            )
            .unwrap();
        u.sandbox.run(&["apt-get", "update"]).unwrap();
        let policy = u
            .sandbox
            .run_stdout(&["apt-cache", "policy", CLIENT])
            .unwrap();
        assert!(
            policy.contains("Candidate: 1.7.0-1"),
            "apt itself would downgrade: {policy}"
        );
    });
    let check = s.agent(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let out = s.agent(&["update"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Already up to date"),
        "{}",
        text(&out)
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    s.assert_nothing_changed();
    s.finish();
}

#[test]
fn a_look_alike_package_installed_and_offered_is_untouched() {
    let fx = apt_fixture();
    let afx = attack_fixture();
    let s = apt(
        &afx.repos_root,
        &afx.evil,
        &[fx.client("1.7.0-1"), &afx.evil_1],
        |_| {},
    );
    let out = s.agent(&["update"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert_eq!(
        s.version(EVIL).as_deref(),
        Some("1.0-1"),
        "2.0-1 was offered"
    );
    assert!(
        !s.u.helper_log().contains(&format!("{EVIL}=")),
        "{}",
        s.u.helper_log()
    );
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn a_look_alike_package_offered_is_not_installed() {
    let fx = apt_fixture();
    let afx = attack_fixture();
    let s = apt(&afx.repos_root, &afx.evil, &[fx.client("1.7.0-1")], |_| {});
    let out = s.agent(&["update"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        s.u.helper_log()
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    assert_eq!(s.u.dpkg(EVIL).unwrap(), None);
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn a_deb_whose_embedded_name_differs_from_its_index_is_refused() {
    let fx = apt_fixture();
    let afx = attack_fixture();
    let s = apt(
        &afx.repos_root,
        &afx.misnamed_repo,
        &[fx.client("1.7.0-1")],
        |_| {},
    );
    let err = update_fails(&s);
    // apt downloads it (its index and hash are consistent); the helper's
    // `dpkg-deb --field` of the copy finds the other name.
    assert!(
        err.contains(&format!(
            "refused patchman-client: the file contains {EVIL} 1.7.1-1 all"
        )),
        "{err}\n{}",
        s.u.helper_log()
    );
    assert!(!s.u.helper_log().contains("command=dpkg -i"));
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.0-1"));
    assert_eq!(s.u.dpkg(EVIL).unwrap(), None);
    s.assert_nothing_changed();
    s.finish();
}

// ------------------------------------------------------------------ P6

#[test]
fn an_agent_killed_mid_install_leaves_the_update_whole_and_the_helper_serving() {
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
        "dpkg never ran the postinst:\n{}",
        s.u.helper_log()
    );
    // The postinst is running under `dpkg -i`: the agent dies.
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGKILL).unwrap();
    let out = agent.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed");
    // The helper finishes the install, answers nobody, and exits as after
    // every changing update.
    assert!(
        s.u.helper_exited_within(Duration::from_secs(60)),
        "{}",
        s.u.helper_log()
    );
    assert_eq!(
        s.u.dpkg(CLIENT).unwrap(),
        Some(("install ok installed".into(), "1.7.1-1".into()))
    );
    let log = s.u.helper_log();
    assert!(log.contains("outcome=\"updated 1 package(s)\""), "{log}");
    let postinst = s.u.sandbox.read_to_string(POSTINST_LOG).unwrap();
    assert!(
        postinst.contains("patchman-client 1.7.1-1 configure"),
        "{postinst}"
    );
    let audit = s.u.sandbox.run_stdout(&["dpkg", "--audit"]).unwrap();
    assert_eq!(audit, "");
    // The next connection (socket activation, here started by hand) is served.
    s.u.start_helper().unwrap();
    let json = status_ok(&s);
    assert_eq!(json["installed"]["client"], "1.7.1-1", "{json}");
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}
