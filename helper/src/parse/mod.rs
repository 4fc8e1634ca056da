//! Pure parsers of the package tools' output.
//!
//! Every parser here takes the text a tool printed (`&str`) and returns a
//! typed value or a [`ParseError`]; none of them runs a command, opens a file
//! or reads the clock. The functions that run the tools live elsewhere and
//! hand their captured output over, which is what makes these unit-testable
//! on captured fixtures (`helper/tests/fixtures/apt/`) and fuzzable.
//!
//! Rules every parser follows: no panics on any input (no indexing that can
//! fail, no `unwrap` on input-derived values), work linear in the input, and
//! input larger than [`MAX_INPUT`] refused up front.

use std::fmt;

use patchman_shared::EvrError;

pub mod apt_config;
pub mod apt_madison;
pub mod apt_policy;
pub mod apt_show;
pub mod apt_simulate;
pub mod check_update;
pub mod dnf;
pub mod dpkg_deb;
pub mod dpkg_query;
#[cfg(test)]
pub(crate) mod el_fixtures;
pub mod rpm_install;
pub mod rpm_query;
pub mod rpmkeys;
pub mod yum;

/// Largest tool output any parser accepts. The host's `apt-config dump` is
/// about 20 KiB; everything else we parse is smaller.
pub const MAX_INPUT: usize = 4 * 1024 * 1024;

/// Longest excerpt of tool output quoted in an error or a report.
pub const MAX_EXCERPT: usize = 400;

/// Why a tool's output could not be understood. `tool` names the command
/// whose output it was (`"apt-cache policy"`), so a person reading the
/// message knows where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The output is larger than [`MAX_INPUT`].
    TooLarge { tool: &'static str, len: usize },
    /// Nothing (or only blank lines) where output was required.
    Empty { tool: &'static str },
    /// A line that does not have the shape the tool prints.
    Malformed {
        tool: &'static str,
        line: usize,
        expected: &'static str,
        excerpt: String,
    },
    /// A version field that is not a valid `[epoch:]version[-revision]`.
    BadVersion {
        tool: &'static str,
        line: usize,
        excerpt: String,
        error: EvrError,
    },
    /// A key, field or package that must appear once appears again, so the
    /// output is ambiguous.
    Duplicate {
        tool: &'static str,
        line: usize,
        key: String,
    },
    /// A key or field the caller needs is absent.
    Missing { tool: &'static str, key: String },
    /// The output stops in the middle of a record, or lacks the summary the
    /// tool always prints at the end: it was cut short.
    Truncated { tool: &'static str, detail: String },
    /// The output parses but contradicts itself or the way apt/dpkg work.
    Inconsistent { tool: &'static str, detail: String },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLarge { tool, len } => write!(
                f,
                "output of `{tool}` is {len} bytes, more than the {MAX_INPUT} this helper reads"
            ),
            ParseError::Empty { tool } => write!(f, "`{tool}` printed nothing to parse"),
            ParseError::Malformed {
                tool,
                line,
                expected,
                excerpt,
            } => write!(
                f,
                "output of `{tool}`, line {line}: expected {expected}, found {excerpt}"
            ),
            ParseError::BadVersion {
                tool,
                line,
                excerpt,
                error,
            } => write!(
                f,
                "output of `{tool}`, line {line}: {excerpt} is not a usable version ({error})"
            ),
            ParseError::Duplicate { tool, line, key } => write!(
                f,
                "output of `{tool}`, line {line}: {key} appears more than once, so the output is ambiguous"
            ),
            ParseError::Missing { tool, key } => {
                write!(f, "output of `{tool}` has no {key}")
            }
            ParseError::Truncated { tool, detail } => {
                write!(f, "output of `{tool}` looks cut short: {detail}")
            }
            ParseError::Inconsistent { tool, detail } => {
                write!(f, "output of `{tool}` contradicts itself: {detail}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Refuses input larger than [`MAX_INPUT`].
pub(crate) fn check_size(tool: &'static str, input: &str) -> Result<(), ParseError> {
    if input.len() > MAX_INPUT {
        return Err(ParseError::TooLarge {
            tool,
            len: input.len(),
        });
    }
    Ok(())
}

/// A short, printable quotation of tool output for an error message: at most
/// `max` bytes (cut at a character boundary), control characters escaped by
/// `{:?}` so nothing in it can drive a terminal.
pub(crate) fn quote(s: &str, max: usize) -> String {
    let cut = truncate_at_boundary(s, max);
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
pub(crate) fn truncate_at_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Tool output made safe to show a person: control characters other than
/// newline and tab escaped (the one function both halves use), and the
/// result cut to `max` bytes.
pub(crate) fn sanitize_excerpt(s: &str, max: usize) -> String {
    let cleaned = patchman_shared::escape_controls(s);
    truncate_at_boundary(&cleaned, max).to_string()
}

/// Parses a version from tool output, with the context for a good error.
pub(crate) fn parse_evr(
    tool: &'static str,
    line: usize,
    s: &str,
) -> Result<patchman_shared::Evr, ParseError> {
    patchman_shared::Evr::parse(s).map_err(|error| ParseError::BadVersion {
        tool,
        line,
        excerpt: quote(s, 80),
        error,
    })
}

/// `ParseError::Malformed` for `line` (1-based number `n`).
pub(crate) fn malformed(
    tool: &'static str,
    n: usize,
    expected: &'static str,
    line: &str,
) -> ParseError {
    ParseError::Malformed {
        tool,
        line: n,
        expected,
        excerpt: quote(line, 120),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    /// `helper/tests/fixtures/<dir>`.
    pub fn fixture_dir(dir: &str) -> PathBuf {
        [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", dir]
            .iter()
            .collect()
    }

    /// The text of a captured fixture, `helper/tests/fixtures/<dir>/<name>`.
    pub fn fixture_in(dir: &str, name: &str) -> String {
        let path = fixture_dir(dir).join(name);
        match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => panic!("fixture {} unreadable: {e}", path.display()),
        }
    }

    /// The exit code recorded beside a fixture (`<dir>/<name>.rc`).
    pub fn fixture_rc_in(dir: &str, name: &str) -> i32 {
        let rc = fixture_in(dir, &format!("{name}.rc"));
        match rc.trim().parse() {
            Ok(n) => n,
            Err(e) => panic!("{name}.rc is not a number: {e}"),
        }
    }

    /// A version the test writes (it must parse).
    pub fn evr(s: &str) -> patchman_shared::Evr {
        patchman_shared::Evr::parse(s).unwrap()
    }

    /// Text of fewer than `max_lines` lines, each matching the regex
    /// `line`: input shaped like a tool's output, for the properties that a
    /// parser never panics on it.
    pub fn lines_like(
        line: &'static str,
        max_lines: usize,
    ) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        proptest::collection::vec(line, 0..max_lines).prop_map(|lines| lines.join("\n"))
    }

    /// `classify` applied to the captured run `name` of `dir`: its exit
    /// code, stdout and stderr (`<name>.rc`, `<name>.out`, `<name>.err`).
    pub fn classify_captured<T>(
        dir: &str,
        name: &str,
        classify: impl FnOnce(Option<i32>, &str, &str) -> T,
    ) -> T {
        classify(
            Some(fixture_rc_in(dir, name)),
            &fixture_in(dir, &format!("{name}.out")),
            &fixture_in(dir, &format!("{name}.err")),
        )
    }

    /// The error `parse` gives on the stdout of the captured run `name` of
    /// `dir` (`<name>.out`), once the exit code recorded beside it
    /// (`<name>.rc`) is checked to be `rc`: a tool run whose output must be
    /// refused.
    pub fn refused_capture<T: std::fmt::Debug>(
        dir: &str,
        name: &str,
        rc: i32,
        parse: impl FnOnce(&str) -> Result<T, super::ParseError>,
    ) -> super::ParseError {
        assert_eq!(fixture_rc_in(dir, name), rc, "{dir}/{name}.rc");
        match parse(&fixture_in(dir, &format!("{name}.out"))) {
            Ok(parsed) => panic!("{dir}/{name}.out parsed: {parsed:?}"),
            Err(e) => e,
        }
    }

    /// Checks that `parse` refuses every one of `inputs`; a failure names
    /// the input it accepted.
    pub fn assert_refuses_all<T, E>(
        parse: impl Fn(&str) -> Result<T, E>,
        inputs: impl IntoIterator<Item = impl AsRef<str>>,
    ) {
        for input in inputs {
            let input = input.as_ref();
            assert!(parse(input).is_err(), "accepted: {input:?}");
        }
    }

    /// The text of a captured fixture, `helper/tests/fixtures/apt/<name>`.
    pub fn fixture(name: &str) -> String {
        fixture_in("apt", name)
    }

    /// The exit code recorded beside an apt fixture (`<name>.rc`).
    pub fn fixture_rc(name: &str) -> i32 {
        fixture_rc_in("apt", name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_at_boundary("héllo", 2), "h");
        assert_eq!(truncate_at_boundary("héllo", 3), "hé");
        assert_eq!(truncate_at_boundary("abc", 10), "abc");
        assert_eq!(truncate_at_boundary("abc", 0), "");
    }

    #[test]
    fn excerpts_cannot_carry_terminal_escapes() {
        let s = sanitize_excerpt("ok\x1b[31mred\r\nnext\tline", 100);
        assert_eq!(s, "ok\\x1b[31mred\\r\nnext\tline");
        assert!(quote("a\x1bb", 10).contains("\\u{1b}"));
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = ParseError::Missing {
            tool: "apt-config dump",
            key: "Dir::Cache::archives".into(),
        };
        assert_eq!(
            e.to_string(),
            "output of `apt-config dump` has no Dir::Cache::archives"
        );
    }
}
