//! `apt-cache policy patchman-client [patchman-client-realtime]`.
//!
//! ```text
//! patchman-client:
//!   Installed: 1.7.0-1
//!   Candidate: 1.7.1-1
//!   Version table:
//!      1.7.1-1 500
//!         500 http://127.0.0.1:18631/flat ./ Packages
//!  *** 1.7.0-1 500
//!         500 http://127.0.0.1:18631/flat ./ Packages
//!         100 /var/lib/dpkg/status
//! ```
//!
//! Measured on apt 2.6: a package apt does not know prints nothing at all
//! (stdout empty, exit 0, no notice on stderr), so an absent section means
//! "unknown package". A version only in dpkg's status (config-files left
//! behind) has priority -1. `Installed:`/`Candidate:` say `(none)`.

use patchman_shared::{Evr, Package};

use super::{check_size, malformed, parse_evr, ParseError};

const TOOL: &str = "apt-cache policy";

/// The policy of every package apt printed, in its order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub packages: Vec<PackagePolicy>,
}

/// One package's section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagePolicy {
    /// The name as printed (may carry an `:arch` qualifier).
    pub name: String,
    /// `installed`: `None` for `(none)`.
    pub installed: Option<Evr>,
    /// `Candidate`: `None` for `(none)`.
    pub candidate: Option<Evr>,
    pub versions: Vec<PolicyVersion>,
}

/// One row of the version table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: Evr,
    /// The version's priority (after pinning; `-1` for status-only).
    pub priority: i32,
    /// Marked `***`: the installed version.
    pub installed: bool,
    /// Where apt has this version from.
    pub sources: Vec<PolicySource>,
}

/// A source line under a version: `500 http://host/path ./ Packages`,
/// `500 http://host/debian bookworm/main amd64 Packages`,
/// `100 /var/lib/dpkg/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub priority: i32,
    /// The rest of the line after the priority, as printed.
    pub location: String,
}

impl PolicySource {
    /// The URI (or the status file path): the first word of the location.
    pub fn uri(&self) -> &str {
        self.location.split_whitespace().next().unwrap_or("")
    }

    /// Whether this line is an index fetched from `uri` (compared without
    /// trailing slashes, which apt does not keep consistently).
    pub fn is_from(&self, uri: &str) -> bool {
        let want = uri.trim_end_matches('/');
        !want.is_empty() && self.uri().trim_end_matches('/') == want
    }
}

impl PackagePolicy {
    /// The package this section is about, if it is one of ours.
    pub fn package(&self) -> Option<Package> {
        Package::from_name(&self.name)
    }

    /// The version-table row of the candidate.
    pub fn candidate_row(&self) -> Option<&PolicyVersion> {
        let candidate = self.candidate.as_ref()?;
        self.versions.iter().find(|v| &v.version == candidate)
    }

    /// Whether the candidate is offered by `uri` (the patchman repository).
    /// False when there is no candidate or it is not in the table.
    pub fn candidate_from(&self, uri: &str) -> bool {
        self.candidate_row()
            .is_some_and(|row| row.sources.iter().any(|s| s.is_from(uri)))
    }
}

impl Policy {
    /// The section for one of our packages; `None` when apt does not know it.
    pub fn get(&self, package: Package) -> Option<&PackagePolicy> {
        self.packages.iter().find(|p| p.name == package.name())
    }
}

/// Parses the stdout of `apt-cache policy`. Empty output is a valid answer:
/// none of the packages asked about is known.
pub fn parse(output: &str) -> Result<Policy, ParseError> {
    check_size(TOOL, output)?;
    let mut policy = Policy::default();
    let mut in_table = false;
    for (index, line) in output.lines().enumerate() {
        let n = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let Some(name) = line.strip_suffix(':') else {
                return Err(malformed(TOOL, n, "`package-name:`", line));
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(malformed(TOOL, n, "a package name", line));
            }
            if policy.packages.iter().any(|p| p.name == name) {
                return Err(ParseError::Duplicate {
                    tool: TOOL,
                    line: n,
                    key: format!("package {name}"),
                });
            }
            policy.packages.push(PackagePolicy {
                name: name.to_string(),
                installed: None,
                candidate: None,
                versions: Vec::new(),
            });
            in_table = false;
            continue;
        }
        let Some(package) = policy.packages.last_mut() else {
            return Err(malformed(TOOL, n, "a `package-name:` line first", line));
        };
        if !in_table {
            let trimmed = line.trim();
            if let Some(v) = trimmed.strip_prefix("Installed:") {
                package.installed = optional_version(n, v.trim())?;
            } else if let Some(v) = trimmed.strip_prefix("Candidate:") {
                package.candidate = optional_version(n, v.trim())?;
            } else if trimmed == "Version table:" {
                in_table = true;
            }
            // Other `Key: value` lines (`Package pin:` of older apt) carry
            // nothing we use.
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let Some(rest) = line.strip_prefix(" *** ") {
            package.versions.push(version_row(n, line, rest, true)?);
        } else if indent <= 5 {
            package
                .versions
                .push(version_row(n, line, line.trim_start(), false)?);
        } else {
            let Some(row) = package.versions.last_mut() else {
                return Err(malformed(TOOL, n, "a version before its sources", line));
            };
            let trimmed = line.trim();
            let (priority, location) = trimmed
                .split_once(' ')
                .ok_or_else(|| malformed(TOOL, n, "`PRIORITY location`", line))?;
            let priority = priority
                .parse::<i32>()
                .map_err(|_| malformed(TOOL, n, "a numeric priority", line))?;
            let location = location.trim();
            if location.is_empty() {
                return Err(malformed(TOOL, n, "a source location", line));
            }
            row.sources.push(PolicySource {
                priority,
                location: location.to_string(),
            });
        }
    }
    for package in &policy.packages {
        check_package(package)?;
    }
    Ok(policy)
}

fn optional_version(n: usize, s: &str) -> Result<Option<Evr>, ParseError> {
    if s == "(none)" {
        Ok(None)
    } else {
        parse_evr(TOOL, n, s).map(Some)
    }
}

/// `1.7.1-1 500` (after the `***` or the indentation); newer apt may add
/// words after the priority (`(phased 10%)`).
fn version_row(
    n: usize,
    line: &str,
    rest: &str,
    installed: bool,
) -> Result<PolicyVersion, ParseError> {
    let mut words = rest.split_whitespace();
    let (Some(version), Some(priority)) = (words.next(), words.next()) else {
        return Err(malformed(TOOL, n, "`VERSION PRIORITY`", line));
    };
    let priority = priority
        .parse::<i32>()
        .map_err(|_| malformed(TOOL, n, "a numeric priority", line))?;
    Ok(PolicyVersion {
        version: parse_evr(TOOL, n, version)?,
        priority,
        installed,
        sources: Vec::new(),
    })
}

/// A section that contradicts how apt prints it: the output was cut or is
/// not apt's.
fn check_package(p: &PackagePolicy) -> Result<(), ParseError> {
    let inconsistent = |detail: String| ParseError::Inconsistent { tool: TOOL, detail };
    let marked: Vec<&PolicyVersion> = p.versions.iter().filter(|v| v.installed).collect();
    match (&p.installed, marked.as_slice()) {
        (None, []) => {}
        (Some(i), [row]) if &row.version == i => {}
        (Some(i), []) => {
            return Err(ParseError::Truncated {
                tool: TOOL,
                detail: format!(
                    "{}: installed {i} has no *** row in the version table",
                    p.name
                ),
            })
        }
        _ => {
            return Err(inconsistent(format!(
                "{}: the Installed: line and the *** marker disagree",
                p.name
            )))
        }
    }
    if let Some(candidate) = &p.candidate {
        if !p.versions.iter().any(|v| &v.version == candidate) {
            return Err(ParseError::Truncated {
                tool: TOOL,
                detail: format!(
                    "{}: candidate {candidate} is not in the version table",
                    p.name
                ),
            });
        }
    }
    if let Some(v) = p.versions.iter().find(|v| v.sources.is_empty()) {
        return Err(ParseError::Truncated {
            tool: TOOL,
            detail: format!("{}: version {} has no source line", p.name, v.version),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::{assert_refuses_all, evr, lines_like};
    use crate::parse::test_support::{fixture, fixture_rc};
    use proptest::prelude::*;

    const FLAT: &str = "http://127.0.0.1:18631/flat";
    const DISTS: &str = "http://127.0.0.1:18631/dists-repo";

    #[test]
    fn client_installed_realtime_not() {
        let p = parse(&fixture("apt_policy_client_only.out")).unwrap();
        assert_eq!(p.packages.len(), 2);
        let client = p.get(Package::Client).unwrap();
        assert_eq!(client.installed, Some(evr("1.7.0-1")));
        assert_eq!(client.candidate, Some(evr("1.7.1-1")));
        assert_eq!(client.versions.len(), 2);
        assert!(client.versions[1].installed);
        assert_eq!(client.versions[1].sources.len(), 2);
        assert_eq!(client.versions[1].sources[1].priority, 100);
        assert!(client.versions[1].sources[1]
            .uri()
            .ends_with("/var/lib/dpkg/status"));
        assert!(client.candidate_from(FLAT));
        assert!(client.candidate_from("http://127.0.0.1:18631/flat/"));
        assert!(!client.candidate_from("http://127.0.0.1:18631/fla"));
        let realtime = p.get(Package::Realtime).unwrap();
        assert_eq!(realtime.installed, None);
        assert_eq!(realtime.candidate, Some(evr("1.7.1-1")));
        assert_eq!(realtime.package(), Some(Package::Realtime));
    }

    #[test]
    fn candidate_only_in_another_repository_is_visible() {
        let p = parse(&fixture("apt_policy_both_repos.out")).unwrap();
        let client = p.get(Package::Client).unwrap();
        assert_eq!(client.candidate, Some(evr("1.7.2-1")));
        // 1.7.2-1 exists only in the dists-style repository.
        assert!(client.candidate_from(DISTS));
        assert!(!client.candidate_from(FLAT));
        let row = client.candidate_row().unwrap();
        assert_eq!(
            row.sources[0].location,
            format!("{DISTS} bookworm/main amd64 Packages")
        );
        // 1.7.1-1 is offered by both.
        assert_eq!(client.versions[1].sources.len(), 2);
    }

    #[test]
    fn pinned_installed_up_to_date_and_config_files() {
        let p = parse(&fixture("apt_policy_pinned.out")).unwrap();
        let client = p.get(Package::Client).unwrap();
        assert_eq!(client.candidate, client.installed);
        assert_eq!(client.candidate_row().unwrap().priority, 1001);

        let p = parse(&fixture("apt_policy_up_to_date.out")).unwrap();
        for package in Package::ALL {
            let pp = p.get(package).unwrap();
            assert_eq!(pp.installed, Some(evr("1.7.1-1")));
            assert_eq!(pp.candidate, pp.installed);
        }

        let p = parse(&fixture("apt_policy_both_installed.out")).unwrap();
        assert_eq!(
            p.get(Package::Realtime).unwrap().installed,
            Some(evr("1.7.0-1"))
        );

        // Removed with its conffile kept: not installed, status-only row
        // with priority -1.
        let p = parse(&fixture("apt_policy_config_files.out")).unwrap();
        let client = p.get(Package::Client).unwrap();
        assert_eq!(client.installed, None);
        assert_eq!(client.versions[0].version, evr("1.7.3-1"));
        assert_eq!(client.versions[0].priority, -1);
        assert!(!client.versions[0].installed);
    }

    #[test]
    fn unknown_packages_print_nothing() {
        assert_eq!(fixture("apt_policy_unknown.out"), "");
        assert_eq!(fixture_rc("apt_policy_unknown"), 0);
        assert_eq!(
            parse(&fixture("apt_policy_unknown.out")).unwrap(),
            Policy::default()
        );
        let p = parse(&fixture("apt_policy_unknown_and_known.out")).unwrap();
        assert_eq!(p.packages.len(), 1);
        assert!(p.get(Package::Client).is_some());
        assert!(p.get(Package::Realtime).is_none());
    }

    #[test]
    fn truncated_and_contradictory_output_is_refused() {
        let full = fixture("apt_policy_client_only.out");
        // Cut after the candidate's version line, before its source.
        let cut_at = full.find("        500").unwrap();
        assert!(matches!(
            parse(&full[..cut_at]),
            Err(ParseError::Truncated { .. })
        ));
        // Cut before the version table: candidate not in the table.
        let cut_at = full.find("  Version table:").unwrap();
        assert!(matches!(
            parse(&full[..cut_at]),
            Err(ParseError::Truncated { .. })
        ));
        // Installed: says one thing, *** another.
        let forged = full.replacen("Installed: 1.7.0-1", "Installed: 1.7.1-1", 1);
        assert!(matches!(
            parse(&forged),
            Err(ParseError::Inconsistent { .. })
        ));
        let doubled = format!("{full}{full}");
        assert!(matches!(parse(&doubled), Err(ParseError::Duplicate { .. })));
    }

    #[test]
    fn garbage_is_refused() {
        assert_refuses_all(
            parse,
            [
                "hello\n",
                "  Installed: 1.0\n",
                "x:\n  Installed: not a version!\n",
                "x:\n  Version table:\n     1.0 high\n",
                "x:\n  Version table:\n        500 http://a ./ Packages\n",
                "-o Foo=1:\n",
            ],
        );
        // A section name that is not ours is kept but never matches ours.
        let p = parse("patchman-client-evil:\n  Installed: (none)\n  Candidate: (none)\n").unwrap();
        assert!(p.get(Package::Client).is_none());
        assert_eq!(p.packages[0].package(), None);
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn policy_like_input_never_panics(
            text in lines_like(
                "(patchman-client:|  Installed: |  Candidate: |  Version table:| \\*\\*\\* |     |        )[0-9a-z.:~() -]{0,16}",
                16,
            )
        ) {
            if let Ok(p) = parse(&text) {
                for pp in &p.packages {
                    let _ = pp.candidate_from(FLAT);
                }
            }
        }
    }
}
