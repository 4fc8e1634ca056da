//! `rpmkeys --checksig FILE` (rpm 4.18): is the file signed by a key in
//! the rpm database, and intact?
//!
//! rpm's default verify level for `rpm -U FILE` checks digests only, so an
//! unsigned or foreign-signed file would install: the helper runs this
//! first where the repository has `gpgcheck=1` and accepts only
//! [`SignatureStatus::Trusted`].
//!
//! Output (fixtures `rpmkeys_*` in `helper/tests/fixtures/dnf/`): one line
//! `FILE: ITEMS OK` or `FILE: ITEMS NOT OK`, where ITEMS lists what was
//! checked, in lower case when it passed and in UPPER case when it failed:
//!
//! | case                         | stdout after `FILE: `          | exit |
//! |------------------------------|--------------------------------|------|
//! | signed, key imported         | `digests signatures OK`        | 0 |
//! | signed, key not imported     | `digests SIGNATURES NOT OK`    | 1 |
//! | unsigned                     | `digests OK`                   | 0 |
//! | payload changed after signing| `DIGESTS SIGNATURES NOT OK`    | 1 |
//! | not a package                | nothing after `FILE:`, `error: FILE: … BAD` on stderr | 1 |
//! | missing                      | nothing; `error: FILE: open failed: …` on stderr | 1 |
//!
//! Note that an unsigned file exits 0. With `-v` the items are listed one
//! per line (`Header V4 EdDSA/SHA256 Signature, key ID 3e9de328: OK`,
//! `…: NOKEY`, `Header SHA256 digest: OK`, …); that form is understood too.

use super::{check_size, quote, ParseError};

const TOOL: &str = "rpmkeys --checksig";

/// What `rpmkeys --checksig` says of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Digests intact and signed by a key the rpm database trusts.
    Trusted,
    /// Digests intact, but the signature is not trusted: its key is not
    /// imported (`NOKEY`) or it does not verify.
    UntrustedSignature,
    /// Digests intact, no signature at all.
    Unsigned,
    /// A digest does not match: the file was changed or damaged.
    Corrupt,
    /// rpm could not read it as a package (missing, unreadable, not an
    /// rpm).
    Unreadable,
}

impl SignatureStatus {
    /// Only a trusted signature over intact digests may be installed.
    pub fn is_trusted(&self) -> bool {
        *self == SignatureStatus::Trusted
    }
}

/// Parses the output of `rpmkeys --checksig [-v] FILE` for the one `file`
/// it was run on (the path exactly as passed). Output about another file,
/// or lines that do not read as rpm's, are an error; a status contradicted
/// by the exit code is [`ParseError::Inconsistent`].
pub fn parse_checksig(
    file: &str,
    exit_code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<SignatureStatus, ParseError> {
    check_size(TOOL, stdout)?;
    check_size(TOOL, stderr)?;
    let prefix = format!("{file}:");
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        // rpm printed nothing about the file: it could not open it.
        return if exit_code != Some(0) && stderr.contains("error:") {
            Ok(SignatureStatus::Unreadable)
        } else {
            Err(ParseError::Empty { tool: TOOL })
        };
    };
    let Some(rest) = first.strip_prefix(&prefix) else {
        return Err(super::malformed(
            TOOL,
            1,
            "`FILE: …` about the file checked",
            first,
        ));
    };
    let rest = rest.trim();
    let status = if rest.is_empty() {
        verbose(lines)?
    } else {
        if let Some(extra) = lines.next() {
            return Err(super::malformed(
                TOOL,
                2,
                "nothing after the one status line",
                extra,
            ));
        }
        summary(rest)?
    };
    let status = match status {
        // `FILE:` and nothing else: rpm could not read it.
        None => SignatureStatus::Unreadable,
        Some(s) => s,
    };
    let exit_ok = exit_code == Some(0);
    let expects_ok = matches!(status, SignatureStatus::Trusted | SignatureStatus::Unsigned);
    if exit_ok != expects_ok {
        return Err(ParseError::Inconsistent {
            tool: TOOL,
            detail: format!("status {status:?} with exit code {exit_code:?}"),
        });
    }
    Ok(status)
}

/// The ids of the keys `rpmkeys --checksig -v` (or rpm's own warnings:
/// `Header V4 RSA/SHA256 Signature, key ID 3cd178d3: NOKEY`) found
/// missing from the rpm database, lower-case hex, each once. Anything that
/// is not 8 to 16 hex digits is not an id.
pub fn nokey_ids(output: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for line in output.lines() {
        let Some((_, rest)) = line.split_once("key ID ") else {
            continue;
        };
        let Some(id) = rest.strip_suffix(": NOKEY") else {
            continue;
        };
        let id = id.trim();
        if (8..=16).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let id = id.to_ascii_lowercase();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// `digests signatures OK`, `digests SIGNATURES NOT OK`, …
fn summary(rest: &str) -> Result<Option<SignatureStatus>, ParseError> {
    let bad = || super::malformed(TOOL, 1, "`ITEMS OK` or `ITEMS NOT OK`", rest);
    let (items, ok) = if let Some(items) = rest.strip_suffix(" NOT OK") {
        (items, false)
    } else if let Some(items) = rest.strip_suffix(" OK") {
        (items, true)
    } else {
        return Err(bad());
    };
    let mut digests = None;
    let mut signatures = None;
    for word in items.split_whitespace() {
        let slot = match word.to_ascii_lowercase().as_str() {
            "digests" => &mut digests,
            "signatures" => &mut signatures,
            _ => return Err(bad()),
        };
        if slot.is_some() {
            return Err(bad());
        }
        // Lower case: passed; upper case: failed.
        *slot = Some(word.bytes().all(|b| b.is_ascii_lowercase()));
    }
    let Some(digests_ok) = digests else {
        return Err(bad());
    };
    let all_ok = digests_ok && signatures != Some(false);
    if all_ok != ok {
        return Err(ParseError::Inconsistent {
            tool: TOOL,
            detail: format!("{} contradicts its items", quote(rest, 80)),
        });
    }
    Ok(Some(match (digests_ok, signatures) {
        (false, _) => SignatureStatus::Corrupt,
        (true, Some(true)) => SignatureStatus::Trusted,
        (true, Some(false)) => SignatureStatus::UntrustedSignature,
        (true, None) => SignatureStatus::Unsigned,
    }))
}

/// The `-v` form: indented `ITEM: RESULT` lines.
fn verbose<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Option<SignatureStatus>, ParseError> {
    let mut any = false;
    let mut digests_ok = true;
    let mut signature: Option<bool> = None;
    for (index, line) in lines.enumerate() {
        let n = index + 2;
        let Some((item, result)) = line.trim().rsplit_once(": ") else {
            return Err(super::malformed(TOOL, n, "`ITEM: RESULT`", line));
        };
        any = true;
        let passed = match result {
            "OK" => true,
            "NOKEY" | "NOTTRUSTED" | "BAD" | "NOTFOUND" => false,
            _ => {
                return Err(super::malformed(
                    TOOL,
                    n,
                    "OK, NOKEY, NOTTRUSTED or BAD",
                    line,
                ))
            }
        };
        if item.contains("Signature") || item.contains("signature") {
            signature = Some(signature.unwrap_or(true) && passed);
        } else if item.contains("digest") {
            digests_ok &= passed;
        } else {
            return Err(super::malformed(
                TOOL,
                n,
                "a digest or signature line",
                line,
            ));
        }
    }
    if !any {
        return Ok(None);
    }
    Ok(Some(match (digests_ok, signature) {
        (false, _) => SignatureStatus::Corrupt,
        (true, Some(true)) => SignatureStatus::Trusted,
        (true, Some(false)) => SignatureStatus::UntrustedSignature,
        (true, None) => SignatureStatus::Unsigned,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::el_fixtures::{dnf_fixture as fixture, dnf_fixture_rc as fixture_rc};
    use proptest::prelude::*;

    fn check(name: &str, file: &str) -> Result<SignatureStatus, ParseError> {
        parse_checksig(
            file,
            Some(fixture_rc(name)),
            &fixture(&format!("{name}.out")),
            &fixture(&format!("{name}.err")),
        )
    }

    const SIGNED: &str = "/tmp/fixtures/signed/patchman-client-1.7.1-1.noarch.rpm";
    const OTHER: &str = "/tmp/fixtures/other/patchman-client-1.7.1-1.noarch.rpm";

    #[test]
    fn real_outputs() {
        use SignatureStatus::*;
        assert_eq!(check("rpmkeys_signed", SIGNED), Ok(Trusted));
        assert_eq!(check("rpmkeys_signed_v", SIGNED), Ok(Trusted));
        assert_eq!(check("rpmkeys_nokey", OTHER), Ok(UntrustedSignature));
        assert_eq!(check("rpmkeys_nokey_v", OTHER), Ok(UntrustedSignature));
        assert_eq!(
            check(
                "rpmkeys_unsigned",
                "/tmp/fixtures/unsigned/patchman-client-1.7.1-1.noarch.rpm"
            ),
            Ok(Unsigned)
        );
        assert_eq!(
            check("rpmkeys_tampered", "/tmp/fixtures/tampered.rpm"),
            Ok(Corrupt)
        );
        assert_eq!(
            check("rpmkeys_garbage", "/tmp/fixtures/garbage.rpm"),
            Ok(Unreadable)
        );
        assert_eq!(
            check("rpmkeys_missing", "/tmp/fixtures/missing.rpm"),
            Ok(Unreadable)
        );
        assert!(Trusted.is_trusted() && !Unsigned.is_trusted());
    }

    #[test]
    fn names_the_missing_key() {
        assert_eq!(
            nokey_ids(&fixture("rpmkeys_nokey_v.out")),
            vec!["3cd178d3".to_string()]
        );
        assert!(nokey_ids(&fixture("rpmkeys_signed_v.out")).is_empty());
        assert!(nokey_ids("x key ID zz;rm -rf: NOKEY\nkey ID 12: NOKEY\n").is_empty());
    }

    #[test]
    fn refuses_output_about_another_file_or_contradictions() {
        assert!(check("rpmkeys_signed", "/tmp/other.rpm").is_err());
        let line = format!("{SIGNED}: digests signatures OK\n");
        assert!(parse_checksig(SIGNED, Some(1), &line, "").is_err());
        assert!(parse_checksig(
            SIGNED,
            Some(0),
            &format!("{SIGNED}: digests SIGNATURES OK\n"),
            ""
        )
        .is_err());
        assert!(parse_checksig(SIGNED, Some(0), &format!("{line}{line}"), "").is_err());
        assert!(
            parse_checksig(SIGNED, Some(0), &format!("{SIGNED}: signatures OK\n"), "").is_err()
        );
        assert!(parse_checksig(SIGNED, Some(0), &format!("{SIGNED}: all good OK\n"), "").is_err());
        assert!(parse_checksig(SIGNED, Some(0), "", "").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(a in "\\PC*", b in "\\PC*", code in proptest::option::of(any::<i32>())) {
            let _ = parse_checksig("f", code, &a, &b);
            let _ = parse_checksig("f", code, &format!("f: {a}"), &b);
            let _ = parse_checksig("f", code, &format!("f:\n    {a}"), &b);
        }
    }
}
