//! yum 3's output (EL 6: yum 3.2.29 with yum-plugin-downloadonly; EL 7:
//! yum 3.4.3, downloadonly built in): `yum install -y --downloadonly
//! --downloaddir=DIR --disablerepo=* --enablerepo=REPO patchman-client […]`.
//!
//! yum is not packaged on Debian: the fixtures in
//! `helper/tests/fixtures/yum/` are published transcripts of real runs
//! (sources in the README there). What they show:
//! * a download: the progress lines (`(i/N): NAME | SIZE TIME`, names cut
//!   to the column as dnf does), then the marker `exiting because "Download
//!   Only" specified` (EL 7) or `exiting because --downloadonly specified `
//!   (EL 6's plugin, trailing space). The exit status of such a run is 1 on
//!   EL 6 (the plugin ends it with `PluginYumExit`, which yum turns into
//!   exit 1), so the marker decides, not the status.
//! * up to date: `Package NEVRA already installed and latest version`,
//!   `Nothing to do` (no `Error:`).
//! * not in any enabled repository: `No package NAME available.`, then
//!   `Error: Nothing to do`.
//! * EL 6 without yum-plugin-downloadonly: `Command line error: no such
//!   option: --downloadonly` (and nothing else): what to install is known.
//! * an unknown repository id: `Error getting repository data for NAME,
//!   repository not found` (yum's `repos.py`; no published transcript).
//!
//! Lines shared with dnf (`---> Package …`, `Package … already installed
//! …`, `Transaction Summary`, progress lines, `Problem:` blocks) are read
//! by [`super::dnf`]'s scanner into the report's [`DownloadRun`].

use super::dnf::{scan_common, trimmed_lines, CommonScan, DependencyProblem, DownloadRun};
use super::{truncate_at_boundary, MAX_INPUT};

/// How a yum download-only run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YumOutcome {
    /// The download-only marker: packages were downloaded (or were already
    /// in the cache: EL 5/6 print `Total size:` and no progress line then).
    Downloaded,
    /// `Nothing to do` after `already installed and latest version`.
    NothingToDo,
    /// `No package NAME available.` (and `Error: Nothing to do`).
    NotAvailable(Vec<String>),
    /// `--downloadonly` is unknown: EL 6 without yum-plugin-downloadonly.
    DownloadOnlyUnsupported,
    /// `Error getting repository data for NAME, repository not found`.
    UnknownRepo(String),
    /// yum's dependency resolver refused (`Error: Package: … Requires: …`)
    /// or a dnf-style `Problem:` block.
    DependencyProblem {
        problems: Vec<DependencyProblem>,
        requires: Vec<String>,
    },
    /// Anything else.
    Failed,
}

/// Everything read from one yum download-only run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YumDownload {
    pub outcome: YumOutcome,
    pub run: DownloadRun,
    /// `No package NAME available.`: the names.
    pub not_available: Vec<String>,
}

/// Classifies one yum 3 download-only run. Never fails; see the module
/// documentation for why the marker line, not the exit status, decides a
/// download.
pub fn classify_download(exit_code: Option<i32>, stdout: &str, stderr: &str) -> YumDownload {
    let stdout = truncate_at_boundary(stdout, MAX_INPUT);
    let stderr = truncate_at_boundary(stderr, MAX_INPUT);
    let CommonScan { run, problems } = scan_common(exit_code, stdout, stderr);
    let mut marker = false;
    let mut unsupported = false;
    let mut nothing_to_do = false;
    let mut unknown_repo = None;
    let mut not_available = Vec::new();
    let mut requires = Vec::new();
    for t in trimmed_lines(stdout, stderr) {
        if t == "exiting because \"Download Only\" specified"
            || t == "exiting because --downloadonly specified"
        {
            marker = true;
        } else if t.starts_with("Command line error: no such option: --downloadonly")
            || t.starts_with("Command line error: no such option: --downloaddir")
        {
            unsupported = true;
        } else if t == "Nothing to do" || t == "Error: Nothing to do" {
            nothing_to_do = true;
        } else if let Some(name) = t
            .strip_prefix("No package ")
            .and_then(|r| r.strip_suffix(" available."))
        {
            not_available.push(name.to_string());
        } else if let Some(repo) = t
            .strip_prefix("Error getting repository data for ")
            .and_then(|r| r.strip_suffix(", repository not found"))
        {
            unknown_repo = Some(repo.to_string());
        } else if let Some(req) = t.strip_prefix("Requires: ") {
            requires.push(req.to_string());
        }
    }
    let outcome = if unsupported {
        YumOutcome::DownloadOnlyUnsupported
    } else if let Some(repo) = unknown_repo {
        YumOutcome::UnknownRepo(repo)
    } else if !problems.is_empty() || !requires.is_empty() {
        YumOutcome::DependencyProblem { problems, requires }
    } else if marker {
        YumOutcome::Downloaded
    } else if !not_available.is_empty() {
        YumOutcome::NotAvailable(not_available.clone())
    } else if nothing_to_do {
        YumOutcome::NothingToDo
    } else {
        YumOutcome::Failed
    };
    YumDownload {
        outcome,
        run,
        not_available,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::dnf::Change;
    use crate::parse::el_fixtures::yum_fixture as fixture;
    use crate::parse::MAX_EXCERPT;
    use proptest::prelude::*;

    /// The published transcripts mix stdout and stderr and carry no exit
    /// status: try them as either stream, with 0 and 1.
    fn run(name: &str) -> YumDownload {
        let text = fixture(name);
        let a = classify_download(Some(1), &text, "");
        let b = classify_download(Some(0), "", &text);
        assert_eq!(
            a.outcome, b.outcome,
            "{name}: the stream or status changed the verdict"
        );
        a
    }

    /// The download-only transcripts: the `Transaction Summary` count, the
    /// number of progress lines, and whether they name every file.
    const DOWNLOADS: [(&str, Option<usize>, usize, bool); 4] = [
        ("el7_downloadonly_tcpdump.out", Some(1), 1, true),
        // No transaction summary in the excerpt: the names alone do not do.
        ("el7_downloadonly_many.out", None, 4, false),
        ("el6_downloadonly_plugin.out", Some(4), 4, true),
        // EL 5 had the file in its cache: `Total size:`, no progress line.
        ("el5_downloadonly_cached.out", Some(1), 0, false),
    ];

    #[test]
    fn download_only_runs() {
        for (name, transaction_size, downloaded, names_complete) in DOWNLOADS {
            let YumDownload {
                outcome, run: r, ..
            } = run(name);
            assert_eq!(outcome, YumOutcome::Downloaded, "{name}");
            assert_eq!(r.transaction_size, transaction_size, "{name}");
            assert_eq!(r.downloaded.len(), downloaded, "{name}");
            assert_eq!(r.names_complete(), names_complete, "{name}");
        }

        let r = run("el7_downloadonly_tcpdump.out").run;
        assert_eq!(r.downloaded[0].name, "tcpdump-4.9.2-4.el7_7.1.x86_64.rpm");
        assert_eq!(r.resolved[0].name, "tcpdump");
        assert_eq!(r.resolved[0].evr.epoch, 14);
        assert_eq!(r.resolved[0].change, Change::Install);
        let r = run("el7_downloadonly_many.out").run;
        assert!(r.downloaded.iter().all(|d| d.complete));
        let r = run("el5_downloadonly_cached.out").run;
        assert_eq!(r.resolved[0].change, Change::Install);
    }

    #[test]
    fn not_available_and_up_to_date() {
        for name in ["el6_no_package.out", "el7_no_package.out"] {
            let r = run(name);
            assert!(
                matches!(r.outcome, YumOutcome::NotAvailable(ref v) if v.len() == 1),
                "{name}"
            );
        }
        for name in ["el6_latest_version.out", "el7_latest_version.out"] {
            let r = run(name);
            assert_eq!(r.outcome, YumOutcome::NothingToDo, "{name}");
            assert_eq!(r.run.already_installed.len(), 1);
        }
        let r = run("el6_mixed.out");
        assert_eq!(
            r.not_available,
            vec!["python-virtualenv".to_string(), "python-pip".to_string()]
        );
        assert_eq!(r.run.already_installed.len(), 4);
        assert!(r
            .run
            .already_installed
            .contains(&"1:mod_ssl-2.2.15-69.el6.centos.x86_64".to_string()));
    }

    #[test]
    fn downloadonly_missing_on_el6() {
        let r = run("el6_no_downloadonly.out");
        assert_eq!(r.outcome, YumOutcome::DownloadOnlyUnsupported);
        assert!(r.run.excerpt.contains("--downloadonly"));
    }

    #[test]
    fn odd_runs() {
        let r = classify_download(
            Some(1),
            "",
            "Error getting repository data for patchman, repository not found\n",
        );
        assert_eq!(r.outcome, YumOutcome::UnknownRepo("patchman".into()));
        let r = classify_download(
            Some(1),
            "",
            "Error: Package: patchman-client-1.7.2-1.noarch (patchman)\n           Requires: libpatchman-new\n",
        );
        assert!(
            matches!(r.outcome, YumOutcome::DependencyProblem { ref requires, .. } if requires == &["libpatchman-new".to_string()])
        );
        assert_eq!(classify_download(None, "", "").outcome, YumOutcome::Failed);
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(a in "\\PC*", b in "\\PC*", code in proptest::option::of(any::<i32>())) {
            let r = classify_download(code, &a, &b);
            prop_assert!(r.run.excerpt.len() <= MAX_EXCERPT);
        }
    }
}
