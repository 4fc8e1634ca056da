//! `dpkg-deb --field FILE Package Version Architecture` and the outcome of
//! `dpkg -i FILE…`.
//!
//! With several field names dpkg-deb prints `Name: value` lines (with one
//! name it prints the bare value, which is why we always ask for three).
//!
//! `dpkg -i` facts measured on dpkg 1.21 (fixtures `dpkg_i_*`):
//! * `Setting up NAME (VERSION) ...` is printed *before* the postinst runs,
//!   so a package whose postinst fails is listed both there and under
//!   `Errors were encountered while processing:` — only the second counts.
//! * a missing new dependency: exit 1, `dpkg: dependency problems prevent
//!   configuration of NAME:`, the package stays unpacked.
//! * the frontend lock held: exit 2, `dpkg: error: dpkg frontend lock was
//!   locked by another process with pid N`.
//! * an unreadable archive: exit 2 `dpkg: error: cannot access archive`;
//!   not a .deb: exit 1 `dpkg: error processing archive … (--install):`.
//! * a downgrade: exit 0 with `dpkg: warning: downgrading NAME from A to B`.

use patchman_shared::{Evr, Package};

use super::{check_size, malformed, parse_evr, sanitize_excerpt, ParseError, MAX_EXCERPT};

const FIELD_TOOL: &str = "dpkg-deb --field";

/// The control fields of a `.deb` the helper checks before installing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebFields {
    pub package: String,
    pub version: Evr,
    pub architecture: String,
}

impl DebFields {
    pub fn package(&self) -> Option<Package> {
        Package::from_name(&self.package)
    }
}

/// Parses `dpkg-deb --field FILE Package Version Architecture`. Exactly
/// those three fields, once each, single words.
pub fn parse_fields(output: &str) -> Result<DebFields, ParseError> {
    check_size(FIELD_TOOL, output)?;
    let mut package = None;
    let mut version = None;
    let mut architecture = None;
    let mut seen_any = false;
    for (index, line) in output.lines().enumerate() {
        let n = index + 1;
        if line.is_empty() {
            continue;
        }
        seen_any = true;
        let Some((name, value)) = line.split_once(": ") else {
            return Err(malformed(FIELD_TOOL, n, "`Field: value`", line));
        };
        let value = value.trim();
        if value.is_empty() || value.contains(char::is_whitespace) {
            return Err(malformed(FIELD_TOOL, n, "a single-word value", line));
        }
        let slot = match name {
            "Package" => &mut package,
            "Version" => &mut version,
            "Architecture" => &mut architecture,
            _ => {
                return Err(malformed(
                    FIELD_TOOL,
                    n,
                    "Package, Version or Architecture",
                    line,
                ))
            }
        };
        if slot.is_some() {
            return Err(ParseError::Duplicate {
                tool: FIELD_TOOL,
                line: n,
                key: format!("field {name}"),
            });
        }
        *slot = Some((n, value));
    }
    if !seen_any {
        return Err(ParseError::Empty { tool: FIELD_TOOL });
    }
    let missing = |key: &str| ParseError::Missing {
        tool: FIELD_TOOL,
        key: format!("{key} field"),
    };
    let (_, package) = package.ok_or_else(|| missing("Package"))?;
    let (vline, version) = version.ok_or_else(|| missing("Version"))?;
    let (_, architecture) = architecture.ok_or_else(|| missing("Architecture"))?;
    Ok(DebFields {
        package: package.to_string(),
        version: parse_evr(FIELD_TOOL, vline, version)?,
        architecture: architecture.to_string(),
    })
}

/// How a `dpkg -i` run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpkgInstallResult {
    /// Exit 0.
    Success,
    /// Another process holds dpkg's frontend or database lock; nothing was
    /// done. Retry later; never break the lock.
    LockHeld { pid: Option<u32> },
    /// A dependency is missing: the package is left unpacked, not
    /// configured. The packages named are the ones dpkg could not configure.
    DependencyProblems { packages: Vec<String> },
    /// The file could not be read or is not a `.deb`; nothing was unpacked.
    BadArchive,
    /// Any other failure (a maintainer script, a conffile, disk full…),
    /// or exit status unknown (killed by a signal).
    Failed,
}

/// A package dpkg unpacked: `Unpacking NAME (NEW) over (OLD) ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub name: String,
    pub new: Evr,
    pub old: Option<Evr>,
}

/// Everything the helper reports about one `dpkg -i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgInstall {
    pub result: DpkgInstallResult,
    pub exit_code: Option<i32>,
    pub unpacked: Vec<Unpacked>,
    /// `Setting up NAME (VERSION) ...` lines: the configure step *started*.
    pub setting_up: Vec<(String, Evr)>,
    /// Names under `Errors were encountered while processing:` (packages or
    /// archive paths).
    pub failed: Vec<String>,
    /// `dpkg: warning: downgrading NAME from A to B`: the names.
    pub downgraded: Vec<String>,
    /// The error lines of stderr, printable, at most [`MAX_EXCERPT`] bytes.
    pub excerpt: String,
}

impl DpkgInstall {
    /// Packages that were set up and did not fail afterwards.
    pub fn configured(&self) -> Vec<(&str, &Evr)> {
        self.setting_up
            .iter()
            .filter(|(name, _)| !self.failed.iter().any(|f| f == name))
            .map(|(name, v)| (name.as_str(), v))
            .collect()
    }

    pub fn succeeded(&self) -> bool {
        self.result == DpkgInstallResult::Success
    }
}

/// Classifies one `dpkg -i` run from its exit code (`None`: killed by a
/// signal) and what it printed. Never fails: unrecognised output is kept in
/// the excerpt and the exit code decides.
pub fn classify_install(exit_code: Option<i32>, stdout: &str, stderr: &str) -> DpkgInstall {
    let stdout = super::truncate_at_boundary(stdout, super::MAX_INPUT);
    let stderr = super::truncate_at_boundary(stderr, super::MAX_INPUT);
    let mut unpacked = Vec::new();
    let mut setting_up = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("Unpacking ") {
            if let Some(u) = unpacking(rest) {
                unpacked.push(u);
            }
        } else if let Some(rest) = line.strip_prefix("Setting up ") {
            if let Some((name, version)) = name_and_version(rest) {
                setting_up.push((name.to_string(), version));
            }
        }
    }

    let mut failed = Vec::new();
    let mut downgraded = Vec::new();
    let mut dependency_problems = Vec::new();
    let mut lock_pid: Option<Option<u32>> = None;
    let mut bad_archive = false;
    let mut in_failed_list = false;
    let mut error_lines: Vec<&str> = Vec::new();
    let mut in_error_block = false;
    let mut script_lines: Vec<&str> = Vec::new();
    for line in stderr.lines() {
        if in_failed_list {
            if let Some(name) = line.strip_prefix(' ') {
                failed.push(name.trim().to_string());
                continue;
            }
            in_failed_list = false;
        }
        if line == "Errors were encountered while processing:" {
            in_failed_list = true;
            continue;
        }
        // Keep the lines of each error and the indented lines under it.
        let starts_error = line.starts_with("dpkg: error")
            || line.starts_with("dpkg: dependency problems")
            || line.starts_with("dpkg-deb: error")
            || line.starts_with("dpkg-split: error");
        if starts_error {
            in_error_block = true;
            error_lines.push(line);
        } else if in_error_block && line.starts_with(' ') {
            error_lines.push(line);
        } else {
            in_error_block = false;
            // A maintainer script's own words (why it failed) are lines
            // that are not dpkg's: keep the last few beside dpkg's error.
            if !line.starts_with("dpkg") && !line.trim().is_empty() {
                script_lines.push(line);
            }
        }

        if let Some(rest) = line.strip_prefix("dpkg: dependency problems prevent configuration of ")
        {
            dependency_problems.push(rest.trim_end_matches(':').trim().to_string());
        } else if let Some(rest) = line.strip_prefix("dpkg: warning: downgrading ") {
            if let Some(name) = rest.split_whitespace().next() {
                downgraded.push(name.to_string());
            }
        } else if line.starts_with("dpkg: error:") && line.contains("locked by another process") {
            lock_pid = Some(
                line.rsplit_once("with pid ")
                    .and_then(|(_, pid)| pid.trim().parse::<u32>().ok()),
            );
        } else if line.starts_with("dpkg: error processing archive ")
            || line.starts_with("dpkg: error: cannot access archive ")
        {
            bad_archive = true;
        }
    }

    let result = match exit_code {
        Some(0) => DpkgInstallResult::Success,
        _ if lock_pid.is_some() => DpkgInstallResult::LockHeld {
            pid: lock_pid.flatten(),
        },
        _ if !dependency_problems.is_empty() => DpkgInstallResult::DependencyProblems {
            packages: dependency_problems,
        },
        Some(_) if bad_archive && unpacked.is_empty() => DpkgInstallResult::BadArchive,
        _ => DpkgInstallResult::Failed,
    };
    let excerpt_source = if error_lines.is_empty() {
        // Nothing recognisable: the last lines of stderr say most.
        tail_lines(stderr, 6)
    } else {
        let from = script_lines.len().saturating_sub(3);
        script_lines[from..]
            .iter()
            .chain(error_lines.iter())
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    };
    DpkgInstall {
        result,
        exit_code,
        unpacked,
        setting_up,
        failed,
        downgraded,
        excerpt: sanitize_excerpt(&excerpt_source, MAX_EXCERPT),
    }
}

/// `NAME (VERSION) ...` → (NAME, VERSION).
fn name_and_version(rest: &str) -> Option<(&str, Evr)> {
    let (name, rest) = rest.split_once(" (")?;
    let (version, _) = rest.split_once(')')?;
    Some((name, Evr::parse(version).ok()?))
}

/// `NAME (NEW) over (OLD) ...` or `NAME (NEW) ...`.
fn unpacking(rest: &str) -> Option<Unpacked> {
    let (name, new) = name_and_version(rest)?;
    let old = rest
        .split_once(") over (")
        .and_then(|(_, r)| r.split_once(')'))
        .and_then(|(v, _)| Evr::parse(v).ok());
    Some(Unpacked {
        name: name.to_string(),
        new,
        old,
    })
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or(&[]).join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::fixture;
    use crate::parse::test_support::{assert_refuses_all, classify_captured, refused_capture};
    use crate::parse::test_support::{evr, lines_like};
    use proptest::prelude::*;

    fn run(name: &str) -> DpkgInstall {
        classify_captured("apt", name, classify_install)
    }

    #[test]
    fn fields_of_real_debs() {
        let f = parse_fields(&fixture("dpkg_deb_field.out")).unwrap();
        assert_eq!(f.package(), Some(Package::Client));
        assert_eq!(f.version, evr("1.7.1-1"));
        assert_eq!(f.architecture, "all");
        let f = parse_fields(&fixture("dpkg_deb_field_realtime.out")).unwrap();
        assert_eq!(f.package(), Some(Package::Realtime));
        assert!(matches!(
            refused_capture("apt", "dpkg_deb_field_garbage", 2, parse_fields),
            ParseError::Empty { .. }
        ));
    }

    #[test]
    fn fields_refuse_anything_unexpected() {
        let ok = "Package: patchman-client\nVersion: 1.7.1-1\nArchitecture: all\n";
        assert!(parse_fields(ok).is_ok());
        assert_refuses_all(
            parse_fields,
            [
                "Package: patchman-client\nVersion: 1.7.1-1\n".to_string(),
                format!("{ok}Package: evil\n"),
                format!("{ok}Depends: x\n"),
                "patchman-client\n".to_string(),
                ok.replace("patchman-client", "patchman-client -o x"),
                ok.replace("1.7.1-1", "1.7.1 1"),
                ok.replace("1.7.1-1", "1.7/1"),
                String::new(),
            ],
        );
    }

    #[test]
    fn both_packages_in_one_transaction() {
        let r = run("dpkg_i_both");
        assert!(r.succeeded());
        assert_eq!(
            r.unpacked[0],
            Unpacked {
                name: "patchman-client".into(),
                new: evr("1.7.1-1"),
                old: Some(evr("1.7.0-1")),
            }
        );
        assert_eq!(
            r.configured(),
            vec![
                ("patchman-client", &evr("1.7.1-1")),
                ("patchman-client-realtime", &evr("1.7.1-1"))
            ]
        );
        assert!(r.excerpt.is_empty());
        let fresh = run("dpkg_i_fresh");
        assert_eq!(fresh.unpacked[0].old, None);
    }

    #[test]
    fn missing_dependency_leaves_it_unpacked() {
        let r = run("dpkg_i_new_dep");
        assert_eq!(
            r.result,
            DpkgInstallResult::DependencyProblems {
                packages: vec!["patchman-client".into()]
            }
        );
        assert_eq!(r.unpacked.len(), 1);
        assert!(r.configured().is_empty());
        assert_eq!(r.failed, vec!["patchman-client".to_string()]);
        assert!(r.excerpt.contains("libpatchman-new"), "{}", r.excerpt);
        assert!(r.excerpt.len() <= MAX_EXCERPT);
    }

    #[test]
    fn failing_postinst_was_set_up_but_is_not_configured() {
        let r = run("dpkg_i_postinst_fails");
        assert_eq!(r.result, DpkgInstallResult::Failed);
        assert_eq!(r.setting_up.len(), 1);
        assert!(r.configured().is_empty());
        assert!(
            r.excerpt.contains("post-installation script"),
            "{}",
            r.excerpt
        );
        // The script's own reason comes first.
        assert!(
            r.excerpt
                .starts_with("postinst of patchman-client failing on purpose"),
            "{}",
            r.excerpt
        );
    }

    #[test]
    fn lock_archive_and_downgrade() {
        let r = run("dpkg_i_locked");
        assert_eq!(r.result, DpkgInstallResult::LockHeld { pid: Some(4242) });
        assert_eq!(r.exit_code, Some(2));

        assert_eq!(run("dpkg_i_garbage").result, DpkgInstallResult::BadArchive);
        assert_eq!(
            run("dpkg_i_missing_file").result,
            DpkgInstallResult::BadArchive
        );

        let r = run("dpkg_i_downgrade");
        assert!(r.succeeded());
        assert_eq!(r.downgraded, vec!["patchman-client".to_string()]);
    }

    #[test]
    fn signals_and_odd_output() {
        let r = classify_install(None, "", "");
        assert_eq!(r.result, DpkgInstallResult::Failed);
        // Old wording of the lock message, without a pid.
        let r = classify_install(
            Some(2),
            "",
            "dpkg: error: dpkg status database is locked by another process\n",
        );
        assert_eq!(r.result, DpkgInstallResult::LockHeld { pid: None });
        // A long, hostile stderr: capped and made printable.
        let noisy = format!("dpkg: error: \x1b[31m{}\n", "x".repeat(5000));
        let r = classify_install(
            Some(1),
            "Setting up -o (1.0) ...\nSetting up broken\n",
            &noisy,
        );
        assert!(r.excerpt.len() <= MAX_EXCERPT);
        assert!(!r.excerpt.contains('\x1b'));
        assert_eq!(r.setting_up.len(), 1);
        // Unknown failure: the tail of stderr.
        let r = classify_install(Some(1), "", "something\nwent\nwrong\n");
        assert_eq!(r.excerpt, "something\nwent\nwrong");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(a in "\\PC*", b in "\\PC*", code in proptest::option::of(any::<i32>())) {
            let _ = parse_fields(&a);
            let r = classify_install(code, &a, &b);
            prop_assert!(r.excerpt.len() <= MAX_EXCERPT);
        }

        #[test]
        fn dpkg_like_input_never_panics(
            text in lines_like(
                "(Setting up |Unpacking |dpkg: error|dpkg: warning: downgrading |Errors were encountered while processing:| |dpkg: dependency problems prevent configuration of )[a-z0-9 .()-]{0,20}",
                10,
            )
        ) {
            let _ = classify_install(Some(1), &text, &text);
        }
    }
}
