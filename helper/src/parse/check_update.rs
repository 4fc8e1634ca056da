//! `dnf|yum check-update --disablerepo=* --enablerepo=REPO patchman-client …`:
//! the read-only query `Check` adds on the rpm families (the vendor's steps
//! download to find out; a check should change nothing).
//!
//! ```text
//! Last metadata expiration check: 0:00:01 ago on …
//!
//! patchman-client.noarch                  1.7.1-1                 patchman
//! ```
//!
//! Exit 100 with such lines when updates exist, 0 without, 1 on error.
//! A name too long for its column is printed alone and its version and
//! repository follow on the next line, so rows are read as a stream of
//! three fields. An `Obsoleting Packages` section ends the table.

use patchman_shared::{Evr, Package};

use super::{check_size, parse_evr, ParseError};

const TOOL: &str = "check-update";

/// One available update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    pub package: Package,
    pub arch: String,
    pub evr: Evr,
    pub repository: String,
}

/// How the lines dnf and yum print around the table begin.
const CHATTER: [&str; 6] = [
    "Last metadata expiration check",
    "Loaded plugins",
    "Loading mirror speeds",
    "Security:",
    "Repository ",
    // yum 3's fastestmirror: ` * base: mirror.example.com` (compared
    // trimmed, so without its leading space).
    "* ",
];

fn is_chatter(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || CHATTER.iter().any(|start| t.starts_with(start))
}

/// Parses the table of available updates (stdout). Only our two packages
/// may appear: we asked for nothing else.
pub fn parse(output: &str) -> Result<Vec<Available>, ParseError> {
    check_size(TOOL, output)?;
    let mut fields: Vec<(usize, &str)> = Vec::new();
    for (index, line) in output.lines().enumerate() {
        if line.trim_start().starts_with("Obsoleting Packages") {
            break;
        }
        if is_chatter(line) {
            continue;
        }
        fields.extend(line.split_whitespace().map(|w| (index + 1, w)));
    }
    if fields.len() % 3 != 0 {
        return Err(ParseError::Truncated {
            tool: TOOL,
            detail: format!(
                "{} fields do not make rows of name, version, repository",
                fields.len()
            ),
        });
    }
    let mut out: Vec<Available> = Vec::new();
    for row in fields.chunks_exact(3) {
        let [(line, name_arch), (vline, version), (_, repository)] = [row[0], row[1], row[2]];
        let (name, arch) = name_arch
            .rsplit_once('.')
            .ok_or_else(|| ParseError::Malformed {
                tool: TOOL,
                line,
                expected: "`name.arch version repository`",
                excerpt: super::quote(name_arch, 80),
            })?;
        let package = Package::from_name(name).ok_or_else(|| ParseError::Inconsistent {
            tool: TOOL,
            detail: format!("lists {}, which was not asked for", super::quote(name, 80)),
        })?;
        if out.iter().any(|a| a.package == package) {
            return Err(ParseError::Duplicate {
                tool: TOOL,
                line,
                key: format!("package {name}"),
            });
        }
        out.push(Available {
            package,
            arch: arch.to_string(),
            evr: parse_evr(TOOL, vline, version)?,
            repository: repository.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::assert_refuses_all;
    use proptest::prelude::*;

    fn available(package: Package, evr: &str, repository: &str) -> Available {
        Available {
            package,
            arch: "noarch".into(),
            evr: Evr::parse(evr).unwrap(),
            repository: repository.into(),
        }
    }

    #[test]
    fn tables_read_as_rows_of_three_fields() {
        let cases = [
            (
                "one update with chatter",
                "Last metadata expiration check: 0:00:01 ago on Tue 24 Nov 2026.\n\npatchman-client.noarch                  1.7.1-1                 patchman\n",
                vec![available(Package::Client, "1.7.1-1", "patchman")],
            ),
            (
                "a wrapped long name and an epoch",
                "patchman-client-realtime.noarch\n                                 1:1.2.7-1.el8              patchman\npatchman-client.noarch   1:1.2.7-1.el8   patchman\n",
                vec![
                    available(Package::Realtime, "1:1.2.7-1.el8", "patchman"),
                    available(Package::Client, "1:1.2.7-1.el8", "patchman"),
                ],
            ),
            ("nothing available", "", vec![]),
            (
                "nothing available, chatter only",
                "Last metadata expiration check: 0:00:01 ago.\n",
                vec![],
            ),
            (
                "yum 3 with fastestmirror's mirror lines",
                "Loaded plugins: fastestmirror\nLoading mirror speeds from cached hostfile\n * base: mirror.example.com\n * patchman: mirror.example.net\n\npatchman-client.noarch   1.7.1-1   patchman\n",
                vec![available(Package::Client, "1.7.1-1", "patchman")],
            ),
            (
                "obsoletes end the table",
                "patchman-client.noarch 1.7.1-1 patchman\nObsoleting Packages\nfoo.noarch 1-1 x\n    bar.noarch 1-1 @System\n",
                vec![available(Package::Client, "1.7.1-1", "patchman")],
            ),
        ];
        for (what, out, want) in cases {
            assert_eq!(parse(out), Ok(want), "{what}");
        }
    }

    #[test]
    fn refuses_what_was_not_asked_and_broken_rows() {
        assert_refuses_all(
            parse,
            [
                "bash.x86_64 5.1-2 baseos\n",
                "patchman-client.noarch 1.7.1-1\n",
                "patchman-client 1.7.1-1 patchman\n",
                "patchman-client.noarch -o patchman\n",
            ],
        );
        let dup = "patchman-client.noarch 1.7.1-1 a\npatchman-client.noarch 1.7.2-1 b\n";
        assert!(matches!(parse(dup), Err(ParseError::Duplicate { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,400}") {
            let _ = parse(&s);
        }
    }
}
