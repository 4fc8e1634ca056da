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

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patchman_tests::attack_support::wait_until;
use patchman_tests::daemon::Daemon;
use patchman_tests::sandbox::apt_repo::{
    build_repo, native_arch, GpgHome, RepoLayout, RepoSpec, SigningKey,
};
use patchman_tests::sandbox::el::{ElRelease, ElSandbox};
use patchman_tests::sandbox::rpm::{export_armored, host_rpm_command, sign_rpms};
use patchman_tests::sandbox::rpm_repo::build_rpm_repo;
use patchman_tests::sandbox::{HttpServer, SourceFormat};
use patchman_tests::{
    assert_host_unchanged, cmd, el_fixture, host_package_state, packages, profile_dir,
    workspace_bin, Sandbox,
};

const PACKAGE: &str = "patchman-client";
/// The installed version, and the one the repository offers.
const X: &str = "1.7.0-1";
const X1: &str = "1.7.1-1";
const HELPER: &str = "/usr/sbin/patchman-helper";
const AGENT: &str = "/usr/bin/patchman-agent";
const USER: &str = "patchman";
const CONFIG_PATH: &str = "/etc/patchman/patchman.ini";
/// What the administrator writes over the shipped conffile.
const CONFIG: &str = "[updates]\nrepository = patchman\ninterval = 1h\njitter = 0s\n";
/// The conffile the packages ship.
const SHIPPED_CONFIG: &str = include_str!("../../deploy/package/patchman.ini");
/// Generous bounds: a loaded 2-core CI machine runs several sandboxes.
const UPDATE_WITHIN: Duration = Duration::from_secs(90);
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Apt,
    Dnf,
}

impl Family {
    fn format(self) -> packages::Format {
        match self {
            Family::Apt => packages::Format::Deb,
            Family::Dnf => packages::Format::Rpm,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Apt => "apt",
            Family::Dnf => "dnf",
        }
    }
}

fn text(out: &Output) -> String {
    cmd::output_text(out)
}

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

/// The helper as systemd's socket would run it: started again (here at
/// once) whenever it exits, e.g. after the update that replaced it.
struct HelperSupervisor {
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
    starts: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
    log: PathBuf,
}

impl HelperSupervisor {
    /// Runs `nsenter --target <holder> --mount -- /usr/sbin/patchman-helper`
    /// as root in the sandbox (the unit's `ExecStart=`, no arguments: its
    /// default socket and configuration), in a loop, logging to `log`.
    fn start(sandbox: &Sandbox, log: PathBuf) -> HelperSupervisor {
        let stop = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(AtomicU32::new(0));
        let starts = Arc::new(AtomicU32::new(0));
        let holder = sandbox.holder_pid();
        let (stop2, pid2, starts2, log2) = (
            Arc::clone(&stop),
            Arc::clone(&pid),
            Arc::clone(&starts),
            log.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log2)
                    .unwrap();
                let mut c = Command::new("nsenter");
                c.arg(format!("--target={holder}"))
                    .args(["--mount", "--", HELPER])
                    .env_clear()
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                    .env("LC_ALL", "C")
                    .current_dir("/")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(file);
                let Ok(mut child) = c.spawn() else { break };
                pid2.store(child.id(), Ordering::SeqCst);
                starts2.fetch_add(1, Ordering::SeqCst);
                let status = child.wait();
                pid2.store(0, Ordering::SeqCst);
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&log2) {
                    use std::io::Write;
                    let _ = writeln!(f, "=== (test) the helper exited: {status:?}");
                }
                // A crash loop must not spin.
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        HelperSupervisor {
            stop,
            pid,
            starts,
            thread: Some(thread),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    fn starts(&self) -> u32 {
        self.starts.load(Ordering::SeqCst)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let pid = self.pid();
        if pid != 0 {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HelperSupervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the agent's `run` as the agent's user; returns once the pid
/// runs the agent itself.
fn start_daemon(sandbox: &Sandbox) -> Daemon {
    let child = sandbox.spawn_as(USER, &[AGENT, "run"]).unwrap();
    Daemon::started(child, Duration::from_secs(20), |pid| {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == Path::new(AGENT))
    })
}

/// `(st_dev, st_ino)` of a path inside the sandbox, by `stat` run there.
fn inode_inside(sandbox: &Sandbox, path: &str) -> (u64, u64) {
    let out = sandbox
        .run_stdout(&["stat", "-L", "-c", "%d %i", path])
        .unwrap();
    let mut it = out.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// `(st_dev, st_ino)` of the file a process runs.
fn exe_inode(pid: u32) -> Option<(u64, u64)> {
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// The gpg home and a signing key for the test repository.
fn signing_key(work: &Path) -> (tempfile::TempDir, GpgHome, SigningKey) {
    // Short path: gpg-agent's socket lives in the home.
    let dir = tempfile::Builder::new()
        .prefix("pmsugpg")
        .tempdir()
        .unwrap();
    let gpg = GpgHome::new(dir.path()).unwrap();
    let key = gpg.generate_key("selfupdate", &work.join("keys")).unwrap();
    (dir, gpg, key)
}

/// A sandbox whose `patchman` repository (apt source / dnf repository id)
/// offers only X+1, with X installed from its package file.
struct Installed {
    sandbox: Sandbox,
    _http: HttpServer,
}

fn apt_setup(work: &Path, deb_x: &Path, deb_x1: &Path) -> Installed {
    let (_dir, gpg, key) = signing_key(work);
    let repos_root = work.join("repos");
    let repo = build_repo(
        &repos_root,
        &RepoSpec {
            name: "patchman",
            layout: RepoLayout::stable_main(),
            debs: &[deb_x1.to_path_buf()],
            key: Some(&key),
        },
        Some(&gpg),
        &native_arch().unwrap(),
    )
    .unwrap();
    drop(gpg);
    let sandbox = Sandbox::new().unwrap();
    let http = HttpServer::start(&repos_root).unwrap();
    sandbox
        .add_apt_repo("patchman", &repo, &http.url(), SourceFormat::List)
        .unwrap();
    let out = sandbox.install_debs(&[deb_x]).unwrap();
    eprintln!("dpkg -i {}:\n{}", deb_x.display(), text(&out));
    Installed {
        sandbox,
        _http: http,
    }
}

/// The sandbox's EL system has only a base package providing `/bin/sh` in
/// its rpm database, while the real package requires the C library and
/// `shadow-utils` as on a real AlmaLinux: register (`--justdb`) a package
/// providing exactly what `rpm` requires that nothing installed provides.
/// (The files themselves are the host's, under the sandbox's overlays.)
fn el_runtime_rpm(work: &Path, rpm: &Path) -> PathBuf {
    let private = work.join("rpm-host");
    let query = |what: &str| -> Vec<String> {
        let mut c = host_rpm_command("rpm", &private).unwrap();
        c.args(["-qp", what]).arg(rpm);
        cmd::stdout(&mut c)
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let provides = query("--provides");
    let mut spec = String::from(
        "Name: patchman-tests-el-runtime\nVersion: 8\nRelease: 1\n\
         Summary: what AlmaLinux 8's glibc, libgcc and shadow-utils provide, for the test\n\
         License: MIT\nBuildArch: noarch\nAutoReqProv: no\n",
    );
    for req in query("--requires") {
        if req.starts_with("rpmlib(") || provides.contains(&req) {
            continue;
        }
        // `name OP version` → `Provides: name = version`.
        let p = match req.split_whitespace().collect::<Vec<_>>()[..] {
            [name, _, version] => format!("{name} = {version}"),
            _ => req.clone(),
        };
        spec.push_str(&format!("Provides: {p}\n"));
    }
    spec.push_str("\n%description\nTest stand-in.\n\n%files\n");
    let dir = work.join("el-runtime");
    std::fs::create_dir_all(&dir).unwrap();
    let spec_file = dir.join("runtime.spec");
    std::fs::write(&spec_file, &spec).unwrap();
    let mut c = host_rpm_command("rpmbuild", &dir).unwrap();
    c.arg("--define")
        .arg(format!("_rpmdir {}", dir.join("out").display()))
        .args(["--quiet", "-bb"])
        .arg(&spec_file);
    cmd::output(&mut c).unwrap();
    dir.join("out/noarch/patchman-tests-el-runtime-8-1.noarch.rpm")
}

fn dnf_setup(work: &Path, rpm_x: &Path, rpm_x1: &Path) -> Installed {
    let (dir, gpg, key) = signing_key(work);
    let rpms = [rpm_x.to_path_buf(), rpm_x1.to_path_buf()];
    sign_rpms(dir.path(), &key, &rpms).unwrap();
    let key_file = work.join("keys/RPM-GPG-KEY-patchman-self-update");
    export_armored(dir.path(), &key, &key_file).unwrap();
    drop(gpg);
    let repos_root = work.join("repos");
    let repo = build_rpm_repo(&repos_root, "patchman", &rpms[1..], Some("selfupdate")).unwrap();
    let runtime = el_runtime_rpm(work, rpm_x);

    let sandbox = Sandbox::new().unwrap();
    let http = HttpServer::start(&repos_root).unwrap();
    sandbox
        .make_el(ElRelease::AlmaLinux8, el_fixture())
        .unwrap();
    let key_inside = "/etc/pki/rpm-gpg/RPM-GPG-KEY-patchman-self-update";
    sandbox.copy_in(&key_file, key_inside).unwrap();
    sandbox.run(&["rpm", "--import", key_inside]).unwrap();
    sandbox
        .write_file(
            "/etc/yum.repos.d/patchman.repo",
            format!(
                "[patchman]\nname=patchman\nbaseurl={}\nenabled=1\ngpgcheck=1\n\
                 gpgkey=file://{key_inside}\n",
                repo.base_url(&http.url())
            ),
        )
        .unwrap();
    let runtime_inside = "/var/tmp/patchman-tests-el-runtime.rpm";
    sandbox.copy_in(&runtime, runtime_inside).unwrap();
    sandbox
        .run(&["rpm", "-i", "--justdb", "--nodeps", runtime_inside])
        .unwrap();
    let out = sandbox.install_rpms(&[rpm_x]).unwrap();
    eprintln!("rpm -U {}:\n{}", rpm_x.display(), text(&out));
    Installed {
        sandbox,
        _http: http,
    }
}

/// The installed version of the client, from dpkg-query / rpm -q.
fn installed(family: Family, sandbox: &Sandbox) -> Option<String> {
    match family {
        Family::Apt => sandbox
            .dpkg_status(PACKAGE)
            .unwrap()
            .filter(|(s, _)| s == "install ok installed")
            .map(|(_, v)| v),
        Family::Dnf => sandbox.rpm_query(PACKAGE).unwrap(),
    }
}

fn self_update(family: Family) {
    let t_start = Instant::now();
    let host_before = host_package_state();
    let parent = profile_dir()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("patchman-tests");
    std::fs::create_dir_all(&parent).unwrap();
    let work = tempfile::Builder::new()
        .prefix(&format!("self-update-{}-", family.name()))
        .tempdir_in(&parent)
        .unwrap();

    // X and X+1 from the same binaries.
    let t0 = Instant::now();
    let built = build_packages(family, &[X, X1], &work.path().join("packages"));
    let (pkg_x, pkg_x1) = (&built[0], &built[1]);
    let build_time = t0.elapsed();

    // The sandbox, the signed repository with X+1, X installed.
    let t0 = Instant::now();
    let Installed { sandbox, _http } = match family {
        Family::Apt => apt_setup(work.path(), pkg_x, pkg_x1),
        Family::Dnf => dnf_setup(work.path(), pkg_x, pkg_x1),
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
        wait_until(SETTLE_WITHIN, || d
            .log()
            .contains("resumed_after_update=true")),
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

    assert_eq!(d.stop(Duration::from_secs(30)), Some(0));
    helper.shutdown();
    drop(helper);
    drop(sandbox);
    drop(_http);
    eprintln!(
        "{}: packages built in {:.1} s, sandbox with {X} installed in {:.1} s, \
         updated {:.1} s after the agent started, re-executed and confirmed after {:.1} s; \
         {:.1} s in all",
        family.name(),
        build_time.as_secs_f64(),
        setup_time.as_secs_f64(),
        update_time.as_secs_f64(),
        total.as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    assert_host_unchanged(&host_before);
}

#[test]
fn the_installed_apt_package_updates_itself_and_the_agent_runs_the_new_binary() {
    self_update(Family::Apt);
}

#[test]
fn the_installed_rpm_package_updates_itself_through_dnf_and_the_agent_runs_the_new_binary() {
    self_update(Family::Dnf);
}
