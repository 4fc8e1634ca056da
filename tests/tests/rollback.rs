//! Health-gated rollback (issue 12, docs/rollback.md), end to end on the
//! real apt and dpkg, in the host sandbox without systemd: the packages
//! built from this workspace by `deploy/package/build.sh` (X = 1.7.0-1
//! installed with `dpkg -i`), a broken X+1 = 1.7.1-1 made by repacking the
//! built package with a replaced binary, published in a signed repository
//! over HTTP; the INSTALLED helper (restarted whenever it exits, as its
//! socket would start it) and the INSTALLED agent's daemon take the update.
//! The new release never confirms; after the deadline the RESCUE COPY of
//! the previous helper (`/var/lib/patchman-helper/rescue/patchman-helper
//! --rollback-due`, what `patchman-rollback.service` runs) installs X again.
//!
//! Checked on the way: the record and the rescue copy exist while
//! probation runs; a hostile agent (any request, any number of times)
//! neither rolls back early nor twice nor outside probation, and `Confirm`
//! outside probation is a typed no-op; X is installed again, complete,
//! `apt-get check` clean; X+1 is quarantined, `status --json` shows the
//! rollback and `last_result` `rolled_back`; the daemon skips X+1; a
//! healthy 1.7.2-1 published afterwards is taken, confirmed, never rolled
//! back, and the kept set then holds 1.7.0-1's and 1.7.2-1's packages.
//! The host's package state never changes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patchman_tests::container::{Container, SHARED};
use patchman_tests::installed::wait_until;
use patchman_tests::installed::{
    apt_setup, dnf_setup, exe_inode, inode_inside, installed, repack_deb, signing_key,
    start_daemon, work_dir, Family, HelperSupervisor, Installed, AGENT, AGENT_UNIT, CONFIG_PATH,
    HELPER, PACKAGE, SETTLE_WITHIN, STOP_WITHIN, UPDATE_WITHIN, USER, X, X1,
};
use patchman_tests::sandbox::apt_repo::{
    build_repo, native_arch, AptRepo, GpgHome, RepoLayout, RepoSpec, SigningKey,
};
use patchman_tests::sandbox::fixture::{CLIENT, REALTIME};
use patchman_tests::sandbox::SourceFormat;
use patchman_tests::scenario::{Db, Scenario};
use patchman_tests::sdtests::Run;
use patchman_tests::updater::Updater;
use patchman_tests::{apt_fixture, attack_support, cmd, host_package_state, packages, Sandbox};

/// The healthy release after the broken one.
const X2: &str = "1.7.2-1";
const PROBATION_S: u64 = 20;
const RESCUE: &str = "/var/lib/patchman-helper/rescue/patchman-helper";
const RECORD: &str = "/var/lib/patchman-helper/probation";
const KEPT: &str = "/var/lib/patchman-helper/kept";

/// `refresh_interval = 0s`: the scenarios publish releases seconds apart,
/// and the daemon's checks must see each at once (the default, at most one
/// refresh a minute, is the attacks' and faults' subject, not this file's).
fn config() -> String {
    format!(
        "[updates]\nrepository = patchman\ninterval = 1h\njitter = 0s\nprobation = {PROBATION_S}s\nrefresh_interval = 0s\n"
    )
}

/// What is wrong with the published X+1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// `patchman-agent` exits 1 at start.
    Agent,
    /// `patchman-helper` exits 1 at start.
    Helper,
}

/// Replaces the file at `path` with `script`, mode 0755.
fn replace_with_script(path: &Path, script: &str) {
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Repacks `deb` with the file at `inside` replaced by `script` (0755).
fn repack_replacing(deb: &Path, inside: &str, script: &str, out: &Path) -> PathBuf {
    repack_deb(deb, out, |tree| {
        replace_with_script(&tree.join(inside.trim_start_matches('/')), script)
    })
}

/// The broken X+1 of `family`: the `.deb` repacked, the `.rpm` built by
/// build.sh from the tests' binaries with the one replaced.
fn broken_package(
    family: Family,
    broken: Broken,
    healthy: &Path,
    bin_dir: &Path,
    out: &Path,
) -> PathBuf {
    let (path, name) = match broken {
        Broken::Agent => (AGENT, "patchman-agent"),
        Broken::Helper => (HELPER, "patchman-helper"),
    };
    let script = "#!/bin/sh\nexit 1\n";
    match family {
        Family::Apt => repack_replacing(healthy, path, script, out),
        Family::Dnf => {
            let bins = out.join("bin");
            std::fs::create_dir_all(&bins).unwrap();
            for b in ["patchman-agent", "patchman-helper"] {
                std::fs::copy(bin_dir.join(b), bins.join(b)).unwrap();
            }
            replace_with_script(&bins.join(name), script);
            packages::build_packages(&bins, packages::Format::Rpm, &[X1], &out.join("pkg"))
                .unwrap()
                .remove(0)
        }
    }
}

/// The signed repository `name` under `root` with `debs`.
fn publish(
    root: &Path,
    gpg: &GpgHome,
    key: &SigningKey,
    name: &'static str,
    debs: &[PathBuf],
) -> AptRepo {
    build_repo(
        root,
        &RepoSpec {
            name,
            layout: RepoLayout::stable_main(),
            debs,
            key: Some(key),
        },
        Some(gpg),
        &native_arch().unwrap(),
    )
    .unwrap()
}

fn status_json(sandbox: &Sandbox) -> serde_json::Value {
    let out = sandbox
        .run_as_unchecked(USER, &[AGENT, "status", "--json"])
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// `--rollback-due` by the rescue copy, as patchman-rollback.service runs it.
fn rollback_due(sandbox: &Sandbox) -> String {
    let out = sandbox.run_unchecked(&[RESCUE, "--rollback-due"]).unwrap();
    let text = cmd::output_text(&out);
    assert!(out.status.success(), "--rollback-due failed:\n{text}");
    text
}

fn record_deadline(sandbox: &Sandbox) -> u64 {
    let r: serde_json::Value =
        serde_json::from_str(&sandbox.read_to_string(RECORD).unwrap()).unwrap();
    r["deadline"].as_u64().unwrap()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The file name the package manager gives `patchman-client` `version`.
fn kept_name(family: Family, version: &str) -> String {
    match family {
        Family::Apt => format!("{PACKAGE}_{version}_amd64.deb"),
        Family::Dnf => format!("{PACKAGE}-{version}.x86_64.rpm"),
    }
}

fn kept_files(sandbox: &Sandbox) -> Vec<String> {
    let mut v: Vec<String> = sandbox
        .run_stdout(&["ls", KEPT])
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(".deb") || l.ends_with(".rpm"))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn scenario(family: Family, broken: Broken) {
    let run = Run::start();
    let work = work_dir("rollback-");
    let w = work.path();

    // X, X+1 (broken), X+2 from the binaries the tests use.
    let bin_dir = patchman_tests::workspace_bin("patchman-agent")
        .parent()
        .unwrap()
        .to_path_buf();
    let built =
        packages::build_packages(&bin_dir, family.format(), &[X, X1, X2], &w.join("packages"))
            .unwrap();
    let (pkg_x, pkg_x2) = (built[0].clone(), built[2].clone());
    let pkg_x1 = broken_package(family, broken, &built[1], &bin_dir, &w.join("broken"));
    // X stays published: the way back is downloaded pinned from it.
    let Installed { sandbox, http } = match family {
        Family::Apt => apt_setup(w, &pkg_x, &[pkg_x.clone(), pkg_x1.clone()]),
        Family::Dnf => dnf_setup(w, &pkg_x, &[pkg_x.clone(), pkg_x1.clone()]),
    };
    assert_eq!(installed(family, &sandbox).as_deref(), Some(X));
    for f in [
        "/usr/lib/systemd/system/patchman-rollback.service",
        "/usr/lib/systemd/system/patchman-rollback.timer",
        "/etc/systemd/system/timers.target.wants/patchman-rollback.timer",
    ] {
        assert!(sandbox.exists(f).unwrap(), "{f} not installed");
    }
    sandbox.write_file(CONFIG_PATH, config()).unwrap();
    let x_helper = inode_inside(&sandbox, HELPER);
    let x_helper_bytes = sandbox.read_file(HELPER).unwrap();

    let mut helper = HelperSupervisor::start(&sandbox, sandbox.dir().join("helper.log"));
    assert!(
        wait_until(Duration::from_secs(20), || exe_inode(helper.pid())
            == Some(x_helper)),
        "the installed helper did not start:\n{}",
        helper.log()
    );
    // The daemon of X takes the update to the broken X+1.
    let mut d = start_daemon(&sandbox);
    assert!(
        wait_until(UPDATE_WITHIN, || installed(family, &sandbox).as_deref()
            == Some(X1)),
        "not updated to {X1}:\n--- agent\n{}\n--- helper\n{}",
        d.log(),
        helper.log()
    );
    let updated_at = now_unix();
    match broken {
        // It re-executes into the broken agent, which exits 1.
        Broken::Agent => assert!(
            wait_until(SETTLE_WITHIN, || !d.alive()),
            "the broken agent is still running:\n{}",
            d.log()
        ),
        // The healthy agent of X+1 finds no helper: the broken one exits 1
        // at every start.
        Broken::Helper => assert!(
            wait_until(SETTLE_WITHIN, || helper
                .log()
                .matches("the helper exited")
                .count()
                >= 3),
            "the broken helper did not crash-loop:\n{}",
            helper.log()
        ),
    }

    // Probation: the record, the rescue copy of X's helper.
    assert!(
        sandbox.exists(RECORD).unwrap(),
        "no probation record:\n{}",
        helper.log()
    );
    let deadline = record_deadline(&sandbox);
    assert!(
        deadline >= updated_at && deadline <= updated_at + PROBATION_S + 5,
        "deadline {deadline}, updated at {updated_at}"
    );
    assert_eq!(
        sandbox
            .run_stdout(&["stat", "-c", "%U %a", RESCUE])
            .unwrap()
            .trim(),
        "root 700"
    );
    assert_eq!(
        sandbox.read_file(RESCUE).unwrap(),
        x_helper_bytes,
        "the rescue copy is not the previous release's helper"
    );
    assert_eq!(
        kept_files(&sandbox),
        [kept_name(family, X), kept_name(family, X1)]
    );
    assert!(
        helper.log().contains("probation started"),
        "{}",
        helper.log()
    );

    // A hostile agent before the deadline: every request it can send, and
    // the rollback check itself, change nothing.
    if broken == Broken::Agent {
        let out = attack_support::probe_in(
            &sandbox,
            &[
                "hello",
                "recv",
                "req:update",
                "final",
                "req:check",
                "final",
                "req:status",
                "final",
            ],
        );
        assert!(out.contains("Updated(UpdateReport { changes: []"), "{out}");
        assert!(
            out.contains("deadline"),
            "Status reports the probation: {out}"
        );
    }
    // The broken agent has exited; the healthy agent of the broken-helper
    // release would record the rollback and then the quarantine before this
    // test reads `last_result`: stopped here.
    match broken {
        Broken::Agent => {
            assert!(!d.alive());
            drop(d);
        }
        Broken::Helper => assert_eq!(d.stop(STOP_WITHIN), Some(0)),
    }
    let early = rollback_due(&sandbox);
    assert!(early.contains("deadline not passed"), "{early}");
    assert_eq!(
        installed(family, &sandbox).as_deref(),
        Some(X1),
        "rolled back early"
    );
    assert!(sandbox.exists(RECORD).unwrap());

    // The deadline passes without Confirm: the rescue helper rolls back.
    let wait = deadline.saturating_sub(now_unix()) + 1;
    assert!(wait <= PROBATION_S + 1);
    std::thread::sleep(Duration::from_secs(wait));
    let t_rollback = Instant::now();
    let log = rollback_due(&sandbox);
    let rollback_time = t_rollback.elapsed();
    assert!(log.contains("rolled back"), "{log}");
    assert_eq!(
        installed(family, &sandbox).as_deref(),
        Some(X),
        "not rolled back:\n{log}"
    );
    sandbox.run(&["apt-get", "check"]).unwrap();
    assert!(
        !sandbox.exists(RECORD).unwrap(),
        "the record stays after the rollback"
    );
    assert_eq!(sandbox.read_file(HELPER).unwrap(), x_helper_bytes);
    assert!(sandbox
        .exists("/var/lib/patchman-helper/rolled-back")
        .unwrap());

    // Twice: nothing more happens.
    let again = rollback_due(&sandbox);
    assert!(!again.contains("rolled back"), "{again}");
    assert_eq!(installed(family, &sandbox).as_deref(), Some(X));

    // The helper serving now is X's again (the socket would start it).
    if let Some(pid) = Some(helper.pid()).filter(|p| *p != 0) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    let x_helper_now = inode_inside(&sandbox, HELPER);
    assert!(
        wait_until(SETTLE_WITHIN, || exe_inode(helper.pid())
            == Some(x_helper_now)),
        "X's helper does not serve again:\n{}",
        helper.log()
    );

    // Once X's helper answers (the one just stopped may still hold the
    // socket for a moment): Confirm outside probation is a typed no-op.
    assert!(
        wait_until(SETTLE_WITHIN, || attack_support::probe_in(
            &sandbox,
            &["hello", "recv"]
        )
        .contains("Welcome")),
        "X's helper does not answer:\n{}",
        helper.log()
    );
    let out = attack_support::probe_in(&sandbox, &["hello", "recv", "req:confirm", "final"]);
    assert!(out.contains("Confirmed(NothingPending)"), "{out}");

    // status --json from X's agent.
    let mut json = serde_json::Value::Null;
    assert!(
        wait_until(SETTLE_WITHIN, || {
            json = status_json(&sandbox);
            json["installed"]["client"] == X
        }),
        "{json}"
    );
    eprintln!("status --json after the rollback: {json}");
    assert_eq!(json["quarantined"], serde_json::json!([X1]), "{json}");
    assert_eq!(json["probation"], serde_json::Value::Null, "{json}");
    assert_eq!(json["rollback"]["last"]["from"][PACKAGE], X1, "{json}");
    assert_eq!(json["rollback"]["last"]["to"][PACKAGE], X, "{json}");
    assert_eq!(json["last_result"], "rolled_back", "{json}");
    let rolled_back_at = json["rollback"]["last"]["at"].clone();

    // The daemon of X skips the quarantined X+1.
    let d = start_daemon(&sandbox);
    assert!(
        wait_until(SETTLE_WITHIN, || status_json(&sandbox)["last_result"]
            == "quarantined"),
        "the daemon did not skip {X1}: {}\n{}",
        status_json(&sandbox),
        d.log()
    );
    assert_eq!(installed(family, &sandbox).as_deref(), Some(X));
    assert_eq!(d.stop(STOP_WITHIN), Some(0));

    // A healthy X+2 is taken, confirmed by its agent, never rolled back
    // (apt; the dnf run ends with the quarantine).
    if family == Family::Apt {
        let (_gpg_dir, gpg, key) = signing_key(w);
        let repo2 = publish(
            &w.join("repos"),
            &gpg,
            &key,
            "patchman-2",
            &[pkg_x, pkg_x1, pkg_x2],
        );
        drop(gpg);
        sandbox
            .add_apt_repo("patchman", &repo2, &http.url(), SourceFormat::List)
            .unwrap();
        let mut d = start_daemon(&sandbox);
        // The record is written after the install: wait for the new agent's
        // Confirm, not only for the version.
        assert!(
            wait_until(UPDATE_WITHIN, || installed(family, &sandbox).as_deref()
                == Some(X2)
                && d.log().contains("probation: Confirm sent")
                && !sandbox.exists(RECORD).unwrap()),
            "{X2} not installed and confirmed:\n--- agent\n{}\n--- helper\n{}",
            d.log(),
            helper.log()
        );
        assert!(d.alive(), "{}", d.log());
        assert!(d.log().contains("outcome=confirmed"), "{}", d.log());
        assert!(helper.log().contains("probation ended"), "{}", helper.log());
        assert_eq!(
            kept_files(&sandbox),
            [kept_name(family, X), kept_name(family, X2)],
            "the kept set: the way back (X) and the installed set (X+2)"
        );
        std::thread::sleep(Duration::from_secs(PROBATION_S + 1));
        let after = rollback_due(&sandbox);
        assert!(!after.contains("rolled back"), "{after}");
        assert_eq!(installed(family, &sandbox).as_deref(), Some(X2));
        let json = status_json(&sandbox);
        assert_eq!(json["probation"], serde_json::Value::Null, "{json}");
        assert_eq!(json["rollback"]["available"], true, "{json}");
        assert_eq!(json["rollback"]["last"]["at"], rolled_back_at, "{json}");
        assert_eq!(json["quarantined"], serde_json::json!([X1]), "{json}");

        assert_eq!(d.stop(STOP_WITHIN), Some(0));
    }
    helper.shutdown();
    drop(helper);
    drop(sandbox);
    drop(http);
    run.finish(format_args!(
        "rollback ({}, {broken:?}): the rescue helper's rollback took {:.1} s",
        family.name(),
        rollback_time.as_secs_f64()
    ));
}

patchman_tests::test_cases! { scenario:
    a_release_whose_agent_exits_at_start_is_rolled_back_by_the_rescue_helper_and_quarantined
        => (Family::Apt, Broken::Agent),
    a_release_whose_helper_exits_at_start_is_rolled_back_by_the_rescue_helper_and_quarantined
        => (Family::Apt, Broken::Helper),
    dnf_a_release_whose_agent_exits_at_start_is_rolled_back_with_rpm_oldpackage
        => (Family::Dnf, Broken::Agent),
}

/// Realtime rolls back with the client: the fixture's 1.7.0-1 pair (realtime
/// depends on `patchman-client (= 1.7.0-1)`) updated to 1.7.1-1 by a
/// hostile agent that then never confirms (the probe's `Update`), the way
/// back downloaded pinned for both, and the rollback one `dpkg -i` of both
/// kept files; afterwards the package database is what it was before.
#[test]
fn realtime_rolls_back_together_with_the_client_in_one_dpkg_run() {
    let host_before = host_package_state();
    let fx = apt_fixture();
    let debs = [fx.deb(CLIENT, X), fx.deb(REALTIME, X)];
    let u = Updater::new(&fx.repos_root, &fx.patchman, SourceFormat::List, &debs).unwrap();
    let s = Scenario::start(Db::Dpkg, u, host_before, |u| {
        u.configure("probation = 5s\n").unwrap()
    });
    let out = attack_support::probe(&s.u, &["hello", "recv", "req:update", "final"]);
    assert!(out.contains("Updated(UpdateReport { changes: ["), "{out}");
    assert_eq!(s.version(CLIENT).as_deref(), Some(X1));
    assert_eq!(s.version(REALTIME).as_deref(), Some(X1));
    assert!(s.u.sandbox.exists(RECORD).unwrap(), "{}", s.u.helper_log());
    let log = s.u.helper_log();
    assert!(
        log.contains("--reinstall install")
            && log.contains(&format!("{CLIENT}={X}"))
            && log.contains(&format!("{REALTIME}={X}")),
        "the way back is downloaded pinned for both:\n{log}"
    );

    let deadline = record_deadline(&s.u.sandbox);
    let early = rollback_due(&s.u.sandbox);
    assert!(early.contains("deadline not passed"), "{early}");
    std::thread::sleep(Duration::from_secs(deadline.saturating_sub(now_unix()) + 1));
    let log = rollback_due(&s.u.sandbox);
    let dpkg_runs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("command=dpkg -i"))
        .collect();
    assert_eq!(dpkg_runs.len(), 1, "one dpkg -i for both:\n{log}");
    assert!(
        !dpkg_runs[0].contains("--refuse-downgrade")
            && dpkg_runs[0].contains(&format!("{CLIENT}_{X}_all.deb"))
            && dpkg_runs[0].contains(&format!("{REALTIME}_{X}_all.deb")),
        "{}",
        dpkg_runs[0]
    );
    assert_eq!(s.version(CLIENT).as_deref(), Some(X));
    assert_eq!(s.version(REALTIME).as_deref(), Some(X));
    s.u.sandbox.run(&["apt-get", "check"]).unwrap();
    assert!(!s.u.sandbox.exists(RECORD).unwrap());
    s.assert_nothing_changed();
    s.finish();
}

const SOCKET: &str = "/run/patchman/helper.sock";
/// The outside check's bound: the previous version back within 4 minutes
/// of the update.
const ROLLED_BACK_WITHIN: Duration = Duration::from_secs(240);

/// A scenario under real systemd: what is wrong with the published 1.7.1-1,
/// and what happens during its probation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnderSystemd {
    /// `patchman-agent` exits 1 at start; a healthy 1.7.2-1 follows.
    BrokenAgent,
    /// `patchman-helper` exits 1 at start.
    BrokenHelper,
    /// `patchman-agent` starts and never confirms: the process lives and
    /// the unit stays `active` (systemd sees nothing wrong, as with an
    /// agent deadlocked at start), it just never talks to the helper.
    HungAgent,
    /// The broken agent, and the container powered off and booted again
    /// over the same disk mid-probation.
    BrokenAgentRebooted,
}

/// `patchman-client`'s version, if installed and complete.
fn container_version(c: &Container) -> Option<String> {
    let out = c
        .exec(&["dpkg-query", "-W", "-f", "${Status}|${Version}", PACKAGE])
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (s, v) = text.split_once('|')?;
    (s == "install ok installed").then(|| v.to_owned())
}

fn container_status(c: &Container) -> Result<serde_json::Value, anyhow::Error> {
    let out = c.exec_as(USER, &[AGENT, "status", "--json"])?;
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_default())
}

/// Powers `c` off and boots it again over the same disk; checks that the
/// journal (persistent there) knows two boots.
fn reboot(c: &mut Container) {
    c.reboot().unwrap();
    let boots = c.run(&["journalctl", "--list-boots"]).unwrap();
    // The lines of boots start with their index (-1, 0), the header not.
    let count = boots
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|i| i.parse::<i64>().is_ok())
        })
        .count();
    assert_eq!(count, 2, "not rebooted:\n{boots}");
}

/// Boots Debian 13 (over a disk that survives [`Container::reboot`] if
/// `rebootable`), makes `repo` its `patchman` source, installs `deb_x` with
/// `dpkg -i`, and sets `probation = 60s`; the helper is stopped so that
/// its next start reads that.
fn container_with_x(
    rebootable: bool,
    deb_x: &Path,
    repo: &AptRepo,
    key: &SigningKey,
    http: &patchman_tests::sandbox::HttpServer,
) -> Container {
    let c = if rebootable {
        Container::boot_rebootable("trixie")
    } else {
        Container::boot("trixie")
    }
    .unwrap();
    c.add_apt_repo(repo, &key.keyring, &http.url()).unwrap();
    let name = deb_x.file_name().unwrap().to_str().unwrap();
    std::fs::copy(deb_x, c.shared().join(name)).unwrap();
    c.run(&["dpkg", "-i", &format!("{SHARED}/{name}")]).unwrap();
    assert_eq!(c.active_state("patchman-rollback.timer").unwrap(), "active");
    // `refresh_interval = 0s`: the lists are fetched on every Check (the
    // default 60 s, a clock kept on disk, would hide a repository published
    // less than a minute after the last Check, as the healthy 1.7.2-1 is).
    std::fs::write(
        c.host_path(CONFIG_PATH),
        "[updates]\nrepository = patchman\ninterval = 1h\njitter = 0s\nprobation = 60s\nrefresh_interval = 0s\n",
    )
    .unwrap();
    // The install started the agent, whose first connection started the
    // helper with the shipped configuration: both must read the new one.
    c.run(&["systemctl", "stop", "patchman-helper.service"])
        .unwrap();
    c
}

/// The shipped binaries packaged as the `.deb`s of `versions`, built into
/// `<work>/packages`.
fn shipped_debs(work: &Path, versions: &[&str]) -> Vec<PathBuf> {
    let bin_dir = packages::shipped_bin_dir().unwrap();
    packages::build_packages(
        &bin_dir,
        packages::Format::Deb,
        versions,
        &work.join("packages"),
    )
    .unwrap()
}

/// The scenarios under real systemd (Debian 13 booted in a
/// container, `tests/src/container.rs`), with the shipped packages:
/// 1.7.0-1 installed, a broken 1.7.1-1 published, `probation = 60s`.
/// `patchman-agent.service` takes the update; the package's
/// `patchman-rollback.timer` runs the rescue helper, which rolls back; the
/// agent service runs again on 1.7.0-1, 1.7.0-1's helper answers on the
/// socket; 1.7.1-1 is quarantined; after [`UnderSystemd::BrokenAgent`] a
/// healthy 1.7.2-1 published afterwards is taken and confirmed.
fn under_systemd(case: UnderSystemd) {
    let run = Run::start();
    let work = work_dir("rollback-systemd-");
    let w = work.path();
    let built = shipped_debs(w, &[X, X1, X2]);
    let (deb_x, deb_x2) = (built[0].clone(), built[2].clone());
    let (inside, script) = match case {
        UnderSystemd::BrokenAgent | UnderSystemd::BrokenAgentRebooted => {
            (AGENT, "#!/bin/sh\nexit 1\n")
        }
        UnderSystemd::BrokenHelper => (HELPER, "#!/bin/sh\nexit 1\n"),
        UnderSystemd::HungAgent => (AGENT, "#!/bin/sh\nexec sleep infinity\n"),
    };
    let deb_x1 = repack_replacing(&built[1], inside, script, &w.join("broken"));
    // X's helper as shipped, to recognise it serving again.
    let x_tree = w.join("x-tree");
    cmd::output(
        std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb_x)
            .arg(&x_tree),
    )
    .unwrap();
    let x_helper = std::fs::read(x_tree.join(HELPER.trim_start_matches('/'))).unwrap();
    let (_gpg_dir, gpg, key) = signing_key(w);
    let repos = w.join("repos");
    let repo = publish(
        &repos,
        &gpg,
        &key,
        "patchman",
        &[deb_x.clone(), deb_x1.clone()],
    );
    let http = patchman_tests::sandbox::HttpServer::start(&repos).unwrap();

    let mut c = container_with_x(
        case == UnderSystemd::BrokenAgentRebooted,
        &deb_x,
        &repo,
        &key,
        &http,
    );
    c.run(&["systemctl", "restart", AGENT_UNIT]).unwrap();
    c.wait_for(&format!("{X1} installed"), Duration::from_secs(180), |c| {
        Ok(container_version(c).as_deref() == Some(X1))
    })
    .unwrap_or_else(|e| panic!("{e}{}", c.dump()));
    let t_updated = Instant::now();
    if case == UnderSystemd::BrokenAgentRebooted {
        // Mid-probation: the record written, nothing rolled back yet.
        c.wait_for("the probation record", SETTLE_WITHIN, |c| {
            Ok(c.host_path(RECORD).exists())
        })
        .unwrap_or_else(|e| panic!("{e}{}", c.dump()));
        assert_eq!(container_version(&c).as_deref(), Some(X1));
        reboot(&mut c);
        eprintln!(
            "systemd: powered off and booted again {:.1} s after {X1} was installed",
            t_updated.elapsed().as_secs_f64()
        );
    }
    c.wait_for(
        &format!("{X} installed again"),
        ROLLED_BACK_WITHIN.saturating_sub(t_updated.elapsed()),
        |c| Ok(container_version(c).as_deref() == Some(X)),
    )
    .unwrap_or_else(|e| panic!("{e}{}", c.dump()));
    let rolled_back_after = t_updated.elapsed();
    // dpkg-query shows X before the rescue helper has confirmed and logged;
    // `-b`: after a reboot, in the boot after it.
    c.wait_for("the rollback logged", SETTLE_WITHIN, |c| {
        Ok(
            c.journal("cat", &["-b", "-u", "patchman-rollback.service"])?
                .contains("rolled back; the version rolled back from is quarantined"),
        )
    })
    .unwrap_or_else(|e| panic!("{e}{}", c.dump()));

    let mut json = serde_json::Value::Null;
    c.wait_for("the agent service active again on X", SETTLE_WITHIN, |c| {
        json = container_status(c)?;
        Ok(c.active_state(AGENT_UNIT)? == "active" && json["daemon"]["running"] == true)
    })
    .unwrap_or_else(|e| panic!("{e}: {json}{}", c.dump()));
    eprintln!("status --json after the rollback under systemd ({case:?}): {json}");
    assert_eq!(json["installed"]["client"], X, "{json}");
    assert_eq!(json["quarantined"], serde_json::json!([X1]), "{json}");
    assert_eq!(json["rollback"]["last"]["from"][PACKAGE], X1, "{json}");
    assert_eq!(json["rollback"]["last"]["to"][PACKAGE], X, "{json}");
    assert_eq!(json["probation"], serde_json::Value::Null, "{json}");
    assert!(!c.host_path(RECORD).exists());
    if case == UnderSystemd::HungAgent {
        // The hung agent is stopped by SIGTERM when the rollback restarts
        // the unit, not after systemd's stop timeout.
        let agent_log = c.journal("cat", &["-u", AGENT_UNIT]).unwrap();
        assert!(
            !agent_log.contains("State 'stop-sigterm' timed out"),
            "{agent_log}"
        );
    }
    // The helper answering on the socket is X's: the file is X's again and
    // the serving process runs that file.
    assert!(std::fs::read(c.host_path(HELPER)).unwrap() == x_helper);
    c.wait_for("X's helper serving", SETTLE_WITHIN, |c| {
        let answered = container_status(c)?["installed"]["client"] == X;
        let Some(pid) = c.main_pid("patchman-helper.service")? else {
            return Ok(false);
        };
        let inode = |path: &str| c.run(&["stat", "-L", "-c", "%i", path]);
        Ok(answered && inode(&format!("/proc/{pid}/exe"))? == inode(HELPER)?)
    })
    .unwrap_or_else(|e| panic!("{e}{}", c.dump()));

    if case == UnderSystemd::BrokenAgent {
        // A healthy X+2: taken, confirmed, the probation cleared.
        let (_gpg_dir2, gpg2, key2) = signing_key(&w.join("second"));
        let repo2 = publish(&repos, &gpg2, &key2, "patchman-2", &[deb_x, deb_x1, deb_x2]);
        c.add_apt_repo(&repo2, &key2.keyring, &http.url()).unwrap();
        c.run(&["systemctl", "restart", AGENT_UNIT]).unwrap();
        c.wait_for(
            &format!("{X2} installed and confirmed"),
            Duration::from_secs(180),
            |c| {
                json = container_status(c)?;
                // The record is written after the install, and removed by
                // the new agent's Confirm: wait for that, not only for the
                // version.
                let confirmed = c
                    .journal("cat", &["-u", "patchman-helper.service"])?
                    .contains("probation ended");
                Ok(container_version(c).as_deref() == Some(X2)
                    && confirmed
                    && json["probation"].is_null()
                    && !c.host_path(RECORD).exists())
            },
        )
        .unwrap_or_else(|e| panic!("{e}: {json}{}", c.dump()));
        assert_eq!(container_version(&c).as_deref(), Some(X2));
        assert_eq!(json["quarantined"], serde_json::json!([X1]), "{json}");
        drop(gpg2);
    }
    drop(gpg);
    c.poweroff().unwrap();
    drop(http);
    run.finish(format_args!(
        "systemd ({case:?}): {X} back {:.1} s after {X1} was installed",
        rolled_back_after.as_secs_f64()
    ));
}

patchman_tests::test_cases! { under_systemd:
    under_systemd_a_broken_agent_is_rolled_back_by_the_timer_and_a_healthy_release_taken
        => (UnderSystemd::BrokenAgent),
    under_systemd_a_broken_helper_is_rolled_back_by_the_timer_and_the_old_helper_serves_again
        => (UnderSystemd::BrokenHelper),
    under_systemd_an_agent_that_hangs_and_never_confirms_is_rolled_back_by_the_timer
        => (UnderSystemd::HungAgent),
    under_systemd_a_broken_agent_is_rolled_back_after_a_reboot_during_probation
        => (UnderSystemd::BrokenAgentRebooted),
}

/// A healthy 1.7.2-1 whose probation a reboot interrupts, before its agent
/// confirmed (as a power loss right after the install: the update is asked
/// with the agent service stopped, by a client that never confirms), is
/// confirmed after boot by the agent the boot starts, within the deadline,
/// and never rolled back (not by the timer's `OnBootSec=` run, nor later).
#[test]
fn under_systemd_a_healthy_release_is_confirmed_after_a_reboot_during_probation() {
    let run = Run::start();
    let work = work_dir("rollback-systemd-reboot-");
    let w = work.path();
    let built = shipped_debs(w, &[X, X2]);
    let (_gpg_dir, gpg, key) = signing_key(w);
    let repos = w.join("repos");
    let repo = publish(&repos, &gpg, &key, "patchman", &built);
    let http = patchman_tests::sandbox::HttpServer::start(&repos).unwrap();
    let mut c = container_with_x(true, &built[0], &repo, &key, &http);
    c.run(&["systemctl", "stop", AGENT_UNIT]).unwrap();
    let probe = c.shared().join("probe");
    std::fs::copy(patchman_tests::workspace_bin("probe"), &probe).unwrap();
    let probe_inside = format!("{SHARED}/probe");
    let out = c
        .exec_as(
            USER,
            &[
                &probe_inside,
                SOCKET,
                "hello",
                "recv",
                "req:update",
                "final",
            ],
        )
        .unwrap();
    let t_updated = Instant::now();
    let text = cmd::output_text(&out);
    assert!(text.contains("Updated(UpdateReport { changes: ["), "{text}");
    assert_eq!(container_version(&c).as_deref(), Some(X2));
    assert!(
        c.host_path(RECORD).exists(),
        "no probation record:{}",
        c.dump()
    );

    reboot(&mut c);
    let booted_after = t_updated.elapsed();
    assert!(
        booted_after < Duration::from_secs(50),
        "the reboot took {booted_after:?}: the deadline (60 s) would pass before the agent starts"
    );
    let mut json = serde_json::Value::Null;
    c.wait_for("the Confirm after boot", SETTLE_WITHIN, |c| {
        json = container_status(c)?;
        let confirmed = c
            .journal("cat", &["-b", "-u", "patchman-helper.service"])?
            .contains("probation ended");
        Ok(confirmed && json["probation"].is_null() && !c.host_path(RECORD).exists())
    })
    .unwrap_or_else(|e| panic!("{e}: {json}{}", c.dump()));
    let confirmed_after = t_updated.elapsed();

    // Past the deadline and the timer's OnBootSec=1min run: still X+2.
    let past = Duration::from_secs(60 + 15 + 10).max(booted_after + Duration::from_secs(75));
    std::thread::sleep(past.saturating_sub(t_updated.elapsed()));
    assert_eq!(container_version(&c).as_deref(), Some(X2));
    let json = container_status(&c).unwrap();
    assert_eq!(json["installed"]["client"], X2, "{json}");
    assert_eq!(json["rollback"]["last"], serde_json::Value::Null, "{json}");
    assert_eq!(json["quarantined"], serde_json::json!([]), "{json}");
    let rollback_log = c
        .journal("cat", &["-b", "-u", "patchman-rollback.service"])
        .unwrap();
    assert!(!rollback_log.contains("rolled back"), "{rollback_log}");
    drop(gpg);
    c.poweroff().unwrap();
    drop(http);
    run.finish(format_args!(
        "systemd (healthy, rebooted): booted again {:.1} s and confirmed {:.1} s after the update",
        booted_after.as_secs_f64(),
        confirmed_after.as_secs_f64()
    ));
}
