//! `rpm -q` and `rpm -qp` with the query format
//! `%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n` ([`QUERY_FORMAT`]).
//!
//! Facts measured on rpm 4.18 (fixtures `rpm_q_*`, `rpm_qp_*` in
//! `helper/tests/fixtures/dnf/`):
//! * `rpm -q --queryformat F patchman-client patchman-client-realtime`
//!   prints one formatted line per installed package and
//!   `package NAME is not installed` (on stdout) for each absent one; the
//!   exit status is the number of absent packages (0, 1 or 2), so it says
//!   nothing the lines do not.
//! * `%{EPOCHNUM}` is `0` for a package without an epoch, so the version
//!   always carries one (`0:1.7.1-1`).
//! * Two installed versions of one name (an interrupted transaction) print
//!   two lines: refused as [`ParseError::Duplicate`], a person must look.
//! * `rpm -qp` of a signed file whose key is not imported prints the line
//!   anyway, plus `warning: FILE: Header V4 … NOKEY` on stderr: the
//!   signature is checked separately (`rpmkeys --checksig`).
//! * `rpm -qp` of a text file reads it as a *manifest* (a list of package
//!   paths, one per word) and fails on each word (exit 5 for five words);
//!   of a damaged file: `error: FILE: not an rpm package`, exit 1, stdout
//!   empty.

use patchman_shared::{Evr, Package};

use super::{check_size, malformed, parse_evr, ParseError};

/// The `--queryformat` these parsers read.
pub const QUERY_FORMAT: &str = "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n";

/// The `--queryformat` of [`parse_file_query`]: [`QUERY_FORMAT`] and the
/// source package a binary package was built from. A source package
/// prints `(none)` there (rpm 4.18; `SOURCERPM` is set by rpmbuild on
/// every binary package since rpm 4.0).
pub const FILE_QUERY_FORMAT: &str =
    "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n";

const QUERY_TOOL: &str = "rpm -q";
const FILE_TOOL: &str = "rpm -qp";

/// One package as the query format prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmPackage {
    /// Which allow-listed package.
    pub package: Package,
    /// Epoch (0 when the package has none), version, release.
    pub evr: Evr,
    /// `noarch`, `x86_64`, …
    pub arch: String,
}

/// What `rpm -q` said about the allow-listed packages it was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpmQuery {
    /// Installed, in output order.
    pub installed: Vec<RpmPackage>,
    /// Named in a `package NAME is not installed` line.
    pub not_installed: Vec<Package>,
}

impl RpmQuery {
    /// The installed instance of `package`, if any.
    pub fn get(&self, package: Package) -> Option<&RpmPackage> {
        self.installed.iter().find(|p| p.package == package)
    }
}

/// Parses the stdout of
/// `rpm -q --queryformat QUERY_FORMAT patchman-client [patchman-client-realtime]`.
/// Every line must be a formatted line or a `not installed` line about an
/// allow-listed package; each package may appear once.
pub fn parse_query(output: &str) -> Result<RpmQuery, ParseError> {
    check_size(QUERY_TOOL, output)?;
    let mut query = RpmQuery::default();
    let mut seen: Vec<Package> = Vec::new();
    for (index, line) in output.lines().enumerate() {
        let n = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let package = if let Some(name) = line
            .strip_prefix("package ")
            .and_then(|r| r.strip_suffix(" is not installed"))
        {
            let package = Package::from_name(name)
                .ok_or_else(|| malformed(QUERY_TOOL, n, "an allow-listed package name", line))?;
            query.not_installed.push(package);
            package
        } else {
            let p = formatted_line(QUERY_TOOL, n, line)?;
            let package = p.package;
            query.installed.push(p);
            package
        };
        if seen.contains(&package) {
            return Err(ParseError::Duplicate {
                tool: QUERY_TOOL,
                line: n,
                key: format!("package {package}"),
            });
        }
        seen.push(package);
    }
    if seen.is_empty() {
        return Err(ParseError::Empty { tool: QUERY_TOOL });
    }
    Ok(query)
}

/// A package file as [`FILE_QUERY_FORMAT`] prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmFile {
    pub package: Package,
    pub evr: Evr,
    pub arch: String,
    /// `%{SOURCERPM}` is `(none)`: a source package, never to install.
    pub source_package: bool,
}

/// Parses the stdout of `rpm -qp --queryformat FILE_QUERY_FORMAT FILE`:
/// exactly one formatted line, naming an allow-listed package.
pub fn parse_file_query(output: &str) -> Result<RpmFile, ParseError> {
    check_size(FILE_TOOL, output)?;
    let mut found = None;
    for (index, line) in output.lines().enumerate() {
        let n = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if found.is_some() {
            return Err(ParseError::Duplicate {
                tool: FILE_TOOL,
                line: n,
                key: "package line".into(),
            });
        }
        let Some((fields, source_rpm)) = line.rsplit_once('\t').filter(|(_, s)| !s.is_empty())
        else {
            return Err(malformed(
                FILE_TOOL,
                n,
                "`NAME<tab>EPOCH:VERSION-RELEASE<tab>ARCH<tab>SOURCERPM`",
                line,
            ));
        };
        let p = formatted_line(FILE_TOOL, n, fields)?;
        found = Some(RpmFile {
            package: p.package,
            evr: p.evr,
            arch: p.arch,
            source_package: source_rpm == "(none)",
        });
    }
    found.ok_or(ParseError::Empty { tool: FILE_TOOL })
}

/// `NAME\tE:V-R\tARCH`.
fn formatted_line(tool: &'static str, n: usize, line: &str) -> Result<RpmPackage, ParseError> {
    let mut fields = line.split('\t');
    let (Some(name), Some(evr), Some(arch), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed(
            tool,
            n,
            "`NAME<tab>EPOCH:VERSION-RELEASE<tab>ARCH`",
            line,
        ));
    };
    let package = Package::from_name(name)
        .ok_or_else(|| malformed(tool, n, "an allow-listed package name", line))?;
    // EPOCHNUM is always printed: a version without `E:` or without a
    // release is not this query format's output.
    if !evr.contains(':') || !evr.contains('-') {
        return Err(malformed(tool, n, "`EPOCH:VERSION-RELEASE`", line));
    }
    let evr = parse_evr(tool, n, evr)?;
    if evr.release.is_empty() {
        return Err(malformed(tool, n, "a non-empty release", line));
    }
    if arch.is_empty() || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(malformed(tool, n, "an architecture such as `noarch`", line));
    }
    Ok(RpmPackage {
        package,
        evr,
        arch: arch.to_string(),
    })
}

/// The `--queryformat` of [`parse_relations`]: the header's `Obsoletes:`
/// and `Conflicts:` names (what `rpm -qp --obsoletes --conflicts` lists).
pub const RELATIONS_FORMAT: &str = "[obsoletes %{OBSOLETENAME}\\n][conflicts %{CONFLICTNAME}\\n]";

const RELATIONS_TOOL: &str = "rpm -qp (obsoletes, conflicts)";

/// One `Obsoletes:` or `Conflicts:` name of a package header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// `obsoletes` or `conflicts`.
    pub kind: &'static str,
    pub name: String,
}

/// Parses `rpm -qp --queryformat RELATIONS_FORMAT FILE`: one
/// `obsoletes NAME` / `conflicts NAME` line each, nothing for none.
pub fn parse_relations(output: &str) -> Result<Vec<Relation>, ParseError> {
    check_size(RELATIONS_TOOL, output)?;
    let mut out = Vec::new();
    for (i, line) in output.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(kind, name)| {
            let kind = match kind {
                "obsoletes" => "obsoletes",
                "conflicts" => "conflicts",
                _ => return None,
            };
            (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| Relation {
                kind,
                name: name.to_string(),
            })
        });
        match parsed {
            Some(r) => out.push(r),
            None => {
                return Err(malformed(
                    RELATIONS_TOOL,
                    i + 1,
                    "`obsoletes NAME` or `conflicts NAME`",
                    line,
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::el_fixtures::{dnf_fixture as fixture, dnf_fixture_rc as fixture_rc};
    use crate::parse::test_support::{evr, lines_like};
    use proptest::prelude::*;

    #[test]
    fn rpm_4_16_to_4_20_read_the_same() {
        use crate::parse::el_fixtures::{rpm_fixture, CAPTURED_RPM_VERSIONS};
        for v in CAPTURED_RPM_VERSIONS {
            let q = parse_query(&rpm_fixture(&format!("{v}_rpm_q_none.out"))).unwrap();
            assert!(q.installed.is_empty(), "{v}");
            assert_eq!(q.not_installed, [Package::Client, Package::Realtime], "{v}");
            let q = parse_query(&rpm_fixture(&format!("{v}_rpm_q_after.out"))).unwrap();
            assert_eq!(
                q.get(Package::Client).map(|p| &p.evr),
                Some(&evr("1.7.3-1")),
                "{v}"
            );
            let p = parse_file_query(&with_source_rpm(&rpm_fixture(&format!("{v}_rpm_qp.out"))))
                .unwrap();
            assert_eq!(
                (p.package, p.evr, p.arch.as_str()),
                (Package::Client, evr("1.7.1-1"), "noarch"),
                "{v}"
            );
            for bad in ["rpm_qp_garbage", "rpm_qp_missing"] {
                let out = rpm_fixture(&format!("{v}_{bad}.out"));
                assert!(parse_file_query(&out).is_err(), "{v} {bad}: {out:?}");
            }
        }
    }

    #[test]
    fn both_installed() {
        let q = parse_query(&fixture("rpm_q_both.out")).unwrap();
        assert_eq!(fixture_rc("rpm_q_both"), 0);
        assert_eq!(q.get(Package::Client).unwrap().evr, evr("0:1.7.0-1"));
        assert_eq!(q.get(Package::Realtime).unwrap().arch, "noarch");
        assert!(q.not_installed.is_empty());
    }

    #[test]
    fn not_installed_lines() {
        let q = parse_query(&fixture("rpm_q_client_only.out")).unwrap();
        assert_eq!(fixture_rc("rpm_q_client_only"), 1);
        assert_eq!(q.get(Package::Client).unwrap().evr, evr("1.7.0-1"));
        assert_eq!(q.not_installed, vec![Package::Realtime]);
        let q = parse_query(&fixture("rpm_q_none.out")).unwrap();
        assert_eq!(fixture_rc("rpm_q_none"), 2);
        assert!(q.installed.is_empty());
        assert_eq!(q.not_installed, vec![Package::Client, Package::Realtime]);
    }

    #[test]
    fn epoch_and_refusals() {
        let q = parse_query("patchman-client\t1:1.2.7-1\tnoarch\n").unwrap();
        assert_eq!(q.get(Package::Client).unwrap().evr.epoch, 1);
        for bad in [
            "",
            "evil\t0:1.0-1\tnoarch\n",
            "patchman-client\t1.0-1\tnoarch\n",
            "patchman-client\t0:1.0\tnoarch\n",
            "patchman-client\t0:1.0-1\n",
            "patchman-client\t0:1.0-1\tnoarch\textra\n",
            "patchman-client\t0:1.0-1\tno arch\n",
            "patchman-client\t0:1.0 1-1\tnoarch\n",
            "package evil is not installed\n",
            "patchman-client\t0:1.7.0-1\tnoarch\npatchman-client\t0:1.7.1-1\tnoarch\n",
            "patchman-client\t0:1.7.0-1\tnoarch\npackage patchman-client is not installed\n",
        ] {
            assert!(parse_query(bad).is_err(), "{bad:?}");
        }
    }

    /// The fixtures were captured with [`QUERY_FORMAT`], before
    /// `%{SOURCERPM}` joined the file query: their line with the field a
    /// binary package prints there.
    fn with_source_rpm(out: &str) -> String {
        out.lines()
            .map(|l| format!("{l}\tpatchman-client-1.7.1-1.src.rpm\n"))
            .collect()
    }

    #[test]
    fn file_queries() {
        let p = parse_file_query(&with_source_rpm(&fixture("rpm_qp_signed.out"))).unwrap();
        assert_eq!((p.package, p.evr), (Package::Client, evr("1.7.1-1")));
        assert!(!p.source_package);
        let p = parse_file_query(&with_source_rpm(&fixture("rpm_qp_realtime.out"))).unwrap();
        assert_eq!(p.package, Package::Realtime);
        // Key not imported: the line is printed, the warning is on stderr.
        assert!(parse_file_query(&with_source_rpm(&fixture("rpm_qp_other_key.out"))).is_ok());
        // The fixture's line as the query format without `%{SOURCERPM}`
        // printed it: refused, a field is missing.
        assert!(matches!(
            parse_file_query(&fixture("rpm_qp_signed.out")),
            Err(ParseError::Malformed { .. })
        ));
        // rpm 4.18, `rpm -qp --queryformat FILE_QUERY_FORMAT` of the
        // source package `rpmbuild -bs` makes of the client.
        let source = "patchman-client\t0:1.7.1-1\tnoarch\t(none)\n";
        assert!(parse_file_query(source).unwrap().source_package);
        assert!(fixture("rpm_qp_other_key.err").contains("NOKEY"));
        for name in ["rpm_qp_garbage", "rpm_qp_missing", "rpm_qp_text"] {
            assert_ne!(fixture_rc(name), 0, "{name}");
            assert!(matches!(
                parse_file_query(&fixture(&format!("{name}.out"))),
                Err(ParseError::Empty { .. })
            ));
        }
        let two = "patchman-client\t0:1.7.1-1\tnoarch\tpatchman-client-1.7.1-1.src.rpm\n\
                   patchman-client\t0:1.7.1-1\tnoarch\tpatchman-client-1.7.1-1.src.rpm\n";
        assert!(matches!(
            parse_file_query(two),
            Err(ParseError::Duplicate { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            let _ = parse_query(&s);
            let _ = parse_file_query(&s);
        }

        #[test]
        fn query_like_input_never_panics(
            text in lines_like(
                "(patchman-client(-realtime)?|package |x)[\t ]?[0-9:.~^a-z-]{0,12}[\t ]?[a-z_0-9]{0,8}( is not installed)?",
                6,
            )
        ) {
            let _ = parse_query(&text);
            let _ = parse_file_query(&text);
        }
    }

    #[test]
    fn relations_of_a_header() {
        let r = parse_relations("obsoletes patchman-tests-victim\nconflicts foo\n").unwrap();
        assert_eq!(
            r,
            vec![
                Relation {
                    kind: "obsoletes",
                    name: "patchman-tests-victim".into()
                },
                Relation {
                    kind: "conflicts",
                    name: "foo".into()
                }
            ]
        );
        assert_eq!(parse_relations(""), Ok(vec![]));
        assert!(parse_relations("requires foo\n").is_err());
        assert!(parse_relations("obsoletes \n").is_err());
    }
}
