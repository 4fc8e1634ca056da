//! `dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Version}\t${Status}\n'
//! patchman-client patchman-client-realtime`.
//!
//! ```text
//! (<TAB> is a tab)
//! patchman-client<TAB>ii <TAB>1.7.1-1<TAB>install ok installed
//! patchman-client<TAB>iU <TAB>1.7.2-1<TAB>install ok unpacked
//! patchman-client<TAB>rc <TAB>1.7.3-1<TAB>deinstall ok config-files
//! patchman-client-realtime<TAB>un <TAB><TAB>unknown ok not-installed
//! ```
//!
//! `db:Status-Abbrev` is three characters: the wanted state, the current
//! state and the error flag (a space when there is none, hence `ii `). A
//! package dpkg never heard of prints no line; dpkg-query then exits 1 with
//! `dpkg-query: no packages found matching NAME` on stderr
//! ([`not_found`]). `rc` keeps the removed version.

use patchman_shared::{Evr, Package};

use super::{check_size, malformed, parse_evr, ParseError};

const TOOL: &str = "dpkg-query -W";

/// The selection state (first word of `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Unknown,
    Install,
    Hold,
    Deinstall,
    Purge,
}

/// The error flag (second word of `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFlag {
    Ok,
    /// `reinst-required`: a failed removal or install left the package
    /// broken; dpkg wants it reinstalled.
    ReinstRequired,
}

/// The package's current state (third word of `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpkgState {
    NotInstalled,
    /// Removed, conffiles kept: not installed.
    ConfigFiles,
    HalfInstalled,
    Unpacked,
    HalfConfigured,
    TriggersAwaited,
    TriggersPending,
    Installed,
}

impl Want {
    fn from_word(w: &str) -> Option<Want> {
        Some(match w {
            "unknown" => Want::Unknown,
            "install" => Want::Install,
            "hold" => Want::Hold,
            "deinstall" => Want::Deinstall,
            "purge" => Want::Purge,
            _ => return None,
        })
    }
    fn abbrev(self) -> char {
        match self {
            Want::Unknown => 'u',
            Want::Install => 'i',
            Want::Hold => 'h',
            Want::Deinstall => 'r',
            Want::Purge => 'p',
        }
    }
}

impl ErrorFlag {
    fn from_word(w: &str) -> Option<ErrorFlag> {
        match w {
            "ok" => Some(ErrorFlag::Ok),
            "reinstreq" | "reinst-required" => Some(ErrorFlag::ReinstRequired),
            _ => None,
        }
    }
    fn abbrev(self) -> char {
        match self {
            ErrorFlag::Ok => ' ',
            ErrorFlag::ReinstRequired => 'R',
        }
    }
}

impl DpkgState {
    fn from_word(w: &str) -> Option<DpkgState> {
        Some(match w {
            "not-installed" => DpkgState::NotInstalled,
            "config-files" => DpkgState::ConfigFiles,
            "half-installed" => DpkgState::HalfInstalled,
            "unpacked" => DpkgState::Unpacked,
            "half-configured" => DpkgState::HalfConfigured,
            "triggers-awaited" => DpkgState::TriggersAwaited,
            "triggers-pending" => DpkgState::TriggersPending,
            "installed" => DpkgState::Installed,
            _ => return None,
        })
    }
    fn abbrev(self) -> char {
        match self {
            DpkgState::NotInstalled => 'n',
            DpkgState::ConfigFiles => 'c',
            DpkgState::HalfInstalled => 'H',
            DpkgState::Unpacked => 'U',
            DpkgState::HalfConfigured => 'F',
            DpkgState::TriggersAwaited => 'W',
            DpkgState::TriggersPending => 't',
            DpkgState::Installed => 'i',
        }
    }
}

/// One line of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgRecord {
    pub name: String,
    pub want: Want,
    pub flag: ErrorFlag,
    pub state: DpkgState,
    /// `None` where dpkg prints an empty version (never installed).
    pub version: Option<Evr>,
}

impl DpkgRecord {
    pub fn package(&self) -> Option<Package> {
        Package::from_name(&self.name)
    }

    /// `install ok installed` (or `hold ok installed`): fully installed and
    /// configured, nothing pending. What step 7 confirms.
    pub fn is_installed(&self) -> bool {
        self.state == DpkgState::Installed && self.flag == ErrorFlag::Ok
    }

    /// The files are on disk in some version (everything but
    /// `not-installed` and `config-files`).
    pub fn is_present(&self) -> bool {
        !matches!(self.state, DpkgState::NotInstalled | DpkgState::ConfigFiles)
    }

    /// An install was interrupted or failed midway (`iU`, `iF`, `iH`,
    /// triggers pending, or the reinst-required flag): must be finished
    /// with `dpkg --configure` before anything else.
    pub fn is_interrupted(&self) -> bool {
        self.flag == ErrorFlag::ReinstRequired
            || matches!(
                self.state,
                DpkgState::HalfInstalled
                    | DpkgState::Unpacked
                    | DpkgState::HalfConfigured
                    | DpkgState::TriggersAwaited
                    | DpkgState::TriggersPending
            )
    }
}

/// All records, at most one per name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DpkgQuery {
    pub records: Vec<DpkgRecord>,
}

impl DpkgQuery {
    pub fn get(&self, package: Package) -> Option<&DpkgRecord> {
        self.records.iter().find(|r| r.name == package.name())
    }

    /// The installed version of one of our packages: `Some` only for a
    /// present package (see [`DpkgRecord::is_present`]).
    pub fn installed_version(&self, package: Package) -> Option<&Evr> {
        self.get(package)
            .filter(|r| r.is_present())
            .and_then(|r| r.version.as_ref())
    }
}

/// Parses the stdout of the query. Empty output (no package known) is valid.
pub fn parse(output: &str) -> Result<DpkgQuery, ParseError> {
    check_size(TOOL, output)?;
    let mut query = DpkgQuery::default();
    for (index, line) in output.lines().enumerate() {
        let n = index + 1;
        if line.is_empty() {
            continue;
        }
        let record = record(n, line)?;
        if query.records.iter().any(|r| r.name == record.name) {
            return Err(ParseError::Duplicate {
                tool: TOOL,
                line: n,
                key: format!("package {}", record.name),
            });
        }
        query.records.push(record);
    }
    Ok(query)
}

fn record(n: usize, line: &str) -> Result<DpkgRecord, ParseError> {
    const SHAPE: &str = "`name<TAB>abbrev<TAB>version<TAB>want flag status`";
    let mut fields = line.split('\t');
    let (Some(name), Some(abbrev), Some(version), Some(status), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(malformed(TOOL, n, SHAPE, line));
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(malformed(TOOL, n, "a package name", line));
    }
    let mut words = status.split(' ');
    let (Some(want), Some(flag), Some(state), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(malformed(TOOL, n, "`want flag status`", line));
    };
    let (Some(want), Some(flag), Some(state)) = (
        Want::from_word(want),
        ErrorFlag::from_word(flag),
        DpkgState::from_word(state),
    ) else {
        return Err(malformed(TOOL, n, "dpkg's status words", line));
    };
    // The abbreviation must say the same as the words: a mismatch means the
    // format string or the tool is not what we think.
    let expected: String = [want.abbrev(), state.abbrev(), flag.abbrev()]
        .iter()
        .collect();
    if abbrev != expected {
        return Err(ParseError::Inconsistent {
            tool: TOOL,
            detail: format!("line {n}: status abbreviation {abbrev:?} does not match {status:?}"),
        });
    }
    let version = if version.is_empty() {
        None
    } else {
        Some(parse_evr(TOOL, n, version)?)
    };
    if version.is_none() && !matches!(state, DpkgState::NotInstalled) {
        return Err(ParseError::Inconsistent {
            tool: TOOL,
            detail: format!("line {n}: {name} is {status:?} but has no version"),
        });
    }
    Ok(DpkgRecord {
        name: name.to_string(),
        want,
        flag,
        state,
        version,
    })
}

/// The names dpkg-query reported as unknown on stderr
/// (`dpkg-query: no packages found matching NAME`).
pub fn not_found(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("dpkg-query: no packages found matching "))
        .map(str::trim)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::{assert_refuses_all, evr, fixture, fixture_rc};
    use proptest::prelude::*;

    #[test]
    fn both_installed() {
        let q = parse(&fixture("dpkg_query_both_ii.out")).unwrap();
        for p in Package::ALL {
            let r = q.get(p).unwrap();
            assert!(r.is_installed());
            assert!(!r.is_interrupted());
            assert_eq!(r.version, Some(evr("1.7.1-1")));
            assert_eq!(r.package(), Some(p));
        }
    }

    #[test]
    fn realtime_unknown_to_dpkg() {
        assert_eq!(fixture_rc("dpkg_query_client_only"), 1);
        let q = parse(&fixture("dpkg_query_client_only.out")).unwrap();
        assert_eq!(q.installed_version(Package::Client), Some(&evr("1.7.0-1")));
        assert!(q.get(Package::Realtime).is_none());
        assert_eq!(
            not_found(&fixture("dpkg_query_client_only.err")),
            vec!["patchman-client-realtime"]
        );
        assert!(parse(&fixture("dpkg_query_unknown.out"))
            .unwrap()
            .records
            .is_empty());
    }

    #[test]
    fn interrupted_states() {
        let q = parse(&fixture("dpkg_query_unpacked.out")).unwrap();
        let r = q.get(Package::Client).unwrap();
        assert_eq!(
            (r.want, r.state, r.flag),
            (Want::Install, DpkgState::Unpacked, ErrorFlag::Ok)
        );
        assert!(r.is_interrupted() && !r.is_installed() && r.is_present());

        let q = parse(&fixture("dpkg_query_half_configured.out")).unwrap();
        let r = q.get(Package::Client).unwrap();
        assert_eq!(r.state, DpkgState::HalfConfigured);
        assert_eq!(r.version, Some(evr("1.7.3-1")));
        assert!(r.is_interrupted());
    }

    #[test]
    fn config_files_and_never_installed_are_not_installed() {
        let q = parse(&fixture("dpkg_query_config_files.out")).unwrap();
        let r = q.get(Package::Client).unwrap();
        assert_eq!((r.want, r.state), (Want::Deinstall, DpkgState::ConfigFiles));
        assert_eq!(r.version, Some(evr("1.7.3-1")));
        assert!(!r.is_installed() && !r.is_present());
        assert_eq!(q.installed_version(Package::Client), None);

        for (name, want) in [
            ("dpkg_query_selected_purge.out", Want::Unknown),
            ("dpkg_query_selected_install.out", Want::Install),
            ("dpkg_query_selected_hold.out", Want::Hold),
        ] {
            let q = parse(&fixture(name)).unwrap();
            let r = q.get(Package::Realtime).unwrap();
            assert_eq!(
                (r.want, r.state, r.version.clone()),
                (want, DpkgState::NotInstalled, None),
                "{name}"
            );
            assert!(!r.is_present());
        }
    }

    #[test]
    fn reinst_required_and_hostile_lines() {
        let q = parse("patchman-client\tiHR\t1.7.1-1\tinstall reinstreq half-installed\n").unwrap();
        let r = q.get(Package::Client).unwrap();
        assert_eq!(r.flag, ErrorFlag::ReinstRequired);
        assert!(r.is_interrupted());

        // Abbreviation contradicting the words.
        assert!(matches!(
            parse("patchman-client\tii \t1.7.1-1\tinstall ok unpacked\n"),
            Err(ParseError::Inconsistent { .. })
        ));
        assert_refuses_all(
            parse,
            [
                // Installed without a version.
                "patchman-client\tii \t\tinstall ok installed\n",
                // Wrong field counts, names with spaces or options, garbage.
                "patchman-client\tii \t1.7.1-1\n",
                "patchman-client\tii \t1.7.1-1\tinstall ok installed\textra\n",
                "-o x\tii \t1.7.1-1\tinstall ok installed\n",
                "a\tii \t1.0\tinstall ok  installed\n",
                "a\tii \t1.0\tinstall fine installed\n",
                "garbage\n",
                // Truncated mid-line.
                "patchman-client\tii \t1.7",
            ],
        );
        // Duplicate names.
        let line = "patchman-client\tii \t1.7.1-1\tinstall ok installed\n";
        assert!(matches!(
            parse(&format!("{line}{line}")),
            Err(ParseError::Duplicate { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            let _ = parse(&s);
            let _ = not_found(&s);
        }

        #[test]
        fn query_like_input_never_panics(
            s in "([a-z-]{0,6}\t[uihrp][ncHUFWti][ R]\t[0-9.:~-]{0,6}\t(install|hold|unknown) (ok|reinstreq) (installed|unpacked|not-installed)\n){0,4}"
        ) {
            if let Ok(q) = parse(&s) {
                for r in &q.records {
                    let _ = r.is_interrupted();
                }
            }
        }
    }
}
