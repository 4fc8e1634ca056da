//! The real self-update, for apt (Debian) and dnf (AlmaLinux 8): the
//! `patchman-client` packages built from this workspace by
//! `deploy/package/build.sh` (the same binaries packaged as X = 1.7.0-1 and
//! X+1 = 1.7.1-1), X installed in a sandbox with `dpkg -i` / `rpm -U` (its
//! maintainer scripts create the user `patchman` and the state directory),
//! X+1 published in a signed repository served over HTTP. The INSTALLED
//! helper (`/usr/sbin/patchman-helper`, as root, restarted whenever it
//! exits, as its socket would start it again) and the INSTALLED agent
//! (`/usr/bin/patchman-agent run`, as `patchman`, with `interval = 1h`,
//! `jitter = 0s`: the first check comes at once) do the rest: the agent
//! updates its own package through the helper and re-executes into X+1.
//!
//! Checked: the package manager's database (X+1 installed), the daemon's
//! pid unchanged and its `/proc/<pid>/exe` the new file (the inode now at
//! `/usr/bin/patchman-agent`, not the old `(deleted)` one), the helper
//! restarted on the new binary, `status --json` from the new agent (the
//! installed client, the daemon's confirmed restart into X+1), the
//! administrator's patchman.ini kept across the upgrade, and the host's
//! package state unchanged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patchman_tests::installed::wait_until;
use patchman_tests::installed::{
    apt_setup, dnf_setup, exe_inode, inode_inside, installed, start_daemon, work_dir, Family,
    HelperSupervisor, Installed, AGENT, CONFIG_PATH, HELPER, PACKAGE, QUIET_CONFIG, SETTLE_WITHIN,
    STOP_WITHIN, UPDATE_WITHIN, USER, X, X1,
};
use patchman_tests::sdtests::Run;
use patchman_tests::{packages, workspace_bin};

/// What the administrator writes over the shipped conffile.
const CONFIG: &str = QUIET_CONFIG;
/// The conffile the packages ship.
const SHIPPED_CONFIG: &str = include_str!("../../deploy/package/patchman.ini");

/// Builds the `.deb` or `.rpm` of each version from the binaries the tests
/// use; returns their paths.
fn build_packages(family: Family, versions: &[&str], out: &Path) -> Vec<PathBuf> {
    let agent = workspace_bin("patchman-agent");
    let bin_dir = agent.parent().unwrap().to_path_buf();
    assert_eq!(
        workspace_bin("patchman-helper").parent(),
        Some(bin_dir.as_path()),
        "patchman-helper and patchman-agent are not built into the same directory"
    );
    packages::build_packages(&bin_dir, family.format(), versions, out).unwrap()
}

fn self_update(family: Family) {
    let run = Run::start();
    let work = work_dir(&format!("self-update-{}-", family.name()));

    // X and X+1 from the same binaries.
    let t0 = Instant::now();
    let built = build_packages(family, &[X, X1], &work.path().join("packages"));
    let (pkg_x, pkg_x1) = (&built[0], &built[1]);
    let build_time = t0.elapsed();

    // The sandbox, the signed repository with X+1, X installed.
    let t0 = Instant::now();
    let Installed {
        sandbox,
        http: _http,
    } = match family {
        Family::Apt => apt_setup(work.path(), pkg_x, std::slice::from_ref(pkg_x1)),
        Family::Dnf => dnf_setup(work.path(), pkg_x, std::slice::from_ref(pkg_x1)),
    };
    let setup_time = t0.elapsed();
    assert_eq!(installed(family, &sandbox).as_deref(), Some(X));

    // What the maintainer scripts did.
    let user = sandbox
        .passwd_entry(USER)
        .expect("the package creates the user patchman");
    assert!(user.uid < 1000, "not a system user: {user:?}");
    let group = sandbox.read_to_string("/etc/group").unwrap();
    assert!(
        group.lines().any(|l| l.starts_with("patchman:")),
        "no group patchman:\n{group}"
    );
    assert_eq!(
        sandbox
            .run_stdout(&["stat", "-c", "%U:%G %a", "/var/lib/patchman"])
            .unwrap()
            .trim(),
        "patchman:patchman 750"
    );
    for link in [
        "/etc/systemd/system/sockets.target.wants/patchman-helper.socket",
        "/etc/systemd/system/multi-user.target.wants/patchman-agent.service",
    ] {
        assert!(sandbox.exists(link).unwrap(), "not enabled: no {link}");
    }
    assert_eq!(sandbox.read_to_string(CONFIG_PATH).unwrap(), SHIPPED_CONFIG);
    for f in [
        "/usr/lib/systemd/system/patchman-helper.socket",
        "/usr/lib/systemd/system/patchman-helper.service",
        "/usr/lib/systemd/system/patchman-agent.service",
        "/usr/lib/tmpfiles.d/patchman.conf",
        "/usr/share/selinux/packages/patchman/patchman.pp",
    ] {
        assert!(sandbox.exists(f).unwrap(), "{f} not installed");
    }
    // The administrator's settings: a conffile change kept by the upgrade.
    sandbox.write_file(CONFIG_PATH, CONFIG).unwrap();

    let old_agent = inode_inside(&sandbox, AGENT);
    let old_helper = inode_inside(&sandbox, HELPER);
    let mut helper = HelperSupervisor::start(&sandbox, sandbox.dir().join("helper.log"));
    assert!(
        wait_until(Duration::from_secs(20), || sandbox
            .exists("/run/patchman/helper.sock")
            .unwrap()),
        "the installed helper did not create its socket:\n{}",
        helper.log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || exe_inode(helper.pid())
            == Some(old_helper)),
        "the installed helper is not running (pid {}: {:?}):\n{}",
        helper.pid(),
        std::fs::read_link(format!("/proc/{}/exe", helper.pid())),
        helper.log()
    );

    assert_eq!(helper.starts(), 1, "the helper exited:\n{}", helper.log());

    let t0 = Instant::now();
    let mut d = start_daemon(&sandbox);
    let pid = d.pid();
    assert_eq!(
        exe_inode(pid),
        Some(old_agent),
        "runs the installed agent X"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();

    assert!(
        wait_until(UPDATE_WITHIN, || installed(family, &sandbox).as_deref()
            == Some(X1)),
        "not updated to {X1} within {UPDATE_WITHIN:?}:\n--- agent\n{}\n--- helper\n{}",
        d.log(),
        helper.log()
    );
    let update_time = t0.elapsed();

    // The agent re-executes into the new file: same pid, the new inode.
    let new_agent = inode_inside(&sandbox, AGENT);
    assert_ne!(new_agent, old_agent, "the upgrade did not replace {AGENT}");
    assert!(
        wait_until(SETTLE_WITHIN, || exe_inode(pid) == Some(new_agent)),
        "the daemon does not run the new binary ({:?}, {:?}):\n{}",
        std::fs::read_link(format!("/proc/{pid}/exe")),
        exe_inode(pid),
        d.log()
    );
    d.assert_reexecuted(Path::new(AGENT), &cmdline);
    // Logged before the exec, but read from the pipe by the collecting
    // thread, which may not have caught up when the new inode shows.
    d.assert_logs("re-executing the agent by path", SETTLE_WITHIN);
    assert!(
        d.wait_for_log("resumed_after_update=true", SETTLE_WITHIN),
        "the new process did not start:\n{}",
        d.log()
    );

    // The helper exited after the update; started again, it is the new file.
    let new_helper = inode_inside(&sandbox, HELPER);
    assert_ne!(
        new_helper, old_helper,
        "the upgrade did not replace {HELPER}"
    );
    assert!(
        wait_until(SETTLE_WITHIN, || helper.starts() >= 2
            && exe_inode(helper.pid()) == Some(new_helper)),
        "the helper was not restarted on the new binary (starts: {}):\n{}",
        helper.starts(),
        helper.log()
    );

    // status --json (the new agent binary) after the daemon confirmed.
    let mut json = serde_json::Value::Null;
    let status = || -> serde_json::Value {
        let out = sandbox
            .run_as_unchecked(USER, &[AGENT, "status", "--json"])
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    assert!(
        wait_until(SETTLE_WITHIN, || {
            json = status();
            json["restart"]["confirmed"] == true
        }),
        "the restart into {X1} was not confirmed: {json}\n--- agent\n{}\n--- helper\n{}",
        d.log(),
        helper.log()
    );
    let total = t0.elapsed();
    eprintln!("status --json after the self-update: {json}");
    assert_eq!(json["installed"]["client"], X1, "{json}");
    assert_eq!(json["family"], family.name(), "{json}");
    assert_eq!(json["restart"]["version"], X1, "{json}");
    assert_eq!(json["daemon"]["running"], true, "{json}");
    assert_eq!(json["daemon"]["pid"], pid, "{json}");
    assert_eq!(json["last_result"], "updated", "{json}");
    assert_eq!(
        json["last_result_detail"],
        format!("{PACKAGE}: {X} → {X1}"),
        "{json}"
    );
    assert!(
        d.log().contains("the new agent runs after the update"),
        "{}",
        d.log()
    );
    assert_eq!(installed(family, &sandbox).as_deref(), Some(X1));
    assert_eq!(
        sandbox.read_to_string(CONFIG_PATH).unwrap(),
        CONFIG,
        "the upgrade replaced the administrator's patchman.ini"
    );
    assert_eq!(
        sandbox.passwd_entry(USER).unwrap(),
        user,
        "the user changed"
    );
    let helper_log = helper.log();
    let installs = match family {
        Family::Apt => helper_log.matches("dpkg -i").count(),
        Family::Dnf => helper_log.matches("rpm -U").count(),
    };
    assert!(installs >= 1, "{helper_log}");

    assert_eq!(d.stop(STOP_WITHIN), Some(0));
    helper.shutdown();
    drop(helper);
    drop(sandbox);
    drop(_http);
    run.finish(format_args!(
        "{}: packages built in {:.1} s, sandbox with {X} installed in {:.1} s, \
         updated {:.1} s after the agent started, re-executed and confirmed after {:.1} s",
        family.name(),
        build_time.as_secs_f64(),
        setup_time.as_secs_f64(),
        update_time.as_secs_f64(),
        total.as_secs_f64()
    ));
}

patchman_tests::test_cases! { self_update:
    the_installed_apt_package_updates_itself_and_the_agent_runs_the_new_binary
        => (Family::Apt),
    the_installed_rpm_package_updates_itself_through_dnf_and_the_agent_runs_the_new_binary
        => (Family::Dnf),
}
