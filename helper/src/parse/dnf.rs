//! dnf 4's output: `dnf install -y --downloadonly --downloaddir=DIR
//! --verbose --disablerepo=* --enablerepo=REPO patchman-client […]`, the
//! same with `--assumeno` (the plan), and `check-update`'s errors.
//!
//! Facts measured on dnf 4.14 (fixtures `dnf_*` in
//! `helper/tests/fixtures/dnf/`, re-created by its `capture.sh`):
//! * an update: `---> Package NAME.ARCH EVR will be an upgrade` (with
//!   `--verbose`), a transaction table, `Downloading Packages:`, one line per
//!   file, `Complete!`, exit 0.
//! * the file lines are cut to 80 columns when stdout is not a terminal:
//!   `(2/2): patchman-client-realtime-1.7.1-1.noarch. 662 kB/s | 6.2 kB …`;
//!   for a `file://` repository there are none at all (`Total size:`
//!   instead of `Total download size:`). So the parser returns what it saw
//!   and [`DownloadRun::names_complete`]; the caller lists the directory.
//! * asked for the client alone while realtime (pinned to the client's
//!   version) is installed, dnf upgrades and downloads both.
//! * up to date: `Package NEVRA is already installed.` …
//!   `Nothing to do.` `Complete!`, exit 0, nothing downloaded. The same
//!   when the repository has no such package but it is installed.
//! * not installed and not in the repository: `No match for argument: X`,
//!   `Error: Unable to find a match: X`, exit 1.
//! * a missing dependency with `best=True`: stderr `Error: ` then
//!   ` Problem: cannot install the best candidate for the job` and
//!   `  - nothing provides X needed by NEVRA`, exit 1 (several problems:
//!   ` Problem 1: …`, ` Problem 2: …`).
//! * `Error: Unknown repo: 'NAME'`, exit 1, for `install` and `clean all`.
//! * metadata unreachable: `Curl error (7): …` or `Status code: 404 …`,
//!   then `Error: Failed to download metadata for repo 'NAME': Cannot
//!   download repomd.xml: …`, exit 1.
//! * an unsigned package with `gpgcheck=1`: `Package FILE is not signed`,
//!   `Error: GPG check FAILED`, exit 1 — and the file is **left in the
//!   download directory**.
//! * signed by a key not in the rpm database, with
//!   `--setopt=REPO.gpgkey=` (nothing to import): `Public key for FILE is
//!   not installed`, `Error: GPG check FAILED`, exit 1, the file left in
//!   the download directory; dnf names no key id (`rpmkeys -v` does).
//! * under the name `yum` (a symlink to dnf-3) the output is the same with
//!   `YUM will only download …`.
//! * `dnf clean all --disablerepo=* --enablerepo=REPO`: `N files
//!   removed`, exit 0 — and it removes every repository's cache, not only
//!   REPO's (fixture `dnf_clean_all_files`: 5); the helper no longer runs it.

use patchman_shared::Evr;

use super::{sanitize_excerpt, truncate_at_boundary, MAX_EXCERPT, MAX_INPUT};

/// A `nothing provides X needed by Y` line of a `Problem:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NothingProvides {
    /// X: the requirement nobody provides (`libpatchman-new`).
    pub requirement: String,
    /// Y: the package that needs it (`patchman-client-1.7.2-1.noarch`).
    pub needed_by: String,
}

/// One `Problem:` block of dnf's dependency solver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyProblem {
    /// The block's first line after `Problem:` / `Problem N:`.
    pub summary: String,
    /// Its `  - …` lines.
    pub details: Vec<String>,
    /// The `nothing provides` details, parsed.
    pub nothing_provides: Vec<NothingProvides>,
}

/// What a `--verbose` run said it resolved:
/// `---> Package NAME.ARCH EVR will be …` (yum: `… set to be updated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub arch: String,
    pub evr: Evr,
    pub change: Change,
}

/// The verb of a [`Resolved`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `will be an upgrade` (dnf), `will be an update` (yum 3).
    Upgrade,
    /// `will be upgraded` / `will be updated`: the installed, old version.
    Upgraded,
    /// `will be installed`, `set to be updated` (EL5), `set to be installed`.
    Install,
    /// `will be obsoleted`: removed by a package that obsoletes it.
    Obsoleted,
    /// `will be erased` (yum 3: also `to be erased`).
    Erased,
    /// `will be a downgrade` / `will be downgraded`.
    Downgrade,
    /// `will be reinstalled`, and any verb not known: never ours to allow.
    Other,
}

impl Change {
    /// For a person: what the plan would do to the package.
    pub fn describe(self) -> &'static str {
        match self {
            Change::Upgrade => "upgrade to",
            Change::Upgraded => "upgrade from",
            Change::Install => "install",
            Change::Obsoleted => "remove (obsoleted)",
            Change::Erased => "remove",
            Change::Downgrade => "downgrade",
            Change::Other => "change",
        }
    }
}

/// A file name from the download progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadName {
    /// The name as printed, without the `(i/N): ` counter.
    pub name: String,
    /// `false` when the line was cut (the name does not end in `.rpm`):
    /// `name` is then only a prefix of the real one.
    pub complete: bool,
}

/// How a download-only run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnfOutcome {
    /// `Complete!` after a transaction: packages were downloaded.
    Downloaded,
    /// `Nothing to do.`: nothing newer; nothing downloaded.
    NothingToDo,
    /// The solver refused (`best=True`): a dependency is missing.
    DependencyProblem(Vec<DependencyProblem>),
    /// `Error: Unknown repo: 'NAME'`.
    UnknownRepo(String),
    /// `No match for argument: X` (X not installed, not in the repository).
    NoMatch(Vec<String>),
    /// The repository's metadata could not be fetched (the repository id
    /// when dnf named it).
    MetadataUnavailable { repo: Option<String> },
    /// A package file failed dnf's own signature check (`is not signed`,
    /// `GPG check FAILED`, `Public key for … is not installed`); the file
    /// may still be in the download directory.
    GpgCheckFailed,
    /// A package file could not be downloaded.
    DownloadFailed,
    /// `--assumeno`: the plan was printed, then `Operation aborted.`, exit
    /// 1; nothing downloaded.
    Aborted,
    /// Anything else, or killed by a signal.
    Failed,
}

/// What a download-only (or `--assumeno`) run of dnf or yum 3 said in the
/// lines both tools print alike; each tool's report holds one beside its
/// own outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRun {
    pub exit_code: Option<i32>,
    /// `---> Package …` lines (only with `--verbose` for dnf).
    pub resolved: Vec<Resolved>,
    /// The NEVRAs asked for that are installed and have nothing newer:
    /// `Package NEVRA is already installed.` (dnf), `Package NEVRA already
    /// installed and latest version` (yum 3, which prints an epoch as
    /// `1:name-v-r.arch`).
    pub already_installed: Vec<String>,
    /// The file names seen in the progress lines.
    pub downloaded: Vec<DownloadName>,
    /// The number of packages in `Transaction Summary` (`Upgrade  2
    /// Packages` …), when printed.
    pub transaction_size: Option<usize>,
    /// The error lines, printable, at most [`MAX_EXCERPT`] bytes.
    pub excerpt: String,
}

impl DownloadRun {
    /// True when every file of the transaction was named in full: as many
    /// complete names as the transaction has packages. False for cut names,
    /// for `file://` repositories (no names) and when the summary was not
    /// printed: list the directory.
    pub fn names_complete(&self) -> bool {
        match self.transaction_size {
            Some(n) => self.downloaded.len() == n && self.downloaded.iter().all(|d| d.complete),
            None => false,
        }
    }
}

/// Everything read from one dnf download-only run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnfDownload {
    pub outcome: DnfOutcome,
    pub run: DownloadRun,
}

/// Classifies one `dnf install -y --downloadonly … --verbose` run from its
/// exit code and output. Never fails: unrecognised output goes to the
/// excerpt and the exit code decides ([`DnfOutcome::Failed`]).
pub fn classify_download(exit_code: Option<i32>, stdout: &str, stderr: &str) -> DnfDownload {
    let stdout = truncate_at_boundary(stdout, MAX_INPUT);
    let stderr = truncate_at_boundary(stderr, MAX_INPUT);
    let CommonScan { run, problems } = scan_common(exit_code, stdout, stderr);
    let mut unknown_repo = None;
    let mut no_match = Vec::new();
    let mut metadata: Option<Option<String>> = None;
    let mut gpg = false;
    let mut download_failed = false;
    let mut nothing_to_do = false;
    let mut complete = false;
    let mut aborted = false;
    for t in trimmed_lines(stdout, stderr) {
        if let Some(rest) = t.strip_prefix("Error: Unknown repo: ") {
            unknown_repo = Some(rest.trim_matches('\'').to_string());
        } else if let Some(rest) = t.strip_prefix("No match for argument: ") {
            no_match.push(rest.to_string());
        } else if let Some(rest) = t.strip_prefix("Error: Failed to download metadata for repo ") {
            let repo = rest
                .strip_prefix('\'')
                .and_then(|r| r.split_once('\''))
                .map(|(r, _)| r.to_string());
            metadata = Some(repo);
        } else if t.contains("Cannot download repomd.xml")
            || t.starts_with("Errors during downloading metadata for repository")
            || t.starts_with("error: Curl error")
            || t.starts_with("- Curl error")
        {
            metadata.get_or_insert(None);
        } else if t == "Error: GPG check FAILED"
            || (t.starts_with("Package ") && t.ends_with(" is not signed"))
            || (t.starts_with("Public key for ") && t.ends_with(" is not installed"))
        {
            gpg = true;
        } else if t.starts_with("Error: Error downloading packages") {
            download_failed = true;
        } else if t == "Nothing to do." {
            nothing_to_do = true;
        } else if t == "Complete!" {
            complete = true;
        } else if t == "Operation aborted." {
            aborted = true;
        }
    }
    let outcome = if let Some(repo) = unknown_repo {
        DnfOutcome::UnknownRepo(repo)
    } else if !problems.is_empty() {
        DnfOutcome::DependencyProblem(problems)
    } else if exit_code == Some(0) && nothing_to_do {
        DnfOutcome::NothingToDo
    } else if exit_code == Some(0) && complete {
        DnfOutcome::Downloaded
    } else if exit_code == Some(0) {
        DnfOutcome::Failed
    } else if !no_match.is_empty() {
        DnfOutcome::NoMatch(no_match)
    } else if let Some(repo) = metadata {
        DnfOutcome::MetadataUnavailable { repo }
    } else if aborted && exit_code == Some(1) {
        DnfOutcome::Aborted
    } else if gpg {
        DnfOutcome::GpgCheckFailed
    } else if download_failed {
        DnfOutcome::DownloadFailed
    } else {
        DnfOutcome::Failed
    };
    DnfDownload { outcome, run }
}

/// What dnf and yum 3 print alike: the shared part of the report, and the
/// `Problem:` blocks each tool's outcome carries.
pub(crate) struct CommonScan {
    pub run: DownloadRun,
    pub problems: Vec<DependencyProblem>,
}

/// The lines of stdout, then of stderr, trimmed: dnf and yum print their
/// messages on either, so every scan of a run reads both.
pub(crate) fn trimmed_lines<'a>(stdout: &'a str, stderr: &'a str) -> impl Iterator<Item = &'a str> {
    stdout.lines().chain(stderr.lines()).map(str::trim)
}

pub(crate) fn scan_common(exit_code: Option<i32>, stdout: &str, stderr: &str) -> CommonScan {
    let mut run = DownloadRun {
        exit_code,
        resolved: Vec::new(),
        already_installed: Vec::new(),
        downloaded: Vec::new(),
        transaction_size: None,
        excerpt: error_excerpt(stdout, stderr),
    };
    let mut problems = Vec::new();
    let mut in_downloads = false;
    let mut in_summary = false;
    let mut problem: Option<DependencyProblem> = None;
    for t in trimmed_lines(stdout, stderr) {
        // Problem blocks (stderr): ` Problem: …` / ` Problem 2: …`, then
        // `  - …` lines.
        if let Some(summary) = problem_start(t) {
            if let Some(p) = problem.take() {
                problems.push(p);
            }
            problem = Some(DependencyProblem {
                summary: summary.to_string(),
                details: Vec::new(),
                nothing_provides: Vec::new(),
            });
            continue;
        }
        if let Some(p) = problem.as_mut() {
            if let Some(detail) = t.strip_prefix("- ") {
                if let Some((req, by)) = detail
                    .strip_prefix("nothing provides ")
                    .and_then(|r| r.split_once(" needed by "))
                {
                    p.nothing_provides.push(NothingProvides {
                        requirement: req.to_string(),
                        needed_by: by.to_string(),
                    });
                }
                p.details.push(detail.to_string());
                continue;
            }
            if let Some(p) = problem.take() {
                problems.push(p);
            }
        }

        if let Some(rest) = t.strip_prefix("---> Package ") {
            run.resolved
                .push(resolved(rest).unwrap_or_else(|| unreadable(rest)));
        } else if let Some(nevra) = t.strip_prefix("Package ").and_then(|r| {
            r.strip_suffix(" is already installed.")
                .or_else(|| r.strip_suffix(" already installed and latest version"))
        }) {
            run.already_installed.push(nevra.to_string());
        } else if t == "Transaction Summary" {
            in_summary = true;
        } else if in_summary {
            // `Upgrade  2 Packages`, `Install  1 Package`, `Install  4
            // Package(s)`, `Update  0 Package(s)`; ends at the first blank
            // line after the counts.
            let words: Vec<&str> = t.split_whitespace().collect();
            if let [_, count, unit] = words.as_slice() {
                if unit.starts_with("Package") {
                    if let Ok(n) = count.parse::<usize>() {
                        let total = run.transaction_size.unwrap_or(0).saturating_add(n);
                        run.transaction_size = Some(total);
                    }
                }
            } else if (t.is_empty() && run.transaction_size.is_some()) || t.starts_with("Total") {
                in_summary = false;
            }
        }
        if t == "Downloading Packages:" || t == "Background downloading packages, then exiting:" {
            in_downloads = true;
            continue;
        }
        if in_downloads {
            if t.starts_with("---") || t.starts_with("Total") || t.starts_with("exiting because") {
                in_downloads = false;
            } else if let Some(d) = download_name(t) {
                run.downloaded.push(d);
            }
        } else if t.starts_with('(') {
            // A counted progress line (`(3/4): NAME | …`) is unambiguous
            // even where the section's header was not seen.
            if let Some(d) = download_name(t) {
                run.downloaded.push(d);
            }
        }
    }
    if let Some(p) = problem.take() {
        problems.push(p);
    }
    CommonScan { run, problems }
}

/// `Problem: X` or `Problem 2: X` → X.
fn problem_start(t: &str) -> Option<&str> {
    let rest = t.strip_prefix("Problem")?;
    let (number, summary) = rest.split_once(':')?;
    let number = number.trim();
    if number.is_empty() || number.bytes().all(|b| b.is_ascii_digit()) {
        Some(summary.trim())
    } else {
        None
    }
}

/// `NAME.ARCH EVR will be an upgrade` (dnf) / `NAME.ARCH E:V-R set to be
/// updated` (yum 3).
fn resolved(rest: &str) -> Option<Resolved> {
    let mut words = rest.splitn(3, ' ');
    let name_arch = words.next()?;
    let evr = words.next()?;
    let verb = words.next()?;
    let (name, arch) = name_arch.rsplit_once('.')?;
    let change = match verb {
        "will be an upgrade" | "will be an update" => Change::Upgrade,
        "will be upgraded" | "will be updated" => Change::Upgraded,
        "will be installed" | "set to be updated" | "set to be installed" => Change::Install,
        "will be obsoleted" | "will be an obsoleted" => Change::Obsoleted,
        "will be erased" | "set to be erased" | "to be erased" => Change::Erased,
        "will be a downgrade" | "will be downgraded" => Change::Downgrade,
        _ => Change::Other,
    };
    Some(Resolved {
        name: name.to_string(),
        arch: arch.to_string(),
        evr: Evr::parse(evr).ok()?,
        change,
    })
}

/// A `---> Package` line that could not be read: a change nobody can
/// vouch for, so [`Change::Other`] (refused), never dropped: a dropped
/// line would hide a third package from the plan check.
fn unreadable(rest: &str) -> Resolved {
    Resolved {
        name: super::sanitize_excerpt(rest, 120),
        arch: String::new(),
        evr: Evr {
            epoch: 0,
            version: "(unreadable)".to_string(),
            release: String::new(),
        },
        change: Change::Other,
    }
}

/// How many packages the `Transaction Summary` counts that no `--->
/// Package` line names (0 when it was not printed). The summary counts
/// each package installed, upgraded to, downgraded to or removed; the old
/// side of an upgrade and an obsoleted package are not counted (measured
/// on dnf 4.14: an upgrade obsoleting a victim prints three lines and
/// `Upgrade  1 Package`).
pub fn unlisted(resolved: &[Resolved], transaction_size: Option<usize>) -> usize {
    let listed = resolved
        .iter()
        .filter(|r| !matches!(r.change, Change::Upgraded | Change::Obsoleted))
        .count();
    transaction_size.unwrap_or(0).saturating_sub(listed)
}

/// A progress line: `[(i/N): ]NAME<spaces>SPEED | SIZE TIME` (dnf) or
/// `[(i/N): ]NAME<spaces>| SIZE TIME` (yum). dnf pads or cuts the name to
/// its column, so a name is complete only when it ends in `.rpm`.
pub(crate) fn download_name(t: &str) -> Option<DownloadName> {
    if !t.contains(" | ") && !t.contains(" |") {
        return None;
    }
    let t = match t.strip_prefix('(') {
        Some(rest) => rest.split_once("): ")?.1,
        None => t,
    };
    let name = t.split_whitespace().next()?;
    if name.is_empty() || name.starts_with('|') || name.contains('/') {
        return None;
    }
    Some(DownloadName {
        name: name.to_string(),
        complete: name.ends_with(".rpm"),
    })
}

/// How the lines that say something went wrong begin (besides `… is not
/// signed`).
const ERROR_STARTS: [&str; 7] = [
    "Error",
    "error:",
    "Problem",
    "- ",
    "No match for argument",
    "No package ",
    "Command line error",
];

/// The lines of stdout and stderr that say something went wrong.
pub(crate) fn error_excerpt(stdout: &str, stderr: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    for t in trimmed_lines(stdout, stderr) {
        let wanted =
            ERROR_STARTS.iter().any(|start| t.starts_with(start)) || t.ends_with(" is not signed");
        if wanted && !lines.contains(&t) {
            lines.push(t);
        }
    }
    sanitize_excerpt(&lines.join("\n"), MAX_EXCERPT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::el_fixtures::{dnf_fixture as fixture, dnf_fixture_rc as fixture_rc};
    use proptest::prelude::*;

    fn run(name: &str) -> DnfDownload {
        classify_download(
            Some(fixture_rc(name)),
            &fixture(&format!("{name}.out")),
            &fixture(&format!("{name}.err")),
        )
    }

    fn listing(name: &str) -> Vec<String> {
        fixture(&format!("{name}.ls"))
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn an_update_names_its_file() {
        let r = run("dnf_dl_update");
        assert_eq!(r.outcome, DnfOutcome::Downloaded);
        assert_eq!(r.run.transaction_size, Some(1));
        assert!(r.run.names_complete());
        let names: Vec<String> = r.run.downloaded.iter().map(|d| d.name.clone()).collect();
        assert_eq!(names, listing("dnf_dl_update"));
        assert_eq!(
            r.run.already_installed,
            vec!["patchman-client-1.7.0-1.noarch".to_string()]
        );
        assert_eq!(
            r.run.resolved,
            vec![
                Resolved {
                    name: "patchman-client".into(),
                    arch: "noarch".into(),
                    evr: Evr::parse("1.7.0-1").unwrap(),
                    change: Change::Upgraded
                },
                Resolved {
                    name: "patchman-client".into(),
                    arch: "noarch".into(),
                    evr: Evr::parse("1.7.1-1").unwrap(),
                    change: Change::Upgrade
                },
            ]
        );
        assert!(r.run.excerpt.is_empty(), "{}", r.run.excerpt);
    }

    #[test]
    fn cut_names_are_flagged() {
        for name in ["dnf_dl_both", "dnf_dl_client_with_realtime"] {
            let r = run(name);
            assert_eq!(r.outcome, DnfOutcome::Downloaded);
            assert_eq!(r.run.transaction_size, Some(2));
            assert!(!r.run.names_complete(), "{name}");
            let cut = r.run.downloaded.iter().find(|d| !d.complete).unwrap();
            assert_eq!(cut.name, "patchman-client-realtime-1.7.1-1.noarch.");
            assert!(listing(name).iter().any(|l| l.starts_with(&cut.name)));
        }
        // Realtime is dragged along when only the client is asked for.
        let r = run("dnf_dl_client_with_realtime");
        assert!(r
            .run
            .resolved
            .iter()
            .any(|p| p.name == "patchman-client-realtime" && p.change == Change::Upgrade));
    }

    #[test]
    fn file_repositories_print_no_names() {
        let r = run("dnf_dl_file_repo");
        assert_eq!(r.outcome, DnfOutcome::Downloaded);
        assert!(r.run.downloaded.is_empty());
        assert!(!r.run.names_complete());
        assert_eq!(listing("dnf_dl_file_repo").len(), 1);
    }

    #[test]
    fn nothing_to_do() {
        for name in ["dnf_dl_up_to_date", "dnf_dl_no_package"] {
            let r = run(name);
            assert_eq!(r.outcome, DnfOutcome::NothingToDo, "{name}");
            assert!(r.run.downloaded.is_empty());
            assert!(listing(name).is_empty());
        }
        assert_eq!(run("dnf_dl_up_to_date").run.already_installed.len(), 2);
    }

    #[test]
    fn dependency_problems_name_what_is_missing() {
        for name in ["dnf_dl_new_dep", "dnf_dl_new_dep_both"] {
            let r = run(name);
            assert_eq!(r.run.exit_code, Some(1));
            let DnfOutcome::DependencyProblem(problems) = &r.outcome else {
                panic!("{name}: {:?}", r.outcome);
            };
            assert_eq!(problems.len(), 1);
            assert_eq!(
                problems[0].summary,
                "cannot install the best candidate for the job"
            );
            assert_eq!(
                problems[0].nothing_provides,
                vec![NothingProvides {
                    requirement: "libpatchman-new".into(),
                    needed_by: "patchman-client-1.7.2-1.noarch".into()
                }]
            );
            assert!(
                r.run.excerpt.contains("nothing provides"),
                "{}",
                r.run.excerpt
            );
        }
        let two = "Error: \n Problem 1: cannot install the best update candidate for package a\n  - nothing provides x needed by a-2-1.noarch\n Problem 2: package b requires a = 2\n  - nothing provides y needed by b-2-1.noarch\n";
        let r = classify_download(Some(1), "", two);
        let DnfOutcome::DependencyProblem(problems) = r.outcome else {
            panic!()
        };
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[1].nothing_provides[0].requirement, "y");
    }

    #[test]
    fn errors() {
        assert_eq!(
            run("dnf_dl_unknown_repo").outcome,
            DnfOutcome::UnknownRepo("nope".into())
        );
        assert_eq!(
            run("dnf_dl_no_match").outcome,
            DnfOutcome::NoMatch(vec!["patchman-client".into()])
        );
        for name in ["dnf_dl_unreachable", "dnf_dl_not_found"] {
            let r = run(name);
            assert_eq!(
                r.outcome,
                DnfOutcome::MetadataUnavailable {
                    repo: Some("patchman".into())
                },
                "{name}"
            );
            assert!(r.run.excerpt.len() <= MAX_EXCERPT);
        }
        let r = run("dnf_dl_unsigned");
        assert_eq!(r.outcome, DnfOutcome::GpgCheckFailed);
        // dnf leaves the refused file behind.
        assert_eq!(listing("dnf_dl_unsigned").len(), 1);
        // `--setopt=patchman.gpgkey=` and a key not in the rpm database:
        // dnf has nothing to import and fails closed (captured by
        // attacks.rs's served-key test).
        let r = run("dnf_dl_key_not_imported");
        assert_eq!(r.outcome, DnfOutcome::GpgCheckFailed);
        assert_eq!(classify_download(None, "", "").outcome, DnfOutcome::Failed);
    }

    /// Each `---> Package` line's name and verb.
    fn changes(r: &DnfDownload) -> Vec<(&str, Change)> {
        r.run
            .resolved
            .iter()
            .map(|r| (r.name.as_str(), r.change))
            .collect()
    }

    #[test]
    fn an_assumeno_plan_shows_what_would_be_obsoleted() {
        let r = run("dnf_plan_obsoletes");
        assert_eq!(r.outcome, DnfOutcome::Aborted);
        assert_eq!(
            changes(&r),
            vec![
                ("patchman-tests-victim", Change::Obsoleted),
                ("patchman-client", Change::Upgraded),
                ("patchman-client", Change::Upgrade),
            ]
        );
    }

    #[test]
    fn an_unreadable_plan_line_is_a_change_that_is_refused() {
        let out = "---> Package patchman-client.noarch 1.7.1-1 will be an upgrade\n\
                   ---> Package patchman-client.noarch 1.7.0-1 will be upgraded\n\
                   ---> Package evil.noarch 1:: will be installed\n\
                   ---> Package nodot 1.0-1 will be installed\n";
        let r = classify_download(Some(1), out, "Operation aborted.\n");
        assert_eq!(
            changes(&r),
            vec![
                ("patchman-client", Change::Upgrade),
                ("patchman-client", Change::Upgraded),
                ("evil.noarch 1:: will be installed", Change::Other),
                ("nodot 1.0-1 will be installed", Change::Other),
            ]
        );
    }

    #[test]
    fn the_summary_counts_what_the_lines_name() {
        let r = run("dnf_plan_obsoletes");
        assert_eq!(r.run.transaction_size, Some(1));
        assert_eq!(unlisted(&r.run.resolved, r.run.transaction_size), 0);
        // The same plan with a third package's line hidden.
        let hidden = "---> Package patchman-client.noarch 1.7.0-1 will be upgraded\n\
                      ---> Package patchman-client.noarch 1.7.1-1 will be an upgrade\n\
                      Transaction Summary\n\
                      ================\n\
                      Install  1 Package\n\
                      Upgrade  1 Package\n\n";
        let r = classify_download(Some(1), hidden, "Operation aborted.\n");
        assert_eq!(r.run.transaction_size, Some(2));
        assert_eq!(unlisted(&r.run.resolved, r.run.transaction_size), 1);
        assert_eq!(unlisted(&r.run.resolved, None), 0, "no summary printed");
    }

    #[test]
    fn under_the_name_yum() {
        let r = run("dnf_as_yum_dl_update");
        assert_eq!(r.outcome, DnfOutcome::Downloaded);
        assert!(r.run.names_complete());
        assert!(r.run.resolved.is_empty(), "no --verbose");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(a in "\\PC*", b in "\\PC*", code in proptest::option::of(any::<i32>())) {
            let r = classify_download(code, &a, &b);
            prop_assert!(r.run.excerpt.len() <= MAX_EXCERPT);
        }

        #[test]
        fn dnf_like_input_never_panics(
            lines in prop::collection::vec(
                "( Problem[ 0-9]*: |  - nothing provides |---> Package |Package |Transaction Summary|Downloading Packages:|\\([0-9]/[0-9]\\): |Upgrade  |Error: Unknown repo: |Complete!|Nothing to do\\.)[a-z0-9 .:()|'-]{0,30}",
                0..12,
            )
        ) {
            let text = lines.join("\n");
            let _ = classify_download(Some(1), &text, &text);
            let _ = classify_download(Some(0), &text, "");
        }
    }
}
