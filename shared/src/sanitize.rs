//! Text that came from a file, a tool or the other process, made safe to
//! show a person. One function, used by both halves: the helper for the
//! tool and maintainer-script output it copies into failures and logs, the
//! agent for everything it prints that it did not write itself.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as is: C0 (but newline and tab),
/// DEL, and C1 (U+0080–U+009F, where U+009B is a one-character CSI and
/// U+009D an OSC for terminals that honour 8-bit controls).
fn is_hostile(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `s` with every control character but newline and tab written as a
/// visible escape (`\x1b`, `\r`, `\x9b`): a person still sees that it was
/// there, and no terminal acts on it. Borrowed when there is none.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hostile) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if is_hostile(c) => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Serialised JSON with the C1 controls escaped as `\u0080`…`\u009f`.
/// serde_json escapes C0 itself but writes C1 raw; outside a string JSON
/// has no such character, so this changes only how strings are spelled,
/// never what they mean.
pub fn json_escape_c1(json: &str) -> Cow<'_, str> {
    let is_c1 = |c: char| ('\u{80}'..='\u{9f}').contains(&c);
    if !json.chars().any(is_c1) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if is_c1(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_c0_c1_and_del_is_escaped_but_newline_and_tab() {
        for b in (0u32..0x20).chain(0x7f..0xa0) {
            let c = char::from_u32(b).unwrap();
            let input = format!("a{c}b");
            let out = escape_controls(&input);
            if c == '\n' || c == '\t' {
                assert_eq!(out, format!("a{c}b"));
            } else {
                assert!(!out.chars().any(|o| o == c), "{b:#x} passed: {out:?}");
                assert!(out.starts_with("a\\") && out.ends_with('b'), "{out:?}");
            }
        }
        assert_eq!(
            escape_controls("\x1b]52;c;aGk=\x07 red\r"),
            "\\x1b]52;c;aGk=\\x07 red\\r"
        );
        assert_eq!(escape_controls("x\u{9b}2J"), "x\\x9b2J");
        assert!(matches!(escape_controls("plain é ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_keeps_its_meaning_with_c1_escaped() {
        let v = serde_json::json!({"e": "\u{1b}[2J \u{9b}2J \u{85}"});
        let raw = v.to_string();
        assert!(raw.contains('\u{9b}'), "serde_json writes C1 raw: {raw:?}");
        assert!(!raw.contains('\u{1b}'), "but escapes C0: {raw:?}");
        let safe = json_escape_c1(&raw);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }
}
