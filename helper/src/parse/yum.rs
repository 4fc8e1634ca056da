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
//! Lines shared with dnf (`---> Package …`, `Transaction Summary`, progress
//! lines, `Problem:` blocks) are read by [`super::dnf`]'s scanner.

use super::dnf::{
    error_excerpt, scan_common, trimmed_lines, DependencyProblem, DownloadName, Resolved,
};
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
    pub exit_code: Option<i32>,
    /// `---> Package …` lines.
    pub resolved: Vec<Resolved>,
    /// `Package NEVRA already installed and latest version`: the NEVRAs
    /// (yum 3 prints an epoch as `1:name-v-r.arch`).
    pub latest: Vec<String>,
    /// `No package NAME available.`: the names.
    pub not_available: Vec<String>,
    /// File names of the progress lines (see [`DownloadName`]).
    pub downloaded: Vec<DownloadName>,
    /// The number of packages in `Transaction Summary`.
    pub transaction_size: Option<usize>,
    /// As many complete names as the transaction has packages; otherwise
    /// list the directory.
    pub names_complete: bool,
    /// The error lines, printable, capped.
    pub excerpt: String,
}

/// Classifies one yum 3 download-only run. Never fails; see the module
/// documentation for why the marker line, not the exit status, decides a
/// download.
pub fn classify_download(exit_code: Option<i32>, stdout: &str, stderr: &str) -> YumDownload {
    let stdout = truncate_at_boundary(stdout, MAX_INPUT);
    let stderr = truncate_at_boundary(stderr, MAX_INPUT);
    let scan = scan_common(stdout, stderr);
    let mut marker = false;
    let mut unsupported = false;
    let mut nothing_to_do = false;
    let mut unknown_repo = None;
    let mut latest = Vec::new();
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
        } else if let Some(nevra) = t
            .strip_prefix("Package ")
            .and_then(|r| r.strip_suffix(" already installed and latest version"))
        {
            latest.push(nevra.to_string());
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
    } else if !scan.problems.is_empty() || !requires.is_empty() {
        YumOutcome::DependencyProblem {
            problems: scan.problems.clone(),
            requires,
        }
    } else if marker {
        YumOutcome::Downloaded
    } else if !not_available.is_empty() {
        YumOutcome::NotAvailable(not_available.clone())
    } else if nothing_to_do {
        YumOutcome::NothingToDo
    } else {
        YumOutcome::Failed
    };
    let names_complete = scan.names_complete();
    YumDownload {
        outcome,
        exit_code,
        resolved: scan.resolved,
        latest,
        not_available,
        downloaded: scan.downloaded,
        transaction_size: scan.transaction_size,
        names_complete,
        excerpt: error_excerpt(stdout, stderr),
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

    #[test]
    fn el7_download_only() {
        let r = run("el7_downloadonly_tcpdump.out");
        assert_eq!(r.outcome, YumOutcome::Downloaded);
        assert_eq!(r.transaction_size, Some(1));
        assert!(r.names_complete);
        assert_eq!(r.downloaded[0].name, "tcpdump-4.9.2-4.el7_7.1.x86_64.rpm");
        assert_eq!(r.resolved[0].name, "tcpdump");
        assert_eq!(r.resolved[0].evr.epoch, 14);
        assert_eq!(r.resolved[0].change, Change::Install);

        let r = run("el7_downloadonly_many.out");
        assert_eq!(r.outcome, YumOutcome::Downloaded);
        assert_eq!(r.downloaded.len(), 4);
        assert!(r.downloaded.iter().all(|d| d.complete));
        assert!(!r.names_complete, "no transaction summary in the excerpt");
    }

    #[test]
    fn el6_plugin_and_el5_cache() {
        let r = run("el6_downloadonly_plugin.out");
        assert_eq!(r.outcome, YumOutcome::Downloaded);
        assert_eq!(r.transaction_size, Some(4));
        assert_eq!(r.downloaded.len(), 4);
        assert!(r.names_complete);
        let r = run("el5_downloadonly_cached.out");
        assert_eq!(r.outcome, YumOutcome::Downloaded);
        assert_eq!(r.transaction_size, Some(1));
        assert!(r.downloaded.is_empty());
        assert!(!r.names_complete);
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
            assert_eq!(r.latest.len(), 1);
        }
        let r = run("el6_mixed.out");
        assert_eq!(
            r.not_available,
            vec!["python-virtualenv".to_string(), "python-pip".to_string()]
        );
        assert_eq!(r.latest.len(), 4);
        assert!(r
            .latest
            .contains(&"1:mod_ssl-2.2.15-69.el6.centos.x86_64".to_string()));
    }

    #[test]
    fn downloadonly_missing_on_el6() {
        let r = run("el6_no_downloadonly.out");
        assert_eq!(r.outcome, YumOutcome::DownloadOnlyUnsupported);
        assert!(r.excerpt.contains("--downloadonly"));
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
            prop_assert!(r.excerpt.len() <= MAX_EXCERPT);
        }
    }
}
