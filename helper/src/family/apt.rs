//! The apt family (Debian, Ubuntu): the vendor's eight steps, in order,
//! with the hardening of DESIGN.md. Each step is one function.
//!
//! 1. `apt-config dump` → the repository file and the archives directory.
//! 2. `apt-get update`, seeing only the patchman source.
//! 3. `apt-cache policy` (same restriction, binary caches off) → candidates.
//!    *Hardening*: `apt-get -s install` decides whether anything but our
//!    packages would change, before anything is downloaded.
//! 4. `apt-get -y -d install patchman-client=<candidate> …`.
//! 5. The file in the archives directory, verified (no links, root-owned,
//!    SHA-256 equal to apt's index, embedded name and version, newer) and
//!    copied into a root-only directory of this run.
//! 6. One `dpkg -i --force-confdef --force-confold` for all our files,
//!    under dpkg's frontend lock, which we hold.
//! 7. dpkg's output and exit status, then `dpkg-query` and `apt-get check`.
//! 8. (The agent restarts itself; the helper exits after answering.)

use std::cmp::Ordering;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patchman_shared::{
    Candidate, Change, CheckReport, Evr, Failure, Installed, Package, StatusReport, Step,
    UpdateReport, VerificationFailure,
};

use crate::exec::{Cmd, ExtraEnv, Output, Tool};
use crate::files::{self, FileError, PrivateDir};
use crate::lock;
use crate::parse::apt_config::{self, AptDirs};
use crate::parse::dpkg_deb::{self, DpkgInstallResult};
use crate::parse::dpkg_query::{self, DpkgQuery};
use crate::parse::{apt_policy, apt_show, apt_simulate};
use crate::probation::{self, Versions};
use crate::Helper;
use patchman_shared::version::deb as deb_version;

use super::{command_failed, internal, unexpected, Downgrade, Exits, Progress};

const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// Past this, a running `dpkg` is reported but never killed.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);

/// The query format `parse::dpkg_query` reads.
const DPKG_QUERY_FORMAT: &str = "${Package}\t${db:Status-Abbrev}\t${Version}\t${Status}\n";

// ---------------------------------------------------------------- helpers

/// The pid in apt's and dpkg's lock messages ("It is held by process
/// 1234", "locked by another process with pid 1234"), if any.
fn lock_holder(text: &str) -> Option<Option<u32>> {
    let line = text.lines().find(|l| {
        l.contains("Could not get lock")
            || l.contains("lock was locked by another process")
            || l.contains("Unable to acquire the dpkg frontend lock")
            || l.contains("Unable to lock the administration directory")
            || l.contains("Unable to lock directory")
    })?;
    let pid = ["held by process ", "another process with pid "]
        .iter()
        .find_map(|marker| line.split_once(marker))
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        });
    Some(pid)
}

/// `LockHeld`, with the holder's pid from the message or, failing that,
/// from the kernel's record of dpkg's locks.
fn lock_held(pid: Option<u32>) -> Failure {
    let pid = pid.or(
        match lock::probe_all(&[lock::DPKG_FRONTEND_LOCK, lock::DPKG_LOCK]) {
            patchman_shared::LockState::Held { pid } => pid,
            patchman_shared::LockState::Free => None,
        },
    );
    Failure::LockHeld { pid }
}

/// Another program's apt/dpkg lock named in a failed command's output.
pub(super) fn lock_in(out: &Output) -> Option<Failure> {
    lock_holder(&out.stderr).map(lock_held)
}

/// A step's command that must succeed.
fn run(h: &Helper, step: Step, cmd: &Cmd) -> Result<Output, Failure> {
    super::run(h, step, cmd, Exits::Success)
}

/// `name=version` as apt takes it on its command line.
fn pinned(p: Package, v: &Evr) -> String {
    format!("{}={v}", p.name())
}

/// The file name apt gives a downloaded package (':' in the version
/// becomes `%3a`).
pub fn archive_name(p: Package, v: &Evr, arch: &str) -> String {
    format!(
        "{}_{}_{arch}.deb",
        p.name(),
        v.to_string().replace(':', "%3a")
    )
}

/// The restriction of step 3's hardening, used from step 2 on: apt sees
/// only the patchman source, and keeps its binary caches in this run's
/// private directory, so the system's caches are never rewritten from that
/// partial view (and every call after the first reuses the cache instead of
/// parsing the indexes again). (`Dir::Etc::sourceparts=/dev/null` rather
/// than the vendor's `-`: apt reads `-` as a directory under /etc/apt, and
/// warns when it is missing; /dev/null is its own "none".)
struct Restriction {
    source: PathBuf,
    cache_dir: PathBuf,
}

impl Restriction {
    fn args(&self) -> Vec<OsString> {
        let opt = |key: &str, value: &Path| {
            let mut o = OsString::from(key);
            o.push(value.as_os_str());
            o
        };
        vec![
            "-o".into(),
            opt("Dir::Etc::sourcelist=", &self.source),
            "-o".into(),
            "Dir::Etc::sourceparts=/dev/null".into(),
            "-o".into(),
            opt(
                "Dir::Cache::pkgcache=",
                &self.cache_dir.join("pkgcache.bin"),
            ),
            "-o".into(),
            opt(
                "Dir::Cache::srcpkgcache=",
                &self.cache_dir.join("srcpkgcache.bin"),
            ),
        ]
    }
}

// ------------------------------------------------------- installed state

/// `dpkg-query -W` of our two packages. Exit 1 only means one of them is
/// unknown to dpkg.
fn query_installed(h: &Helper, step: Step) -> Result<DpkgQuery, Failure> {
    let cmd = Cmd::new(Tool::DpkgQuery, QUERY_TIMEOUT)
        .args(["-W", "-f", DPKG_QUERY_FORMAT])
        .args(Package::ALL.map(|p| p.name()));
    let out = super::run(h, step, &cmd, Exits::Among(&[0, 1]))?;
    dpkg_query::parse(&out.stdout).map_err(|e| unexpected(step, e))
}

fn installed(q: &DpkgQuery, p: Package) -> Option<Installed> {
    let record = q.get(p).filter(|r| r.is_present())?;
    Some(Installed {
        evr: record.version.clone()?,
        complete: record.is_installed(),
    })
}

pub fn status(h: &Helper) -> Result<StatusReport, Failure> {
    let q = query_installed(h, Step::Confirm)?;
    Ok(StatusReport {
        family: h.family,
        client: installed(&q, Package::Client),
        realtime: installed(&q, Package::Realtime),
        lock: lock::probe_all(&[lock::DPKG_FRONTEND_LOCK, lock::DPKG_LOCK]),
        helper_version: crate::VERSION.to_string(),
        rollback: Default::default(),
    })
}

/// Takes dpkg's frontend lock, waiting at most the configured bound.
fn take_frontend_lock(h: &Helper) -> Result<lock::HeldLock, Failure> {
    lock::acquire(Path::new(lock::DPKG_FRONTEND_LOCK), h.config().lock_wait).map_err(|e| match e {
        lock::LockError::Held { pid } => Failure::LockHeld { pid },
        lock::LockError::Open(e) => internal(format!("opening {}: {e}", lock::DPKG_FRONTEND_LOCK)),
    })
}

/// Before anything else: an install of ours that an earlier run left
/// interrupted (dpkg killed, power lost: `iU`, `iF`, triggers pending) is
/// finished with `dpkg --configure`. Returns the packages it finished.
fn finish_interrupted(
    h: &Helper,
    q: &DpkgQuery,
    progress: &mut Progress<'_>,
) -> Result<Vec<Change>, Failure> {
    let stuck: Vec<(Package, Evr)> = Package::ALL
        .into_iter()
        .filter_map(|p| {
            let r = q.get(p)?;
            (r.is_interrupted() && r.is_present()).then(|| Some((p, r.version.clone()?)))?
        })
        .collect();
    if stuck.is_empty() {
        return Ok(Vec::new());
    }
    progress(Step::FinishInterrupted);
    let _lock = take_frontend_lock(h)?;
    let cmd = Cmd::new(Tool::Dpkg, INSTALL_TIMEOUT)
        .args(["--configure", "--force-confdef", "--force-confold"])
        .args(stuck.iter().map(|(p, _)| p.name()))
        .env(ExtraEnv::DpkgFrontendLocked)
        .never_kill();
    run(h, Step::FinishInterrupted, &cmd)?;
    Ok(stuck
        .into_iter()
        .map(|(package, v)| Change {
            package,
            from: v.clone(),
            to: v,
        })
        .collect())
}

// ------------------------------------------------------------ the steps

/// Step 1: `apt-config dump` → where the repository file and archives are.
fn read_apt_config(h: &Helper, progress: &mut Progress<'_>) -> Result<(AptDirs, PathBuf), Failure> {
    progress(Step::ReadAptConfig);
    let out = run(
        h,
        Step::ReadAptConfig,
        &Cmd::new(Tool::AptConfig, QUERY_TIMEOUT).arg("dump"),
    )?;
    let dirs =
        apt_config::parse_dirs(&out.stdout).map_err(|e| unexpected(Step::ReadAptConfig, e))?;
    let repository = h.config().repository;
    for ext in ["list", "sources"] {
        let file = dirs.sourceparts.join(format!("{repository}.{ext}"));
        if std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file()) {
            return Ok((dirs, file));
        }
    }
    Err(Failure::RepositoryMissing {
        repository: repository.to_string(),
    })
}

/// Step 2: refresh the metadata of the patchman source only.
fn refresh_metadata(
    h: &Helper,
    source: &Restriction,
    progress: &mut Progress<'_>,
) -> Result<(), Failure> {
    progress(Step::RefreshMetadata);
    let cmd = Cmd::new(Tool::AptGet, h.config().refresh_timeout)
        .arg("update")
        .args(source.args())
        .args(["-o", "APT::Get::List-Cleanup=0"]);
    let out = run(h, Step::RefreshMetadata, &cmd)?;
    // apt-get update exits 0 when a source could not be fetched, and then
    // works from the old index: that is a failure here.
    if let Some(line) = out.stderr.lines().find(|l| {
        l.starts_with("E:")
            || l.starts_with("W: Failed to fetch")
            || l.starts_with("W: Some index files failed")
    }) {
        return Err(Failure::CommandFailed {
            step: Step::RefreshMetadata,
            exit_code: out.code(),
            excerpt: crate::parse::sanitize_excerpt(line, crate::parse::MAX_EXCERPT),
        });
    }
    Ok(())
}

/// Step 3: `apt-cache policy` → for each installed package of ours, the
/// candidate if it is newer and comes from the patchman source.
fn query_candidates(
    h: &Helper,
    source: &Restriction,
    installed: &[(Package, Evr)],
    progress: &mut Progress<'_>,
) -> Result<Vec<Candidate>, Failure> {
    progress(Step::QueryCandidate);
    let cmd = Cmd::new(Tool::AptCache, QUERY_TIMEOUT)
        .args(source.args())
        .arg("policy")
        .args(installed.iter().map(|(p, _)| p.name()));
    let out = run(h, Step::QueryCandidate, &cmd)?;
    let policy = apt_policy::parse(&out.stdout).map_err(|e| unexpected(Step::QueryCandidate, e))?;
    let mut result = Vec::new();
    for (package, current) in installed {
        let candidate = match policy.get(*package) {
            None => None,
            Some(pp) => match &pp.candidate {
                Some(c) if deb_version::compare(c, current) == Ordering::Greater => {
                    // Only the patchman source and dpkg's status file are
                    // visible: a newer candidate must be offered by a URI.
                    let from_repository = pp
                        .candidate_row()
                        .is_some_and(|row| row.sources.iter().any(|s| s.uri().contains(':')));
                    if !from_repository {
                        return Err(Failure::WrongSource { package: *package });
                    }
                    Some(c.clone())
                }
                _ => None,
            },
        };
        result.push(Candidate {
            package: *package,
            installed: current.clone(),
            candidate,
        });
    }
    Ok(result)
}

/// Hardening: would installing exactly these versions change anything but
/// our packages? Decided by apt's own resolver before any download.
fn check_dependencies(
    h: &Helper,
    source: &Restriction,
    targets: &[(Package, Evr, Evr)],
    progress: &mut Progress<'_>,
) -> Result<(), Failure> {
    progress(Step::CheckDependencies);
    let cmd = Cmd::new(Tool::AptGet, QUERY_TIMEOUT)
        .args(["-s", "install"])
        .args(source.args())
        // A simulation plans a dpkg run, and apt logs every plan to
        // /var/log/apt/eipp.log.xz (xz of the whole state: most of the
        // command's time). Nothing is run, so nothing needs logging.
        .args(["-o", "Dir::Log::Planner=/dev/null"])
        .args(targets.iter().map(|(p, _, to)| pinned(*p, to)));
    let out = super::run(h, Step::CheckDependencies, &cmd, Exits::Any)?;
    let manual = format!(
        "apt-get install {}",
        targets
            .iter()
            .map(|(p, _, _)| p.name())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let sim = match apt_simulate::parse(&out.stdout) {
        Ok(sim) => sim,
        Err(_) if !out.success() => {
            return Err(Failure::DependencyProblem {
                detail: out.excerpt(crate::parse::MAX_EXCERPT),
                command: manual,
            })
        }
        Err(e) => return Err(unexpected(Step::CheckDependencies, e)),
    };
    let mut problems = Vec::new();
    for other in sim.others() {
        problems.push(format!("the update would also change {other}"));
    }
    // One of ours that is not a target (realtime where it is not
    // installed, pulled in by a new dependency) is refused too: it is
    // never installed here, and `dpkg -i` of the client alone would then
    // stop half-way on the missing dependency.
    let ours_planned = sim
        .installs
        .iter()
        .map(|i| i.name.as_str())
        .chain(sim.configures.iter().map(String::as_str));
    for name in ours_planned {
        if let Some(p) = Package::from_name(name) {
            if !targets.iter().any(|(t, _, _)| *t == p) {
                problems.push(format!("the update would also install {name}"));
            }
        }
    }
    for unmet in &sim.unmet {
        problems.push(format!("unmet dependency: {unmet}"));
    }
    for removed in &sim.removes {
        if Package::from_name(removed).is_some() {
            problems.push(format!("the update would remove {removed}"));
        }
    }
    if problems.is_empty() && !out.success() {
        problems.push(out.excerpt(crate::parse::MAX_EXCERPT));
    }
    for (p, _, to) in targets {
        if problems.is_empty() && sim.install_of(*p).map(|i| &i.new) != Some(to) {
            problems.push(format!("apt would not install {} {to}", p.name()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::DependencyProblem {
            detail: problems.join("; "),
            command: manual,
        })
    }
}

/// Step 4: download exactly the candidates into apt's archives directory.
fn download(
    h: &Helper,
    source: &Restriction,
    targets: &[(Package, Evr, Evr)],
    expect: Expect,
    progress: &mut Progress<'_>,
) -> Result<(), Failure> {
    progress(Step::Download);
    let wait = h.config().lock_wait.as_secs().to_string();
    // The way back is the installed version itself: apt downloads it only
    // as a reinstall.
    let reinstall = (expect == Expect::Installed).then_some("--reinstall");
    let cmd = Cmd::new(Tool::AptGet, DOWNLOAD_TIMEOUT)
        .args(["-y", "-d"])
        .args(reinstall)
        .arg("install")
        .args(source.args())
        .args(["-o".to_string(), format!("DPkg::Lock::Timeout={wait}")])
        .args(targets.iter().map(|(p, _, to)| pinned(*p, to)));
    run(h, Step::Download, &cmd)?;
    Ok(())
}

/// What a downloaded file's version must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// An update: newer than installed.
    Newer,
    /// The way back (issue 12): exactly the installed version.
    Installed,
}

/// `dpkg-deb --field` of `path`: refused unless it embeds exactly
/// `package` `version` (and `architecture`, when given).
fn verify_fields(
    h: &Helper,
    package: Package,
    version: &Evr,
    architecture: Option<&str>,
    path: &Path,
) -> Result<(), Failure> {
    let cmd = Cmd::new(Tool::DpkgDeb, QUERY_TIMEOUT)
        .arg("--field")
        .arg(path)
        .args(["Package", "Version", "Architecture"]);
    let out = run(h, Step::Verify, &cmd)?;
    let fields = dpkg_deb::parse_fields(&out.stdout).map_err(|e| unexpected(Step::Verify, e))?;
    let arch_ok = architecture.is_none_or(|a| fields.architecture == a);
    if fields.package != package.name() || &fields.version != version || !arch_ok {
        return Err(Failure::Verification {
            package,
            reason: VerificationFailure::MetadataMismatch {
                expected: format!(
                    "{} {version} {}",
                    package.name(),
                    architecture.unwrap_or("(any)")
                ),
                found: format!(
                    "{} {} {}",
                    fields.package, fields.version, fields.architecture
                ),
            },
        });
    }
    Ok(())
}

/// The rollback's check of a kept file before it is installed again.
pub fn verify_embedded(
    h: &Helper,
    package: Package,
    version: &Evr,
    path: &Path,
) -> Result<(), Failure> {
    verify_fields(h, package, version, None, path)
}

/// Step 5: find each downloaded file and verify it; returns the verified
/// copies in the run's private directory.
fn locate_and_verify(
    h: &Helper,
    source: &Restriction,
    archives: &Path,
    targets: &[(Package, Evr, Evr)],
    private: &PrivateDir,
    expect: Expect,
    progress: &mut Progress<'_>,
) -> Result<Vec<PathBuf>, Failure> {
    progress(Step::LocateFile);
    let mut copies = Vec::new();
    let mut records = Vec::new();
    for (package, _, to) in targets {
        let cmd = Cmd::new(Tool::AptCache, QUERY_TIMEOUT)
            .args(source.args())
            .arg("show")
            .arg(pinned(*package, to));
        let out = run(h, Step::LocateFile, &cmd)?;
        let shown = apt_show::parse(&out.stdout).map_err(|e| unexpected(Step::LocateFile, e))?;
        let mut matching = shown
            .into_iter()
            .filter(|r| r.package == package.name() && &r.version == to);
        let record = matching.next().ok_or(Failure::Verification {
            package: *package,
            reason: VerificationFailure::Missing,
        })?;
        // Two different files for one version: which one is ours?
        if matching.any(|other| other.sha256 != record.sha256) {
            return Err(Failure::Verification {
                package: *package,
                reason: VerificationFailure::ChecksumMismatch,
            });
        }
        records.push(record);
    }
    progress(Step::Verify);
    for ((package, from, to), record) in targets.iter().zip(&records) {
        let refuse = |reason| Failure::Verification {
            package: *package,
            reason,
        };
        let name = archive_name(*package, to, &record.architecture);
        let copy = files::copy_verified(archives, &name, private).map_err(|e| match e {
            FileError::Refused(reason) => refuse(reason),
            other => internal(other),
        })?;
        if copy.sha256 != record.sha256.0 || copy.size != record.size {
            return Err(refuse(VerificationFailure::ChecksumMismatch));
        }
        verify_fields(h, *package, to, Some(&record.architecture), &copy.path)?;
        let wanted = match expect {
            Expect::Newer => Ordering::Greater,
            Expect::Installed => Ordering::Equal,
        };
        if deb_version::compare(to, from) != wanted {
            return Err(refuse(VerificationFailure::NotNewer {
                installed: from.clone(),
                offered: to.clone(),
            }));
        }
        copies.push(copy.path);
    }
    Ok(copies)
}

/// Steps 6 and 7: one `dpkg -i` for every file, under our frontend lock;
/// then its output, `dpkg-query` and `apt-get check`.
fn install_and_confirm(
    h: &Helper,
    source: &Restriction,
    targets: &[(Package, Evr, Evr)],
    copies: &[PathBuf],
    progress: &mut Progress<'_>,
) -> Result<(), Failure> {
    progress(Step::Install);
    let lock = take_frontend_lock(h)?;
    // Under the lock, what is installed must still be what the plan was
    // made for (a person or unattended-upgrades may have run meanwhile).
    let now = query_installed(h, Step::Install)?;
    let unchanged = targets.iter().all(|(p, from, _)| {
        now.get(*p)
            .filter(|r| r.is_present())
            .and_then(|r| r.version.as_ref())
            == Some(from)
    });
    if !unchanged {
        return Err(internal(
            "the installed packages changed while this update ran (another package operation); nothing was installed, the next run starts over",
        ));
    }
    let wanted: Vec<(Package, Evr)> = targets.iter().map(|(p, _, to)| (*p, to.clone())).collect();
    // Never a downgrade, whatever happened since the checks.
    dpkg_install(
        h,
        source,
        lock,
        &wanted,
        copies,
        Downgrade::Refuse,
        progress,
    )
}

/// One `dpkg -i` of `copies` under our frontend `lock`, then its output,
/// `dpkg-query` (exactly `wanted`, installed) and `apt-get check`.
fn dpkg_install(
    h: &Helper,
    source: &Restriction,
    lock: lock::HeldLock,
    wanted: &[(Package, Evr)],
    copies: &[PathBuf],
    downgrade: Downgrade,
    progress: &mut Progress<'_>,
) -> Result<(), Failure> {
    let refuse = (downgrade == Downgrade::Refuse).then_some("--refuse-downgrade");
    let cmd = Cmd::new(Tool::Dpkg, INSTALL_TIMEOUT)
        .arg("-i")
        .args(refuse)
        .args(["--force-confdef", "--force-confold"])
        .args(copies)
        .env(ExtraEnv::DpkgFrontendLocked)
        .never_kill();
    let out = super::run(h, Step::Install, &cmd, Exits::Any)?;
    let result = dpkg_deb::classify_install(out.code(), &out.stdout, &out.stderr);
    match result.result {
        DpkgInstallResult::Success if !out.timed_out => {}
        DpkgInstallResult::LockHeld { pid } => return Err(lock_held(pid)),
        _ => return Err(command_failed(Step::Install, &out, result.excerpt)),
    }
    progress(Step::Confirm);
    let q = query_installed(h, Step::Confirm)?;
    for (package, to) in wanted {
        let ok = q
            .get(*package)
            .is_some_and(|r| r.is_installed() && r.version.as_ref() == Some(to));
        if !ok {
            return Err(unexpected(
                Step::Confirm,
                format!(
                    "dpkg-query does not show {} {to} as 'install ok installed'",
                    package.name()
                ),
            ));
        }
    }
    // `apt-get check` takes the frontend lock itself: release ours first.
    drop(lock);
    let cmd = Cmd::new(Tool::AptGet, QUERY_TIMEOUT)
        .args(source.args())
        .arg("check");
    run(h, Step::Confirm, &cmd)?;
    Ok(())
}

/// The rollback (issue 12): one `dpkg -i` of the kept files, to exactly
/// `target`, confirmed like an update. Decided by
/// [`crate::probation::run_due`] from the helper's own record only.
pub fn install_exact(h: &Helper, target: &Versions, files: &[PathBuf]) -> Result<(), Failure> {
    let mut quiet = |_| {};
    let (_, source) = read_apt_config(h, &mut quiet)?;
    let private = PrivateDir::create(Path::new(files::PRIVATE_BASE)).map_err(internal)?;
    let source = Restriction {
        source,
        cache_dir: private.path().to_path_buf(),
    };
    let lock = take_frontend_lock(h)?;
    let wanted: Vec<(Package, Evr)> = target.iter().map(|(p, v)| (*p, v.clone())).collect();
    dpkg_install(
        h,
        &source,
        lock,
        &wanted,
        files,
        Downgrade::RollBack,
        &mut quiet,
    )
}

/// The installed versions of ours, and whether all are complete.
pub fn installed_versions(h: &Helper) -> Result<(Versions, bool), Failure> {
    let q = query_installed(h, Step::Confirm)?;
    let mut complete = true;
    let mut versions = Versions::new();
    for p in Package::ALL {
        if let Some(i) = installed(&q, p) {
            complete &= i.complete;
            versions.insert(p, i.evr);
        }
    }
    Ok((versions, complete))
}

/// The way back: the installed versions downloaded pinned and verified as
/// a new package would be, except that each must equal the installed one.
fn fetch_installed(
    h: &Helper,
    source: &Restriction,
    archives: &Path,
    missing: &[(Package, Evr)],
    private: &PrivateDir,
) -> Result<Vec<(Package, Evr, PathBuf)>, Failure> {
    let mut quiet = |_| {};
    let targets: Vec<(Package, Evr, Evr)> = missing
        .iter()
        .map(|(p, v)| (*p, v.clone(), v.clone()))
        .collect();
    download(h, source, &targets, Expect::Installed, &mut quiet)?;
    let copies = locate_and_verify(
        h,
        source,
        archives,
        &targets,
        private,
        Expect::Installed,
        &mut quiet,
    )?;
    Ok(missing
        .iter()
        .cloned()
        .zip(copies)
        .map(|((p, v), f)| (p, v, f))
        .collect())
}

// ------------------------------------------------------ the procedures

/// What is installed of ours, complete enough to update.
fn installed_targets(q: &DpkgQuery) -> Result<Vec<(Package, Evr)>, Failure> {
    let client = q
        .get(Package::Client)
        .filter(|r| r.is_present())
        .and_then(|r| r.version.clone())
        .ok_or(Failure::NotInstalled)?;
    let mut out = vec![(Package::Client, client)];
    // The realtime package only where it is already installed.
    if let Some(v) = q
        .get(Package::Realtime)
        .filter(|r| r.is_present())
        .and_then(|r| r.version.clone())
    {
        out.push((Package::Realtime, v));
    }
    Ok(out)
}

/// Steps 1–3, shared by `Check` and `Update`, for what `q` says is installed.
fn candidates(
    h: &Helper,
    q: &DpkgQuery,
    progress: &mut Progress<'_>,
) -> Result<(AptDirs, Restriction, PrivateDir, Vec<Candidate>, bool), Failure> {
    let installed = installed_targets(q)?;
    let (dirs, source) = read_apt_config(h, progress)?;
    let private = PrivateDir::create(Path::new(files::PRIVATE_BASE)).map_err(internal)?;
    let source = Restriction {
        source,
        cache_dir: private.path().to_path_buf(),
    };
    // At most once per `[updates] refresh_interval`: in between, the
    // lists apt fetched last (root's own `apt-get update` would otherwise
    // fail on the lists lock while an agent loops `Check`).
    let repository = h.config().repository;
    let attempt = h
        .refresh
        .begin(repository.as_str(), h.config().refresh_interval);
    let refreshed = attempt.is_some();
    if let Some(attempt) = attempt {
        refresh_metadata(h, &source, progress)?;
        attempt.succeeded();
    }
    let candidates = query_candidates(h, &source, &installed, progress)?;
    Ok((dirs, source, private, candidates, refreshed))
}

pub fn check(h: &Helper, progress: &mut Progress<'_>) -> Result<CheckReport, Failure> {
    let q = query_installed(h, Step::QueryCandidate)?;
    let (_, _, _private, packages, refreshed) = candidates(h, &q, progress)?;
    Ok(super::check_report(h, packages, refreshed))
}

pub fn update(h: &Helper, progress: &mut Progress<'_>) -> Result<UpdateReport, Failure> {
    let mut q = query_installed(h, Step::FinishInterrupted)?;
    installed_targets(&q)?;
    let mut changes = finish_interrupted(h, &q, progress)?;
    if !changes.is_empty() {
        q = query_installed(h, Step::FinishInterrupted)?;
    }
    let (dirs, source, private, candidates, _) = candidates(h, &q, progress)?;
    let targets: Vec<(Package, Evr, Evr)> = candidates
        .into_iter()
        .filter_map(|c| Some((c.package, c.installed, c.candidate?)))
        .collect();
    if targets.is_empty() {
        let restarting = !changes.is_empty();
        return Ok(UpdateReport {
            changes,
            helper_restarting: restarting,
        });
    }
    check_dependencies(h, &source, &targets, progress)?;
    let (before, _) = installed_versions(h)?;
    let way_back = probation::prepare(h, &before, &private, &mut |missing| {
        fetch_installed(h, &source, &dirs.archives, missing, &private)
    });
    download(h, &source, &targets, Expect::Newer, progress)?;
    let copies = locate_and_verify(
        h,
        &source,
        &dirs.archives,
        &targets,
        &private,
        Expect::Newer,
        progress,
    )?;
    install_and_confirm(h, &source, &targets, &copies, progress)?;
    let mut after = before;
    let mut installed_files = Vec::new();
    for ((p, _, to), copy) in targets.iter().zip(&copies) {
        after.insert(*p, to.clone());
        installed_files.push((*p, to.clone(), copy.clone()));
    }
    probation::begin(h, way_back, &after, &installed_files);
    progress(Step::Cleanup);
    drop(private);
    changes.extend(
        targets
            .into_iter()
            .map(|(package, from, to)| Change { package, from, to }),
    );
    Ok(UpdateReport {
        changes,
        helper_restarting: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_escape_the_epoch_colon() {
        let v = Evr::parse("1:1.2.7-1").unwrap();
        assert_eq!(
            archive_name(Package::Client, &v, "all"),
            "patchman-client_1%3a1.2.7-1_all.deb"
        );
        let v = Evr::parse("1.7.1-1").unwrap();
        assert_eq!(
            archive_name(Package::Realtime, &v, "amd64"),
            "patchman-client-realtime_1.7.1-1_amd64.deb"
        );
    }

    #[test]
    fn lock_messages_of_apt_and_dpkg_are_recognised() {
        let apt = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (python3)\nE: Unable to acquire the dpkg frontend lock";
        assert_eq!(lock_holder(apt), Some(Some(4242)));
        let dpkg = "dpkg: error: dpkg frontend lock was locked by another process with pid 77\nNote: removing the lock file is always wrong";
        assert_eq!(lock_holder(dpkg), Some(Some(77)));
        assert_eq!(
            lock_holder("E: Could not get lock /var/lib/apt/lists/lock"),
            Some(None)
        );
        assert_eq!(lock_holder("E: Unable to locate package"), None);
        let admin = "E: Unable to lock the administration directory (/var/lib/dpkg/), is another process using it?";
        assert_eq!(lock_holder(admin), Some(None));
        let timeout = "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?";
        assert_eq!(lock_holder(timeout), Some(None));
    }

    #[test]
    fn restriction_names_only_our_source() {
        let args = Restriction {
            source: PathBuf::from("/etc/apt/sources.list.d/patchman.list"),
            cache_dir: PathBuf::from("/var/cache/patchman-helper/run-1-0"),
        }
        .args();
        let text: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            text,
            [
                "-o",
                "Dir::Etc::sourcelist=/etc/apt/sources.list.d/patchman.list",
                "-o",
                "Dir::Etc::sourceparts=/dev/null",
                "-o",
                "Dir::Cache::pkgcache=/var/cache/patchman-helper/run-1-0/pkgcache.bin",
                "-o",
                "Dir::Cache::srcpkgcache=/var/cache/patchman-helper/run-1-0/srcpkgcache.bin"
            ]
        );
    }
}
