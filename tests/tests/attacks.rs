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
//! manager's own chain, never disabled; **P10** the repository's server
//! (or the network to it, for `http://`) holds no signing key: it may serve
//! any metadata, package or key, as often as it is asked, and still cannot
//! get a package installed that is not signed by a key root imported, make
//! the helper import a key, or remove or change any package but ours; nor
//! can an agent make the helper hammer it or the host's package caches.
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
//! | 39 | the repository server, holding no signing key, serves its own key (`gpgkey=http://…`, or a `file://` key planted) with a higher client signed by it and a `%post`: never imported, refused naming the key, the rpm database byte-for-byte unchanged by `check`, `update`, `status` | P9 P10 | `dnf_a_key_the_repository_serves_is_never_imported` |
//! | 40 | (control) the same key imported by root beforehand            | P9         | `dnf_a_key_imported_beforehand_by_root_is_trusted` |
//! | 41 | a signed higher client with `Obsoletes:` / `Conflicts:` an installed package (dnf would erase it): "manual upgrade required" from the `--assumeno` plan, before the download; the victim stays | P2 P10 | `dnf_a_client_that_obsoletes_or_conflicts_with_another_package_is_refused` |
//! | 42 | the same, with the solver's lines about it hidden: refused from the downloaded header (`rpm -qp` obsoletes/conflicts), before `rpm -U` | P2 P10 | `dnf_an_obsoletes_the_solver_did_not_print_is_refused_from_the_header` |
//! | 43 | apt: a client with `Conflicts:` + `Replaces:` an installed package: refused by the simulation, before the download | P2 | `apt_a_client_that_conflicts_with_and_replaces_another_package_is_refused` |
//! | 44 | 20 `check`s in a row (apt and dnf): at most 2 repository refreshes, counted at the test's server (measured: 1); the later answers say they come from earlier metadata | P6 P10 | `twenty_checks_in_a_row_refresh_the_repository_at_most_twice` |
//! | 45 | root's own `apt-get update` ×10 while the agent loops `Check`: none fails on the lists lock | P6 P10 | `roots_apt_get_update_during_a_check_loop_does_not_fail` |
//! | 46 | a `Check` and an `Update` wiping another dnf repository's cache (the vendor's `clean all`: 5 files → 0): the cache is byte-for-byte unchanged | P6 P10 | `dnf_another_repositorys_cache_survives_a_check` |
//! | 47 | the repository defined where dnf finds it but the helper used not to look (a `[patchman]` section in `dnf.conf`, a `reposdir=` directory) with `[main] gpgcheck=0`, and an unsigned file swapped in after dnf's check (as on EL 7, where `yum --downloadonly` checks nothing): refused by the helper's own check; any `gpgcheck` value but an explicit false is on | P9 P10 | `dnf_gpgcheck_is_read_where_dnf_finds_the_repository`; `only_an_explicit_false_turns_gpgcheck_off` (helper/src/family/rpm.rs) |
//! | 48 | the same on the yum family (CentOS 7): refused from the download's own plan, before `rpm -U` | P2 P10 | `yum_a_client_that_obsoletes_another_package_is_refused` |
//! | 49 | the helper killed (as socket activation's idle exit would end it) and started again: the next `check` still answers from the earlier metadata (a root-only stamp, `/var/cache/patchman-helper/last-refresh`) | P6 P10 | `a_restarted_helper_keeps_the_refresh_interval` |
//! | 50 | rollback early: `Update`/`Check`/`Status` during probation, and the rollback check before the deadline | P2 P11 | `a_release_whose_agent_exits_at_start_is_rolled_back_by_the_rescue_helper_and_quarantined` (rollback.rs) |
//! | 51 | rollback to another version: no request carries one; the target is the root-owned record's | P2 P4 P11 | same (rollback.rs); `a_record_naming_anything_else_is_refused` (helper/src/probation.rs) |
//! | 52 | rollback twice: a second rollback check after the rollback changes nothing | P2 P11 | same (rollback.rs); `the_rollback_rows_of_the_table` (helper/src/probation.rs) |
//! | 53 | `Confirm` outside probation: typed no-op `NothingPending`; past the deadline `PastDeadline` | P2 P11 | same (rollback.rs); `the_confirm_rows_of_the_table` (helper/src/probation.rs) |
//! | 54 | a new release whose helper exits at start cannot stop its rollback (the rescue copy of the old helper runs it) | P6 P11 | `a_release_whose_helper_exits_at_start_is_rolled_back_by_the_rescue_helper_and_quarantined` (rollback.rs) |
//! | 55 | the repository server trickles one byte a second (no client timeout catches it), so every refresh runs to its kill time, while the agent loops `Check`: root's own `apt-get update` gets the lists lock within a few seconds, every time (the interval counts from the end of an attempt, backs off after a failed one; the refresh's kill time is `refresh_timeout`) | P6 P10 | `a_trickling_repository_does_not_keep_roots_apt_get_update_out` |
//! | 56 | the same on dnf: the checks that are not due run `-C` and answer "no metadata cached, next refresh in …" instead of fetching; the repository sees few metadata requests | P6 P10 | `dnf_a_trickling_repository_is_not_fetched_on_every_check` |
//! | 57 | a downloaded "rpm" that is a text file naming a root-only file (as if dnf had not checked it): `rpm -qp` would read it as a manifest and quote the root-only file's words in its errors, which went to the agent; now the rpm lead is checked first, `rpm -qp` runs `--nomanifest`, and rpm's messages about an unverified file are never passed on | P9 | `a_text_file_as_the_rpm_is_refused_without_quoting_it` |
//! | 58 | dnf's plan line for a third package (the new dependency `libpatchman-new`) that cannot be read (its version mangled in dnf's output): refused as a change before the download, where it used to be dropped and the files fetched | P2 P10 | `dnf_a_plan_line_that_cannot_be_read_is_refused_before_the_download` |
//! | 59 | a signed source package (`.src.rpm` content under a binary package's name, its key imported by root) swapped in for the download: refused as a source package (`%{SOURCERPM}` is `(none)`) before `rpm -U` | P2 P9 | `dnf_a_signed_source_package_is_refused` |

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patchman_tests::attack_support::{
    assert_helper_never_logged, helper_pid, hold_download, probe, proc_status, release_download,
    rpm_keyring, rpm_pubkeys, spawn_agent, spawn_probe, text, wait_for_held_download,
    wait_for_slow_script, wait_until, wrap_tool, wrap_tool_after, wrap_tool_with,
};
use patchman_tests::sandbox::apt_repo::AptRepo;
use patchman_tests::sandbox::attack_fixture::{
    attack_fixture, el_attack_fixture, ATTACKER_POST_MARKER, EVIL, EVIL_PAYLOAD, SERVED_KEY_FILE,
    VICTIM,
};
use patchman_tests::sandbox::el::{ElRelease, ElSandbox};
use patchman_tests::sandbox::fixture::{CLIENT, POSTINST_LOG};
use patchman_tests::sandbox::http::HttpServer;
use patchman_tests::sandbox::RpmRepo;
use patchman_tests::scenario::{Db, Scenario};
use patchman_tests::updater::{Updater, SOCKET};
use patchman_tests::{apt_fixture, el_fixture, host_package_state};

const VERSION_FILE: &str = "/usr/share/patchman-client/VERSION";
const ARCHIVE: &str = "/var/cache/apt/archives/patchman-client_1.7.1-1_all.deb";

/// Client 1.7.0-1 and `also_installed` installed, the attack fixture's
/// `repo` as the `patchman` source.
fn attack_repo(repo: &AptRepo, also_installed: &[&Path]) -> Scenario {
    let mut installed = vec![apt_fixture().client("1.7.0-1")];
    installed.extend_from_slice(also_installed);
    Scenario::apt(&attack_fixture().repos_root, repo, &installed, |_| {})
}

/// `update` as the agent fails (exit 1) with every one of `wants` in its
/// error; returns its stdout and stderr.
fn update_refused(s: &Scenario, wants: &[&str]) -> String {
    let out = s.agent_exits(&["update"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    for want in wants {
        assert!(
            err.contains(want),
            "{want:?} not in the agent's error: {err}\n--- helper log\n{}",
            s.u.helper_log()
        );
    }
    text(&out)
}

fn status_ok(s: &Scenario) -> serde_json::Value {
    let out = s.agent_exits(&["status", "--json"], 0);
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// The helper's pid and its resident memory now, in KiB.
fn helper_rss(s: &Scenario) -> (u32, u64) {
    let pid = helper_pid(&s.u).expect("the helper's pid");
    (pid, proc_status(pid, "VmRSS").expect("the helper's VmRSS"))
}

/// Runs `script` with `sh -c` as root inside the sandbox.
fn run_sh(u: &Updater, script: &str) {
    u.sandbox.run(&["sh", "-c", script]).unwrap();
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
    let s = Scenario::apt(
        &fx.repos_root,
        &fx.patchman,
        &[fx.client("1.7.1-1")],
        |_| {},
    );
    let (pid, rss_before) = helper_rss(&s);
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
    s.agent_exits(&["check"], 0);
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
    let s = Scenario::standard_apt(hold_download);
    let agent = spawn_agent(&s.u, &["update"]);
    wait_for_held_download(&s.u);
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
    release_download(&s.u);
    s.exited(&["update"], agent.wait_with_output().unwrap(), 0);
    assert_eq!(s.version(CLIENT).as_deref(), Some("1.7.1-1"));
    // Busy answers are routine: a few lines each window, the rest counted
    // in the peer's summary (written at the latest when the helper exits
    // after the update).
    let summarised = || {
        let log = s.u.helper_log();
        log.contains("peer summary") && log.matches("outcome=\"busy\"").count() <= 5
    };
    assert!(
        wait_until(Duration::from_secs(15), summarised),
        "{}",
        s.u.helper_log()
    );
    let log = s.u.helper_log();
    let routine: u64 = log
        .lines()
        .filter(|l| l.contains("peer summary"))
        .filter_map(|l| {
            l.split(" routine=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(routine >= 48, "{log}");
    s.assert_only_changed(&[CLIENT]);
    s.finish();
}

#[test]
fn two_hundred_pipelined_requests_are_answered_in_order_with_bounded_memory() {
    let s = Scenario::standard_apt(|_| {});
    let (pid, rss_before) = helper_rss(&s);
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
    let s = Scenario::standard_apt(|_| {});
    let (pid, rss_before) = helper_rss(&s);
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
    s.agent_exits(&["check"], 100);
    assert!(proc_status(pid, "VmRSS").unwrap() < rss_before + 8 * 1024);
    assert_helper_never_logged(&s.u, "panicked");
    s.assert_nothing_changed();
    s.finish();
}

// ------------------------------------------------------------------ P4

#[test]
fn a_hard_link_planted_as_the_deb_is_refused_before_reading() {
    // Right after apt's download, a root process replaces the archive by a
    // hard link to dpkg's database (same file system): the helper must not
    // read, copy or install it.
    let s = Scenario::standard_apt(|u| {
        wrap_tool_after(
            u,
            "/usr/bin/apt-get",
            &format!(
                "case \" $* \" in *\" -d install \"*) ln -f /var/lib/dpkg/status {ARCHIVE}; \
                 touch /root/linked;; esac"
            ),
        );
    });
    let said = update_refused(
        &s,
        &["refused patchman-client: the downloaded file is not a regular file"],
    );
    assert!(
        s.u.sandbox.exists("/root/linked").unwrap(),
        "the wrapper ran: {said}"
    );
    assert_helper_never_logged(&s.u, "command=dpkg -i");
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

#[test]
fn a_symlinked_archives_directory_is_refused() {
    let s = Scenario::standard_apt(|u| {
        run_sh(
            u,
            "mv /var/cache/apt/archives /var/cache/apt-archives-moved && \
             ln -s /var/cache/apt-archives-moved /var/cache/apt/archives",
        )
    });
    update_refused(
        &s,
        &["unsafe directory /var/cache/apt/archives", "symbolic link"],
    );
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

#[test]
fn a_world_writable_archives_directory_is_refused() {
    let s = Scenario::standard_apt(|u| run_sh(u, "chmod 1777 /var/cache/apt/archives"));
    update_refused(
        &s,
        &[
            "unsafe directory /var/cache/apt/archives",
            "group- or world-writable",
        ],
    );
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

/// Makes the helper's private base a symbolic link to a root directory
/// elsewhere.
fn link_the_private_base(u: &Updater) {
    run_sh(
        u,
        "install -d -m 0700 /root/elsewhere && \
         ln -s /root/elsewhere /var/cache/patchman-helper",
    );
}

/// `update` is refused for [`link_the_private_base`]'s link, and nothing
/// was written through it.
fn refused_for_the_linked_private_base(s: &Scenario) {
    update_refused(
        s,
        &["unsafe directory /var/cache/patchman-helper: is a symbolic link"],
    );
    let left =
        s.u.sandbox
            .run_stdout(&["ls", "-A", "/root/elsewhere"])
            .unwrap();
    assert_eq!(left, "", "nothing written through the link");
}

#[test]
fn a_symlink_at_the_private_base_is_refused() {
    let s = Scenario::standard_apt(link_the_private_base);
    refused_for_the_linked_private_base(&s);
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

#[test]
fn an_unsafe_private_base_is_refused() {
    // Each row makes the base unsafe another way (the first before the
    // helper starts); every one is refused, naming why.
    let base = "unsafe directory /var/cache/patchman-helper";
    let rows: [(&str, &[&str]); 3] = [
        // World-writable.
        (
            "install -d -m 0777 /var/cache/patchman-helper",
            &[base, "world-writable"],
        ),
        // Owned by the agent user, 0700.
        (
            "chmod 0700 /var/cache/patchman-helper && chown patchman /var/cache/patchman-helper",
            &[base, "not owned by root"],
        ),
        // Root's, but readable by others.
        (
            "chown root /var/cache/patchman-helper && chmod 0755 /var/cache/patchman-helper",
            &["want 0700"],
        ),
    ];
    let s = Scenario::standard_apt(|u| run_sh(u, rows[0].0));
    for (i, (unsafe_base, wants)) in rows.iter().enumerate() {
        if i > 0 {
            run_sh(&s.u, unsafe_base);
        }
        eprintln!("the base after `{unsafe_base}`");
        update_refused(&s, wants);
    }
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

#[test]
fn dnf_a_symlink_at_the_private_base_is_refused() {
    let s = Scenario::standard_el(link_the_private_base);
    refused_for_the_linked_private_base(&s);
    assert!(
        !s.u.helper_log().contains("--downloadonly"),
        "refused before dnf downloads"
    );
    s.finish_unchanged(CLIENT, "1.7.0-1");
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
    let s = Scenario::standard_apt(|u| {
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
    s.agent_exits(&["update"], 0);
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
    s.finish_updated(CLIENT, "1.7.1-1");
}

// ------------------------------------------------------------------ P2

#[test]
fn a_pinned_downgrade_candidate_is_not_installed() {
    let fx = apt_fixture();
    let s = Scenario::apt(&fx.repos_root, &fx.patchman, &[fx.client("1.7.1-1")], |u| {
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
    s.agent_exits(&["check"], 0);
    let out = s.agent_exits(&["update"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Already up to date"),
        "{}",
        text(&out)
    );
    s.finish_unchanged(CLIENT, "1.7.1-1");
}

#[test]
fn a_look_alike_package_installed_and_offered_is_untouched() {
    let afx = attack_fixture();
    let s = attack_repo(&afx.evil, &[&afx.evil_1]);
    s.agent_exits(&["update"], 0);
    assert_eq!(
        s.version(EVIL).as_deref(),
        Some("1.0-1"),
        "2.0-1 was offered"
    );
    assert_helper_never_logged(&s.u, &format!("{EVIL}="));
    s.finish_updated(CLIENT, "1.7.1-1");
}

#[test]
fn a_look_alike_package_offered_is_not_installed() {
    let s = attack_repo(&attack_fixture().evil, &[]);
    s.agent_exits(&["update"], 0);
    assert_eq!(s.u.dpkg(EVIL).unwrap(), None);
    s.finish_updated(CLIENT, "1.7.1-1");
}

#[test]
fn a_deb_whose_embedded_name_differs_from_its_index_is_refused() {
    let s = attack_repo(&attack_fixture().misnamed_repo, &[]);
    // apt downloads it (its index and hash are consistent); the helper's
    // `dpkg-deb --field` of the copy finds the other name.
    update_refused(
        &s,
        &[&format!(
            "refused patchman-client: the file contains {EVIL} 1.7.1-1 all"
        )],
    );
    assert_helper_never_logged(&s.u, "command=dpkg -i");
    assert_eq!(s.u.dpkg(EVIL).unwrap(), None);
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

// ------------------------------------------------------------------ P6

#[test]
fn an_agent_killed_mid_install_leaves_the_update_whole_and_the_helper_serving() {
    let mut s = attack_repo(&attack_fixture().slow_repo, &[]);
    let agent = spawn_agent(&s.u, &["update"]);
    wait_for_slow_script(&s.u);
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
    s.finish_updated(CLIENT, "1.7.1-1");
}

// ----------------------------------------------- P9: the repository server

/// An AlmaLinux 8 sandbox with client 1.7.0-1 whose `patchman`
/// repository is `repo` of the EL attack fixture, served by `server`, with
/// `gpgcheck=1` and `gpgkey` (written as given).
fn el_attack(
    repo: &RpmRepo,
    server: &HttpServer,
    gpgkey: &str,
    prepare: impl FnOnce(&Updater),
) -> Scenario {
    el_attack_on(ElRelease::AlmaLinux8, repo, server, gpgkey, prepare)
}

/// [`el_attack`] as `release`.
fn el_attack_on(
    release: ElRelease,
    repo: &RpmRepo,
    server: &HttpServer,
    gpgkey: &str,
    prepare: impl FnOnce(&Updater),
) -> Scenario {
    let baseurl = repo.base_url(&server.url());
    el_standard_on(release, |u| {
        u.sandbox
            .write_file(
                "/etc/yum.repos.d/patchman.repo",
                format!(
                    "[patchman]\nname=patchman\nbaseurl={baseurl}\nenabled=1\ngpgcheck=1\n\
                     gpgkey={gpgkey}\n"
                ),
            )
            .unwrap();
        prepare(u);
    })
}

const ATK_KEY_INSIDE: &str = "/etc/pki/rpm-gpg/RPM-GPG-KEY-atk-el";

/// What an administrator does to trust the `atk-el` key: `rpm --import`.
fn import_atk_key(u: &Updater) {
    u.sandbox
        .copy_in(&el_attack_fixture().key_file, ATK_KEY_INSIDE)
        .unwrap();
    u.sandbox.run(&["rpm", "--import", ATK_KEY_INSIDE]).unwrap();
}

/// A server of the EL attack fixture's repositories, for [`el_attack`].
fn attack_server() -> HttpServer {
    HttpServer::start(&el_attack_fixture().repos_root).unwrap()
}

/// [`el_attack_on`] `release` with `repo`, its key imported by root
/// beforehand and the victim package installed, then `prepare`.
fn el_victim_on(
    release: ElRelease,
    repo: &RpmRepo,
    server: &HttpServer,
    prepare: impl FnOnce(&Updater),
) -> Scenario {
    let gpgkey = format!("file://{ATK_KEY_INSIDE}");
    el_attack_on(release, repo, server, &gpgkey, |u| {
        import_atk_key(u);
        u.sandbox
            .install_rpms(&[&el_attack_fixture().victim])
            .unwrap();
        prepare(u);
    })
}

/// The repository server (or the network, for `http://`) hands out its own
/// key with a higher client signed by it: dnf's `-y` would import it, and
/// the helper's own `rpmkeys --checksig` would then trust it. The helper
/// never imports a key: the update is refused naming the key, and the rpm
/// database is byte-for-byte unchanged by every request.
#[test]
fn dnf_a_key_the_repository_serves_is_never_imported() {
    let efx = el_attack_fixture();
    let server = attack_server();
    let key_url = format!(
        "{}/{SERVED_KEY_FILE}",
        efx.served_key.base_url(&server.url())
    );
    for gpgkey in [format!("file://{ATK_KEY_INSIDE}"), key_url] {
        let s = el_attack(&efx.served_key, &server, &gpgkey, |u| {
            u.sandbox.copy_in(&efx.key_file, ATK_KEY_INSIDE).unwrap();
        });
        let keyring = rpm_keyring(&s.u);
        assert_eq!(
            rpm_pubkeys(&s.u).lines().count(),
            1,
            "only the patchman key"
        );
        s.agent_exits(&["check"], 100);
        let out = s.agent_exits(&["update"], 1);
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("gpgkey={gpgkey}: {err}");
        assert!(
            err.contains(&efx.key_id) && err.contains("rpm --import"),
            "{gpgkey}: {}\n{}",
            text(&out),
            s.u.helper_log()
        );
        s.agent_exits(&["status"], 0);
        assert_eq!(
            rpm_keyring(&s.u),
            keyring,
            "{gpgkey}: the rpm keyring changed"
        );
        assert!(
            !s.u.sandbox.exists(ATTACKER_POST_MARKER).unwrap(),
            "the attacker's %post ran"
        );
        assert!(
            !server
                .requests()
                .iter()
                .any(|r| r.path.ends_with(SERVED_KEY_FILE)),
            "dnf fetched the served key"
        );
        s.finish_unchanged(CLIENT, "1.7.0-1");
    }
}

/// The positive control: the same repository, its key imported by an
/// administrator beforehand, updates; the keyring stays as it was.
#[test]
fn dnf_a_key_imported_beforehand_by_root_is_trusted() {
    let server = attack_server();
    let gpgkey = format!("file://{ATK_KEY_INSIDE}");
    let s = el_attack(
        &el_attack_fixture().served_key,
        &server,
        &gpgkey,
        import_atk_key,
    );
    let keys = rpm_pubkeys(&s.u);
    assert_eq!(keys.lines().count(), 2, "{keys}");
    s.agent_exits(&["update"], 0);
    assert_eq!(rpm_pubkeys(&s.u), keys);
    assert!(s.u.sandbox.exists(ATTACKER_POST_MARKER).unwrap());
    s.finish_updated(CLIENT, "1.7.1-1");
}

// ------------------------------------------- P2: obsoletes and conflicts

/// A signed higher client whose header says `Obsoletes:` (or
/// `Conflicts:`) an unrelated installed package: `rpm -U` would erase it.
/// Refused as "manual upgrade required" before anything is downloaded;
/// the victim stays.
#[test]
fn dnf_a_client_that_obsoletes_or_conflicts_with_another_package_is_refused() {
    let efx = el_attack_fixture();
    let server = attack_server();
    for repo in [&efx.obsoleting, &efx.conflicting] {
        let s = el_victim_on(ElRelease::AlmaLinux8, repo, &server, |_| {});
        eprintln!("repository {}", repo.name);
        let said = update_refused(&s, &["manual upgrade required", VICTIM]);
        eprintln!("{}: {said}", repo.name);
        assert!(
            !s.u.helper_log().contains("--downloadonly"),
            "{}: refused before the download\n{}",
            repo.name,
            s.u.helper_log()
        );
        assert_victim_kept(s);
    }
}

/// Nothing installed: the victim and our client as they were, the host
/// unchanged.
fn assert_victim_kept(s: Scenario) {
    assert!(
        !s.u.helper_log().contains("rpm -U"),
        "refused before rpm -U"
    );
    assert_eq!(s.version(VICTIM).as_deref(), Some("1.0-1"));
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

/// The header check behind the plan's: a solver whose output does not
/// show the obsolete (here dnf with those lines filtered out) still gets
/// the download refused by `rpm -qp`'s `Obsoletes:` before `rpm -U`.
#[test]
fn dnf_an_obsoletes_the_solver_did_not_print_is_refused_from_the_header() {
    let server = attack_server();
    let obsoleting = &el_attack_fixture().obsoleting;
    let s = el_victim_on(ElRelease::AlmaLinux8, obsoleting, &server, |u| {
        wrap_tool_with(u, "/usr/bin/dnf-3", |real| {
            format!(
                "#!/bin/sh\nout=$({real} \"$@\" 2>&1)\nrc=$?\n\
                 printf '%s\\n' \"$out\" | grep -v -e obsoleted -e replacing\nexit $rc\n"
            )
        });
    });
    update_refused(
        &s,
        &["manual upgrade required", &format!("obsoletes {VICTIM}")],
    );
    assert_victim_kept(s);
}

/// The yum family (CentOS 7's command lines; EL 6's yum has no
/// `--assumeno`): the obsolete is refused from the download's own plan,
/// before `rpm -U`; the victim stays.
#[test]
fn yum_a_client_that_obsoletes_another_package_is_refused() {
    let server = attack_server();
    let obsoleting = &el_attack_fixture().obsoleting;
    let s = el_victim_on(ElRelease::CentOS7, obsoleting, &server, |_| {});
    update_refused(&s, &["manual upgrade required", VICTIM]);
    assert!(
        s.u.helper_log().contains("command=yum "),
        "the yum family ran"
    );
    assert_victim_kept(s);
}

/// apt's twin: `Conflicts:` + `Replaces:` an installed package makes apt
/// plan its removal; refused by the simulation before the download.
#[test]
fn apt_a_client_that_conflicts_with_and_replaces_another_package_is_refused() {
    let afx = attack_fixture();
    let s = attack_repo(&afx.replacing_repo, &[&afx.victim]);
    update_refused(&s, &["manual upgrade required", VICTIM]);
    assert!(
        !s.u.helper_log().contains("-d install"),
        "refused before the download"
    );
    assert_eq!(s.version(VICTIM).as_deref(), Some("1.0-1"));
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

// --------------------------------------------- P6: the refresh rate limit

/// Requests at the test's server for a repository's signed metadata root
/// (apt's `InRelease`/`Release`, dnf's `repomd.xml`): one per refresh.
fn metadata_fetches(server: &HttpServer, repo_path: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| {
            r.path.contains(repo_path)
                && (r.path.ends_with("/InRelease")
                    || r.path.ends_with("/Release")
                    || r.path.ends_with("/repomd.xml"))
        })
        .count()
}

/// 20 `check`s in a row from a compromised agent: the helper refreshes
/// the repository at most once per `refresh_interval` (60 s by default),
/// and says when it answered from what it fetched before.
#[test]
fn twenty_checks_in_a_row_refresh_the_repository_at_most_twice() {
    let fx = apt_fixture();
    let apt = Scenario::standard_apt(|_| {});
    let el = Scenario::standard_el(|_| {});
    for (s, repo_path) in [(&apt, fx.patchman.url_path.as_str()), (&el, "patchman/")] {
        let before = metadata_fetches(&s.u.http, repo_path);
        for i in 0..20 {
            let out = s.agent_exits(&["check"], 100);
            let said = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                said.contains("from the repository metadata fetched"),
                i > 0,
                "check {i}: {said}"
            );
        }
        let fetches = metadata_fetches(&s.u.http, repo_path) - before;
        eprintln!("{repo_path}: 20 checks, {fetches} metadata fetches");
        assert!(fetches <= 2, "{fetches} refreshes\n{}", s.u.helper_log());
        assert!(fetches >= 1, "the first check refreshed");
    }
    apt.assert_nothing_changed();
    el.assert_nothing_changed();
    apt.finish();
    el.finish();
}

/// [`Scenario::standard_el`] as `release`.
fn el_standard_on(release: ElRelease, prepare: impl FnOnce(&Updater)) -> Scenario {
    let fx = el_fixture();
    let host_before = host_package_state();
    let u = Updater::new_el(release, &fx.patchman, &[fx.client("1.7.0-1")]).expect("EL sandbox");
    Scenario::start(Db::Rpm, u, host_before, prepare)
}

/// Root's own `apt-get update` while the agent loops `Check`: every one
/// succeeds (before the rate limit, 10 of 20 failed on the lists lock).
#[test]
fn roots_apt_get_update_during_a_check_loop_does_not_fail() {
    let s = Scenario::standard_apt(|_| {});
    s.agent_exits(&["check"], 100);
    let stop = AtomicBool::new(false);
    let failures = std::thread::scope(|scope| {
        let looping = scope.spawn(|| check_loop(&s, &stop).0);
        let mut failures = Vec::new();
        for _ in 0..10 {
            let out = s.u.sandbox.run_unchecked(&["apt-get", "update"]).unwrap();
            if !out.status.success() {
                failures.push(text(&out));
            }
        }
        stop.store(true, Ordering::SeqCst);
        let checks = looping.join().unwrap();
        eprintln!("{checks} agent checks during 10 apt-get update runs");
        assert!(checks >= 5, "the agent kept checking");
        failures
    });
    assert!(failures.is_empty(), "{failures:#?}\n{}", s.u.helper_log());
    s.assert_nothing_changed();
    s.finish();
}

/// The vendor's step 1, `dnf clean all --disablerepo=* --enablerepo=patchman`,
/// wipes every repository's cache. A `Check` now leaves another
/// repository's cache as it was.
#[test]
fn dnf_another_repositorys_cache_survives_a_check() {
    let fx = el_fixture();
    let s = Scenario::standard_el(|u| {
        u.sandbox
            .add_rpm_repo("second", &fx.other, &u.http.url())
            .unwrap();
        u.sandbox
            .run(&[
                "dnf",
                "-q",
                "makecache",
                "--disablerepo=*",
                "--enablerepo=second",
            ])
            .unwrap();
    });
    let cache = || {
        s.u.sandbox
            .run_stdout(&[
                "sh",
                "-c",
                "find /var/cache/dnf -path '*second*' -type f | sort | xargs -r sha256sum",
            ])
            .unwrap()
    };
    let before = cache();
    assert!(
        !before.is_empty(),
        "makecache filled the second repository's cache"
    );
    s.agent_exits(&["check"], 100);
    s.agent_exits(&["update"], 0);
    let after = cache();
    eprintln!(
        "the second repository's cache files: {} before, {} after check and update",
        before.lines().count(),
        after.lines().count()
    );
    assert_eq!(after, before);
    s.finish_updated(CLIENT, "1.7.1-1");
}

/// Wraps dnf so that right after its own run (and its signature check)
/// every downloaded `.rpm` is replaced by `inside` and `/root/swapped` is
/// touched: as if dnf had not checked the file.
fn swap_downloads_with(u: &Updater, inside: &str) {
    wrap_tool_after(
        u,
        "/usr/bin/dnf-3",
        &format!(
            "for a in \"$@\"; do case \"$a\" in --downloaddir=*) \
             for f in \"${{a#--downloaddir=}}\"/*.rpm; do [ -f \"$f\" ] && \
             cp {inside} \"$f\" && touch /root/swapped; done;; esac; done"
        ),
    );
}

/// `update` is refused after [`swap_downloads_with`] swapped the download,
/// as [`update_refused`]: returns the agent's stdout and stderr.
fn refused_after_the_swap(s: &Scenario, wants: &[&str]) -> String {
    let said = update_refused(s, wants);
    assert!(
        s.u.sandbox.exists("/root/swapped").unwrap(),
        "the swap happened: {said}"
    );
    said
}

// ------------------------------------------------- P9: where gpgcheck is

/// The helper's own `rpmkeys --checksig` is the only signature check on
/// EL 7 (`yum --downloadonly` skips yum's). Here a root process swaps the
/// signed download for the unsigned build right after dnf's own check, as
/// if dnf had not checked, and the repository is defined where dnf finds
/// it but the helper used not to look, with `[main] gpgcheck=0`: inside
/// `dnf.conf` itself, and in a `reposdir=` directory. The helper must read
/// `gpgcheck=1` there and refuse the unsigned file.
#[test]
fn dnf_gpgcheck_is_read_where_dnf_finds_the_repository() {
    let fx = el_fixture();
    let unsigned = fx.unsigned_rpm(CLIENT, "1.7.1-1");
    for place in ["dnf.conf", "reposdir"] {
        let s = Scenario::standard_el(|u| {
            let definition = u
                .sandbox
                .read_to_string("/etc/yum.repos.d/patchman.repo")
                .unwrap();
            assert!(definition.contains("gpgcheck=1"), "{definition}");
            u.sandbox
                .run(&["rm", "/etc/yum.repos.d/patchman.repo"])
                .unwrap();
            let main = "[main]\ngpgcheck=0\nbest=True\nskip_if_unavailable=False\n\
                            cachedir=/var/cache/dnf\n";
            let conf = match place {
                "dnf.conf" => format!("{main}reposdir=/etc/yum.repos.d\n\n{definition}"),
                _ => {
                    u.sandbox
                        .write_file("/etc/patchman-tests.repos.d/patchman.repo", &definition)
                        .unwrap();
                    format!("{main}reposdir=/etc/patchman-tests.repos.d\n")
                }
            };
            u.sandbox.write_file("/etc/dnf/dnf.conf", conf).unwrap();
            u.sandbox.copy_in(unsigned, "/root/unsigned.rpm").unwrap();
            swap_downloads_with(u, "/root/unsigned.rpm");
        });
        eprintln!("the repository defined in {place}");
        refused_after_the_swap(&s, &["refused patchman-client", "signature"]);
        s.finish_unchanged(CLIENT, "1.7.0-1");
    }
}

/// A helper that exits (60 s idle under socket activation, or killed)
/// does not start the interval over: the next one reads the stamp.
#[test]
fn a_restarted_helper_keeps_the_refresh_interval() {
    let fx = apt_fixture();
    let mut s = Scenario::standard_apt(|_| {});
    s.agent_exits(&["check"], 100);
    let fetched = metadata_fetches(&s.u.http, &fx.patchman.url_path);
    assert!(fetched >= 1);
    let pid = helper_pid(&s.u).expect("the helper's pid");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    assert!(s.u.helper_exited_within(Duration::from_secs(10)));
    s.u.sandbox.run(&["rm", "-f", SOCKET]).unwrap();
    s.u.start_helper().unwrap();
    let out = s.agent_exits(&["check"], 100);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("from the repository metadata fetched before"),
        "{}",
        text(&out)
    );
    assert_eq!(metadata_fetches(&s.u.http, &fx.patchman.url_path), fetched);
    let stamp =
        s.u.sandbox
            .run_stdout(&[
                "stat",
                "-c",
                "%U %a",
                "/var/cache/patchman-helper/last-refresh",
            ])
            .unwrap();
    assert_eq!(stamp.trim(), "root 600");
    s.assert_nothing_changed();
    s.finish();
}

// ------------------------------ P6: a repository that trickles its answer

/// Loops `check` as the agent until `stop`, returning how many ran and the
/// longest one took.
fn check_loop(s: &Scenario, stop: &AtomicBool) -> (usize, Duration) {
    let mut checks = 0;
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) && checks < 500 {
        let t0 = Instant::now();
        let out = s.agent(&["check"]);
        longest = longest.max(t0.elapsed());
        assert!(
            matches!(out.status.code(), Some(0 | 100 | 1)),
            "{}",
            text(&out)
        );
        checks += 1;
    }
    (checks, longest)
}

/// The shortest settings that show the rate limit: a refresh is killed
/// after 3 s, and the next may start 2 s (doubled per failure) after.
const QUICK_REFRESH: &str = "refresh_interval = 2s\nrefresh_timeout = 3s\n";

/// A repository server that sends one byte a second keeps every refresh
/// running until the helper kills it. With the interval counted from the
/// start of an attempt and a 300 s kill, the next `Check` began another
/// at once and apt's lists lock stayed held; root's own `apt-get update`
/// failed on it every time. Now root's gets the lock within a few seconds,
/// six times in a row, while the agent loops `Check`.
#[test]
fn a_trickling_repository_does_not_keep_roots_apt_get_update_out() {
    let fx = apt_fixture();
    let s = Scenario::standard_apt(|u| u.configure(QUICK_REFRESH).unwrap());
    s.u.http.set_trickle(true);
    let stop = AtomicBool::new(false);
    let (waits, failures, checks) = std::thread::scope(|scope| {
        let looping = scope.spawn(|| check_loop(&s, &stop));
        std::thread::sleep(Duration::from_millis(500));
        let mut waits = Vec::new();
        let mut failures = Vec::new();
        for _ in 0..6 {
            let t0 = Instant::now();
            loop {
                // Root's own update of no source: it takes the lists lock
                // and fetches nothing, so the trickle does not slow it.
                let out =
                    s.u.sandbox
                        .run_unchecked(&[
                            "apt-get",
                            "update",
                            "-o",
                            "Dir::Etc::SourceList=/dev/null",
                            "-o",
                            "Dir::Etc::SourceParts=/nonexistent",
                        ])
                        .unwrap();
                if out.status.success() {
                    waits.push(t0.elapsed());
                    break;
                }
                if t0.elapsed() > Duration::from_secs(8) {
                    failures.push(text(&out));
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        stop.store(true, Ordering::SeqCst);
        (waits, failures, looping.join().unwrap())
    });
    s.u.http.set_trickle(false);
    let fetches = metadata_fetches(&s.u.http, &fx.patchman.url_path);
    eprintln!(
        "{} agent checks (longest {:?}), {fetches} refreshes; root's apt-get update waited {waits:?}",
        checks.0, checks.1
    );
    assert!(failures.is_empty(), "{failures:#?}\n{}", s.u.helper_log());
    assert!(checks.0 >= 3, "the agent kept checking");
    assert!(
        checks.1 < Duration::from_secs(10),
        "a refresh ran past its kill time: {:?}",
        checks.1
    );
    assert!((1..=4).contains(&fetches), "{fetches} refreshes");
    s.assert_nothing_changed();
    s.finish();
}

/// dnf: `metadata_expire=-1` alone does not stop dnf fetching when there
/// is no usable cache, so every `Check` of a trickling repository went to
/// the network and hung there. Now a `Check` that is not due runs `-C`
/// and answers at once that nothing is cached and when the next refresh
/// may run; the repository sees one metadata request per back-off step.
#[test]
fn dnf_a_trickling_repository_is_not_fetched_on_every_check() {
    let s = Scenario::standard_el(|u| u.configure(QUICK_REFRESH).unwrap());
    s.u.http.set_trickle(true);
    let before = metadata_fetches(&s.u.http, "patchman/");
    let t0 = Instant::now();
    let mut said = Vec::new();
    while t0.elapsed() < Duration::from_secs(15) {
        let started = Instant::now();
        let out = s.agent_exits(&["check"], 1);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a check ran past the refresh's kill time: {:?}",
            started.elapsed()
        );
        said.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    s.u.http.set_trickle(false);
    let fetches = metadata_fetches(&s.u.http, "patchman/") - before;
    let unavailable = said
        .iter()
        .filter(|e| e.contains("is cached") && e.contains("the next refresh may run in"))
        .count();
    eprintln!(
        "{} checks in 15 s, {fetches} metadata requests, {unavailable} answered from no cache",
        said.len()
    );
    assert!(unavailable >= 2, "{said:#?}\n{}", s.u.helper_log());
    assert!((1..=4).contains(&fetches), "{fetches} metadata requests");
    s.assert_nothing_changed();
    s.finish();
}

// --------------------------------- P9: an unverified file is not quoted

/// The words of a root-only file, which no reply may carry.
const ROOT_ONLY_CANARY: &str = "patchman-root-only-canary-7f3a";

/// A downloaded "package" that is a text file naming a root-only file,
/// swapped in right after dnf's own check as if dnf had not checked.
/// `rpm -qp` read it as a manifest (a list of paths and globs), then read
/// the root-only file the same way, and its error messages quoted that
/// file's words; they went to the agent in `MetadataMismatch`. Now the
/// helper checks the rpm lead before any `rpm -qp`, runs `--nomanifest`,
/// and never passes on rpm's messages about a file not yet verified.
#[test]
fn a_text_file_as_the_rpm_is_refused_without_quoting_it() {
    let s = Scenario::standard_el(|u| {
        u.sandbox
            .write_file("/root/patchman-secret", format!("{ROOT_ONLY_CANARY}\n"))
            .unwrap();
        u.sandbox
            .run(&["chmod", "0600", "/root/patchman-secret"])
            .unwrap();
        u.sandbox
            .write_file("/root/manifest.txt", "/root/patchman-secret\n")
            .unwrap();
        swap_downloads_with(u, "/root/manifest.txt");
    });
    let said = refused_after_the_swap(&s, &["refused patchman-client", "not an rpm package"]);
    assert!(!said.contains(ROOT_ONLY_CANARY), "{said}");
    assert_helper_never_logged(&s.u, ROOT_ONLY_CANARY);
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

// ------------------------------------ P2: a plan line that cannot be read

/// The package files fetched from the test's server so far.
fn package_fetches(server: &HttpServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(".rpm"))
        .count()
}

/// dnf's plan names a third package (client 1.7.2-1's new dependency) on
/// a line the helper cannot read: here dnf's own output with that line's
/// version mangled. The parser used to drop such a line, so the plan check
/// saw only our upgrade and the files were downloaded; now the line is a
/// change like any other not ours, refused before the download.
#[test]
fn dnf_a_plan_line_that_cannot_be_read_is_refused_before_the_download() {
    let fx = el_fixture();
    let host_before = host_package_state();
    let u = Updater::new_el(
        ElRelease::AlmaLinux8,
        &fx.newdep_lib,
        &[fx.client("1.7.0-1")],
    )
    .expect("EL sandbox");
    let s = Scenario::start(Db::Rpm, u, host_before, |u| {
        wrap_tool_with(u, "/usr/bin/dnf-3", |real| {
            format!(
                "#!/bin/bash\nset -o pipefail\n{real} \"$@\" | sed -e \
                 's/^---> Package \\(libpatchman-new\\.[^ ]*\\) [^ ]*/---> Package \\1 1::/'\n"
            )
        });
    });
    let before = package_fetches(&s.u.http);
    let said = update_refused(&s, &["libpatchman-new", "attended upgrade"]);
    assert_eq!(
        package_fetches(&s.u.http),
        before,
        "nothing downloaded\n{said}"
    );
    s.finish_unchanged(CLIENT, "1.7.0-1");
}

// ----------------------------------------- P2 P9: a source package

/// A source package of `patchman-client` 1.7.1-1, signed by a key root
/// has imported, swapped in for the download as if dnf had not checked:
/// name, version and signature all pass, and `rpm -U` would "install" the
/// sources. Refused as a source package before `rpm -U`.
#[test]
fn dnf_a_signed_source_package_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (srpm, key) = patchman_tests::attack_support::signed_source_rpm(dir.path()).unwrap();
    let s = Scenario::standard_el(|u| {
        u.sandbox.copy_in(&key, "/root/srcatk.key").unwrap();
        u.sandbox
            .run(&["rpm", "--import", "/root/srcatk.key"])
            .unwrap();
        u.sandbox.copy_in(&srpm, "/root/source.rpm").unwrap();
        swap_downloads_with(u, "/root/source.rpm");
    });
    refused_after_the_swap(&s, &["refused patchman-client", "a source package"]);
    assert_helper_never_logged(&s.u, "command=rpm -U");
    s.finish_unchanged(CLIENT, "1.7.0-1");
}
