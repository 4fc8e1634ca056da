//! Works out the host's package-manager family from its release files.
//!
//! The helper runs apt, dnf or yum according to what this module finds. It
//! reads `/etc/os-release` (`ID`, `ID_LIKE`, `VERSION_ID`). Where that file
//! does not exist it reads `/usr/lib/os-release`, as os-release(5)
//! prescribes. Only where neither exists does it read `/etc/redhat-release`,
//! the one release file of CentOS 6 and its siblings, which predate
//! os-release. Parsing is pure ([`parse_os_release`],
//! [`family_from_os_release`], [`family_from_redhat_release`]), and
//! [`detect`] is the only function here that touches the file system.
//!
//! The rules, first match wins:
//! * `ID` is `debian` or `ubuntu`: [`Family::Apt`].
//! * `ID` is `fedora`: [`Family::Dnf`].
//! * `ID` is an Enterprise Linux (`rhel`, `centos`, `almalinux`, `rocky`,
//!   `cloudlinux`, `ol`): decided by the major number of `VERSION_ID`. 7
//!   means [`Family::Yum`], 8 or more means [`Family::Dnf`], and 6 or less
//!   is [`DetectError::UnsupportedRelease`]: EL 6's glibc 2.12 and Linux
//!   2.6.32 are older than what Rust's standard library needs (glibc 2.17,
//!   Linux 3.2), so the shipped binaries cannot run there; the helper says
//!   so rather than starting a yum path that could not work. The same holds
//!   for `/etc/redhat-release` (CentOS 6 has no os-release).
//! * Otherwise the first word of `ID_LIKE` (words are listed closest
//!   relative first) that names one of the above decides: `debian` or
//!   `ubuntu` gives apt, and `rhel`, `centos` or `fedora` (or one of the IDs
//!   above) applies the same `VERSION_ID` rule as Enterprise Linux. A
//!   derivative of Fedora is not Fedora, so its `VERSION_ID` decides. For
//!   Amazon Linux 2 (`2`) that gives yum and for 2023 it gives dnf, as they
//!   ship.
//! * Anything else is a [`DetectError`], and so is an Enterprise Linux with a
//!   missing or unreadable `VERSION_ID`. The helper never guesses a package
//!   manager.
//!
//! Every read is capped at [`MAX_RELEASE_FILE_BYTES`]. A bigger file is
//! refused, not cut short: a cut could fall inside a value and change it
//! (`VERSION_ID=10` read as `VERSION_ID=1`).

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use patchman_shared::Family;

/// The most bytes read from any release file. Real ones are under 1 KiB.
pub const MAX_RELEASE_FILE_BYTES: u64 = 64 * 1024;

/// The os-release files, relative to the root, in the order os-release(5)
/// gives them.
const OS_RELEASE_FILES: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];
/// The release file of Red Hat family systems that have no os-release.
const REDHAT_RELEASE_FILE: &str = "etc/redhat-release";

/// The path errors of the public pure functions name; [`detect`] gives the
/// private ones the file it actually read.
const DEFAULT_OS_RELEASE: &str = "/etc/os-release";
const DEFAULT_REDHAT_RELEASE: &str = "/etc/redhat-release";

/// The most characters of a value taken from a release file that an error
/// keeps and shows.
const MAX_SHOWN_CHARS: usize = 80;

/// IDs that mean apt.
const DEBIAN_IDS: [&str; 2] = ["debian", "ubuntu"];
/// IDs of Enterprise Linux distributions, which the `VERSION_ID` rule
/// applies to. Their `ID_LIKE` names `rhel` or `fedora` as well. Listing the
/// IDs still covers an os-release that lacks `ID_LIKE`.
const EL_IDS: [&str; 6] = ["rhel", "centos", "almalinux", "rocky", "cloudlinux", "ol"];

/// The variables of an os-release file, as parsed by [`parse_os_release`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    vars: BTreeMap<String, String>,
}

impl OsRelease {
    /// The value of `key`, if the file assigned it (the last assignment wins,
    /// as in a shell).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// `ID`: the distribution, lower case by the specification (`debian`,
    /// `rocky`).
    pub fn id(&self) -> Option<&str> {
        self.get("ID")
    }

    /// The words of `ID_LIKE`, closest relative first. None if it is unset.
    pub fn id_like(&self) -> impl Iterator<Item = &str> {
        self.get("ID_LIKE").unwrap_or("").split_whitespace()
    }

    /// `VERSION_ID`, e.g. `8.10`, `7` or `22.04`. Debian testing and sid
    /// have none.
    pub fn version_id(&self) -> Option<&str> {
        self.get("VERSION_ID")
    }

    /// `PRETTY_NAME`, for logs.
    pub fn pretty_name(&self) -> Option<&str> {
        self.get("PRETTY_NAME")
    }

    /// Every variable, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many variables the file assigned.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True if the file assigned nothing.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

/// Why the family could not be told. Every variant names the file it is
/// about. Values from the file are quoted with escapes and cut to 80
/// characters, so a hostile file cannot forge log lines.
#[derive(Debug)]
pub enum DetectError {
    /// None of the release files exists.
    NoReleaseFile {
        /// The files looked for, in order.
        tried: Vec<PathBuf>,
    },
    /// A release file exists but could not be read.
    Unreadable { path: PathBuf, source: io::Error },
    /// A release file is a directory, device, pipe or socket.
    NotRegularFile { path: PathBuf },
    /// A release file is bigger than [`MAX_RELEASE_FILE_BYTES`].
    TooLarge { path: PathBuf },
    /// The os-release names no distribution this helper supports.
    UnknownDistribution {
        path: PathBuf,
        id: Option<String>,
        id_like: Option<String>,
    },
    /// An Enterprise Linux whose os-release has no (or an empty)
    /// `VERSION_ID`, which decides between yum and dnf.
    MissingVersionId {
        path: PathBuf,
        id: Option<String>,
        id_like: Option<String>,
    },
    /// An Enterprise Linux whose `VERSION_ID` does not start with a major
    /// version number.
    BadVersionId {
        path: PathBuf,
        id: Option<String>,
        id_like: Option<String>,
        version_id: String,
    },
    /// `/etc/redhat-release` is not of the form
    /// `<name> release <version> [(<codename>)]`.
    UnrecognizedRedhatRelease { path: PathBuf, text: String },
    /// An Enterprise Linux older than 7 (EL 6: glibc 2.12, Linux 2.6.32),
    /// which the shipped binaries cannot run on: Rust's standard library
    /// needs glibc 2.17 and Linux 3.2. `release` is what the file says
    /// (`CentOS release 6.10 (Final)`; from os-release `ID` and
    /// `VERSION_ID`: `centos 6`).
    UnsupportedRelease {
        path: PathBuf,
        release: String,
        major: u32,
    },
}

impl DetectError {
    /// The file the error is about, if it is about one file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DetectError::NoReleaseFile { .. } => None,
            DetectError::Unreadable { path, .. }
            | DetectError::NotRegularFile { path }
            | DetectError::TooLarge { path }
            | DetectError::UnknownDistribution { path, .. }
            | DetectError::MissingVersionId { path, .. }
            | DetectError::BadVersionId { path, .. }
            | DetectError::UnrecognizedRedhatRelease { path, .. }
            | DetectError::UnsupportedRelease { path, .. } => Some(path),
        }
    }
}

/// `ID="rocky" and ID_LIKE="rhel centos fedora"`, or `no ID` and so on.
struct Identity<'a> {
    id: &'a Option<String>,
    id_like: &'a Option<String>,
}

impl fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "ID={id:?}")?,
            None => f.write_str("no ID")?,
        }
        match self.id_like {
            Some(like) => write!(f, " and ID_LIKE={like:?}"),
            None => f.write_str(" and no ID_LIKE"),
        }
    }
}

const SUPPORTED: &str = "the helper supports Debian, Ubuntu, Fedora and Enterprise Linux \
     (RHEL, CentOS, AlmaLinux, Rocky Linux, CloudLinux, Oracle Linux), and systems whose \
     ID_LIKE names debian, ubuntu, rhel, centos or fedora";

const WHY_VERSION: &str =
    "the major version chooses yum (Enterprise Linux 7 and older) or dnf (8 and newer)";

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot tell the package manager family: ")?;
        match self {
            DetectError::NoReleaseFile { tried } => {
                f.write_str("none of ")?;
                for (i, path) in tried.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", path.display())?;
                }
                write!(
                    f,
                    " exists; {SUPPORTED}, all of which ship one of these files"
                )
            }
            DetectError::Unreadable { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            DetectError::NotRegularFile { path } => write!(
                f,
                "{} is not a regular file (a directory, device, pipe or socket); \
                 it should be the distribution's release file",
                path.display()
            ),
            DetectError::TooLarge { path } => write!(
                f,
                "{} is larger than {MAX_RELEASE_FILE_BYTES} bytes, which no real release \
                 file is; check what has replaced it",
                path.display()
            ),
            DetectError::UnknownDistribution { path, id, id_like } => write!(
                f,
                "{} has {}; {SUPPORTED}",
                path.display(),
                Identity { id, id_like }
            ),
            DetectError::MissingVersionId { path, id, id_like } => write!(
                f,
                "{} has {}, an Enterprise Linux, but no VERSION_ID; {WHY_VERSION}",
                path.display(),
                Identity { id, id_like }
            ),
            DetectError::BadVersionId {
                path,
                id,
                id_like,
                version_id,
            } => write!(
                f,
                "{} has {}, an Enterprise Linux, but VERSION_ID={version_id:?} does not \
                 start with a major version number; {WHY_VERSION}",
                path.display(),
                Identity { id, id_like }
            ),
            DetectError::UnrecognizedRedhatRelease { path, text } => write!(
                f,
                "{} reads {text:?}, not \"<name> release <version> (<codename>)\" as \
                 Red Hat family systems write it (e.g. \"CentOS release 6.10 (Final)\")",
                path.display()
            ),
            DetectError::UnsupportedRelease {
                path,
                release,
                major,
            } => write!(
                f,
                "{} says {release:?}: Enterprise Linux {major} is not supported. \
                 The updater needs glibc 2.17 and Linux 3.2 or newer (Rust's standard \
                 library does), which Enterprise Linux 7 is the first to have \
                 (EL 6 has glibc 2.12 and Linux 2.6.32); supported are EL 7 (yum) \
                 and EL 8 and newer (dnf). Update this system by hand",
                path.display()
            ),
        }
    }
}

// The io::Error of `Unreadable` is part of the message already; returning it
// from `source()` as well would print it twice in a chain of causes.
impl Error for DetectError {}

/// Parses os-release text: newline-separated shell-style `KEY=value`
/// assignments, as os-release(5) defines them.
///
/// * Blank lines and lines starting with `#` are skipped. Whitespace around
///   a line is ignored.
/// * Values may be bare, in single quotes (taken literally) or in double
///   quotes. Inside double quotes a backslash escapes `"`, `\`, `$` and a
///   backtick, and stays as it is before anything else, as in a shell. In a
///   bare value a backslash escapes the next character.
/// * After a value only whitespace and a `# comment` may follow.
/// * Lines a shell would read as something other than one plain assignment
///   are malformed and skipped without an error: no `=`, a key that is not a
///   shell name, space around `=`, an unterminated quote, quoted strings run
///   together, several words, or an unescaped `$`, backtick, `;`, `&`, `|`,
///   `<`, `>`, `(` or `)` (expansion and commands are not supported).
///   The lines around a malformed one are still read.
/// * The last assignment of a key wins.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = parse_line(line) {
            vars.insert(key.to_owned(), value);
        }
    }
    OsRelease { vars }
}

fn parse_line(line: &str) -> Option<(&str, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (key, raw) = line.split_once('=')?;
    if !is_shell_name(key) {
        return None;
    }
    Some((key, parse_value(raw)?))
}

fn is_shell_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The value of one assignment, from just after the `=`. None if malformed.
fn parse_value(raw: &str) -> Option<String> {
    let mut value = String::new();
    let rest = if let Some(quoted) = raw.strip_prefix('"') {
        let mut chars = quoted.char_indices();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break &quoted[i + 1..],
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    if !matches!(escaped, '"' | '\\' | '$' | '`') {
                        value.push('\\');
                    }
                    value.push(escaped);
                }
                '$' | '`' => return None,
                _ => value.push(c),
            }
        }
    } else if let Some(quoted) = raw.strip_prefix('\'') {
        let end = quoted.find('\'')?;
        value.push_str(&quoted[..end]);
        &quoted[end + 1..]
    } else {
        let mut chars = raw.char_indices();
        loop {
            let Some((i, c)) = chars.next() else {
                break "";
            };
            match c {
                '\\' => value.push(chars.next()?.1),
                c if c.is_whitespace() => break &raw[i..],
                '"' | '\'' | '$' | '`' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => return None,
                _ => value.push(c),
            }
        }
    };
    only_comment_follows(rest).then_some(value)
}

/// True if `rest`, what follows a value on its line, is nothing or
/// whitespace and then an optional comment.
fn only_comment_follows(rest: &str) -> bool {
    if rest.is_empty() {
        return true;
    }
    let after_space = rest.trim_start();
    after_space.len() < rest.len() && (after_space.is_empty() || after_space.starts_with('#'))
}

#[derive(Clone, Copy)]
enum Lineage {
    Debian,
    Fedora,
    EnterpriseLinux,
}

fn lineage_of(word: &str) -> Option<Lineage> {
    let named = |ids: &[&str]| ids.iter().any(|id| id.eq_ignore_ascii_case(word));
    if named(&DEBIAN_IDS) {
        Some(Lineage::Debian)
    } else if word.eq_ignore_ascii_case("fedora") {
        Some(Lineage::Fedora)
    } else if named(&EL_IDS) {
        Some(Lineage::EnterpriseLinux)
    } else {
        None
    }
}

/// The family of the system an os-release describes (see the module
/// documentation for the rules). Errors name `/etc/os-release`.
pub fn family_from_os_release(os: &OsRelease) -> Result<Family, DetectError> {
    os_release_family(os, Path::new(DEFAULT_OS_RELEASE))
}

/// [`family_from_os_release`] of the os-release read from `path`, which
/// its errors name.
fn os_release_family(os: &OsRelease, path: &Path) -> Result<Family, DetectError> {
    if let Some(lineage) = os.id().and_then(lineage_of) {
        return match lineage {
            Lineage::Debian => Ok(Family::Apt),
            Lineage::Fedora => Ok(Family::Dnf),
            Lineage::EnterpriseLinux => el_family_from_version_id(os, true, path),
        };
    }
    match os.id_like().find_map(lineage_of) {
        Some(Lineage::Debian) => Ok(Family::Apt),
        Some(Lineage::Fedora | Lineage::EnterpriseLinux) => {
            el_family_from_version_id(os, false, path)
        }
        None => Err(DetectError::UnknownDistribution {
            path: path.to_path_buf(),
            id: os.id().map(clip),
            id_like: os.get("ID_LIKE").map(clip),
        }),
    }
}

/// `is_el`: the `ID` itself is an Enterprise Linux, whose version numbers
/// are EL's (a derivative's, e.g. Amazon Linux 2, are its own). Errors
/// name `path`.
fn el_family_from_version_id(
    os: &OsRelease,
    is_el: bool,
    path: &Path,
) -> Result<Family, DetectError> {
    let path = path.to_path_buf();
    let id = os.id().map(clip);
    let id_like = os.get("ID_LIKE").map(clip);
    let Some(version_id) = os.version_id().filter(|v| !v.trim().is_empty()) else {
        return Err(DetectError::MissingVersionId { path, id, id_like });
    };
    match major_version(version_id) {
        Some(major) if is_el && major < FIRST_SUPPORTED_EL => {
            Err(DetectError::UnsupportedRelease {
                path,
                // `centos 6`: the ID and VERSION_ID, shown escaped.
                release: format!("{} {}", id.as_deref().unwrap_or(""), clip(version_id)),
                major,
            })
        }
        Some(major) => Ok(el_family(major)),
        None => Err(DetectError::BadVersionId {
            path,
            id,
            id_like,
            version_id: clip(version_id),
        }),
    }
}

/// The oldest Enterprise Linux the shipped binaries run on (glibc 2.17).
const FIRST_SUPPORTED_EL: u32 = 7;

/// Enterprise Linux 7 and older has yum, 8 and newer dnf.
fn el_family(major: u32) -> Family {
    if major <= 7 {
        Family::Yum
    } else {
        Family::Dnf
    }
}

/// The major number of a version such as `8.10`, `7`, `7.5.1804` or `2023`:
/// the leading digits, which must be followed by nothing or a dot.
fn major_version(version: &str) -> Option<u32> {
    let end = version
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(version.len());
    if end == 0 || !matches!(version[end..].chars().next(), None | Some('.')) {
        return None;
    }
    version[..end].parse().ok()
}

/// The family of a Red Hat family system from its `/etc/redhat-release`,
/// for systems that have no os-release (CentOS 6, RHEL 6, CloudLinux 6).
/// The first non-blank line must read `<name> release <version> ...`, e.g.
/// `CentOS release 6.10 (Final)` or
/// `Red Hat Enterprise Linux Server release 6.10 (Santiago)`. Fedora gives
/// dnf, and any other name the Enterprise Linux rule on the major version.
/// Only Red Hat family systems have this file, so the name is not checked
/// against a list. Errors name `/etc/redhat-release`.
pub fn family_from_redhat_release(text: &str) -> Result<Family, DetectError> {
    redhat_release_family(text, Path::new(DEFAULT_REDHAT_RELEASE))
}

/// [`family_from_redhat_release`] of the text read from `path`, which its
/// errors name.
fn redhat_release_family(text: &str, path: &Path) -> Result<Family, DetectError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    let words: Vec<&str> = line.split_whitespace().collect();
    let parsed = words
        .iter()
        .position(|word| *word == "release")
        .filter(|&at| at > 0)
        .and_then(|at| {
            let major = major_version(words.get(at + 1)?)?;
            Some((&words[..at], major))
        });
    match parsed {
        Some((name, _)) if name.len() == 1 && name[0].eq_ignore_ascii_case("fedora") => {
            Ok(Family::Dnf)
        }
        Some((_, major)) if major < FIRST_SUPPORTED_EL => Err(DetectError::UnsupportedRelease {
            path: path.to_path_buf(),
            release: clip(line),
            major,
        }),
        Some((_, major)) => Ok(el_family(major)),
        None => Err(DetectError::UnrecognizedRedhatRelease {
            path: path.to_path_buf(),
            text: clip(line),
        }),
    }
}

/// Detects the family of the system whose root directory is `root` (`/` in
/// production; tests pass a temporary tree). It reads `<root>/etc/os-release`
/// or, if that does not exist, `<root>/usr/lib/os-release`. Only if neither
/// exists does it read `<root>/etc/redhat-release`. An os-release that
/// exists is used even if it fails to decide: os-release(5) says to use
/// `/etc/os-release` alone when it exists, and the other files are not
/// consulted in its place. A dangling symbolic link counts as a missing
/// file. Each read is capped at [`MAX_RELEASE_FILE_BYTES`].
pub fn detect(root: &Path) -> Result<Family, DetectError> {
    for file in OS_RELEASE_FILES {
        let path = root.join(file);
        if let Some(text) = read_release_file(&path)? {
            return os_release_family(&parse_os_release(&text), &path);
        }
    }
    let path = root.join(REDHAT_RELEASE_FILE);
    match read_release_file(&path)? {
        Some(text) => redhat_release_family(&text, &path),
        None => Err(DetectError::NoReleaseFile {
            tried: OS_RELEASE_FILES
                .iter()
                .chain([&REDHAT_RELEASE_FILE])
                .map(|file| root.join(file))
                .collect(),
        }),
    }
}

/// The text of the release file at `path`, or None if there is none.
fn read_release_file(path: &Path) -> Result<Option<String>, DetectError> {
    let unreadable = |source: io::Error| DetectError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening, because opening a FIFO would block.
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            return Err(DetectError::NotRegularFile {
                path: path.to_path_buf(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    // Checked again on what was opened, in case the path changed in between.
    if !file.metadata().map_err(unreadable)?.is_file() {
        return Err(DetectError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    read_capped(file, path).map(Some)
}

/// Reads at most [`MAX_RELEASE_FILE_BYTES`] + 1 bytes from `reader`. If it
/// gets more than the cap, the source is too large. Invalid UTF-8 is
/// replaced, not fatal: only ASCII keys and values matter here.
fn read_capped<R: Read>(reader: R, path: &Path) -> Result<String, DetectError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_RELEASE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| DetectError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_RELEASE_FILE_BYTES {
        return Err(DetectError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `value` cut to [`MAX_SHOWN_CHARS`] characters, marked with `…` if cut.
fn clip(value: &str) -> String {
    match value.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("../tests/fixtures/os-release/", $name)),
            )
        };
    }

    /// A fixture file: its name and its text.
    type Fixture = (&'static str, &'static str);

    /// (fixture, ID, VERSION_ID, family) for every real os-release here.
    const OS_RELEASES: &[(Fixture, &str, Option<&str>, Family)] = &[
        (fixture!("centos-7"), "centos", Some("7"), Family::Yum),
        (
            fixture!("almalinux-8"),
            "almalinux",
            Some("8.10"),
            Family::Dnf,
        ),
        (
            fixture!("almalinux-9"),
            "almalinux",
            Some("9.6"),
            Family::Dnf,
        ),
        (fixture!("rocky-9"), "rocky", Some("9.3"), Family::Dnf),
        (
            fixture!("cloudlinux-7"),
            "cloudlinux",
            Some("7.4"),
            Family::Yum,
        ),
        (
            fixture!("cloudlinux-8"),
            "cloudlinux",
            Some("8.4"),
            Family::Dnf,
        ),
        (fixture!("rhel-8"), "rhel", Some("8.7"), Family::Dnf),
        (fixture!("debian-11"), "debian", Some("11"), Family::Apt),
        (fixture!("debian-12"), "debian", Some("12"), Family::Apt),
        (
            fixture!("ubuntu-20.04"),
            "ubuntu",
            Some("20.04"),
            Family::Apt,
        ),
        (
            fixture!("ubuntu-22.04"),
            "ubuntu",
            Some("22.04"),
            Family::Apt,
        ),
        (
            fixture!("ubuntu-24.04"),
            "ubuntu",
            Some("24.04"),
            Family::Apt,
        ),
        (fixture!("fedora-37"), "fedora", Some("37"), Family::Dnf),
        (
            fixture!("amazonlinux-2023"),
            "amzn",
            Some("2023"),
            Family::Dnf,
        ),
        (fixture!("popos-22.04"), "pop", Some("22.04"), Family::Apt),
    ];

    const CENTOS_6: Fixture = fixture!("centos-6-redhat-release");
    const MANJARO: Fixture = fixture!("manjaro");

    fn family_of(text: &str) -> Result<Family, DetectError> {
        family_from_os_release(&parse_os_release(text))
    }

    /// `detect` refuses every text in `texts` with an error that matches
    /// `pattern`; with `example => message`, the refusal of `example`
    /// reads exactly `message`.
    macro_rules! assert_each_refused {
        ($detect:expr, $texts:expr, $pattern:pat) => {
            for text in $texts {
                let err = $detect(&text).unwrap_err();
                assert!(matches!(err, $pattern), "{text:?}: {err:?}");
            }
        };
        ($detect:expr, $texts:expr, $pattern:pat, $example:expr => $message:expr) => {
            assert_each_refused!($detect, $texts, $pattern);
            assert_eq!($detect($example).unwrap_err().to_string(), $message);
        };
    }

    /// A root directory holding `files` (path relative to the root, text).
    fn root_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temporary directory");
        for (file, contents) in files {
            let path = root.path().join(file);
            fs::create_dir_all(path.parent().expect("a parent")).expect("directories");
            fs::write(&path, contents).expect("write fixture");
        }
        root
    }

    // ----- the real files -------------------------------------------------

    #[test]
    fn real_os_release_files_parse_and_map_to_their_family() {
        for &((name, text), id, version_id, family) in OS_RELEASES {
            let os = parse_os_release(text);
            assert_eq!(os.id(), Some(id), "{name}: ID");
            assert_eq!(os.version_id(), version_id, "{name}: VERSION_ID");
            assert!(os.pretty_name().is_some(), "{name}: PRETTY_NAME");
            // Every non-blank, non-comment line of a real file is well formed.
            let assignments = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .count();
            assert_eq!(os.len(), assignments, "{name}: a line was dropped");
            assert_eq!(
                family_from_os_release(&os).ok(),
                Some(family),
                "{name}: family"
            );
        }
    }

    #[test]
    fn real_files_keep_their_quoted_values_whole() {
        let os = parse_os_release(fixture!("almalinux-8").1);
        assert_eq!(os.get("ID_LIKE"), Some("rhel centos fedora"));
        assert_eq!(os.pretty_name(), Some("AlmaLinux 8.10 (Cerulean Leopard)"));
        assert_eq!(os.get("SUPPORT_END"), Some("2029-06-01"));
        let os = parse_os_release(fixture!("fedora-37").1);
        assert_eq!(os.get("VERSION_CODENAME"), Some(""));
        assert_eq!(os.get("ANSI_COLOR"), Some("0;38;2;60;110;180"));
        let os = parse_os_release(fixture!("popos-22.04").1);
        assert_eq!(os.id_like().collect::<Vec<_>>(), ["ubuntu", "debian"]);
    }

    /// Fails unless `result` is [`DetectError::UnsupportedRelease`] of EL
    /// `major` whose message says what is supported.
    fn assert_unsupported(result: Result<Family, DetectError>, major: u32, what: &str) {
        match result {
            Err(e @ DetectError::UnsupportedRelease { major: m, .. }) if m == major => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("Enterprise Linux {major} is not supported"))
                        && text.contains("glibc 2.17")
                        && text.contains("EL 7 (yum)"),
                    "{what}: {text}"
                );
            }
            other => panic!("{what}: expected EL {major} unsupported, got {other:?}"),
        }
    }

    #[test]
    fn real_centos_6_redhat_release_is_unsupported() {
        assert_unsupported(family_from_redhat_release(CENTOS_6.1), 6, "centos 6");
        let err = family_from_redhat_release(CENTOS_6.1).unwrap_err();
        assert_eq!(err.path(), Some(Path::new("/etc/redhat-release")));
        assert!(
            err.to_string().contains("\"CentOS release 6.10 (Final)\""),
            "{err}"
        );
    }

    #[test]
    fn real_unsupported_distribution_is_a_typed_error() {
        let err = family_of(MANJARO.1).unwrap_err();
        assert!(
            matches!(
                &err,
                DetectError::UnknownDistribution { id: Some(id), id_like: Some(like), .. }
                    if id == "manjaro" && like == "arch"
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot tell the package manager family: /etc/os-release has \
                 ID=\"manjaro\" and ID_LIKE=\"arch\"; {SUPPORTED}"
            )
        );
    }

    #[test]
    fn detect_reads_each_real_file_from_a_root() {
        for &((name, text), _, _, family) in OS_RELEASES {
            let root = root_with(&[("etc/os-release", text.as_bytes())]);
            assert_eq!(detect(root.path()).ok(), Some(family), "{name}");
        }
        let root = root_with(&[("etc/redhat-release", CENTOS_6.1.as_bytes())]);
        let err = detect(root.path()).unwrap_err();
        assert_eq!(
            err.path(),
            Some(root.path().join("etc/redhat-release").as_path())
        );
        assert_unsupported(Err(err), 6, "centos 6");
    }

    // ----- the parser -----------------------------------------------------

    #[test]
    fn double_quotes_take_shell_escapes() {
        let os = parse_os_release(concat!(
            r#"A="a \"b\" \\ \$ \` c""#,
            "\n",
            r#"B="x\ny\q""#,
            "\n",
            r#"C="it's # not a comment""#,
            "\n",
            r#"D="""#,
            "\n"
        ));
        assert_eq!(os.get("A"), Some(r#"a "b" \ $ ` c"#));
        // Before any other character the backslash stays, as in a shell.
        assert_eq!(os.get("B"), Some(r"x\ny\q"));
        assert_eq!(os.get("C"), Some("it's # not a comment"));
        assert_eq!(os.get("D"), Some(""));
    }

    #[test]
    fn single_quotes_are_literal() {
        let os = parse_os_release("A='a \"b\" \\n $x `y`'\nB=''\n");
        assert_eq!(os.get("A"), Some("a \"b\" \\n $x `y`"));
        assert_eq!(os.get("B"), Some(""));
    }

    #[test]
    fn bare_values_and_their_escapes() {
        let os = parse_os_release("A=debian\nB=8.10\nC=a\\ b\\\"c\nD=\nE=a#b\n");
        assert_eq!(os.get("A"), Some("debian"));
        assert_eq!(os.get("B"), Some("8.10"));
        assert_eq!(os.get("C"), Some("a b\"c"));
        assert_eq!(os.get("D"), Some(""));
        // '#' starts a comment only at the start of a word.
        assert_eq!(os.get("E"), Some("a#b"));
    }

    #[test]
    fn comments_blank_lines_whitespace_and_crlf() {
        let text = "# ID=arch\n\n   \n\t# indented comment\n  ID=debian   # trailing comment\r\n\
                    VERSION_ID=\"12\" # and here\r\n";
        let os = parse_os_release(text);
        assert_eq!(os.id(), Some("debian"));
        assert_eq!(os.version_id(), Some("12"));
        assert_eq!(os.len(), 2);
    }

    #[test]
    fn malformed_lines_are_skipped_and_the_rest_is_read() {
        let bad = [
            "NO_EQUALS_SIGN",
            "=value",
            "1KEY=x",
            "KEY-X=x",
            "KEY =x",
            "KEY= x",
            "export KEY=x",
            "KEY=\"unterminated",
            "KEY='unterminated",
            "KEY=\"ends in backslash\\",
            "KEY=ends\\",
            "KEY=\"a\"b",
            "KEY='a'\"b\"",
            "KEY=\"a\"#b",
            "KEY=two words",
            "KEY=a'b'",
            "KEY=$(reboot)",
            "KEY=`reboot`",
            "KEY=a;reboot",
            "KEY=a&&b",
            "KEY=a|b",
            "KEY=a>b",
            "KEY=\"$HOME\"",
            "KEY=\"`id`\"",
        ];
        for line in bad {
            let text = format!("ID=rocky\n{line}\nVERSION_ID=\"9.3\"\n");
            let os = parse_os_release(&text);
            assert_eq!(os.get("KEY"), None, "{line:?} was accepted");
            assert_eq!(os.id(), Some("rocky"), "{line:?}");
            assert_eq!(os.version_id(), Some("9.3"), "{line:?}");
        }
    }

    #[test]
    fn a_malformed_line_does_not_override_a_good_one() {
        let os = parse_os_release("ID=debian\nID=\"arch\nID=arch linux\n");
        assert_eq!(os.id(), Some("debian"));
    }

    #[test]
    fn the_last_assignment_wins() {
        let os = parse_os_release("ID=arch\nID=debian\n");
        assert_eq!(os.id(), Some("debian"));
        assert_eq!(family_from_os_release(&os).ok(), Some(Family::Apt));
    }

    #[test]
    fn empty_and_junk_text_parse_to_nothing() {
        assert!(parse_os_release("").is_empty());
        assert!(parse_os_release("\n\n# only comments\n").is_empty());
        assert!(parse_os_release("\u{0}\u{fffd}garbage\n=\n==\n").is_empty());
    }

    // ----- the rules ------------------------------------------------------

    #[test]
    fn version_id_major_decides_enterprise_linux() {
        let cases = [
            ("\"8.10\"", Family::Dnf),
            ("8.10", Family::Dnf),
            ("\"7\"", Family::Yum),
            ("7", Family::Yum),
            ("'7.9.2009'", Family::Yum),
            ("\"8\"", Family::Dnf),
            ("\"9.6\"", Family::Dnf),
            ("\"10\"", Family::Dnf),
            ("\"10.0\"", Family::Dnf),
        ];
        for (version_id, family) in cases {
            for id in EL_IDS {
                let text = format!("ID={id}\nVERSION_ID={version_id}\n");
                assert_eq!(family_of(&text).ok(), Some(family), "{text:?}");
            }
        }
        // EL 6 and older: unsupported, not a yum path.
        for (version_id, major) in [("\"6\"", 6), ("6.10", 6), ("'5.11'", 5)] {
            for id in EL_IDS {
                let text = format!("ID={id}\nVERSION_ID={version_id}\n");
                assert_unsupported(family_of(&text), major, &text);
            }
        }
        // A derivative's own numbering is not EL's: Amazon Linux 2 is yum.
        assert_eq!(
            family_of("ID=amzn\nID_LIKE=\"centos rhel fedora\"\nVERSION_ID=2\n").ok(),
            Some(Family::Yum)
        );
    }

    #[test]
    fn id_like_with_several_words() {
        let cases = [
            ("ID=\"pop\"\nID_LIKE=\"ubuntu debian\"", Family::Apt),
            ("ID=linuxmint\nID_LIKE=ubuntu", Family::Apt),
            ("ID=kali\nID_LIKE=debian", Family::Apt),
            (
                "ID=\"eurolinux\"\nID_LIKE=\"rhel scientific centos fedora\"\nVERSION_ID=\"7.9\"",
                Family::Yum,
            ),
            (
                "ID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\nVERSION_ID=\"2\"",
                Family::Yum,
            ),
            (
                "ID=\"navy\"\nID_LIKE=\"  rhel\tcentos   fedora \"\nVERSION_ID=\"8.4\"",
                Family::Dnf,
            ),
            // Unknown words are passed over, the first known one decides.
            (
                "ID=\"foo\"\nID_LIKE=\"arch suse rhel\"\nVERSION_ID=\"9\"",
                Family::Dnf,
            ),
            ("ID=foo\nID_LIKE=\"arch ubuntu rhel\"", Family::Apt),
            // ID decides before ID_LIKE.
            ("ID=ubuntu\nID_LIKE=\"rhel fedora\"", Family::Apt),
            // Upper case is tolerated.
            (
                "ID=\"Foo\"\nID_LIKE=\"RHEL Fedora\"\nVERSION_ID=\"8\"",
                Family::Dnf,
            ),
        ];
        for (text, family) in cases {
            assert_eq!(family_of(text).ok(), Some(family), "{text:?}");
        }
    }

    #[test]
    fn apt_and_fedora_need_no_version_id() {
        // Debian testing and sid ship no VERSION_ID.
        let sid = "PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nNAME=\"Debian GNU/Linux\"\n\
                   VERSION_CODENAME=trixie\nID=debian\n";
        assert_eq!(family_of(sid).ok(), Some(Family::Apt));
        assert_eq!(family_of("ID=fedora\n").ok(), Some(Family::Dnf));
        assert_eq!(family_of("ID=ubuntu\n").ok(), Some(Family::Apt));
    }

    #[test]
    fn enterprise_linux_without_version_id_is_an_error() {
        assert_each_refused!(
            family_of,
            [
                "ID=rocky\nID_LIKE=\"rhel centos fedora\"\n",
                "ID=rocky\nVERSION_ID=\n",
                "ID=rocky\nVERSION_ID=\"  \"\n",
                "ID=foo\nID_LIKE=fedora\n",
            ],
            DetectError::MissingVersionId { .. },
            "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n" =>
            "cannot tell the package manager family: /etc/os-release has ID=\"rocky\" and \
             ID_LIKE=\"rhel centos fedora\", an Enterprise Linux, but no VERSION_ID; the major \
             version chooses yum (Enterprise Linux 7 and older) or dnf (8 and newer)"
        );
    }

    #[test]
    fn enterprise_linux_with_unparsable_version_id_is_an_error() {
        assert_each_refused!(
            family_of,
            [
                "abc",
                "\"v8\"",
                "\".8\"",
                "\"8a\"",
                "\"8-beta\"",
                "99999999999",
            ]
            .map(|version_id| format!("ID=centos\nVERSION_ID={version_id}\n")),
            DetectError::BadVersionId { .. },
            "ID=centos\nVERSION_ID=\"stream\"\n" =>
            "cannot tell the package manager family: /etc/os-release has ID=\"centos\" and no \
             ID_LIKE, an Enterprise Linux, but VERSION_ID=\"stream\" does not start with a \
             major version number; the major version chooses yum (Enterprise Linux 7 and \
             older) or dnf (8 and newer)"
        );
    }

    #[test]
    fn unknown_distributions_are_errors() {
        assert_each_refused!(
            family_of,
            [
                "ID=arch\n",
                "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\nVERSION_ID=\"15.4\"\n",
                "ID=alpine\nVERSION_ID=3.19.1\n",
                "NAME=Nothing\n",
                "",
                "ID=\n",
            ],
            DetectError::UnknownDistribution { .. }
        );
        let err = family_of("ID=arch\n").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot tell the package manager family: /etc/os-release has ID=\"arch\" and no ID_LIKE; the helper supports Debian, Ubuntu"));
        let err = family_of("").unwrap_err();
        assert!(
            err.to_string().contains("has no ID and no ID_LIKE;"),
            "{err}"
        );
    }

    #[test]
    fn values_in_messages_are_escaped_and_clipped() {
        let err = family_of("ID=\"evil\u{1b}[31m\u{7}\"\n").unwrap_err();
        let shown = err.to_string();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{shown}"
        );
        assert!(shown.contains(r#"ID="evil\u{1b}[31m\u{7}""#), "{shown}");

        let long = "x".repeat(10_000);
        let err = family_of(&format!("ID={long}\nID_LIKE=\"{long}\"\n")).unwrap_err();
        let DetectError::UnknownDistribution { id, id_like, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(id.as_deref().map(|s| s.chars().count()), Some(81));
        assert_eq!(id_like.as_deref().map(|s| s.chars().count()), Some(81));
        assert!(err.to_string().len() < 600, "{err}");
    }

    // ----- /etc/redhat-release ---------------------------------------------

    #[test]
    fn redhat_release_lines() {
        for (text, major) in [
            ("CentOS release 6.10 (Final)\n", 6),
            ("CentOS release 6.7 (Final)", 6),
            (
                "Red Hat Enterprise Linux Server release 6.10 (Santiago)\n",
                6,
            ),
            ("Scientific Linux release 6.10 (Carbon)\n", 6),
            ("CloudLinux Server release 6.10 (Final)\n", 6),
            ("\n  CentOS release 5.11 (Final)  \n", 5),
        ] {
            assert_unsupported(family_from_redhat_release(text), major, text);
        }
        let cases = [
            ("CentOS Linux release 7.5.1804 (Core)\n", Family::Yum),
            (
                "CloudLinux release 8.4 (Valery Rozhdestvensky)\n",
                Family::Dnf,
            ),
            ("Rocky Linux release 8.3 (Green Obsidian)\n", Family::Dnf),
            ("Virtuozzo Linux release 8\n", Family::Dnf),
            ("Fedora release 20 (Heisenbug)\n", Family::Dnf),
        ];
        for (text, family) in cases {
            assert_eq!(
                family_from_redhat_release(text).ok(),
                Some(family),
                "{text:?}"
            );
        }
    }

    #[test]
    fn unrecognized_redhat_release_is_an_error() {
        assert_each_refused!(
            family_from_redhat_release,
            [
                "",
                "\n\n",
                "hello",
                "release 6.10",
                "CentOS release",
                "CentOS release six (Final)",
                "CentOS version 6.10",
                "CentOS release v6",
            ],
            DetectError::UnrecognizedRedhatRelease { .. },
            "CentOS version 6.10\n" =>
            "cannot tell the package manager family: /etc/redhat-release reads \
             \"CentOS version 6.10\", not \"<name> release <version> (<codename>)\" as Red Hat \
             family systems write it (e.g. \"CentOS release 6.10 (Final)\")"
        );
    }

    // ----- detect(): which file ----------------------------------------------

    #[test]
    fn detect_without_any_release_file() {
        let root = root_with(&[]);
        let err = detect(root.path()).unwrap_err();
        let DetectError::NoReleaseFile { tried } = &err else {
            panic!("{err:?}");
        };
        let expected: Vec<PathBuf> = ["etc/os-release", "usr/lib/os-release", "etc/redhat-release"]
            .iter()
            .map(|f| root.path().join(f))
            .collect();
        assert_eq!(tried, &expected);
        assert!(err.path().is_none());
        let shown = err.to_string();
        assert!(
            shown.starts_with("cannot tell the package manager family: none of "),
            "{shown}"
        );
        for path in &expected {
            assert!(shown.contains(&path.display().to_string()), "{shown}");
        }
    }

    #[test]
    fn detect_falls_back_to_usr_lib_os_release() {
        let rocky = fixture!("rocky-9").1.as_bytes();
        let root = root_with(&[("usr/lib/os-release", rocky)]);
        assert_eq!(detect(root.path()).ok(), Some(Family::Dnf));
    }

    #[test]
    fn detect_prefers_etc_os_release() {
        let root = root_with(&[
            ("etc/os-release", fixture!("centos-7").1.as_bytes()),
            ("usr/lib/os-release", fixture!("debian-12").1.as_bytes()),
            ("etc/redhat-release", b"Fedora release 20 (Heisenbug)\n"),
        ]);
        assert_eq!(detect(root.path()).ok(), Some(Family::Yum));
    }

    #[test]
    fn detect_reads_redhat_release_only_without_os_release() {
        // CentOS 7 has both; os-release wins even where redhat-release would
        // say otherwise.
        let root = root_with(&[
            ("usr/lib/os-release", fixture!("almalinux-9").1.as_bytes()),
            ("etc/redhat-release", CENTOS_6.1.as_bytes()),
        ]);
        assert_eq!(detect(root.path()).ok(), Some(Family::Dnf));
    }

    #[test]
    fn detect_does_not_fall_back_when_os_release_is_undecided() {
        let root = root_with(&[
            ("etc/os-release", b"ID=rocky\n"),
            (
                "etc/redhat-release",
                b"Rocky Linux release 9.3 (Blue Onyx)\n",
            ),
        ]);
        let err = detect(root.path()).unwrap_err();
        assert!(
            matches!(err, DetectError::MissingVersionId { .. }),
            "{err:?}"
        );
        // The error names the file that was read, under the root.
        assert_eq!(
            err.path(),
            Some(root.path().join("etc/os-release").as_path())
        );
        assert!(err
            .to_string()
            .contains(&root.path().join("etc/os-release").display().to_string()));
    }

    #[test]
    fn detect_names_the_file_it_read() {
        let root = root_with(&[("usr/lib/os-release", b"ID=arch\n")]);
        let err = detect(root.path()).unwrap_err();
        assert_eq!(
            err.path(),
            Some(root.path().join("usr/lib/os-release").as_path())
        );
        let root = root_with(&[("etc/redhat-release", b"garbage\n")]);
        let err = detect(root.path()).unwrap_err();
        assert!(matches!(err, DetectError::UnrecognizedRedhatRelease { .. }));
        assert_eq!(
            err.path(),
            Some(root.path().join("etc/redhat-release").as_path())
        );
    }

    #[test]
    fn detect_treats_a_dangling_link_as_missing() {
        let root = root_with(&[("usr/lib/os-release", fixture!("debian-12").1.as_bytes())]);
        fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::os::unix::fs::symlink(
            root.path().join("nowhere"),
            root.path().join("etc/os-release"),
        )
        .expect("symlink");
        assert_eq!(detect(root.path()).ok(), Some(Family::Apt));
    }

    #[test]
    fn detect_follows_the_usual_link() {
        // /etc/os-release is normally a link to ../usr/lib/os-release.
        let root = root_with(&[("usr/lib/os-release", fixture!("ubuntu-24.04").1.as_bytes())]);
        fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::os::unix::fs::symlink("../usr/lib/os-release", root.path().join("etc/os-release"))
            .expect("symlink");
        assert_eq!(detect(root.path()).ok(), Some(Family::Apt));
    }

    #[test]
    fn detect_refuses_a_directory() {
        let root = root_with(&[]);
        fs::create_dir_all(root.path().join("etc/os-release")).expect("dir");
        let err = detect(root.path()).unwrap_err();
        assert!(matches!(err, DetectError::NotRegularFile { .. }), "{err:?}");
        assert!(err.to_string().contains("is not a regular file"), "{err}");
    }

    // ----- the 64 KiB cap ----------------------------------------------------

    #[test]
    fn read_capped_stops_an_endless_source() {
        // io::repeat never ends: only the cap ends the read.
        let err = read_capped(io::repeat(b'#'), Path::new("/etc/os-release")).unwrap_err();
        assert!(matches!(err, DetectError::TooLarge { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot tell the package manager family: /etc/os-release is larger than 65536 \
             bytes, which no real release file is; check what has replaced it"
        );
    }

    #[test]
    fn a_file_of_exactly_the_cap_is_read() {
        let mut text = b"ID=debian\n".to_vec();
        text.resize(MAX_RELEASE_FILE_BYTES as usize - 1, b'#');
        text.push(b'\n');
        assert_eq!(text.len() as u64, MAX_RELEASE_FILE_BYTES);
        let root = root_with(&[("etc/os-release", &text)]);
        assert_eq!(detect(root.path()).ok(), Some(Family::Apt));
    }

    #[test]
    fn a_file_one_byte_over_the_cap_is_refused() {
        let mut text = b"ID=debian\n".to_vec();
        text.resize(MAX_RELEASE_FILE_BYTES as usize, b'#');
        text.push(b'\n');
        for file in ["etc/os-release", "usr/lib/os-release", "etc/redhat-release"] {
            let root = root_with(&[(file, &text)]);
            let err = detect(root.path()).unwrap_err();
            assert!(
                matches!(err, DetectError::TooLarge { .. }),
                "{file}: {err:?}"
            );
            assert_eq!(err.path(), Some(root.path().join(file).as_path()));
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let root = root_with(&[(
            "etc/os-release",
            b"PRETTY_NAME=\"bad \xff\xfe bytes\"\nID=ubuntu\n",
        )]);
        assert_eq!(detect(root.path()).ok(), Some(Family::Apt));
    }

    // ----- properties ----------------------------------------------------------

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in proptest::prelude::any::<String>()) {
            let os = parse_os_release(&text);
            let _ = family_from_os_release(&os);
            let _ = family_from_redhat_release(&text);
        }

        #[test]
        fn double_quoted_values_round_trip(value in "[ -~]{0,40}") {
            let escaped: String = value
                .chars()
                .flat_map(|c| {
                    let escape = matches!(c, '"' | '\\' | '$' | '`').then_some('\\');
                    escape.into_iter().chain([c])
                })
                .collect();
            let os = parse_os_release(&format!("KEY=\"{escaped}\"\n"));
            proptest::prop_assert_eq!(os.get("KEY"), Some(value.as_str()));
        }
    }
}
