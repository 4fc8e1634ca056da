//! The dnf (EL 8+) and yum (EL 6/7) families: the vendor's six steps, in
//! order, with the hardening of DESIGN.md. The two tools take the same
//! command lines; only the name (and dnf's `--verbose`) differs.
//!
//! Every command carries `--setopt=<repository>.gpgkey=`: dnf never imports
//! a key the repository serves (with `-y` it would, unattended).
//!
//! 1. (changed) not `<tool> clean all --disablerepo="*"
//!    --enablerepo="<repository>"`, which wipes every repository's cache:
//!    the next command expires only ours, at most once per interval.
//!
//!    1a. (ours, dnf) `dnf install --assumeno --verbose …`: the solver's
//!    plan, before anything is downloaded; anything but upgrades of our
//!    installed packages is "manual upgrade required".
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
//! installed (rpm's ordering); its `Obsoletes:`/`Conflicts:` name no
//! installed package but ours; `rpmkeys --checksig` trusts its signature
//! where the repository has `gpgcheck` on (rpm's own default check of a
//! file given on the command line is digests only), naming a key that is
//! not imported.

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

use super::{command_failed, internal, run, unexpected, Downgrade, Exits, Progress};

const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// Past this, a running `rpm -U` is reported but never killed.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);

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

/// `<tool> --setopt=<repository>.gpgkey= <subcommand>`: every dnf/yum
/// command of ours runs with no key to import. With the vendor's `-y`, dnf
/// would fetch whatever key the repository's `gpgkey=` URL serves and
/// import it unattended, so the repository's server (or the network, for
/// `http://`) could sign its own package. dnf's signature check stays on;
/// a package signed by a key that is not already in the rpm database fails
/// it (measured on dnf 4.14: `Public key for … is not installed`, `Error:
/// GPG check FAILED`, exit 1, the key never fetched).
///
/// And `--setopt=<repository>.metadata_expire=-1` (never expire): only
/// [`refresh_metadata`] fetches the metadata, and at most once per
/// `[updates] refresh_interval`; the queries (`check-update`, the
/// `--assumeno` plan) also run `-C` (cache only), because `-1` does not
/// stop dnf fetching when no usable cache is there (measured: dnf 4.14
/// `check-update` with `-1` and an empty cache fetched, and hung on a
/// stalled server).
fn restricted<'a>(
    h: &Helper,
    metadata: Metadata,
    timeout: Duration,
    subcommand: impl IntoIterator<Item = &'a str>,
) -> Cmd {
    let repository = h.config().repository;
    let expire = match metadata {
        Metadata::Refresh => "0",
        Metadata::Cached | Metadata::CacheOnly => "-1",
    };
    let cmd = Cmd::new(tool(h), timeout)
        .arg(format!("--setopt={repository}.gpgkey="))
        .arg(format!("--setopt={repository}.metadata_expire={expire}"));
    match metadata {
        Metadata::CacheOnly => cmd.arg("-C"),
        Metadata::Refresh | Metadata::Cached => cmd,
    }
    .args(subcommand)
}

/// How a dnf/yum command treats the patchman repository's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metadata {
    /// Expire it and fetch it now: [`refresh_metadata`] only.
    Refresh,
    /// Never expire it (the download: `-C` would not fetch the packages).
    Cached,
    /// From the cache only, never the network.
    CacheOnly,
}

/// dnf's words for `-C` with nothing cached (`Error: Cache-only enabled
/// but no cache for 'patchman'`): the request was not due to refresh and
/// has nothing to answer from.
fn no_cache(h: &Helper, out: &Output) -> Option<Failure> {
    [&out.stdout, &out.stderr]
        .iter()
        .any(|t| t.contains("Cache-only enabled but no cache"))
        .then(|| super::metadata_unavailable(h))
}

/// The keys the downloaded files are signed with that the rpm database
/// does not hold (`rpmkeys --checksig -v`), to name them in the failure.
fn missing_keys(h: &Helper, private: &PrivateDir) -> Vec<String> {
    let Ok(names) = files::list_private(private) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".rpm")) {
        if let Ok(path) = files::verify_in_place(private, name) {
            for id in missing_keys_of(h, &path) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}

/// The keys of `path` that the rpm database lacks (`rpmkeys --checksig
/// -v`; its one-line form, which the trust verdict reads, names none).
fn missing_keys_of(h: &Helper, path: &Path) -> Vec<String> {
    let cmd = Cmd::new(Tool::Rpmkeys, QUERY_TIMEOUT)
        .args(["--checksig", "-v"])
        .arg(path);
    run(h, Step::Verify, &cmd, Exits::Any)
        .map(|out| rpmkeys::nokey_ids(&out.stdout))
        .unwrap_or_default()
}

/// A signature dnf or `rpmkeys` did not trust: named by its key when the
/// key is simply not imported.
fn untrusted(package: Package, key_ids: &[String]) -> Failure {
    Failure::Verification {
        package,
        reason: if key_ids.is_empty() {
            VerificationFailure::BadSignature
        } else {
            VerificationFailure::KeyNotImported {
                key_id: key_ids.join(", "),
            }
        },
    }
}

/// rpm's own words for its transaction lock held by another program
/// (`error: can't create transaction lock on /var/lib/rpm/.rpm.lock`).
pub(super) fn lock_in(out: &Output) -> Option<Failure> {
    [&out.stdout, &out.stderr]
        .iter()
        .any(|t| t.contains("can't create transaction lock"))
        .then(rpm_lock_held)
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
    // rpm -q exits with the number of packages not installed.
    let out = run(h, step, &cmd, Exits::Among(&[0, 1, 2]))?;
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

/// Step 1, changed (a deviation): the vendor's `clean all
/// --disablerepo=* --enablerepo=<repository>` ignores the repository
/// filter and wipes the metadata cache of every repository on the host,
/// every time (measured on dnf 4.14: a second repository's 5 cache files
/// → 0), so the next dnf run of anyone downloads all of them again.
/// Instead `makecache` expires and fetches only the patchman repository's
/// metadata (`--setopt=<repository>.metadata_expire=0`), at most once per
/// `[updates] refresh_interval` counted from the end of the last attempt
/// and backed off after failures ([`super::RefreshClock`]), and killed
/// after `[updates] refresh_timeout`. Returns whether it refreshed.
fn refresh_metadata(h: &Helper, progress: &mut Progress<'_>) -> Result<bool, Failure> {
    let Some(attempt) = h
        .refresh
        .begin(h.config().repository.as_str(), h.config().refresh_interval)
    else {
        return Ok(false);
    };
    progress(Step::RefreshMetadata);
    let cmd = restricted(
        h,
        Metadata::Refresh,
        h.config().refresh_timeout,
        ["-q", "makecache"],
    )
    .args(only_our_repository(h));
    let out = run(h, Step::RefreshMetadata, &cmd, Exits::Any)?;
    if !out.success() {
        let d = dnf::classify_download(out.code(), &out.stdout, &out.stderr);
        return Err(match d.outcome {
            dnf::DnfOutcome::UnknownRepo(_) => Failure::RepositoryMissing {
                repository: h.config().repository.to_string(),
            },
            _ => command_failed(Step::RefreshMetadata, &out, d.run.excerpt),
        });
    }
    attempt.succeeded();
    Ok(true)
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

/// How a person installs what we would not: `dnf install patchman-client …`.
fn manual_command(h: &Helper, installed: &[(Package, Evr)]) -> String {
    format!(
        "{} install {}",
        tool(h).name(),
        installed
            .iter()
            .map(|(p, _)| p.name())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The solver's plan may only upgrade our installed packages. An erase, an
/// obsolete (a new client's `Obsoletes:` makes `rpm -U` erase another
/// package), a downgrade, or any other package installed or changed needs
/// a person: "manual upgrade required", whatever the kind of change.
fn plan_allowed(
    h: &Helper,
    installed: &[(Package, Evr)],
    plan: &dnf::DownloadRun,
) -> Result<(), Failure> {
    let allowed = |r: &dnf::Resolved| {
        let ours =
            Package::from_name(&r.name).is_some_and(|p| installed.iter().any(|(q, _)| *q == p));
        ours && matches!(
            r.change,
            dnf::Change::Upgrade | dnf::Change::Upgraded | dnf::Change::Install
        )
    };
    let mut others: Vec<String> = plan
        .resolved
        .iter()
        .filter(|r| !allowed(r))
        .map(|r| format!("{} {} {}", r.change.describe(), r.name, r.evr))
        .collect();
    // The summary counts packages no line named: something is hidden.
    // dnf's only: yum 3 counts an obsoleting upgrade as one install and
    // one upgrade on two lines (there the downloaded header's
    // `Obsoletes:` names the victim).
    let transaction_size = plan.transaction_size.filter(|_| h.family == Family::Dnf);
    match dnf::unlisted(&plan.resolved, transaction_size) {
        0 => {}
        n => others.push(format!("change {n} package(s) its plan does not list")),
    }
    if others.is_empty() {
        return Ok(());
    }
    Err(Failure::DependencyProblem {
        detail: format!("the update would also {}", others.join(", ")),
        command: manual_command(h, installed),
    })
}

/// What the plan said.
enum Planned {
    Changes,
    NothingNewer,
}

/// (ours) dnf: `dnf install --assumeno --verbose …` (restricted as the
/// download) prints the solver's plan and downloads nothing; anything in
/// it but upgrades of our installed packages is refused before the
/// download. (yum 3 on EL 6 has no `--assumeno`: there the download's own
/// plan and the headers are checked before anything is installed.)
fn plan(
    h: &Helper,
    installed: &[(Package, Evr)],
    progress: &mut Progress<'_>,
) -> Result<Planned, Failure> {
    progress(Step::CheckDependencies);
    let cmd = restricted(
        h,
        Metadata::CacheOnly,
        DOWNLOAD_TIMEOUT,
        ["install", "--assumeno", "--verbose"],
    )
    .args(only_our_repository(h))
    .args(installed.iter().map(|(p, _)| p.name()));
    let out = run(h, Step::CheckDependencies, &cmd, Exits::Any)?;
    if let Some(failure) = no_cache(h, &out) {
        return Err(failure);
    }
    let d = dnf::classify_download(out.code(), &out.stdout, &out.stderr);
    match d.outcome {
        dnf::DnfOutcome::Aborted => {
            plan_allowed(h, installed, &d.run)?;
            Ok(Planned::Changes)
        }
        dnf::DnfOutcome::NothingToDo => Ok(Planned::NothingNewer),
        dnf::DnfOutcome::DependencyProblem(problems) => Err(dependency_problem(
            nothing_provides(&problems),
            d.run.excerpt,
            manual_command(h, installed),
        )),
        dnf::DnfOutcome::UnknownRepo(_) => Err(Failure::RepositoryMissing {
            repository: h.config().repository.to_string(),
        }),
        dnf::DnfOutcome::NoMatch(_) => Err(Failure::NotInstalled),
        _ => Err(command_failed(Step::CheckDependencies, &out, d.run.excerpt)),
    }
}

/// The magic bytes every rpm package file starts with (its "lead").
const RPM_LEAD_MAGIC: [u8; 4] = [0xED, 0xAB, 0xEE, 0xDB];

/// Whether the file at `path` (already checked in place: ours, regular,
/// one link) starts with the rpm lead. Checked before any `rpm -qp`: of a
/// file that is not a package, rpm reads it as a manifest, a list of paths
/// and globs, and echoes its words (and then files' contents) in its error
/// messages.
fn has_rpm_lead(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    files::open_no_follow(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == RPM_LEAD_MAGIC)
}

/// `rpm -qp --nomanifest --queryformat FORMAT PATH`: a file that is not a
/// package is an error, never read as a manifest (`--nomanifest` is in rpm
/// since 4.6; read in rpm-4.11.3's `lib/poptQV.c` and `lib/rpmgi.c`, so EL 7
/// has it).
fn query_file(format: &str, path: &Path) -> Cmd {
    Cmd::new(Tool::Rpm, QUERY_TIMEOUT)
        .args(["-qp", "--nomanifest", "--queryformat", format])
        .arg(path)
}

/// `rpm -qp` could not read a downloaded file. Its output is not passed
/// on: the file is not verified yet, and rpm's messages can quote it.
fn unreadable_file(package: Package, out: &Output) -> Failure {
    Failure::Verification {
        package,
        reason: VerificationFailure::MetadataMismatch {
            expected: "a readable rpm package".into(),
            found: match out.code() {
                Some(c) => format!("rpm -qp could not read it (exit code {c})"),
                None => "rpm -qp could not read it (killed by a signal)".into(),
            },
        },
    }
}

/// (ours) The downloaded header itself: an `Obsoletes:` or `Conflicts:` that
/// names an installed package other than ours would make `rpm -U` erase
/// it or fail; refused whatever the solver printed (`rpm -qp --obsoletes
/// --conflicts`, then `rpm -q --whatprovides` of each name).
fn header_allowed(h: &Helper, installed: &[(Package, Evr)], path: &Path) -> Result<(), Failure> {
    let cmd = query_file(rpm_query::RELATIONS_FORMAT, path);
    let out = run(h, Step::Verify, &cmd, Exits::Any)?;
    if !out.success() {
        return Err(unreadable_file(Package::Client, &out));
    }
    let named = rpm_query::parse_relations(&out.stdout).map_err(|e| unexpected(Step::Verify, e))?;
    let foreign: Vec<&rpm_query::Relation> = named
        .iter()
        .filter(|r| Package::from_name(&r.name).is_none())
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let cmd = Cmd::new(Tool::Rpm, QUERY_TIMEOUT)
        .args([
            "-q",
            "--queryformat",
            "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE}\\n",
            "--whatprovides",
            "--",
        ])
        .args(foreign.iter().map(|r| r.name.as_str()));
    let out = run(h, Step::Verify, &cmd, Exits::Any)?;
    let hit: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("no package provides"))
        .map(|l| crate::parse::sanitize_excerpt(l, 120))
        .collect();
    if hit.is_empty() {
        return Ok(());
    }
    let kinds: Vec<String> = foreign
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.kind,
                crate::parse::sanitize_excerpt(&r.name, 120)
            )
        })
        .collect();
    Err(Failure::DependencyProblem {
        detail: format!(
            "the new package {} the installed {}",
            kinds.join(", "),
            hit.join(", ")
        ),
        command: manual_command(h, installed),
    })
}

/// Step 2: download the newest of our installed packages into `dir`.
fn download(
    h: &Helper,
    installed: &[(Package, Evr)],
    private: &PrivateDir,
    progress: &mut Progress<'_>,
) -> Result<Downloaded, Failure> {
    progress(Step::Download);
    let mut downloaddir = std::ffi::OsString::from("--downloaddir=");
    downloaddir.push(private.path().as_os_str());
    let mut cmd = restricted(
        h,
        Metadata::Cached,
        DOWNLOAD_TIMEOUT,
        ["install", "-y", "--downloadonly"],
    )
    .arg(downloaddir);
    if h.family == Family::Dnf {
        cmd = cmd.arg("--verbose");
    }
    let cmd = cmd
        .args(only_our_repository(h))
        .args(installed.iter().map(|(p, _)| p.name()));
    let out = run(h, Step::Download, &cmd, Exits::Any)?;
    let manual = manual_command(h, installed);
    let repository = h.config().repository.to_string();
    let resolved_of = |run: &dnf::DownloadRun| -> Vec<(String, Evr)> {
        run.resolved
            .iter()
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
                plan_allowed(h, installed, &y.run)?;
                return Ok(Downloaded::Files {
                    resolved: resolved_of(&y.run),
                });
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
                return Err(dependency_problem(detail, y.run.excerpt, manual));
            }
            yum::YumOutcome::Failed => {}
        }
    }
    let d = dnf::classify_download(out.code(), &out.stdout, &out.stderr);
    match d.outcome {
        dnf::DnfOutcome::Downloaded => {
            plan_allowed(h, installed, &d.run)?;
            Ok(Downloaded::Files {
                resolved: resolved_of(&d.run),
            })
        }
        dnf::DnfOutcome::NothingToDo => Ok(Downloaded::NothingNewer),
        dnf::DnfOutcome::DependencyProblem(problems) => Err(dependency_problem(
            nothing_provides(&problems),
            d.run.excerpt,
            manual,
        )),
        dnf::DnfOutcome::UnknownRepo(_) => Err(Failure::RepositoryMissing { repository }),
        dnf::DnfOutcome::NoMatch(_) => Err(Failure::NotInstalled),
        dnf::DnfOutcome::GpgCheckFailed => {
            Err(untrusted(Package::Client, &missing_keys(h, private)))
        }
        dnf::DnfOutcome::MetadataUnavailable { .. }
        | dnf::DnfOutcome::DownloadFailed
        | dnf::DnfOutcome::Aborted
        | dnf::DnfOutcome::Failed => Err(command_failed(Step::Download, &out, d.run.excerpt)),
    }
}

/// Where dnf and yum read repository definitions when `[main]` has no
/// `reposdir=` (dnf 4's and yum 3's defaults).
const DEFAULT_REPOS_DIRS: &[&str] = &[
    "/etc/yum.repos.d",
    "/etc/yum/repos.d",
    "/etc/distro.repos.d",
];
const MAX_REPO_FILES: usize = 200;
const MAX_REPO_FILE_LEN: usize = 256 * 1024;

/// The main configuration file the family's tool reads: dnf's, or yum's
/// (EL 8+ makes `/etc/yum.conf` dnf's; where it is missing, yum is dnf).
fn main_config(h: &Helper) -> &'static [&'static str] {
    match h.family {
        Family::Yum => &["/etc/yum.conf", "/etc/dnf/dnf.conf"],
        _ => &["/etc/dnf/dnf.conf"],
    }
}

fn read_ini(path: &Path) -> Option<configparser::ini::Ini> {
    let text = std::fs::read_to_string(path).ok()?;
    if text.len() > MAX_REPO_FILE_LEN {
        return None;
    }
    let mut ini = configparser::ini::Ini::new_cs();
    ini.read(text).ok()?;
    Some(ini)
}

/// Only an explicit false turns a check off: anything else (a typo, an
/// unknown word) leaves it on.
fn explicitly_false(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "no" | "false" | "off"
    )
}

/// Whether `gpgcheck` is on for `repository`, read where dnf and yum find
/// the repository: `[repository]` sections of the main configuration file
/// itself, then of every `*.repo` file in its `reposdir=` directories (or
/// the defaults). A definition's own `gpgcheck`, else `[main]`'s, else on
/// (the strict reading; dnf's built-in default is off). Off only when
/// every definition found says an explicit false. On EL 7, `yum
/// --downloadonly` skips yum's own signature check: this one is the only
/// one there.
fn gpgcheck_enabled(h: &Helper, repository: &str) -> bool {
    let main = main_config(h)
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .and_then(read_ini);
    let main_value = |key: &str| main.as_ref().and_then(|ini| ini.get("main", key));
    let main_off = main_value("gpgcheck").is_some_and(|v| explicitly_false(&v));
    let reposdirs: Vec<PathBuf> = match main_value("reposdir") {
        Some(v) => v
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect(),
        None => DEFAULT_REPOS_DIRS.iter().map(PathBuf::from).collect(),
    };
    let mut definitions: Vec<configparser::ini::Ini> = main.clone().into_iter().collect();
    for dir in &reposdirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "repo"))
            .take(MAX_REPO_FILES)
            .collect();
        files.sort();
        definitions.extend(files.iter().filter_map(|f| read_ini(f)));
    }
    let found: Vec<bool> = definitions
        .iter()
        .filter(|ini| ini.sections().iter().any(|s| s == repository))
        .map(|ini| match ini.get(repository, "gpgcheck") {
            Some(v) => !explicitly_false(&v),
            None => !main_off,
        })
        .collect();
    found.is_empty() || found.into_iter().any(|on| on)
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
    let gpgcheck = gpgcheck_enabled(h, h.config().repository.as_str());
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
        let meta = read_header(h, &path).map_err(|f| f.unwrap_or_else(refuse_unknown))?;
        let package = meta.package;
        let refuse = |reason| Failure::Verification { package, reason };
        if meta.source_package {
            return Err(refuse(VerificationFailure::MetadataMismatch {
                expected: "a binary package".into(),
                found: "a source package".into(),
            }));
        }
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
        header_allowed(h, installed, &path)?;
        if gpgcheck {
            check_signature(h, package, &path)?;
        }
        found.push((package, from.clone(), meta.evr.clone(), path));
    }
    Ok(found)
}

/// The header of a downloaded or kept file, read without trusting it: the
/// rpm lead first (never a text file rpm would read as a manifest), `rpm
/// -qp --nomanifest`, and rpm's messages never passed on. `None`: rpm's
/// answer names no package of ours.
fn read_header(h: &Helper, path: &Path) -> Result<rpm_query::RpmFile, Option<Failure>> {
    if !has_rpm_lead(path) {
        return Err(Some(Failure::Verification {
            package: Package::Client,
            reason: VerificationFailure::MetadataMismatch {
                expected: "an rpm package".into(),
                found: "a file without the rpm lead (not an rpm package)".into(),
            },
        }));
    }
    let cmd = query_file(rpm_query::FILE_QUERY_FORMAT, path);
    let out = run(h, Step::Verify, &cmd, Exits::Any).map_err(Some)?;
    if !out.success() {
        return Err(Some(unreadable_file(Package::Client, &out)));
    }
    rpm_query::parse_file_query(&out.stdout).map_err(|_| None)
}

/// `rpmkeys --checksig`: the file's signature is trusted.
fn check_signature(h: &Helper, package: Package, path: &Path) -> Result<(), Failure> {
    let cmd = Cmd::new(Tool::Rpmkeys, QUERY_TIMEOUT)
        .arg("--checksig")
        .arg(path);
    let out = run(h, Step::Verify, &cmd, Exits::Any)?;
    let status = rpmkeys::parse_checksig(
        &path.to_string_lossy(),
        out.code(),
        &out.stdout,
        &out.stderr,
    )
    .map_err(|e| unexpected(Step::Verify, e))?;
    match status {
        rpmkeys::SignatureStatus::Trusted => Ok(()),
        rpmkeys::SignatureStatus::Corrupt => Err(Failure::Verification {
            package,
            reason: VerificationFailure::ChecksumMismatch,
        }),
        _ => Err(untrusted(package, &missing_keys_of(h, path))),
    }
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
    let meta = read_header(h, path)
        .map_err(|f| f.unwrap_or_else(|| mismatch("another package".into())))?;
    if meta.package != package || rpm_version::compare(&meta.evr, version) != Ordering::Equal {
        return Err(mismatch(format!("{} {}", meta.package, meta.evr)));
    }
    if meta.source_package {
        return Err(mismatch("a source package".into()));
    }
    if gpgcheck_enabled(h, h.config().repository.as_str()) {
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
    let out = run(h, Step::Install, &cmd, Exits::Any)?;
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
    let refreshed = refresh_metadata(h, progress)?;
    progress(Step::QueryCandidate);
    let cmd = restricted(
        h,
        Metadata::CacheOnly,
        QUERY_TIMEOUT,
        ["-q", "check-update"],
    )
    .args(only_our_repository(h))
    .args(installed.iter().map(|(p, _)| p.name()));
    let out = run(h, Step::QueryCandidate, &cmd, Exits::Any)?;
    // 100: updates listed; 0: none; anything else: an error.
    if !matches!(out.code(), Some(0 | 100)) {
        if let Some(failure) = no_cache(h, &out) {
            return Err(failure);
        }
        if let dnf::DnfOutcome::UnknownRepo(_) =
            dnf::classify_download(out.code(), &out.stdout, &out.stderr).outcome
        {
            return Err(Failure::RepositoryMissing {
                repository: h.config().repository.to_string(),
            });
        }
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
    Ok(super::check_report(h, packages, refreshed))
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
    // The metadata this update just used: never expired again here, and
    // (as on every dnf/yum command of ours) no key to import.
    let cmd = restricted(
        h,
        Metadata::Cached,
        DOWNLOAD_TIMEOUT,
        ["reinstall", "-y", "--downloadonly"],
    )
    .arg(downloaddir)
    .args(only_our_repository(h))
    .args(missing.iter().map(|(p, v)| format!("{}-{v}", p.name())));
    let out = run(h, Step::Download, &cmd, Exits::Any)?;
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
        let meta = read_header(h, &path).map_err(|f| {
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
    refresh_metadata(h, progress)?;
    if h.family == Family::Dnf {
        if let Planned::NothingNewer = plan(h, &installed, progress)? {
            progress(Step::Cleanup);
            return Ok(UpdateReport {
                changes: Vec::new(),
                helper_restarting: false,
            });
        }
    }
    let private = PrivateDir::create(Path::new(files::PRIVATE_BASE)).map_err(internal)?;
    let resolved = match download(h, &installed, &private, progress)? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_false_turns_gpgcheck_off() {
        for off in ["0", "no", "False", " off ", "NO"] {
            assert!(explicitly_false(off), "{off:?}");
        }
        for on in [
            "1", "yes", "true", "on", "", "maybe", "0 # off", "disabled", "00",
        ] {
            assert!(!explicitly_false(on), "{on:?}");
        }
    }
}
