//! `rpmkeys --checksig FILE` (and `rpm -K`, the same code): is the file
//! signed by a key in the rpm database, and intact? For every rpm the
//! supported systems ship: 4.11 (EL 7), 4.14 (EL 8), 4.16 (Debian 11, EL 9),
//! 4.18 (Debian 12) and 4.20 (Debian 13).
//!
//! rpm's default verify level for `rpm -U FILE` checks digests only, so an
//! unsigned or foreign-signed file would install: the helper runs this
//! first where the repository has `gpgcheck=1` and accepts only
//! [`SignatureStatus::Trusted`].
//!
//! Output: one line `FILE: ITEMS OK` or `FILE: ITEMS NOT OK`, where ITEMS
//! lists what was checked, in lower case when it passed and in UPPER case
//! when it failed. rpm 4.14 and later (`lib/rpmchecksig.c`,
//! `rpmpkgVerifySigs`) name two items, `digests` and `signatures`:
//!
//! | case                         | stdout after `FILE: `          | exit |
//! |------------------------------|--------------------------------|------|
//! | signed, key imported         | `digests signatures OK`        | 0 |
//! | signed, key not imported     | `digests SIGNATURES NOT OK`    | 1 |
//! | unsigned                     | `digests OK`                   | 0 |
//! | payload changed after signing| `DIGESTS SIGNATURES NOT OK` (a header-only signature still verifies: `DIGESTS signatures NOT OK`) | 1 |
//! | not a package                | nothing after `FILE:` (4.11: no line at all), `error: …` on stderr or nothing | 1 |
//! | missing                      | nothing; `error: FILE: open failed: …` on stderr | 1 |
//!
//! rpm 4.11 (`lib/rpmchecksig.c` of rpm-4.11.3, `sigtagname` and
//! `formatResult`) names each signature-header entry instead, in tag order:
//! the digests `size`, `sha1` (header) and `md5` (header and payload), the
//! signatures `rsa`, `(sha1) dsa` (header only), `(md5) pgp` and `gpg`. A
//! PGP/GPG signature whose key is missing or untrusted is also wrapped in
//! parentheses once a key problem was recorded, and the line ends with the
//! key lists:
//!
//! | case                         | stdout after `FILE: ` (rpm 4.11)                   |
//! |------------------------------|----------------------------------------------------|
//! | signed, key imported         | `rsa sha1 (md5) pgp md5 OK`                         |
//! | signed, key not imported     | `RSA sha1 ((MD5) PGP) md5 NOT OK (MISSING KEYS: (MD5) PGP#7e6d5941) ` |
//! | key not trusted              | `… NOT OK (UNTRUSTED KEYS: (MD5) PGP#7e6d5941)`     |
//! | unsigned                     | `sha1 md5 OK`                                       |
//! | payload changed              | `rsa sha1 (MD5) PGP MD5 NOT OK`                     |
//! | DSA key (EL 5/6 era)         | `(sha1) dsa sha1 md5 gpg OK`                        |
//!
//! Fixtures: `helper/tests/fixtures/rpmkeys/` (captured from rpm 4.16, 4.18
//! and 4.20; written from rpm's source for 4.11 and 4.14, each citing it;
//! its README), and `rpmkeys_*` in `helper/tests/fixtures/dnf/`.
//!
//! Note that an unsigned file exits 0. With `-v` the items are listed one
//! per line (`Header V4 RSA/SHA512 Signature, key ID 3e9de328: OK`,
//! `…: NOKEY`, `Header SHA256 digest: OK`; rpm 4.11 adds the digest,
//! `MD5 digest: OK (…)`, and 4.14+ a reason, `…: BAD (Expected … != …)`);
//! that form is understood too.

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

/// What one item of the summary line checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Digest,
    Signature,
}

/// The items of the summary line, by the name rpm prints in lower case
/// (passed; UPPER case: failed). rpm 4.14+: the first two; rpm 4.11: the
/// rest. Two-word names come first: `(md5) pgp` must not be read as a
/// parenthesised `md5`.
const ITEMS: [(&str, Kind); 9] = [
    ("digests", Kind::Digest),
    ("signatures", Kind::Signature),
    ("(md5) pgp", Kind::Signature),
    ("(sha1) dsa", Kind::Signature),
    ("size", Kind::Digest),
    ("sha1", Kind::Digest),
    ("md5", Kind::Digest),
    ("rsa", Kind::Signature),
    ("gpg", Kind::Signature),
];

/// The marker between the items and rpm 4.11's key lists.
const KEY_LISTS: [&str; 2] = ["(MISSING KEYS:", "(UNTRUSTED KEYS:"];

/// `digests signatures OK`, `digests SIGNATURES NOT OK`,
/// `rsa sha1 (md5) pgp md5 OK`, `RSA sha1 ((MD5) PGP) md5 NOT OK (MISSING
/// KEYS: (MD5) PGP#7e6d5941)`, …
fn summary(rest: &str) -> Result<Option<SignatureStatus>, ParseError> {
    let bad = || super::malformed(TOOL, 1, "`ITEMS OK` or `ITEMS NOT OK`", rest);
    // rpm 4.11's key lists follow the verdict; they name keys, not results.
    let (verdict, lists) = match KEY_LISTS.iter().filter_map(|m| rest.find(m)).min() {
        Some(at) => (rest[..at].trim_end(), Some(&rest[at..])),
        None => (rest, None),
    };
    if let Some(lists) = lists {
        key_lists(lists).ok_or_else(bad)?;
    }
    let (items, ok) = if let Some(items) = verdict.strip_suffix(" NOT OK") {
        (items, false)
    } else if let Some(items) = verdict.strip_suffix(" OK") {
        (items, true)
    } else {
        return Err(bad());
    };
    let parsed = parse_items(items).ok_or_else(bad)?;
    // Either generation's names, never both.
    let new_style = parsed
        .iter()
        .filter(|(name, ..)| matches!(*name, "digests" | "signatures"))
        .count();
    if new_style != 0 && new_style != parsed.len() {
        return Err(bad());
    }
    if new_style != 0 {
        let mut seen = Vec::new();
        for (name, ..) in &parsed {
            if seen.contains(name) {
                return Err(bad());
            }
            seen.push(*name);
        }
    }
    let mut digests = None;
    let mut signatures = None;
    for (_, kind, passed) in &parsed {
        let slot = match kind {
            Kind::Digest => &mut digests,
            Kind::Signature => &mut signatures,
        };
        *slot = Some(slot.unwrap_or(true) && *passed);
    }
    let Some(digests_ok) = digests else {
        return Err(bad());
    };
    let all_ok = digests_ok && signatures != Some(false);
    // Key lists name failed signatures: only on a failed line.
    if all_ok != ok || (lists.is_some() && signatures != Some(false)) {
        return Err(ParseError::Inconsistent {
            tool: TOOL,
            detail: format!("{} contradicts its items", quote(rest, 80)),
        });
    }
    Ok(Some(status_of(digests_ok, signatures)))
}

/// The items of a summary line: (lower-case name, kind, passed). None if
/// a word is not an item, or mixes cases.
fn parse_items(mut items: &str) -> Option<Vec<(&'static str, Kind, bool)>> {
    let mut parsed = Vec::new();
    loop {
        items = items.trim_start_matches(' ');
        if items.is_empty() {
            return Some(parsed);
        }
        let (item, rest) = next_item(items)?;
        parsed.push(item);
        items = rest;
    }
}

/// The item at the start of `s` and what follows it: `name`, `NAME`, or
/// (rpm 4.11, a key problem) `(NAME)`, each followed by a space or the end.
fn next_item(s: &str) -> Option<((&'static str, Kind, bool), &str)> {
    let ends_item = |rest: &str| rest.is_empty() || rest.starts_with(' ');
    for (name, kind) in ITEMS {
        for (form, passed) in [(name.to_owned(), true), (name.to_ascii_uppercase(), false)] {
            if let Some(rest) = s.strip_prefix(form.as_str()) {
                if ends_item(rest) {
                    return Some(((name, kind, passed), rest));
                }
            }
            // Wrapped: only a failed PGP/GPG signature (a key problem).
            if !passed && matches!(name, "(md5) pgp" | "gpg") {
                let wrapped = s
                    .strip_prefix('(')
                    .and_then(|r| r.strip_prefix(form.as_str()))
                    .and_then(|r| r.strip_prefix(')'));
                if let Some(rest) = wrapped {
                    if ends_item(rest) {
                        return Some(((name, kind, false), rest));
                    }
                }
            }
        }
    }
    None
}

/// rpm 4.11's ` (MISSING KEYS: (MD5) PGP#7e6d5941)` and
/// ` (UNTRUSTED KEYS: GPG#c105b9de)`, in that order, each at most once.
/// Some(()) if `lists` is exactly that.
fn key_lists(lists: &str) -> Option<()> {
    let mut rest = lists.trim();
    for marker in KEY_LISTS {
        if let Some(after) = rest.strip_prefix(marker) {
            let end = list_end(after)?;
            for key in split_keys(&after[..end])? {
                let (name, id) = key.rsplit_once('#')?;
                if !matches!(name, "(MD5) PGP" | "GPG")
                    || id.is_empty()
                    || id.len() > 16
                    || !id.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return None;
                }
            }
            rest = after[end + 1..].trim_start();
        }
    }
    rest.is_empty().then_some(())
}

/// The index of the `)` that closes a key list starting at `s` (just after
/// its marker): the first `)` not part of a `(MD5) PGP` name.
fn list_end(s: &str) -> Option<usize> {
    let mut at = 0;
    loop {
        let i = s[at..].find(')')? + at;
        if s[..i].ends_with("(MD5") {
            at = i + 1;
        } else {
            return Some(i);
        }
    }
}

/// The keys of a list: ` (MD5) PGP#id GPG#id` → [`(MD5) PGP#id`,
/// `GPG#id`]. None if empty.
fn split_keys(list: &str) -> Option<Vec<&str>> {
    let mut keys = Vec::new();
    let mut rest = list.trim_start();
    while !rest.is_empty() {
        let name_len = if rest.starts_with("(MD5) PGP#") {
            "(MD5) PGP#".len()
        } else {
            0
        };
        let end = rest[name_len..]
            .find(' ')
            .map_or(rest.len(), |i| i + name_len);
        keys.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (!keys.is_empty()).then_some(keys)
}

fn status_of(digests_ok: bool, signature: Option<bool>) -> SignatureStatus {
    match (digests_ok, signature) {
        (false, _) => SignatureStatus::Corrupt,
        (true, Some(true)) => SignatureStatus::Trusted,
        (true, Some(false)) => SignatureStatus::UntrustedSignature,
        (true, None) => SignatureStatus::Unsigned,
    }
}

/// The `-v` form: indented `ITEM: RESULT [DETAIL]` lines. The detail is
/// rpm 4.11's digest (`OK (…)`, `BAD Expected(…) != (…)`) or 4.14+'s reason
/// (`BAD (…)`).
fn verbose<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Option<SignatureStatus>, ParseError> {
    let mut any = false;
    let mut digests_ok = true;
    let mut signature: Option<bool> = None;
    for (index, line) in lines.enumerate() {
        let n = index + 2;
        // Item descriptions hold no `: `; a detail may.
        let Some((item, result)) = line.trim().split_once(": ") else {
            return Err(super::malformed(TOOL, n, "`ITEM: RESULT`", line));
        };
        let (result, detail) = result.split_once(' ').unwrap_or((result, ""));
        any = true;
        let passed = match result {
            "OK" => true,
            // rpm 4.11 spells it NOTRUSTED; 4.14+ NOTTRUSTED.
            "NOKEY" | "NOTTRUSTED" | "NOTRUSTED" | "BAD" | "NOTFOUND" | "UNKNOWN" => false,
            _ => {
                return Err(super::malformed(
                    TOOL,
                    n,
                    "OK, NOKEY, NOTTRUSTED, BAD, NOTFOUND or UNKNOWN",
                    line,
                ))
            }
        };
        let detail_ok = detail.is_empty()
            || (detail.starts_with('(') && detail.ends_with(')'))
            || detail.starts_with("Expected(");
        if !detail_ok {
            return Err(super::malformed(
                TOOL,
                n,
                "`ITEM: RESULT` or `ITEM: RESULT (DETAIL)`",
                line,
            ));
        }
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
    Ok(Some(status_of(digests_ok, signature)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::classify_captured;
    use proptest::prelude::*;

    fn check(name: &str, file: &str) -> Result<SignatureStatus, ParseError> {
        classify_captured("dnf", name, |code, stdout, stderr| {
            parse_checksig(file, code, stdout, stderr)
        })
    }

    const SIGNED: &str = "/tmp/fixtures/signed/patchman-client-1.7.1-1.noarch.rpm";
    const OTHER: &str = "/tmp/fixtures/other/patchman-client-1.7.1-1.noarch.rpm";

    #[test]
    fn real_outputs() {
        use SignatureStatus::*;
        const UNSIGNED: &str = "/tmp/fixtures/unsigned/patchman-client-1.7.1-1.noarch.rpm";
        for (name, file, expected) in [
            ("rpmkeys_signed", SIGNED, Trusted),
            ("rpmkeys_signed_v", SIGNED, Trusted),
            ("rpmkeys_nokey", OTHER, UntrustedSignature),
            ("rpmkeys_nokey_v", OTHER, UntrustedSignature),
            ("rpmkeys_unsigned", UNSIGNED, Unsigned),
            ("rpmkeys_tampered", "/tmp/fixtures/tampered.rpm", Corrupt),
            ("rpmkeys_garbage", "/tmp/fixtures/garbage.rpm", Unreadable),
            ("rpmkeys_missing", "/tmp/fixtures/missing.rpm", Unreadable),
        ] {
            assert_eq!(check(name, file), Ok(expected), "{name}");
        }
        assert!(Trusted.is_trusted() && !Unsigned.is_trusted());
    }

    #[test]
    fn names_the_missing_key() {
        assert_eq!(
            nokey_ids(&crate::parse::test_support::fixture_in(
                "dnf",
                "rpmkeys_nokey_v.out"
            )),
            vec!["3cd178d3".to_string()]
        );
        assert!(nokey_ids(&crate::parse::test_support::fixture_in(
            "dnf",
            "rpmkeys_signed_v.out"
        ))
        .is_empty());
        assert!(nokey_ids("x key ID zz;rm -rf: NOKEY\nkey ID 12: NOKEY\n").is_empty());
    }

    #[test]
    fn refuses_output_about_another_file_or_contradictions() {
        assert!(check("rpmkeys_signed", "/tmp/other.rpm").is_err());
        let line = format!("{SIGNED}: digests signatures OK\n");
        for (rc, stdout) in [
            (1, line.clone()),
            (0, format!("{SIGNED}: digests SIGNATURES OK\n")),
            (0, format!("{line}{line}")),
            (0, format!("{SIGNED}: signatures OK\n")),
            (0, format!("{SIGNED}: all good OK\n")),
            (0, String::new()),
        ] {
            let r = parse_checksig(SIGNED, Some(rc), &stdout, "");
            assert!(r.is_err(), "exit {rc}, {stdout:?} parsed as {r:?}");
        }
    }

    /// Every fixture of `helper/tests/fixtures/rpmkeys/` (rpm 4.11 to 4.20)
    /// with the file it is about and what it must parse to.
    const VERSIONED: [(&str, &str, SignatureStatus); 45] = {
        use SignatureStatus::*;
        const S: &str = "/tmp/fixtures/signed.rpm";
        const N: &str = "/tmp/fixtures/nokey.rpm";
        const U: &str = "/tmp/fixtures/unsigned.rpm";
        const T: &str = "/tmp/fixtures/tampered.rpm";
        const G: &str = "/tmp/fixtures/garbage.rpm";
        const M: &str = "/tmp/fixtures/missing.rpm";
        [
            ("4.11_signed", S, Trusted),
            ("4.11_signed_v", S, Trusted),
            ("4.11_dsa_signed", S, Trusted),
            ("4.11_nokey", N, UntrustedSignature),
            ("4.11_nokey_v", N, UntrustedSignature),
            ("4.11_dsa_nokey", N, UntrustedSignature),
            ("4.11_untrusted", N, UntrustedSignature),
            ("4.11_unsigned", U, Unsigned),
            ("4.11_tampered", T, Corrupt),
            ("4.11_tampered_v", T, Corrupt),
            ("4.11_garbage", G, Unreadable),
            ("4.11_missing", M, Unreadable),
            ("4.14_signed", S, Trusted),
            ("4.14_signed_v", S, Trusted),
            ("4.14_nokey", N, UntrustedSignature),
            ("4.14_nokey_v", N, UntrustedSignature),
            ("4.14_unsigned", U, Unsigned),
            ("4.14_tampered", T, Corrupt),
            ("4.14_tampered_v", T, Corrupt),
            ("4.14_garbage", G, Unreadable),
            ("4.14_missing", M, Unreadable),
            ("4.16_signed", S, Trusted),
            ("4.16_signed_v", S, Trusted),
            ("4.16_nokey", N, UntrustedSignature),
            ("4.16_nokey_v", N, UntrustedSignature),
            ("4.16_unsigned", U, Unsigned),
            ("4.16_tampered", T, Corrupt),
            ("4.16_garbage", G, Unreadable),
            ("4.16_missing", M, Unreadable),
            ("4.18_signed", S, Trusted),
            ("4.18_signed_v", S, Trusted),
            ("4.18_nokey", N, UntrustedSignature),
            ("4.18_nokey_v", N, UntrustedSignature),
            ("4.18_unsigned", U, Unsigned),
            ("4.18_tampered", T, Corrupt),
            ("4.18_garbage", G, Unreadable),
            ("4.18_missing", M, Unreadable),
            ("4.20_signed", S, Trusted),
            ("4.20_nokey", N, UntrustedSignature),
            ("4.20_unsigned", U, Unsigned),
            ("4.20_tampered", T, Corrupt),
            ("4.20_signed_v", S, Trusted),
            ("4.20_nokey_v", N, UntrustedSignature),
            ("4.20_garbage", G, Unreadable),
            ("4.20_missing", M, Unreadable),
        ]
    };

    #[test]
    fn every_rpm_version_from_4_11_to_4_20() {
        use crate::parse::el_fixtures::{fixture_names, rpmkeys_fixture};
        for (name, file, expected) in &VERSIONED {
            let rc = rpmkeys_fixture(&format!("{name}.rc"));
            let rc: i32 = rc.trim().parse().expect("a numeric .rc");
            let got = parse_checksig(
                file,
                Some(rc),
                &rpmkeys_fixture(&format!("{name}.out")),
                &rpmkeys_fixture(&format!("{name}.err")),
            );
            assert_eq!(got.as_ref(), Ok(expected), "{name}");
            // About another file, or with the other exit code: refused.
            let other_rc = if rc == 0 { 1 } else { 0 };
            let out = rpmkeys_fixture(&format!("{name}.out"));
            if !out.trim().is_empty() {
                assert!(
                    parse_checksig("/tmp/other.rpm", Some(rc), &out, "").is_err(),
                    "{name} about another file"
                );
                assert!(
                    parse_checksig(file, Some(other_rc), &out, "").is_err(),
                    "{name} with exit {other_rc}"
                );
            }
        }
        // No fixture left without an expectation.
        for name in fixture_names("rpmkeys") {
            assert!(
                VERSIONED.iter().any(|(n, ..)| *n == name),
                "fixture {name} is not checked"
            );
        }
    }

    #[test]
    fn rpm_4_11_lines_that_are_not_rpm_s() {
        let f = "/tmp/f.rpm";
        for (line, rc) in [
            // Mixed case, unknown names, both generations, wrapped digests.
            ("Rsa sha1 md5 OK", 0),
            ("rsa sha1 (md5) pgp md5 sha256 OK", 0),
            ("digests sha1 OK", 0),
            ("rsa sha1 (MD5) md5 NOT OK", 1),
            ("rsa sha1 ((md5) pgp) md5 OK", 0),
            ("digests digests OK", 0),
            ("rsa (md5) pgp OK", 0),
            // Key lists: only after a failed signature, well-formed.
            (
                "rsa sha1 (md5) pgp md5 OK (MISSING KEYS: (MD5) PGP#7e6d5941)",
                0,
            ),
            ("RSA sha1 ((MD5) PGP) md5 NOT OK (MISSING KEYS: )", 1),
            (
                "RSA sha1 ((MD5) PGP) md5 NOT OK (MISSING KEYS: (MD5) PGP#xyz)",
                1,
            ),
            (
                "RSA sha1 ((MD5) PGP) md5 NOT OK (MISSING KEYS: SHA1#7e6d5941)",
                1,
            ),
            (
                "RSA sha1 ((MD5) PGP) md5 NOT OK (MISSING KEYS: (MD5) PGP#7e6d5941) x",
                1,
            ),
            ("sha1 MD5 NOT OK (UNTRUSTED KEYS: GPG#7e6d5941)", 1),
        ] {
            let r = parse_checksig(f, Some(rc), &format!("{f}: {line}\n"), "");
            assert!(r.is_err(), "{line:?} parsed as {r:?}");
        }
        // Both lists, in rpm's order, with two keys each: accepted.
        let both = "RSA sha1 ((MD5) PGP) md5 (GPG) NOT OK (MISSING KEYS: (MD5) PGP#7e6d5941 \
                    GPG#c105b9de)  (UNTRUSTED KEYS: GPG#00ff00ff)";
        assert_eq!(
            parse_checksig(f, Some(1), &format!("{f}: {both}\n"), ""),
            Ok(SignatureStatus::UntrustedSignature)
        );
        // A failed digest wins over a failed signature.
        assert_eq!(
            parse_checksig(
                f,
                Some(1),
                &format!("{f}: RSA SHA1 (MD5) PGP MD5 NOT OK\n"),
                ""
            ),
            Ok(SignatureStatus::Corrupt)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(a in "\\PC*", b in "\\PC*", code in proptest::option::of(any::<i32>())) {
            let _ = parse_checksig("f", code, &a, &b);
            let _ = parse_checksig("f", code, &format!("f: {a}"), &b);
            let _ = parse_checksig("f", code, &format!("f:\n    {a}"), &b);
        }

        /// rpm 4.11's lines as `formatResult` composes them, from any
        /// outcome of each signature-header entry: the status follows from
        /// the outcomes; the other exit code, or a cut line, is refused.
        #[test]
        fn rpm_4_11_lines_from_any_outcome(
            outcomes in proptest::collection::vec((0usize..5, 0u8..3), 1..6),
        ) {
            // Entries of a signature header, in tag order.
            const ENTRIES: [(&str, Kind); 5] = [
                ("rsa", Kind::Signature),
                ("sha1", Kind::Digest),
                ("(md5) pgp", Kind::Signature),
                ("md5", Kind::Digest),
                ("gpg", Kind::Signature),
            ];
            let mut picked = outcomes;
            picked.sort_by_key(|(e, _)| *e);
            picked.dedup_by_key(|(e, _)| *e);
            let mut line = String::from("f: ");
            let (mut missing, mut digests_ok, mut signature) = (String::new(), true, None);
            for (entry, outcome) in &picked {
                let (name, kind) = ENTRIES[*entry];
                // 0 passed, 1 failed, 2 key missing (only PGP/GPG record it).
                let records_key = matches!(name, "(md5) pgp" | "gpg");
                let outcome = if *outcome == 2 && !records_key { 1 } else { *outcome };
                let shown = if outcome == 0 { name.to_owned() } else { name.to_ascii_uppercase() };
                if outcome == 2 {
                    // Recorded, then printed wrapped (rpm's `*keyprob`).
                    missing.push_str(&format!(" {shown}#7e6d5941"));
                    line.push_str(&format!("({shown}) "));
                } else {
                    line.push_str(&format!("{shown} "));
                }
                match kind {
                    Kind::Digest => digests_ok &= outcome == 0,
                    Kind::Signature => signature = Some(signature.unwrap_or(true) && outcome == 0),
                }
            }
            let ok = digests_ok && signature != Some(false);
            line.push_str(if ok { "OK" } else { "NOT OK" });
            if !missing.is_empty() {
                line.push_str(&format!(" (MISSING KEYS:{missing}) "));
            }
            line.push('\n');
            let code = if ok { 0 } else { 1 };
            let got = parse_checksig("f", Some(code), &line, "");
            if picked.iter().any(|(e, _)| ENTRIES[*e].1 == Kind::Digest) {
                prop_assert_eq!(got, Ok(status_of(digests_ok, signature)), "{:?}", line);
            } else {
                // No digest at all: not a line rpm prints.
                prop_assert!(got.is_err(), "{:?}", line);
            }
            prop_assert!(parse_checksig("f", Some(1 - code), &line, "").is_err(), "{:?}", line);
            let cut = &line[..line.len() - 3];
            prop_assert!(parse_checksig("f", Some(code), cut, "").is_err(), "{:?}", cut);
        }
    }
}
