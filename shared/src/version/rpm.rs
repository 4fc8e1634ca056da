//! rpm's version ordering, for the "never downgrade" check on the dnf and
//! yum families. An own transcription of rpm 4.18 (rpmio/rpmvercmp.c,
//! `rpmvercmp`, and rpmio/rpmver.c, `rpmverCmp`), not the `rpm-version`
//! crate: forty lines, and one crate fewer in a root process.
//!
//! * The epoch compares first, as a number (a missing epoch is 0).
//! * Then the version, then the release, each with `rpmvercmp`; a missing
//!   release is the empty string, so `1.0` sorts before `1.0-0` (this is
//!   what rpm's own `rpm.vercmp("1.0", "1.0-0")` answers: -1).
//!
//! `rpmvercmp(a, b)`: equal strings are equal. Otherwise both strings are
//! walked segment by segment:
//! 1. skip separators (anything but ASCII letters, digits, `~` and `^`);
//! 2. `~` sorts before everything, even the end of the string
//!    (`1.0~rc1` < `1.0`): if either side is at a `~`, the side that is not
//!    is newer; both at `~`: skip it and go on;
//! 3. `^` (rpm ≥ 4.15) sorts after the end of the string but before
//!    anything else (`1.0` < `1.0^git1` < `1.0.1`): if either side is at a
//!    `^`, a side at its end is older, then the side that is not at `^`
//!    is newer; both at `^`: skip it and go on;
//! 4. either side at its end: stop the loop;
//! 5. take the next segment: a run of digits if the first side starts with
//!    a digit (then the second side's run of digits), else a run of
//!    letters on both sides. If the second side's run is empty (the types
//!    differ), a numeric first segment is newer, an alphabetic one older;
//! 6. numbers compare without leading zeros, the longer one newer, then
//!    byte-wise; letters compare byte-wise (`strcmp`); a difference decides;
//! 7. after the loop: both at their end, equal; else the side with
//!    something left is newer.
//!
//! Tested against the real rpm (its Lua `rpm.vercmp`) on generated pairs.

use std::cmp::Ordering;

use crate::Evr;

/// Compares two rpm versions (`[epoch:]version-release`) as rpm does.
pub fn compare(a: &Evr, b: &Evr) -> Ordering {
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| rpmvercmp(&a.version, &b.version))
        .then_with(|| rpmvercmp(&a.release, &b.release))
}

/// Steps 2 and 3: `~` sorts before everything, even the end of the string;
/// `^` after the end but before anything else. Where either side is at `~`
/// (else at `^`), the two sides' ranks against that marker decide; `Equal`:
/// both are at it, skip it. `None`: neither side is at a marker.
fn markers(ca: Option<u8>, cb: Option<u8>) -> Option<Ordering> {
    let tilde = |c: Option<u8>| match c {
        Some(b'~') => 0,
        _ => 1,
    };
    let caret = |c: Option<u8>| match c {
        None => 0,
        Some(b'^') => 1,
        Some(_) => 2,
    };
    if ca == Some(b'~') || cb == Some(b'~') {
        Some(tilde(ca).cmp(&tilde(cb)))
    } else if ca == Some(b'^') || cb == Some(b'^') {
        Some(caret(ca).cmp(&caret(cb)))
    } else {
        None
    }
}

/// rpm's `rpmvercmp` on one field (version or release); see the module
/// documentation for the rules.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let at = |s: &[u8], k: usize| s.get(k).copied();
    let is_sep =
        |c: Option<u8>| c.is_some_and(|c| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^');
    while at(a, i).is_some() || at(b, j).is_some() {
        while is_sep(at(a, i)) {
            i += 1;
        }
        while is_sep(at(b, j)) {
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));
        match markers(ca, cb) {
            Some(Ordering::Equal) => {
                i += 1;
                j += 1;
                continue;
            }
            Some(decided) => return decided,
            None => {}
        }
        let (Some(first), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = first.is_ascii_digit();
        let in_segment = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let run = |s: &[u8], start: usize| {
            let len = s
                .get(start..)
                .unwrap_or(&[])
                .iter()
                .take_while(|c| in_segment(**c))
                .count();
            (start, start + len)
        };
        let (sa, ea) = run(a, i);
        let (sb, eb) = run(b, j);
        // The first side's segment is never empty (it starts with a letter
        // or a digit); an empty second one means the types differ.
        if sb == eb {
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let mut seg_a = a.get(sa..ea).unwrap_or(&[]);
        let mut seg_b = b.get(sb..eb).unwrap_or(&[]);
        if numeric {
            while let Some((b'0', rest)) = seg_a.split_first() {
                seg_a = rest;
            }
            while let Some((b'0', rest)) = seg_b.split_first() {
                seg_b = rest;
            }
            match seg_a.len().cmp(&seg_b.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match seg_a.cmp(seg_b) {
            Ordering::Equal => {}
            other => return other,
        }
        i = ea;
        j = eb;
    }
    match (at(a, i).is_none(), at(b, j).is_none()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    use super::super::testgen::{assert_agrees_with_tool, verdict, Gen, Grammar};

    /// A version [`Evr::parse`] accepts (starting with a letter or digit):
    /// epoch optional, release usually present, pieces where rpm's subtle
    /// rules live (`~`, `^`, leading zeros, letters against digits,
    /// separators).
    const RPM: Grammar = Grammar {
        starts: &["0", "1", "2", "10", "1.0", "1.7", "a", "1~", "1^"],
        pieces: &[
            "0",
            "1",
            "2",
            "9",
            "10",
            "01",
            "007",
            "a",
            "b",
            "Z",
            "rc",
            "~",
            "^",
            ".",
            "_",
            "+",
            "~rc1",
            "^git2",
            "..",
            "el8",
            "99999999999999999999",
        ],
        releases: &["0", "1", "2", "1a", "a", "1~", "1^", "1.el8", "10"],
        no_release_one_in: 5,
        dash_in_version_one_in: None,
    };

    /// rpm's verdict for each pair (it prints -1, 0 or 1), from one
    /// `rpm --eval` of a Lua script per batch. `%_dbpath` points into a
    /// temporary directory: Debian's rpm would otherwise create `~/.rpmdb`
    /// on the host. Inside a macro expansion rpm's Lua `print` adds no
    /// newline: a space separates the verdicts.
    fn rpm_verdicts(pairs: &[(String, String)], dbpath: &str) -> Vec<Ordering> {
        let mut lua = String::from("%{lua:\n");
        for (a, b) in pairs {
            lua.push_str(&format!("print(rpm.vercmp(\"{a}\", \"{b}\") .. \" \")\n"));
        }
        lua.push('}');
        let out = Command::new("rpm")
            .arg("--define")
            .arg(format!("_dbpath {dbpath}"))
            .arg("--eval")
            .arg(&lua)
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "this test compares with the real rpm, which cannot run ({e}): \
                     install Debian's `rpm` package"
                )
            });
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "rpm --eval failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|v| verdict("rpm", ["-1", "0", "1"], v))
            .collect()
    }

    #[test]
    fn agrees_with_rpm_vercmp() {
        let db = std::env::temp_dir().join(format!("patchman-rpmvercmp-{}", std::process::id()));
        let mut gen = Gen(0x2545_f491_4f6c_dd1d);
        let pairs: Vec<(String, String)> = (0..4000)
            .map(|i| {
                let a = gen.version(&RPM);
                // Near-equal pairs, where leading zeros, `~`, `^` and
                // trailing separators decide.
                let b = match i % 7 {
                    0 => format!("{a}0"),
                    1 => format!("{a}~"),
                    2 => format!("{a}^"),
                    3 => format!("{a}."),
                    _ => gen.version(&RPM),
                };
                (a, b)
            })
            .collect();
        let db_str = db.to_string_lossy().into_owned();
        assert_agrees_with_tool(compare, &pairs, 500, |batch| rpm_verdicts(batch, &db_str));
        let _ = std::fs::remove_dir_all(&db);
    }
}
