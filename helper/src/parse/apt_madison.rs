//! `apt-cache madison patchman-client`, the vendor's method before 1.14.0-1:
//!
//! ```text
//! patchman-client |    1.7.1-1 | http://127.0.0.1:18631/flat ./ Packages
//! ```
//!
//! An unknown package prints nothing (exit 0, nothing on stderr).

use patchman_shared::{Evr, Package};

use super::{check_size, malformed, parse_evr, ParseError};

const TOOL: &str = "apt-cache madison";

/// One line of madison's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadisonEntry {
    pub name: String,
    pub version: Evr,
    /// `http://… ./ Packages`, as printed.
    pub source: String,
}

impl MadisonEntry {
    /// The package, if it is one of ours.
    pub fn package(&self) -> Option<Package> {
        Package::from_name(&self.name)
    }
}

/// Parses the stdout of `apt-cache madison`.
pub fn parse(output: &str) -> Result<Vec<MadisonEntry>, ParseError> {
    check_size(TOOL, output)?;
    let mut entries = Vec::new();
    for (index, line) in output.lines().enumerate() {
        let n = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut columns = line.split(" | ");
        let (Some(name), Some(version), Some(source), None) = (
            columns.next(),
            columns.next(),
            columns.next(),
            columns.next(),
        ) else {
            return Err(malformed(TOOL, n, "`name | version | source`", line));
        };
        let name = name.trim();
        let source = source.trim();
        if name.is_empty() || name.contains(char::is_whitespace) || source.is_empty() {
            return Err(malformed(TOOL, n, "`name | version | source`", line));
        }
        entries.push(MadisonEntry {
            name: name.to_string(),
            version: parse_evr(TOOL, n, version.trim())?,
            source: source.to_string(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::{assert_refuses_all, fixture};
    use proptest::prelude::*;

    #[test]
    fn one_repository() {
        let e = parse(&fixture("apt_madison_client.out")).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].package(), Some(Package::Client));
        assert_eq!(e[0].version, Evr::parse("1.7.1-1").unwrap());
        assert_eq!(e[0].source, "http://127.0.0.1:18631/flat ./ Packages");
        assert_eq!(e[1].version, Evr::parse("1.7.0-1").unwrap());
    }

    #[test]
    fn two_repositories_two_packages() {
        let e = parse(&fixture("apt_madison_both_repos.out")).unwrap();
        assert_eq!(e.len(), 9);
        assert_eq!(
            e[0].source,
            "http://127.0.0.1:18631/dists-repo bookworm/main amd64 Packages"
        );
        assert_eq!(
            e.iter()
                .filter(|x| x.package() == Some(Package::Realtime))
                .count(),
            4
        );
    }

    #[test]
    fn unknown_empty_and_garbage() {
        assert!(parse(&fixture("apt_madison_unknown.out"))
            .unwrap()
            .is_empty());
        assert!(parse("").unwrap().is_empty());
        assert_refuses_all(
            parse,
            [
                "patchman-client | 1.0",
                "patchman-client | 1.0 | a | b",
                "patchman-client | not a version | http://x",
                "-o Foo | 1.0 | http://x",
                " | 1.0 | http://x",
            ],
        );
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn madison_like_input_never_panics(s in "([a-z-]{0,8} \\| [0-9a-z.:~-]{0,8} \\| [a-z:/ .]{0,10}\n){0,6}") {
            let _ = parse(&s);
        }
    }
}
