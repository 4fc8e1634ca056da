//! dpkg's version ordering (`dpkg --compare-versions`), for the "never
//! downgrade" check. A transcription of `verrevcmp` in dpkg's
//! lib/dpkg/version.c:
//!
//! * epochs compare as numbers;
//! * upstream version, then revision, compare by alternating runs: a run of
//!   non-digits compared character by character where `~` sorts before
//!   everything (even the end of the string), the end before letters,
//!   letters before everything else; then a run of digits compared as a
//!   number (leading zeros ignored);
//! * an empty revision equals `0`.
//!
//! Tested against the real `dpkg --compare-versions` on generated pairs.
//! (The `deb-version` crate was not used: one more crate in a root process
//! for forty lines.)

use std::cmp::Ordering;

use crate::Evr;

/// Compares two Debian versions as dpkg does.
pub fn compare(a: &Evr, b: &Evr) -> Ordering {
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| verrevcmp(&a.version, &b.version))
        .then_with(|| verrevcmp(&a.release, &b.release))
}

/// dpkg's weight of one character in a non-digit run; `None` is the end of
/// the string (or the start of a digit run).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn is_digit(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit())
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !is_digit(a.get(i).copied()))
            || (j < b.len() && !is_digit(b.get(j).copied()))
        {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run: skip leading zeros, then the longer number wins, then
        // the first differing digit.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while is_digit(a.get(i).copied()) && is_digit(b.get(j).copied()) {
            if first_diff == Ordering::Equal {
                first_diff = a.get(i).cmp(&b.get(j));
            }
            i += 1;
            j += 1;
        }
        if is_digit(a.get(i).copied()) {
            return Ordering::Greater;
        }
        if is_digit(b.get(j).copied()) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::super::testgen::{assert_agrees_with_tool, verdict, Gen, Grammar};

    /// A valid dpkg version: epoch optional, upstream starting with a
    /// digit, revision optional (upstream may then contain '-').
    const DEB: Grammar = Grammar {
        starts: &["0", "1", "2", "10", "1.0", "1.7"],
        pieces: &[
            "0", "1", "2", "9", "10", "01", "a", "b", "z", "A", "~", "+", ".", "~~", "rc", "~rc1",
        ],
        releases: &[
            "0", "1", "2", "1a", "a", "1~", "1+b1", "1.1", "0ubuntu1", "10",
        ],
        no_release_one_in: 3,
        dash_in_version_one_in: Some(5),
    };

    /// dpkg's verdict for each pair (it prints "<", "=" or ">"), from one
    /// `sh` per batch.
    fn dpkg_verdicts(pairs: &[(String, String)]) -> Option<Vec<Ordering>> {
        let script = r#"while read -r a b; do
  if dpkg --compare-versions "$a" lt "$b"; then echo '<';
  elif dpkg --compare-versions "$a" eq "$b"; then echo '=';
  else echo '>'; fi
done"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let mut input = String::new();
        for (a, b) in pairs {
            input.push_str(&format!("{a} {b}\n"));
        }
        child.stdin.take()?.write_all(input.as_bytes()).ok()?;
        let out = child.wait_with_output().ok()?;
        assert!(
            out.stderr.is_empty(),
            "dpkg complained: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(
            String::from_utf8(out.stdout)
                .ok()?
                .lines()
                .map(|v| verdict("dpkg", ["<", "=", ">"], v))
                .collect(),
        )
    }

    #[test]
    fn agrees_with_dpkg_compare_versions() {
        assert!(
            Command::new("dpkg").arg("--version").output().is_ok(),
            "this test compares with the real dpkg: install dpkg (Debian's dpkg package)"
        );
        let mut gen = Gen(0x9e37_79b9_7f4a_7c15);
        let pairs: Vec<(String, String)> = (0..3000)
            .map(|i| {
                let a = gen.version(&DEB);
                // Every fifth pair compares near-equal versions, where the
                // subtle rules (leading zeros, empty revision) live.
                let b = if i % 5 == 0 {
                    format!("{a}0")
                } else {
                    gen.version(&DEB)
                };
                (a, b)
            })
            .collect();
        // Batches in parallel: ~1.7 dpkg processes per pair.
        assert_agrees_with_tool(compare, &pairs, 250, |batch| {
            dpkg_verdicts(batch).expect("running dpkg")
        });
    }
}
