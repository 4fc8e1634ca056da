//! The INSTALLED updater in a sandbox, run as systemd would run it: the
//! helper restarted whenever it exits (as its socket would start it again)
//! and the agent's daemon as `patchman`, each with its log collected. Used
//! by the self-update and rollback tests.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::daemon::Daemon;
use crate::sandbox::apt_repo::{
    build_repo, native_arch, GpgHome, RepoLayout, RepoSpec, SigningKey,
};
use crate::sandbox::el::{ElRelease, ElSandbox};
use crate::sandbox::rpm::{export_armored, host_rpm_command, sign_rpms};
use crate::sandbox::rpm_repo::build_rpm_repo;
use crate::sandbox::{HttpServer, SourceFormat};
use crate::{cmd, el_fixture, packages, Sandbox};

pub const HELPER: &str = "/usr/sbin/patchman-helper";
pub const AGENT: &str = "/usr/bin/patchman-agent";
pub const USER: &str = "patchman";
pub const PACKAGE: &str = "patchman-client";
/// The versions the installed-package tiers build: the one installed at
/// the start, and the one published.
pub const X: &str = "1.7.0-1";
pub const X1: &str = "1.7.1-1";
/// The packages' configuration file.
pub const CONFIG_PATH: &str = "/etc/patchman/patchman.ini";
/// No check for an hour after a (re)start or reload, and no jitter: the
/// test decides when the helper is asked.
pub const QUIET_CONFIG: &str = "[updates]\nrepository = patchman\ninterval = 1h\njitter = 0s\n";
pub const AGENT_UNIT: &str = "patchman-agent.service";
/// Generous bounds: a loaded 2-core CI machine runs several sandboxes.
pub const UPDATE_WITHIN: Duration = Duration::from_secs(90);
pub const SETTLE_WITHIN: Duration = Duration::from_secs(60);

/// The helper as systemd's socket would run it: started again (here at
/// once) whenever it exits, e.g. after the update that replaced it.
pub struct HelperSupervisor {
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
    pub fn start(sandbox: &Sandbox, log: PathBuf) -> HelperSupervisor {
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

    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    pub fn starts(&self) -> u32 {
        self.starts.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn shutdown(&mut self) {
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

/// How long the installed daemon may take to exit on SIGTERM.
pub const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Starts the installed agent's daemon, `/usr/bin/patchman-agent run`, as
/// `patchman`, as its unit would; returns once the pid runs the agent
/// (setpriv execs it in place), which must happen within 20 s.
pub fn start_daemon(sandbox: &Sandbox) -> Daemon {
    let child = sandbox.spawn_as(USER, &[AGENT, "run"]).unwrap();
    Daemon::started(child, Duration::from_secs(20), |pid| {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == Path::new(AGENT))
    })
}

/// `(st_dev, st_ino)` of a path inside the sandbox, by `stat` run there.
pub fn inode_inside(sandbox: &Sandbox, path: &str) -> (u64, u64) {
    let out = sandbox
        .run_stdout(&["stat", "-L", "-c", "%d %i", path])
        .unwrap();
    let mut it = out.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// `(st_dev, st_ino)` of the file a process runs.
pub fn exe_inode(pid: u32) -> Option<(u64, u64)> {
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// The gpg home and a signing key for the test repository.
pub fn signing_key(work: &Path) -> (tempfile::TempDir, GpgHome, SigningKey) {
    // Short path: gpg-agent's socket lives in the home.
    let dir = tempfile::Builder::new()
        .prefix("pmsugpg")
        .tempdir()
        .unwrap();
    let gpg = GpgHome::new(dir.path()).unwrap();
    let key = gpg.generate_key("selfupdate", &work.join("keys")).unwrap();
    (dir, gpg, key)
}

/// `deb` unpacked (`dpkg-deb -R`) into `<out>/tree`, changed by `edit`
/// (given that tree), its `DEBIAN/md5sums` renewed (conffiles, under
/// `/etc`, are not listed there), and built again as `<out>/<deb's file
/// name>`, which is returned; the tree is removed.
pub fn repack_deb(deb: &Path, out: &Path, edit: impl FnOnce(&Path)) -> PathBuf {
    let tree = out.join("tree");
    std::fs::create_dir_all(out).unwrap();
    cmd::output(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree)).unwrap();
    edit(&tree);
    cmd::output(
        Command::new("sh")
            .arg("-c")
            .arg(
                "cd \"$1\" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -print \
                 | sed 's|^\\./||' | LC_ALL=C sort | xargs md5sum >DEBIAN/md5sums",
            )
            .arg("sh")
            .arg(&tree),
    )
    .unwrap();
    let file = out.join(deb.file_name().unwrap());
    cmd::output(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "-b"])
            .arg(&tree)
            .arg(&file),
    )
    .unwrap();
    std::fs::remove_dir_all(&tree).unwrap();
    file
}

/// The two families of the packaged tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Apt,
    Dnf,
}

impl Family {
    pub fn format(self) -> packages::Format {
        match self {
            Family::Apt => packages::Format::Deb,
            Family::Dnf => packages::Format::Rpm,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Apt => "apt",
            Family::Dnf => "dnf",
        }
    }
}

/// A sandbox whose `patchman` repository (apt source / dnf repository id)
/// offers the published packages, with one installed from its file.
pub struct Installed {
    pub sandbox: Sandbox,
    pub http: HttpServer,
}

/// apt: `published` in a signed repository, `deb_x` installed with `dpkg -i`.
pub fn apt_setup(work: &Path, deb_x: &Path, published: &[PathBuf]) -> Installed {
    let (_dir, gpg, key) = signing_key(work);
    let repos_root = work.join("repos");
    let repo = build_repo(
        &repos_root,
        &RepoSpec {
            name: "patchman",
            layout: RepoLayout::stable_main(),
            debs: published,
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
    eprintln!("dpkg -i {}:\n{}", deb_x.display(), cmd::output_text(&out));
    Installed { sandbox, http }
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

/// dnf (AlmaLinux 8): `published` signed in a repository with gpgcheck,
/// `rpm_x` (signed too) installed with `rpm -U`.
pub fn dnf_setup(work: &Path, rpm_x: &Path, published: &[PathBuf]) -> Installed {
    let (dir, gpg, key) = signing_key(work);
    let mut rpms = vec![rpm_x.to_path_buf()];
    rpms.extend(published.iter().filter(|p| p.as_path() != rpm_x).cloned());
    sign_rpms(dir.path(), &key, &rpms).unwrap();
    let key_file = work.join("keys/RPM-GPG-KEY-patchman-self-update");
    export_armored(dir.path(), &key, &key_file).unwrap();
    drop(gpg);
    let repos_root = work.join("repos");
    let repo = build_rpm_repo(&repos_root, "patchman", published, Some("selfupdate")).unwrap();
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
    eprintln!("rpm -U {}:\n{}", rpm_x.display(), cmd::output_text(&out));
    Installed { sandbox, http }
}

/// The installed version of the client, from dpkg-query / rpm -q.
pub fn installed(family: Family, sandbox: &Sandbox) -> Option<String> {
    match family {
        Family::Apt => sandbox
            .dpkg_status(PACKAGE)
            .unwrap()
            .filter(|(s, _)| s == "install ok installed")
            .map(|(_, v)| v),
        Family::Dnf => sandbox.rpm_query(PACKAGE).unwrap(),
    }
}

/// A fresh work directory for one test, beside the test binaries (their
/// file system has the room), removed when dropped.
pub fn work_dir(prefix: &str) -> tempfile::TempDir {
    let parent = crate::profile_dir()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("patchman-tests");
    std::fs::create_dir_all(&parent).unwrap();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .unwrap()
}

/// [`crate::attack_support::wait_until`] every 100 ms: the installed-package
/// tiers' checks mostly start a package query, and their waits are of
/// seconds.
pub fn wait_until(within: Duration, f: impl FnMut() -> bool) -> bool {
    crate::attack_support::wait_until_every(Duration::from_millis(100), within, f)
}
