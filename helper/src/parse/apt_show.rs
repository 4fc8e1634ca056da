//! `apt-cache show patchman-client=1.7.1-1`: the index record(s) of one
//! version, whose `SHA256` the downloaded `.deb` must match.
//!
//! deb822 stanzas separated by blank lines, `Field: value`, continuation
//! lines starting with a space or tab. The same version offered by two
//! sources prints two stanzas. Measured on apt 2.6: a version apt does not
//! know prints *nothing* and exits 0 (only an unknown package name gives
//! `E: No packages found`, exit 100), so an empty answer is an error here.

use patchman_shared::{Evr, Package};

use super::{check_size, malformed, parse_evr, ParseError};

const TOOL: &str = "apt-cache show";

/// A SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Sha256> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Sha256(out))
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The fields of one record the helper checks a downloaded file against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowRecord {
    pub package: String,
    pub version: Evr,
    pub architecture: String,
    /// `Filename`, relative to the repository root (`./x_1_all.deb`,
    /// `pool/main/…`).
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256,
}

impl ShowRecord {
    pub fn package(&self) -> Option<Package> {
        Package::from_name(&self.package)
    }
}

/// One deb822 stanza: fields in order, names as printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stanza {
    /// The line number of its first field.
    pub line: usize,
    pub fields: Vec<(String, String)>,
}

impl Stanza {
    /// A field's value, name compared case-insensitively as deb822 says.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits deb822 text into stanzas. A field repeated within a stanza is an
/// error (it would make the record ambiguous).
pub fn parse_stanzas(tool: &'static str, text: &str) -> Result<Vec<Stanza>, ParseError> {
    check_size(tool, text)?;
    let mut stanzas = Vec::new();
    let mut current = Stanza::default();
    for (index, line) in text.lines().enumerate() {
        let n = index + 1;
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(malformed(tool, n, "a field before its continuation", line));
            };
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed(tool, n, "`Field: value`", line));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(malformed(tool, n, "a field name", line));
        }
        if current.fields.is_empty() {
            current.line = n;
        }
        if current.get(name).is_some() {
            return Err(ParseError::Duplicate {
                tool,
                line: n,
                key: format!("field {name} (stanza at line {})", current.line),
            });
        }
        current
            .fields
            .push((name.to_string(), value.trim().to_string()));
    }
    if !current.fields.is_empty() {
        stanzas.push(current);
    }
    Ok(stanzas)
}

/// Parses the stdout of `apt-cache show NAME=VERSION`: every record, each
/// with the fields we check. At least one record is required.
pub fn parse(output: &str) -> Result<Vec<ShowRecord>, ParseError> {
    let stanzas = parse_stanzas(TOOL, output)?;
    if stanzas.is_empty() {
        return Err(ParseError::Empty { tool: TOOL });
    }
    stanzas.iter().map(record).collect()
}

fn record(stanza: &Stanza) -> Result<ShowRecord, ParseError> {
    let field = |name: &str| -> Result<&str, ParseError> {
        stanza
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ParseError::Missing {
                tool: TOOL,
                key: format!("{name} field"),
            })
    };
    let single_word = |name: &'static str| -> Result<String, ParseError> {
        let v = field(name)?;
        if v.contains(char::is_whitespace) {
            return Err(malformed(TOOL, stanza.line, "a single word", v));
        }
        Ok(v.to_string())
    };
    let sha = field("SHA256")?;
    let sha256 = Sha256::from_hex(sha)
        .ok_or_else(|| malformed(TOOL, stanza.line, "64 hex digits in SHA256", sha))?;
    let size = field("Size")?;
    let size = size
        .parse::<u64>()
        .map_err(|_| malformed(TOOL, stanza.line, "a byte count in Size", size))?;
    Ok(ShowRecord {
        package: single_word("Package")?,
        version: parse_evr(TOOL, stanza.line, field("Version")?)?,
        architecture: single_word("Architecture")?,
        filename: single_word("Filename")?,
        size,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::lines_like;
    use crate::parse::test_support::{assert_refuses_all, fixture, refused_capture};
    use proptest::prelude::*;

    const SHA: &str = "a46bb9749f627c1d4675a4bc0028a4a6f4e80edc4e9d1bf17f9c135092af577f";

    #[test]
    fn one_version_from_one_repository() {
        let r = parse(&fixture("apt_show_client.out")).unwrap();
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!(r.package(), Some(Package::Client));
        assert_eq!(r.version, Evr::parse("1.7.1-1").unwrap());
        assert_eq!(r.architecture, "all");
        assert_eq!(r.filename, "./patchman-client_1.7.1-1_all.deb");
        assert_eq!(r.size, 900);
        assert_eq!(r.sha256.to_string(), SHA);
    }

    #[test]
    fn same_version_from_two_repositories_prints_one_stanza() {
        // apt merges identical versions from two sources into one record
        // (the first source's); several stanzas come from several versions.
        let r = parse(&fixture("apt_show_both_repos.out")).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].sha256.to_string(), SHA);
        let all = parse(&fixture("apt_show_all.out")).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].version, Evr::parse("1.7.0-1").unwrap());
        assert_ne!(all[0].sha256, all[1].sha256);
    }

    #[test]
    fn unknown_version_prints_nothing() {
        assert!(matches!(
            refused_capture("apt", "apt_show_missing_version", 0, parse),
            ParseError::Empty { .. }
        ));
    }

    #[test]
    fn truncated_and_hostile_records_are_refused() {
        let full = fixture("apt_show_client.out");
        let cut = &full[..full.find("SHA256").unwrap()];
        assert!(matches!(parse(cut), Err(ParseError::Missing { .. })));
        let cut = &full[..full.find("SHA256").unwrap() + 20];
        assert!(parse(cut).is_err());
        let doubled = full.replacen("Size: 900", "Size: 900\nSize: 901", 1);
        assert!(matches!(parse(&doubled), Err(ParseError::Duplicate { .. })));
        let spaced = full.replacen(
            "Package: patchman-client",
            "Package: patchman-client -o x",
            1,
        );
        assert_refuses_all(
            parse,
            [
                spaced,
                " continuation first\n".to_string(),
                "no colon here\n".to_string(),
                full.replacen("Size: 900", "Size: -1", 1),
                full.replacen(SHA, &SHA[..63], 1),
                full.replacen(SHA, &format!("{}g", &SHA[..63]), 1),
                String::new(),
            ],
        );
    }

    #[test]
    fn sha256_hex_round_trip_and_multibyte() {
        assert_eq!(Sha256::from_hex(SHA).unwrap().to_string(), SHA);
        assert_eq!(
            Sha256::from_hex(&SHA.to_uppercase()).unwrap().to_string(),
            SHA
        );
        // 64 bytes, but multibyte characters: rejected, no panic.
        let odd = format!("é{}", &SHA[..62]);
        assert_eq!(odd.len(), 64);
        assert_eq!(Sha256::from_hex(&odd), None);
        assert_eq!(Sha256::from_hex("+f"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            let _ = parse(&s);
            let _ = Sha256::from_hex(&s);
        }

        #[test]
        fn stanza_like_input_never_panics(
            text in lines_like(
                "(Package|Version|SHA256|Size|Filename|Architecture|| )(: ?)?[0-9a-f .:~-]{0,70}",
                14,
            )
        ) {
            let _ = parse(&text);
        }
    }
}
