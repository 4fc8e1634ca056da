//! `apt-get -s install patchman-client=V [patchman-client-realtime=V]`:
//! would anything but our packages change?
//!
//! ```text
//! 2 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.
//! Inst patchman-client-realtime [1.7.0-1] (1.7.1-1 127.0.0.1 [all]) []
//! Inst patchman-client [1.7.0-1] (1.7.1-1 127.0.0.1 [all])
//! Conf patchman-client-realtime (1.7.1-1 127.0.0.1 [all])
//! Remv patchman-client-realtime [1.7.0-1]
//! ```
//!
//! When the request cannot be resolved apt prints (exit 100):
//!
//! ```text
//! The following packages have unmet dependencies:
//!  patchman-client : Depends: libpatchman-new but it is not installable
//! ```
//!
//! The counts in the summary line are checked against the `Inst`/`Remv`
//! lines, so output cut short is refused rather than read as "nothing else
//! changes". The source in `(…)` is the repository's *host name*, not its
//! URI, so it cannot tell repositories apart; the policy check does that.

use patchman_shared::{Evr, Package};

use super::{check_size, malformed, parse_evr, ParseError};

const TOOL: &str = "apt-get -s install";

const UNMET_HEADER: &str = "The following packages have unmet dependencies:";

/// A package apt would unpack: `Inst NAME [OLD] (NEW …)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub name: String,
    /// The version installed now; `None` for a new package.
    pub old: Option<Evr>,
    pub new: Evr,
}

/// What `apt-get -s` said it would do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simulation {
    /// `Inst` lines, in order.
    pub installs: Vec<Install>,
    /// `Conf` lines (includes packages only being configured).
    pub configures: Vec<String>,
    /// `Remv` / `Purg` lines.
    pub removes: Vec<String>,
    /// The lines under "The following packages have unmet dependencies:",
    /// trimmed (` patchman-client : Depends: libpatchman-new but it is not
    /// installable`).
    pub unmet: Vec<String>,
}

impl Simulation {
    /// Every package named in the plan that is not one of our two, each
    /// once, in order of appearance. Names are compared exactly, so a
    /// foreign-architecture `patchman-client:i386` counts as another package.
    pub fn others(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let names = self
            .installs
            .iter()
            .map(|i| i.name.as_str())
            .chain(self.configures.iter().map(String::as_str))
            .chain(self.removes.iter().map(String::as_str));
        for name in names {
            if Package::from_name(name).is_none() && !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// True when apt resolved the request and would only install or
    /// configure our packages, removing nothing.
    pub fn only_ours(&self) -> bool {
        self.unmet.is_empty() && self.removes.is_empty() && self.others().is_empty()
    }

    /// The planned install of one of our packages.
    pub fn install_of(&self, package: Package) -> Option<&Install> {
        self.installs.iter().find(|i| i.name == package.name())
    }
}

/// The summary line's counts.
#[derive(Debug, Default)]
struct Summary {
    changed: u64,
    removed: u64,
}

/// Parses the stdout of `apt-get -s install …`.
pub fn parse(output: &str) -> Result<Simulation, ParseError> {
    check_size(TOOL, output)?;
    let mut sim = Simulation::default();
    let mut summary: Option<Summary> = None;
    let mut in_unmet = false;
    for (index, line) in output.lines().enumerate() {
        let n = index + 1;
        if in_unmet {
            if line.starts_with(' ') && !line.trim().is_empty() {
                sim.unmet.push(line.trim().to_string());
                continue;
            }
            in_unmet = false;
        }
        if line == UNMET_HEADER {
            in_unmet = true;
        } else if let Some(rest) = line.strip_prefix("Inst ") {
            sim.installs.push(inst_line(n, line, rest)?);
        } else if let Some(rest) = line.strip_prefix("Conf ") {
            sim.configures.push(first_word(n, line, rest)?.to_string());
        } else if let Some(rest) = line
            .strip_prefix("Remv ")
            .or_else(|| line.strip_prefix("Purg "))
        {
            sim.removes.push(first_word(n, line, rest)?.to_string());
        } else if line.contains(" upgraded, ") && line.contains(" to remove") {
            if summary.is_some() {
                return Err(ParseError::Duplicate {
                    tool: TOOL,
                    line: n,
                    key: "the summary line".into(),
                });
            }
            summary = Some(summary_line(n, line)?);
        }
    }
    match summary {
        Some(s) => {
            if s.changed != sim.installs.len() as u64 || s.removed != sim.removes.len() as u64 {
                return Err(ParseError::Truncated {
                    tool: TOOL,
                    detail: format!(
                        "the summary counts {} to install and {} to remove, the plan lists {} and {}",
                        s.changed,
                        s.removed,
                        sim.installs.len(),
                        sim.removes.len()
                    ),
                });
            }
        }
        None if !sim.unmet.is_empty() => {
            if !sim.installs.is_empty() || !sim.removes.is_empty() {
                return Err(ParseError::Inconsistent {
                    tool: TOOL,
                    detail: "unmet dependencies and a plan in the same output".into(),
                });
            }
        }
        None => {
            return Err(ParseError::Truncated {
                tool: TOOL,
                detail: "no summary line and no unmet dependencies (apt stopped before resolving, or the output was cut)".into(),
            })
        }
    }
    Ok(sim)
}

fn first_word<'a>(n: usize, line: &str, rest: &'a str) -> Result<&'a str, ParseError> {
    match rest.split_whitespace().next() {
        Some(w) if !w.starts_with('[') && !w.starts_with('(') => Ok(w),
        _ => Err(malformed(TOOL, n, "a package name", line)),
    }
}

/// `NAME [OLD] (NEW SOURCE [ARCH]) [broken…]` or `NAME (NEW …)`.
fn inst_line(n: usize, line: &str, rest: &str) -> Result<Install, ParseError> {
    let name = first_word(n, line, rest)?;
    let after_name = rest.get(name.len()..).unwrap_or("").trim_start();
    let (old, after_old) = match after_name.strip_prefix('[') {
        Some(r) => {
            let (old, r) = r
                .split_once(']')
                .ok_or_else(|| malformed(TOOL, n, "`[old-version]`", line))?;
            (Some(parse_evr(TOOL, n, old)?), r.trim_start())
        }
        None => (None, after_name),
    };
    let inner = after_old
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .map(|(inner, _)| inner)
        .ok_or_else(|| malformed(TOOL, n, "`(new-version source [arch])`", line))?;
    let new = inner
        .split_whitespace()
        .next()
        .ok_or_else(|| malformed(TOOL, n, "a new version", line))?;
    Ok(Install {
        name: name.to_string(),
        old,
        new: parse_evr(TOOL, n, new)?,
    })
}

/// `2 upgraded, 0 newly installed, 1 downgraded, 0 to remove and 0 not
/// upgraded.` (`downgraded` and `reinstalled` appear only when non-zero).
fn summary_line(n: usize, line: &str) -> Result<Summary, ParseError> {
    let mut summary = Summary::default();
    let body = line.trim_end_matches('.');
    for part in body.split(", ").flat_map(|p| p.split(" and ")) {
        let (count, what) = part
            .trim()
            .split_once(' ')
            .ok_or_else(|| malformed(TOOL, n, "`N upgraded, N newly installed, …`", line))?;
        let count: u64 = count
            .parse()
            .map_err(|_| malformed(TOOL, n, "`N upgraded, N newly installed, …`", line))?;
        match what {
            "upgraded" | "newly installed" | "downgraded" | "reinstalled" => {
                summary.changed = summary.changed.saturating_add(count)
            }
            "to remove" => summary.removed = summary.removed.saturating_add(count),
            _ => {}
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::{assert_refuses_all, fixture, fixture_rc, refused_capture};
    use proptest::prelude::*;

    fn evr(s: &str) -> Evr {
        Evr::parse(s).unwrap()
    }

    #[test]
    fn client_alone() {
        // apt 2.6 (Debian 12), and apt 2.2 (Debian 11) and 3.0 (Debian 13)
        // as captured in the release matrix (`tests/tests/releases.rs`).
        for name in [
            "apt_get_s_client",
            "apt_get_s_client_apt2.2",
            "apt_get_s_client_apt3.0",
        ] {
            assert_eq!(fixture_rc(name), 0, "{name}");
            let s = parse(&fixture(&format!("{name}.out"))).unwrap();
            assert_eq!(
                s.installs,
                vec![Install {
                    name: "patchman-client".into(),
                    old: Some(evr("1.7.0-1")),
                    new: evr("1.7.1-1"),
                }],
                "{name}"
            );
            assert_eq!(s.configures, vec!["patchman-client".to_string()], "{name}");
            assert!(s.only_ours(), "{name}");
            assert!(s.others().is_empty(), "{name}");
        }
    }

    #[test]
    fn realtime_moves_in_lock_step() {
        for name in ["apt_get_s_client_drags_realtime.out", "apt_get_s_both.out"] {
            let s = parse(&fixture(name)).unwrap();
            assert_eq!(s.installs.len(), 2, "{name}");
            assert_eq!(
                s.install_of(Package::Realtime).unwrap().new,
                evr("1.7.1-1"),
                "{name}"
            );
            assert!(s.only_ours(), "{name}");
        }
    }

    #[test]
    fn new_dependency_is_unmet() {
        assert_eq!(fixture_rc("apt_get_s_new_dep"), 100);
        let s = parse(&fixture("apt_get_s_new_dep.out")).unwrap();
        assert_eq!(
            s.unmet,
            vec![
                "patchman-client : Depends: libpatchman-new but it is not installable".to_string()
            ]
        );
        assert!(!s.only_ours());
        let s = parse(&fixture("apt_get_s_client_new_dep_with_realtime.out")).unwrap();
        assert_eq!(s.unmet.len(), 2);
        assert!(s.installs.is_empty());
    }

    /// The new dependency as apt 2.2 (Debian 11) and apt 3.0 (Debian 13)
    /// print it, captured in the release matrix's sandboxes: apt 3.0 adds
    /// `Solving dependencies...` on stdout and its solver's explanation on
    /// stderr.
    #[test]
    fn new_dependency_is_unmet_on_apt_2_2_and_3_0() {
        for name in ["apt_get_s_new_dep_apt2.2", "apt_get_s_new_dep_apt3.0"] {
            assert_eq!(fixture_rc(name), 100, "{name}");
            let s = parse(&fixture(&format!("{name}.out"))).unwrap();
            assert_eq!(
                s.unmet,
                vec![
                    "patchman-client : Depends: libpatchman-new (>= 1.0) but it is not installable"
                        .to_string()
                ],
                "{name}"
            );
            assert!(s.installs.is_empty(), "{name}");
            assert!(!s.only_ours(), "{name}");
        }
    }

    #[test]
    fn removal_up_to_date_and_broken() {
        let s = parse(&fixture("apt_get_s_remove_realtime.out")).unwrap();
        assert_eq!(s.removes, vec!["patchman-client-realtime".to_string()]);
        assert!(!s.only_ours());

        let s = parse(&fixture("apt_get_s_up_to_date.out")).unwrap();
        assert_eq!(s, Simulation::default());
        assert!(s.only_ours());

        // After a failed `dpkg -i` left 1.7.2-1 unpacked: apt "downgrades".
        let s = parse(&fixture("apt_get_s_broken.out")).unwrap();
        let i = s.install_of(Package::Client).unwrap();
        assert_eq!(i.old, Some(evr("1.7.2-1")));
        assert_eq!(i.new, evr("1.7.1-1"));
    }

    #[test]
    fn apt_stopping_early_is_not_a_clean_plan() {
        // Version not found: no summary, no unmet section, exit 100.
        assert!(matches!(
            refused_capture("apt", "apt_get_s_bad_version", 100, parse),
            ParseError::Truncated { .. }
        ));
        assert!(matches!(parse(""), Err(ParseError::Truncated { .. })));
        // Output cut between the summary and the plan.
        let full = fixture("apt_get_s_both.out");
        let cut = &full[..full.find("Inst patchman-client [").unwrap()];
        assert!(matches!(parse(cut), Err(ParseError::Truncated { .. })));
    }

    #[test]
    fn other_packages_are_reported() {
        let out = "1 upgraded, 2 newly installed, 1 to remove and 0 not upgraded.\n\
                   Inst libpatchman-new (2.0 127.0.0.1 [amd64])\n\
                   Inst patchman-client:i386 (1.7.1-1 127.0.0.1 [i386])\n\
                   Inst patchman-client [1.7.0-1] (1.7.1-1 127.0.0.1 [all])\n\
                   Remv -o [1.0]\n\
                   Conf libpatchman-new (2.0 127.0.0.1 [amd64])\n";
        let s = parse(out).unwrap();
        assert_eq!(
            s.others(),
            vec!["libpatchman-new", "patchman-client:i386", "-o"]
        );
        assert_eq!(s.installs[0].old, None);
        assert!(!s.only_ours());
    }

    #[test]
    fn malformed_plan_lines_are_refused() {
        let with = |line: &str| {
            format!("1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n{line}\n")
        };
        assert_refuses_all(
            parse,
            [
                with("Inst patchman-client [1.7.0-1 (1.7.1-1)"),
                with("Inst patchman-client [1.7.0-1]"),
                with("Inst patchman-client [bad version!] (1.7.1-1)"),
                with("Inst (1.7.1-1)"),
                with("Inst "),
                "x upgraded, 0 to remove\n".to_string(),
            ],
        );
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            if let Ok(sim) = parse(&s) {
                let _ = sim.only_ours();
            }
        }

        #[test]
        fn plan_like_input_never_panics(
            lines in prop::collection::vec(
                "(Inst |Conf |Remv |Purg | |The following packages have unmet dependencies:|[0-9] upgraded, [0-9] newly installed, [0-9] to remove and 0 not upgraded.)[a-z0-9 .:()\\[\\]-]{0,20}",
                0..10,
            )
        ) {
            if let Ok(sim) = parse(&lines.join("\n")) {
                let _ = sim.others();
            }
        }
    }
}
