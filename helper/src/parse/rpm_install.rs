//! The outcome of `rpm -U FILE…`.
//!
//! Facts measured on rpm 4.18 (fixtures `rpm_U_*` in
//! `helper/tests/fixtures/dnf/`):
//! * success prints nothing on stdout; exit 0.
//! * Debian's rpm (not EL's) adds two lines to stderr on every install:
//!   `rpm: RPM should not be used directly install RPM packages, use Alien
//!   instead!` and `rpm: However assuming you know what you are doing...`:
//!   ignored here.
//! * the lock held: `error: can't create transaction lock on
//!   /var/lib/rpm/.rpm.lock (Resource temporarily unavailable)`, exit 1 at
//!   once, nothing done.
//! * a missing dependency: `error: Failed dependencies:` then one
//!   tab-indented `REQ is needed by NEVRA` per need, `(installed) NEVRA` when
//!   an installed package would break (realtime pinned to the old client);
//!   exit 2; nothing done.
//! * the same version: `\tpackage NEVRA is already installed`; an older
//!   one: `\tpackage NEVRA (which is newer than NEVRA) is already
//!   installed`; exit 2; nothing done. (With realtime pinned to the
//!   installed client, the dependency error comes instead.)
//! * a failing `%pre`: `error: %prein(NEVRA) scriptlet failed, exit status
//!   N`, `error: NEVRA: install failed`; exit 1; the old version stays.
//! * a failing `%post`: only `warning: %post(NEVRA) scriptlet failed, exit
//!   status N` and **exit 0**: the new version is installed. Reported in
//!   [`RpmInstall::scriptlet_warnings`] so the caller can tell.
//! * a damaged file: `error: FILE: … BAD …`, `error: FILE cannot be
//!   installed`, exit 1; a missing one: `error: open of FILE failed: …`; a
//!   text file is read as a manifest (a list of paths), one `open of WORD
//!   failed` per word.
//! * any other non-zero exit is a failure: rpm exits with the number of
//!   failed elements.

use super::{sanitize_excerpt, truncate_at_boundary, MAX_EXCERPT, MAX_INPUT};

/// One `REQ is needed by NEVRA` line of `error: Failed dependencies:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDependency {
    /// What is required, as rpm prints it (`libpatchman-new`,
    /// `patchman-client = 1.7.0-1`).
    pub requirement: String,
    /// The package that requires it (`patchman-client-1.7.2-1.noarch`).
    pub needed_by: String,
    /// `(installed)`: an installed package would lose what it needs.
    pub by_installed: bool,
}

/// How a `rpm -U` run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpmInstallResult {
    /// Exit 0 (see [`RpmInstall::scriptlet_warnings`]).
    Success,
    /// Another process holds `/var/lib/rpm/.rpm.lock`; nothing was done.
    LockHeld,
    /// Dependencies missing or broken; nothing was done.
    FailedDependencies(Vec<FailedDependency>),
    /// `package NEVRA is already installed` (`newer: false`) or
    /// `… (which is newer than …) is already installed` (`newer: true`, a
    /// downgrade refused); nothing was done. The NEVRAs of the installed
    /// packages.
    AlreadyInstalled { packages: Vec<String>, newer: bool },
    /// A scriptlet rpm treats as fatal (`%pre`, …) failed: that element
    /// was not installed.
    ScriptletFailed { scriptlets: Vec<String> },
    /// The file is missing, unreadable or not a package.
    BadPackage,
    /// Anything else, or killed by a signal.
    Failed,
}

/// Everything the helper reports about one `rpm -U`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmInstall {
    pub result: RpmInstallResult,
    pub exit_code: Option<i32>,
    /// `warning: %post(NEVRA) scriptlet failed, exit status N` lines (the
    /// `%post(NEVRA)` part): rpm exits 0 after them.
    pub scriptlet_warnings: Vec<String>,
    /// The error lines, printable, at most [`MAX_EXCERPT`] bytes.
    pub excerpt: String,
}

impl RpmInstall {
    pub fn succeeded(&self) -> bool {
        self.result == RpmInstallResult::Success
    }
}

/// Debian's rpm's own two lines, printed on every install.
fn is_debian_noise(line: &str) -> bool {
    line.starts_with("rpm: RPM should not be used directly")
        || line.starts_with("rpm: However assuming you know what you are doing")
}

/// Classifies one `rpm -U` run from its exit code (`None`: killed by a
/// signal) and what it printed. Never fails: unrecognised output is kept in
/// the excerpt and the exit code decides.
pub fn classify_install(exit_code: Option<i32>, stdout: &str, stderr: &str) -> RpmInstall {
    let stdout = truncate_at_boundary(stdout, MAX_INPUT);
    let stderr = truncate_at_boundary(stderr, MAX_INPUT);
    let mut lock = false;
    let mut deps = Vec::new();
    let mut already = Vec::new();
    let mut newer = false;
    let mut scriptlets = Vec::new();
    let mut scriptlet_warnings = Vec::new();
    let mut bad_package = false;
    let mut error_lines: Vec<&str> = Vec::new();
    for line in stderr.lines().chain(stdout.lines()) {
        if is_debian_noise(line) || line.trim().is_empty() {
            continue;
        }
        let trimmed = line.trim();
        if line.starts_with("error:") || line.starts_with('\t') {
            error_lines.push(line);
        }
        if line.starts_with("error: can't create transaction lock on") {
            lock = true;
        } else if let Some(rest) = trimmed.strip_prefix("package ") {
            if let Some(nevra) = rest.strip_suffix(" is already installed") {
                match nevra.split_once(" (which is newer than ") {
                    Some((installed, _)) => {
                        newer = true;
                        already.push(installed.to_string());
                    }
                    None => already.push(nevra.to_string()),
                }
            }
        } else if line.starts_with('\t') && trimmed.contains(" is needed by ") {
            if let Some((req, by)) = trimmed.split_once(" is needed by ") {
                let (by, by_installed) = match by.strip_prefix("(installed) ") {
                    Some(b) => (b, true),
                    None => (by, false),
                };
                deps.push(FailedDependency {
                    requirement: req.to_string(),
                    needed_by: by.to_string(),
                    by_installed,
                });
            }
        } else if let Some(rest) = line.strip_prefix("error: %") {
            if let Some((scriptlet, _)) = rest.split_once(" scriptlet failed") {
                scriptlets.push(format!("%{scriptlet}"));
            }
        } else if let Some(rest) = line.strip_prefix("warning: %") {
            if let Some((scriptlet, _)) = rest.split_once(" scriptlet failed") {
                scriptlet_warnings.push(format!("%{scriptlet}"));
            }
        } else if line.starts_with("error: open of ")
            || line.ends_with(" cannot be installed")
            || line.contains("not an rpm package")
            || (line.starts_with("error: ") && line.contains(": BAD"))
        {
            bad_package = true;
        }
    }
    let result = match exit_code {
        Some(0) => RpmInstallResult::Success,
        _ if lock => RpmInstallResult::LockHeld,
        _ if !deps.is_empty() => RpmInstallResult::FailedDependencies(deps),
        _ if !already.is_empty() => RpmInstallResult::AlreadyInstalled {
            packages: already,
            newer,
        },
        _ if !scriptlets.is_empty() => RpmInstallResult::ScriptletFailed { scriptlets },
        Some(_) if bad_package => RpmInstallResult::BadPackage,
        _ => RpmInstallResult::Failed,
    };
    let excerpt_source = if error_lines.is_empty() {
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !is_debian_noise(l))
            .collect();
        let start = lines.len().saturating_sub(6);
        lines.get(start..).unwrap_or(&[]).join("\n")
    } else {
        error_lines.join("\n")
    };
    RpmInstall {
        result,
        exit_code,
        scriptlet_warnings,
        excerpt: sanitize_excerpt(&excerpt_source, MAX_EXCERPT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::classify_captured;
    use crate::parse::test_support::lines_like;
    use proptest::prelude::*;

    #[test]
    fn rpm_4_16_to_4_20_read_the_same() {
        use crate::parse::el_fixtures::{rpm_fixture, CAPTURED_RPM_VERSIONS};
        use RpmInstallResult::*;
        let dep = FailedDependency {
            requirement: "libpatchman-new".into(),
            needed_by: "patchman-client-1.7.2-1.noarch".into(),
            by_installed: false,
        };
        for v in CAPTURED_RPM_VERSIONS {
            let r = |case: &str| {
                let name = format!("{v}_rpm_U_{case}");
                let rc = rpm_fixture(&format!("{name}.rc"));
                classify_install(
                    Some(rc.trim().parse().expect("a numeric .rc")),
                    &rpm_fixture(&format!("{name}.out")),
                    &rpm_fixture(&format!("{name}.err")),
                )
            };
            assert_eq!(r("fresh").result, Success, "{v}");
            assert_eq!(r("update").result, Success, "{v}");
            // rpm 4.16 exits 1 here, 4.18+ 2: the lines decide.
            assert_eq!(
                r("new_dep").result,
                FailedDependencies(vec![dep.clone()]),
                "{v}"
            );
            assert_eq!(
                r("same").result,
                AlreadyInstalled {
                    packages: vec!["patchman-client-1.7.0-1.noarch".into()],
                    newer: false
                },
                "{v}"
            );
            assert_eq!(
                r("downgrade").result,
                AlreadyInstalled {
                    packages: vec!["patchman-client-1.7.1-1.noarch".into()],
                    newer: true
                },
                "{v}"
            );
            let post = r("post_fails");
            assert_eq!(post.result, Success, "{v}");
            assert_eq!(
                post.scriptlet_warnings,
                ["%post(patchman-client-1.7.3-1.noarch)"],
                "{v}"
            );
            assert_eq!(r("garbage").result, BadPackage, "{v}");
            assert_eq!(r("missing").result, BadPackage, "{v}");
        }
    }

    fn run(name: &str) -> RpmInstall {
        classify_captured("dnf", name, classify_install)
    }

    #[test]
    fn successes_ignore_debians_alien_warning() {
        for name in ["rpm_U_fresh", "rpm_U_both", "rpm_U_realtime_fresh"] {
            let r = run(name);
            assert!(r.succeeded(), "{name}: {r:?}");
            assert!(r.excerpt.is_empty(), "{name}: {}", r.excerpt);
            assert!(r.scriptlet_warnings.is_empty());
        }
    }

    #[test]
    fn lock_held() {
        let r = run("rpm_U_locked");
        assert_eq!(r.result, RpmInstallResult::LockHeld);
        assert_eq!(r.exit_code, Some(1));
        assert!(r.excerpt.contains(".rpm.lock"), "{}", r.excerpt);
    }

    #[test]
    fn failed_dependencies() {
        for (name, requirement, needed_by, by_installed) in [
            (
                "rpm_U_new_dep",
                "libpatchman-new",
                "patchman-client-1.7.2-1.noarch",
                false,
            ),
            (
                "rpm_U_client_breaks_realtime",
                "patchman-client = 1.7.0-1",
                "patchman-client-realtime-1.7.0-1.noarch",
                true,
            ),
        ] {
            assert_eq!(
                run(name).result,
                RpmInstallResult::FailedDependencies(vec![FailedDependency {
                    requirement: requirement.into(),
                    needed_by: needed_by.into(),
                    by_installed,
                }]),
                "{name}"
            );
        }
        assert!(matches!(
            run("rpm_U_downgrade_with_realtime").result,
            RpmInstallResult::FailedDependencies(_)
        ));
    }

    #[test]
    fn already_installed_and_downgrade() {
        assert_eq!(
            run("rpm_U_same").result,
            RpmInstallResult::AlreadyInstalled {
                packages: vec!["patchman-client-1.7.0-1.noarch".into()],
                newer: false
            }
        );
        assert_eq!(
            run("rpm_U_downgrade").result,
            RpmInstallResult::AlreadyInstalled {
                packages: vec!["patchman-client-1.7.1-1.noarch".into()],
                newer: true
            }
        );
    }

    #[test]
    fn scriptlets() {
        let r = run("rpm_U_pre_fails");
        assert_eq!(
            r.result,
            RpmInstallResult::ScriptletFailed {
                scriptlets: vec!["%prein(patchman-client-1.7.4-1.noarch)".into()]
            }
        );
        // A failing %post: exit 0, installed, and a warning.
        let r = run("rpm_U_scriptlet_fails");
        assert!(r.succeeded());
        assert_eq!(
            r.scriptlet_warnings,
            vec!["%post(patchman-client-1.7.3-1.noarch)".to_string()]
        );
    }

    #[test]
    fn bad_files() {
        for name in ["rpm_U_garbage", "rpm_U_missing", "rpm_U_text"] {
            assert_eq!(run(name).result, RpmInstallResult::BadPackage, "{name}");
        }
        assert_eq!(
            classify_install(None, "", "").result,
            RpmInstallResult::Failed
        );
        assert_eq!(
            classify_install(Some(1), "", "something odd\n").excerpt,
            "something odd"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(a in "\\PC*", b in "\\PC*", code in proptest::option::of(any::<i32>())) {
            let r = classify_install(code, &a, &b);
            prop_assert!(r.excerpt.len() <= MAX_EXCERPT);
        }

        #[test]
        fn rpm_like_input_never_panics(
            text in lines_like(
                "(error: |\t|warning: %|error: %|\tpackage |rpm: )[a-z0-9 ().=%-]{0,24}( is needed by | is already installed| scriptlet failed| \\(which is newer than )?[a-z0-9 ()-]{0,12}",
                10,
            )
        ) {
            let r = classify_install(Some(2), &text, &text);
            prop_assert!(r.excerpt.len() <= MAX_EXCERPT);
        }
    }
}
