//! The dnf (EL 8+) and yum (EL 6/7) families: the vendor's six steps, in
//! order, with the hardening of DESIGN.md. The two tools take the same
//! command lines; only the name (and dnf's `--verbose`) differs.
//!
//! 1. `<tool> clean all --disablerepo="*" --enablerepo="<repository>"`.
//! 2. `<tool> install -y --downloadonly --downloaddir=<dir> [--verbose]
//!    --disablerepo="*" --enablerepo="<repository>" patchman-client […]`
//!    into a fresh root-only directory of this run; nothing downloaded for
//!    our package: up to date.
//! 3. The file names from that output, cross-checked with the directory.
//! 4. `rpm -U <files>`: one transaction for both packages.
//! 5. rpm's output and exit status, then `rpm -q`.
//! 6. (The agent restarts itself; the helper exits after answering.)
//!
//! Before step 4 every file is checked: regular, root-owned, in our
//! directory; `rpm -qp` names exactly our package at a version newer than
//! installed (rpm's ordering); `rpmkeys --checksig` trusts its signature
//! where the repository has `gpgcheck` on (rpm's own default check of a
//! file given on the command line is digests only).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patchman_shared::version::rpm as rpm_version;
use patchman_shared::{
    Candidate, Change, CheckReport, Evr, Failure, Family, Installed, Package, StatusReport, Step,
    UpdateReport, VerificationFailure,
};

use crate::exec::{Cmd, Output, Tool};
use crate::files::{self, FileError, PrivateDir};
use crate::lock;
use crate::parse::rpm_install::{self, RpmInstallResult};
use crate::parse::rpm_query::{self, RpmPackage, RpmQuery};
use crate::parse::{check_update, dnf, rpmkeys, yum, MAX_EXCERPT};
use crate::probation::{self, Versions};
use crate::Helper;

use super::{internal, unexpected, Progress};

const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
const CLEAN_TIMEOUT: Duration = Duration::from_secs(120);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// Past this, a running `rpm -U` is reported but never killed.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where yum and dnf read repository definitions.
const REPOS_DIR: &str = "/etc/yum.repos.d";
const MAX_REPO_FILES: usize = 200;

fn tool(h: &Helper) -> Tool {
    match h.family {
        Family::Yum => Tool::Yum,
        _ => Tool::Dnf,
    }
}

/// `--disablerepo=* --enablerepo=<repository>`: our package can come only
/// from the patchman repository, and no other repository is loaded.
fn only_our_repository(h: &Helper) -> [String; 2] {
    [
        "--disablerepo=*".to_string(),
        format!("--enablerepo={}", h.config().repository),
    ]
}

fn rpm_lock_held() -> Failure {
    let pid = match lock::probe(Path::new(lock::RPM_LOCK)) {
        patchman_shared::LockState::Held { pid } => pid,
        patchman_shared::LockState::Free => None,
    };
    Failure::LockHeld { pid }
}

// ------------------------------------------------------- installed state

fn query_installed(h: &Helper, step: Step) -> Result<RpmQuery, Failure> {
    let cmd = Cmd::new(Tool::Rpm, QUERY_TIMEOUT)
        .args(["-q", "--queryformat", rpm_query::QUERY_FORMAT])
        .args(Package::ALL.map(|p| p.name()));
    let out = h.programs.run(&cmd).map_err(internal)?;
    // rpm -q exits with the number of packages not installed.
    if !matches!(out.code(), Some(0..=2)) || out.timed_out {
        return Err(Failure::CommandFailed {
            step,
            exit_code: out.code(),
            excerpt: out.excerpt(MAX_EXCERPT),
        });
    }
    rpm_query::parse_query(&out.stdout).map_err(|e| unexpected(step, e))
}

pub fn status(h: &Helper) -> Result<StatusReport, Failure> {
    let q = query_installed(h, Step::Confirm)?;
    let get = |p| {
        q.get(p).map(|r: &RpmPackage| Installed {
            evr: r.evr.clone(),
            complete: true,
        })
    };
    Ok(StatusReport {
        family: h.family,
        client: get(Package::Client),
        realtime: get(Package::Realtime),
        lock: lock::probe_all(&[lock::RPM_LOCK]),
        helper_version: crate::VERSION.to_string(),
        rollback: Default::default(),
    })
}

/// The installed versions of ours (rpm has no half-installed state).
pub fn installed_versions(h: &Helper) -> Result<(Versions, bool), Failure> {
    let q = query_installed(h, Step::Confirm)?;
    let versions = Package::ALL
        .into_iter()
        .filter_map(|p| Some((p, q.get(p)?.evr.clone())))
        .collect();
    Ok((versions, true))
}

/// Our installed packages: the client must be; realtime only if it is.
fn installed_targets(q: &RpmQuery) -> Result<Vec<(Package, Evr)>, Failure> {
    let client = q.get(Package::Client).ok_or(Failure::NotInstalled)?;
    let mut out = vec![(Package::Client, client.evr.clone())];
    if let Some(rt) = q.get(Package::Realtime) {
        out.push((Package::Realtime, rt.evr.clone()));
    }
    Ok(out)
}

// ------------------------------------------------------------ the steps

/// Step 1: drop the patchman repository's cached metadata, so the next
/// command fetches it fresh.
fn clean_metadata(h: &Helper, progress: &mut Progress<'_>) -> Result<(), Failure> {
    progress(Step::RefreshMetadata);
    let cmd = Cmd::new(tool(h), CLEAN_TIMEOUT)
        .args(["clean", "all"])
        .args(only_our_repository(h));
    let out = h.programs.run(&cmd).map_err(internal)?;
    if out.timed_out {
        return Err(Failure::Timeout {
            step: Step::RefreshMetadata,
        });
    }
    match dnf::parse_clean(out.code(), &out.stdout, &out.stderr) {
        Ok(dnf::CleanOutcome::Cleaned { .. }) => Ok(()),
        Ok(dnf::CleanOutcome::UnknownRepo(_)) => Err(Failure::RepositoryMissing {
            repository: h.config().repository.to_string(),
        }),
        Err(_) => Err(Failure::CommandFailed {
            step: Step::RefreshMetadata,
            exit_code: out.code(),
            excerpt: out.excerpt(MAX_EXCERPT),
        }),
    }
}

/// What a download-only run came to, for either tool.
enum Downloaded {
    /// Files are in the directory; the packages the solver picked.
    Files {
        resolved: Vec<(String, Evr)>,
    },
    NothingNewer,
}

/// The solver's `nothing provides X needed by Y` lines, for a person.
fn nothing_provides(problems: &[dnf::DependencyProblem]) -> Vec<String> {
    problems
        .iter()
        .flat_map(|p| p.nothing_provides.iter())
        .map(|n| {
            format!(
                "nothing provides {} needed by {}",
                n.requirement, n.needed_by
            )
        })
        .collect()
}

/// A manual upgrade is needed: what the solver said (or its excerpt).
fn dependency_problem(detail: Vec<String>, excerpt: String, command: String) -> Failure {
    Failure::DependencyProblem {
        detail: if detail.is_empty() {
            excerpt
        } else {
            detail.join("; ")
        },
        command,
    }
}

/// Step 2: download the newest of our installed packages into `dir`.
fn download(
    h: &Helper,
    installed: &[(Package, Evr)],
    dir: &Path,
    progress: &mut Progress<'_>,
) -> Result<Downloaded, Failure> {
    progress(Step::Download);
    let mut downloaddir = std::ffi::OsString::from("--downloaddir=");
    downloaddir.push(dir.as_os_str());
    let mut cmd = Cmd::new(tool(h), DOWNLOAD_TIMEOUT)
        .args(["install", "-y", "--downloadonly"])
        .arg(downloaddir);
    if h.family == Family::Dnf {
        cmd = cmd.arg("--verbose");
    }
    let cmd = cmd
        .args(only_our_repository(h))
        .args(installed.iter().map(|(p, _)| p.name()));
    let out = h.programs.run(&cmd).map_err(internal)?;
    if out.timed_out {
        return Err(Failure::Timeout {
            step: Step::Download,
        });
    }
    let manual = format!(
        "{} install {}",
        tool(h).name(),
        installed
            .iter()
            .map(|(p, _)| p.name())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let repository = h.config().repository.to_string();
    let failed = |out: &Output, excerpt: &str| Failure::CommandFailed {
        step: Step::Download,
        exit_code: out.code(),
        excerpt: if excerpt.is_empty() {
            out.excerpt(MAX_EXCERPT)
        } else {
            excerpt.to_string()
        },
    };
    let resolved_of = |r: &[dnf::Resolved]| -> Vec<(String, Evr)> {
        r.iter()
            .filter(|r| matches!(r.change, dnf::Change::Upgrade | dnf::Change::Install))
            .map(|r| (r.name.clone(), r.evr.clone()))
            .collect()
    };
    // EL 6/7's yum is yum 3; where `yum` is dnf (EL 8+, and our sandbox),
    // it prints dnf's output: read it as dnf's when yum's reading fails.
    if h.family == Family::Yum {
        let y = yum::classify_download(out.code(), &out.stdout, &out.stderr);
        match y.outcome {
            yum::YumOutcome::Downloaded => {
                return Ok(Downloaded::Files {
                    resolved: resolved_of(&y.resolved),
                })
            }
            yum::YumOutcome::NothingToDo => return Ok(Downloaded::NothingNewer),
            yum::YumOutcome::NotAvailable(_) => return Ok(Downloaded::NothingNewer),
            yum::YumOutcome::DownloadOnlyUnsupported => {
                return Err(Failure::Config {
                    detail: "yum has no --downloadonly: install yum-plugin-downloadonly (EL 6)"
                        .into(),
                })
            }
            yum::YumOutcome::UnknownRepo(_) => {
                return Err(Failure::RepositoryMissing { repository })
            }
            yum::YumOutcome::DependencyProblem { problems, requires } => {
                let mut detail = nothing_provides(&problems);
                detail.extend(requires.iter().map(|r| format!("requires {r}")));
                return Err(dependency_problem(detail, y.excerpt, manual));
            }
            yum::YumOutcome::Failed => {}
        }
    }
    let d = dnf::classify_download(out.code(), &out.stdout, &out.stderr);
    match d.outcome {
        dnf::DnfOutcome::Downloaded => Ok(Downloaded::Files {
            resolved: resolved_of(&d.resolved),
        }),
        dnf::DnfOutcome::NothingToDo => Ok(Downloaded::NothingNewer),
        dnf::DnfOutcome::DependencyProblem(problems) => Err(dependency_problem(
            nothing_provides(&problems),
            d.excerpt,
            manual,
        )),
        dnf::DnfOutcome::UnknownRepo(_) => Err(Failure::RepositoryMissing { repository }),
        dnf::DnfOutcome::NoMatch(_) => Err(Failure::NotInstalled),
        dnf::DnfOutcome::GpgCheckFailed => Err(Failure::Verification {
            package: Package::Client,
            reason: VerificationFailure::BadSignature,
        }),
        dnf::DnfOutcome::MetadataUnavailable { .. }
        | dnf::DnfOutcome::DownloadFailed
        | dnf::DnfOutcome::Failed => Err(failed(&out, &d.excerpt)),
    }
}

/// Whether `gpgcheck` is on for `repository`: its own setting in
/// /etc/yum.repos.d, else `[main]` of dnf.conf / yum.conf, else on (the
/// strict reading: a missing setting never disables the check).
fn gpgcheck_enabled(repository: &str) -> bool {
    let truthy = |v: &str| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "yes" | "true" | "on"
        )
    };
    let read = |path: &Path| -> Option<configparser::ini::Ini> {
        let text = std::fs::read_to_string(path).ok()?;
        if text.len() > 256 * 1024 {
            return None;
        }
        let mut ini = configparser::ini::Ini::new_cs();
        ini.read(text).ok()?;
        Some(ini)
    };
    if let Ok(entries) = std::fs::read_dir(REPOS_DIR) {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "repo"))
            .take(MAX_REPO_FILES)
            .collect();
        files.sort();
        for f in files {
            if let Some(ini) = read(&f) {
                if ini.sections().iter().any(|s| s == repository) {
                    if let Some(v) = ini.get(repository, "gpgcheck") {
                        return truthy(&v);
                    }
                }
            }
        }
    }
    for main in ["/etc/dnf/dnf.conf", "/etc/yum.conf"] {
        if let Some(v) = read(Path::new(main)).and_then(|ini| ini.get("main", "gpgcheck")) {
            return truthy(&v);
        }
    }
    true
}

/// Steps 3 and the hardening: find each file in our directory, check it,
/// and return the files to install, one per target package.
fn locate_and_verify(
    h: &Helper,
    installed: &[(Package, Evr)],
    resolved: &[(String, Evr)],
    private: &PrivateDir,
    progress: &mut Progress<'_>,
) -> Result<Vec<(Package, Evr, Evr, PathBuf)>, Failure> {
    progress(Step::LocateFile);
    let names = files::list_private(private).map_err(internal)?;
    // Anything but our packages in the plan means a new dependency.
    let others: Vec<&str> = resolved
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| Package::from_name(n).is_none())
        .collect();
    if !others.is_empty() {
        return Err(Failure::DependencyProblem {
            detail: format!("the update would also install {}", others.join(", ")),
            command: format!("{} install patchman-client", tool(h).name()),
        });
    }
    progress(Step::Verify);
    let gpgcheck = gpgcheck_enabled(h.config().repository.as_str());
    let mut found: Vec<(Package, Evr, Evr, PathBuf)> = Vec::new();
    for name in &names {
        let refuse_unknown = || Failure::Verification {
            package: Package::Client,
            reason: VerificationFailure::MetadataMismatch {
                expected: "patchman-client or patchman-client-realtime".into(),
                found: crate::parse::sanitize_excerpt(name, 120),
            },
        };
        if !name.ends_with(".rpm") {
            return Err(refuse_unknown());
        }
        let path = files::verify_in_place(private, name).map_err(|e| match e {
            FileError::Refused(reason) => Failure::Verification {
                package: Package::Client,
                reason,
            },
            other => internal(other),
        })?;
        let meta = query_file(h, &path).map_err(|f| f.unwrap_or_else(refuse_unknown))?;
        let package = meta.package;
        let refuse = |reason| Failure::Verification { package, reason };
        let Some((_, from)) = installed.iter().find(|(p, _)| *p == package) else {
            // A package of ours that is not installed: never installed here.
            return Err(refuse(VerificationFailure::MetadataMismatch {
                expected: "only packages already installed".into(),
                found: package.name().into(),
            }));
        };
        if found.iter().any(|(p, ..)| *p == package) {
            return Err(refuse(VerificationFailure::MetadataMismatch {
                expected: format!("one file of {package}"),
                found: "several".into(),
            }));
        }
        // The file must be what the solver chose, when it said.
        if let Some((_, chosen)) = resolved.iter().find(|(n, _)| n == package.name()) {
            if rpm_version::compare(chosen, &meta.evr) != Ordering::Equal {
                return Err(refuse(VerificationFailure::MetadataMismatch {
                    expected: format!("{package} {chosen}"),
                    found: format!("{package} {}", meta.evr),
                }));
            }
        }
        if rpm_version::compare(&meta.evr, from) != Ordering::Greater {
            return Err(refuse(VerificationFailure::NotNewer {
                installed: from.clone(),
                offered: meta.evr.clone(),
            }));
        }
        if gpgcheck {
            check_signature(h, package, &path)?;
        }
        found.push((package, from.clone(), meta.evr.clone(), path));
    }
    Ok(found)
}

/// `rpm -qp` of a file: its package and version. `Err(None)`: not one of
/// ours.
fn query_file(h: &Helper, path: &Path) -> Result<RpmPackage, Option<Failure>> {
    let cmd = Cmd::new(Tool::Rpm, QUERY_TIMEOUT)
        .args(["-qp", "--queryformat", rpm_query::QUERY_FORMAT])
        .arg(path);
    let out = h.programs.run(&cmd).map_err(|e| Some(internal(e)))?;
    if !out.success() {
        return Err(Some(Failure::Verification {
            package: Package::Client,
            reason: VerificationFailure::MetadataMismatch {
                expected: "a readable rpm package".into(),
                found: out.excerpt(MAX_EXCERPT),
            },
        }));
    }
    rpm_query::parse_file_query(&out.stdout).map_err(|_| None)
}

/// `rpmkeys --checksig`: the file's signature is trusted.
fn check_signature(h: &Helper, package: Package, path: &Path) -> Result<(), Failure> {
    let cmd = Cmd::new(Tool::Rpmkeys, QUERY_TIMEOUT)
        .arg("--checksig")
        .arg(path);
    let out = h.programs.run(&cmd).map_err(internal)?;
    let status = rpmkeys::parse_checksig(
        &path.to_string_lossy(),
        out.code(),
        &out.stdout,
        &out.stderr,
    )
    .map_err(|e| unexpected(Step::Verify, e))?;
    if !status.is_trusted() {
        return Err(Failure::Verification {
            package,
            reason: match status {
                rpmkeys::SignatureStatus::Corrupt => VerificationFailure::ChecksumMismatch,
                _ => VerificationFailure::BadSignature,
            },
        });
    }
    Ok(())
}

/// The rollback's check of a kept file: embeds exactly `package`
/// `version`, and its signature is trusted where gpgcheck is on.
pub fn verify_embedded(
    h: &Helper,
    package: Package,
    version: &Evr,
    path: &Path,
) -> Result<(), Failure> {
    let mismatch = |found: String| Failure::Verification {
        package,
        reason: VerificationFailure::MetadataMismatch {
            expected: format!("{package} {version}"),
            found,
        },
    };
    let meta =
        query_file(h, path).map_err(|f| f.unwrap_or_else(|| mismatch("another package".into())))?;
    if meta.package != package || rpm_version::compare(&meta.evr, version) != Ordering::Equal {
        return Err(mismatch(format!("{} {}", meta.package, meta.evr)));
    }
    if gpgcheck_enabled(h.config().repository.as_str()) {
        check_signature(h, package, path)?;
    }
    Ok(())
}

/// The rollback (issue 12): one `rpm -U --oldpackage` of the kept files,
/// to exactly `target`, confirmed with `rpm -q`.
pub fn install_exact(h: &Helper, target: &Versions, files: &[PathBuf]) -> Result<(), Failure> {
    wait_for_rpm_lock(h)?;
    let wanted: Vec<(Package, Evr)> = target.iter().map(|(p, v)| (*p, v.clone())).collect();
    rpm_install(h, &wanted, files, Downgrade::RollBack, &mut |_| {})
}

/// Whether `rpm -U` may install an older version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Downgrade {
    /// Every update: rpm refuses downgrades itself.
    Refuse,
    /// Only the rollback to the helper's own record: `--oldpackage`.
    RollBack,
}

/// Waits (bounded) until no other program holds rpm's lock: `rpm -U`
/// would fail at once on it, and we must not take it ourselves.
fn wait_for_rpm_lock(h: &Helper) -> Result<(), Failure> {
    let deadline = Instant::now() + h.config().lock_wait;
    while lock::probe(Path::new(lock::RPM_LOCK)) != patchman_shared::LockState::Free {
        if Instant::now() >= deadline {
            return Err(rpm_lock_held());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// Steps 4 and 5: one `rpm -U` for every file; then its output and `rpm -q`.
fn install_and_confirm(
    h: &Helper,
    files: &[(Package, Evr, Evr, PathBuf)],
    progress: &mut Progress<'_>,
) -> Result<(), Failure> {
    progress(Step::Install);
    wait_for_rpm_lock(h)?;
    // What is installed must still be what the plan was made for (a person
    // may have run dnf meanwhile); rpm -U would install a package of ours
    // that was removed since, and rpm refuses downgrades itself.
    let now = query_installed(h, Step::Install)?;
    let unchanged = files.iter().all(|(p, from, _, _)| {
        now.get(*p)
            .is_some_and(|r| rpm_version::compare(&r.evr, from) == Ordering::Equal)
    });
    if !unchanged {
        return Err(internal(
            "the installed packages changed while this update ran (another package operation); nothing was installed, the next run starts over",
        ));
    }
    let wanted: Vec<(Package, Evr)> = files.iter().map(|(p, _, to, _)| (*p, to.clone())).collect();
    let paths: Vec<PathBuf> = files.iter().map(|(.., path)| path.clone()).collect();
    rpm_install(h, &wanted, &paths, Downgrade::Refuse, progress)
}

/// One `rpm -U` of `paths`; then its output, and `rpm -q` shows exactly
/// `wanted`.
fn rpm_install(
    h: &Helper,
    wanted: &[(Package, Evr)],
    paths: &[PathBuf],
    downgrade: Downgrade,
    progress: &mut Progress<'_>,
) -> Result<(), Failure> {
    let oldpackage = (downgrade == Downgrade::RollBack).then_some("--oldpackage");
    let cmd = Cmd::new(Tool::Rpm, INSTALL_TIMEOUT)
        .arg("-U")
        .args(oldpackage)
        .args(paths)
        .never_kill();
    let out = h.programs.run(&cmd).map_err(internal)?;
    let result = rpm_install::classify_install(out.code(), &out.stdout, &out.stderr);
    let failed = |excerpt: String| Failure::CommandFailed {
        step: Step::Install,
        exit_code: out.code(),
        excerpt,
    };
    match &result.result {
        RpmInstallResult::Success if !out.timed_out && result.scriptlet_warnings.is_empty() => {}
        RpmInstallResult::Success => {
            // rpm installed the new version but a %post failed (exit 0):
            // report it; the package database says what is installed.
            return Err(failed(if result.scriptlet_warnings.is_empty() {
                "rpm ran past its time limit".into()
            } else {
                format!("scriptlet failed: {}", result.scriptlet_warnings.join(", "))
            }));
        }
        RpmInstallResult::LockHeld => return Err(rpm_lock_held()),
        RpmInstallResult::FailedDependencies(deps) => {
            return Err(Failure::DependencyProblem {
                detail: deps
                    .iter()
                    .map(|d| format!("{} is needed by {}", d.requirement, d.needed_by))
                    .collect::<Vec<_>>()
                    .join("; "),
                command: format!("{} install patchman-client", tool(h).name()),
            })
        }
        _ => return Err(failed(result.excerpt.clone())),
    }
    progress(Step::Confirm);
    let q = query_installed(h, Step::Confirm)?;
    for (package, to) in wanted {
        let ok = q
            .get(*package)
            .is_some_and(|r| rpm_version::compare(&r.evr, to) == Ordering::Equal);
        if !ok {
            return Err(unexpected(
                Step::Confirm,
                format!("rpm -q does not show {} {to}", package.name()),
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------ the procedures

/// `Check`: step 1, then a read-only `check-update` of our packages from
/// the patchman repository (the vendor's step 2 would download).
pub fn check(h: &Helper, progress: &mut Progress<'_>) -> Result<CheckReport, Failure> {
    let q = query_installed(h, Step::QueryCandidate)?;
    let installed = installed_targets(&q)?;
    clean_metadata(h, progress)?;
    progress(Step::QueryCandidate);
    let cmd = Cmd::new(tool(h), DOWNLOAD_TIMEOUT)
        .args(["-q", "check-update"])
        .args(only_our_repository(h))
        .args(installed.iter().map(|(p, _)| p.name()));
    let out = h.programs.run(&cmd).map_err(internal)?;
    if out.timed_out {
        return Err(Failure::Timeout {
            step: Step::QueryCandidate,
        });
    }
    // 100: updates listed; 0: none; anything else: an error.
    if !matches!(out.code(), Some(0 | 100)) {
        return Err(Failure::CommandFailed {
            step: Step::QueryCandidate,
            exit_code: out.code(),
            excerpt: out.excerpt(MAX_EXCERPT),
        });
    }
    let available =
        check_update::parse(&out.stdout).map_err(|e| unexpected(Step::QueryCandidate, e))?;
    let packages = installed
        .into_iter()
        .map(|(package, current)| {
            let candidate = available
                .iter()
                .find(|a| a.package == package)
                .map(|a| a.evr.clone())
                .filter(|v| rpm_version::compare(v, &current) == Ordering::Greater);
            Candidate {
                package,
                installed: current,
                candidate,
            }
        })
        .collect();
    Ok(CheckReport { packages })
}

/// The way back (issue 12): the installed versions downloaded pinned with
/// `<tool> reinstall --downloadonly`, restricted to our repository like
/// every other call, into a directory of its own, each verified as a new
/// package would be (regular root-owned file, `rpm -qp` names exactly our
/// package, the signature where gpgcheck is on), except that its version
/// must equal the installed one.
fn fetch_installed(
    h: &Helper,
    missing: &[(Package, Evr)],
) -> Result<(PrivateDir, probation::Fetched), Failure> {
    let private = PrivateDir::create(Path::new(files::PRIVATE_BASE)).map_err(internal)?;
    let mut downloaddir = std::ffi::OsString::from("--downloaddir=");
    downloaddir.push(private.path().as_os_str());
    let cmd = Cmd::new(tool(h), DOWNLOAD_TIMEOUT)
        .args(["reinstall", "-y", "--downloadonly"])
        .arg(downloaddir)
        .args(only_our_repository(h))
        .args(missing.iter().map(|(p, v)| format!("{}-{v}", p.name())));
    let out = h.programs.run(&cmd).map_err(internal)?;
    if !out.success() || out.timed_out {
        return Err(Failure::CommandFailed {
            step: Step::Download,
            exit_code: out.code(),
            excerpt: out.excerpt(MAX_EXCERPT),
        });
    }
    let mut found = Vec::new();
    for name in files::list_private(&private).map_err(internal)? {
        let path = files::verify_in_place(&private, &name).map_err(internal)?;
        let meta = query_file(h, &path).map_err(|f| {
            f.unwrap_or_else(|| internal(format!("{name} is not one of our packages")))
        })?;
        let Some((p, v)) = missing.iter().find(|(p, _)| *p == meta.package) else {
            return Err(internal(format!("{name} was not asked for")));
        };
        verify_embedded(h, *p, v, &path)?;
        found.push((*p, v.clone(), path));
    }
    if found.len() != missing.len() {
        return Err(internal(
            "the repository does not offer every installed version",
        ));
    }
    Ok((private, found))
}

pub fn update(h: &Helper, progress: &mut Progress<'_>) -> Result<UpdateReport, Failure> {
    let q = query_installed(h, Step::FinishInterrupted)?;
    let installed = installed_targets(&q)?;
    clean_metadata(h, progress)?;
    let private = PrivateDir::create(Path::new(files::PRIVATE_BASE)).map_err(internal)?;
    let resolved = match download(h, &installed, private.path(), progress)? {
        Downloaded::NothingNewer => {
            progress(Step::Cleanup);
            return Ok(UpdateReport {
                changes: Vec::new(),
                helper_restarting: false,
            });
        }
        Downloaded::Files { resolved } => resolved,
    };
    let files = locate_and_verify(h, &installed, &resolved, &private, progress)?;
    if files.is_empty() {
        // The solver found nothing to fetch for our packages.
        progress(Step::Cleanup);
        return Ok(UpdateReport {
            changes: Vec::new(),
            helper_restarting: false,
        });
    }
    let (before, _) = installed_versions(h)?;
    let mut way_back_dir = None;
    let way_back = probation::prepare(h, &before, &private, &mut |missing| {
        let (dir, found) = fetch_installed(h, missing)?;
        way_back_dir = Some(dir);
        Ok(found)
    });
    install_and_confirm(h, &files, progress)?;
    let mut after = before;
    let installed_files: Vec<(Package, Evr, PathBuf)> = files
        .iter()
        .map(|(p, _, to, path)| {
            after.insert(*p, to.clone());
            (*p, to.clone(), path.clone())
        })
        .collect();
    probation::begin(h, way_back, &after, &installed_files);
    drop(way_back_dir);
    progress(Step::Cleanup);
    drop(private);
    Ok(UpdateReport {
        changes: files
            .into_iter()
            .map(|(package, from, to, _)| Change { package, from, to })
            .collect(),
        helper_restarting: true,
    })
}
