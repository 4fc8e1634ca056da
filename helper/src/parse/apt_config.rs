//! `apt-config dump`, and apt's own resolution of the directories in it.
//!
//! The dump prints one item per line, `Full::Tag "value";`. apt escapes the
//! tag (`%XX` for spaces, quotes, `=`, `%` and non-ASCII) but prints the value
//! raw, so a value may contain `"` or even a newline: an item ends at the
//! first line that ends in `";`. A value with a newline could make a line
//! look like another item; the tree apt dumps holds each tag once, so a tag
//! seen twice means the dump is ambiguous and is refused.
//!
//! Directories are resolved the way apt's `Configuration::FindFile` and
//! `FindDir` do (apt-pkg/contrib/configuration.cc, apt 2.6), checked against
//! `apt-config shell VAR Key/d` in the fixtures:
//! * a value starting with `/` is absolute; `./`, `../` and `~/` stop the
//!   walk too (they are relative to apt's working directory, `~` is not
//!   expanded);
//! * otherwise the parent item's value is prepended (`Dir::Etc::sourceparts`
//!   under `Dir::Etc` under `Dir`), skipping parents whose value is empty;
//! * `RootDir`, when set, is prepended to every result, absolute or not;
//! * `/./` and `//` are collapsed, anything under `/dev/null` is `/dev/null`;
//! * a directory gets a trailing `/` (except `/dev/null`).

use std::collections::HashMap;
use std::path::PathBuf;

use super::{check_size, malformed, ParseError};

const TOOL: &str = "apt-config dump";

/// The directories the apt procedure needs, resolved as apt resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptDirs {
    /// `Dir::Etc`, e.g. `/etc/apt/`.
    pub etc: PathBuf,
    /// `Dir::Etc::sourcelist`, e.g. `/etc/apt/sources.list`.
    pub sourcelist: PathBuf,
    /// `Dir::Etc::sourceparts`, e.g. `/etc/apt/sources.list.d/`: the
    /// repository definition is `<sourceparts><repository>.list` or `.sources`.
    pub sourceparts: PathBuf,
    /// `Dir::Cache`, e.g. `/var/cache/apt/`.
    pub cache: PathBuf,
    /// `Dir::Cache::archives`, e.g. `/var/cache/apt/archives/`: where
    /// `apt-get -d install` leaves the downloaded `.deb`.
    pub archives: PathBuf,
}

/// A parsed `apt-config dump`.
#[derive(Debug, Clone, Default)]
pub struct AptConfig {
    /// Lower-cased full tag → value (apt looks tags up case-insensitively).
    items: HashMap<String, String>,
    /// Lower-cased parent tag → the values of its list items (`Tag:: "v";`).
    lists: HashMap<String, Vec<String>>,
}

impl AptConfig {
    /// Parses the whole output of `apt-config dump`.
    pub fn parse(dump: &str) -> Result<AptConfig, ParseError> {
        check_size(TOOL, dump)?;
        let mut config = AptConfig::default();
        // (line number where it started, tag, value so far)
        let mut open: Option<(usize, String, String)> = None;
        for (index, line) in dump.lines().enumerate() {
            let n = index + 1;
            if let Some((start, tag, mut value)) = open.take() {
                if let Some(last) = line.strip_suffix("\";") {
                    value.push_str(last);
                    config.insert(start, tag, value)?;
                } else {
                    value.push_str(line);
                    value.push('\n');
                    open = Some((start, tag, value));
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let Some((raw_tag, rest)) = line.split_once(" \"") else {
                return Err(malformed(TOOL, n, "`Tag \"value\";`", line));
            };
            if raw_tag.is_empty() || raw_tag.contains(|c: char| c.is_whitespace() || c == '"') {
                return Err(malformed(TOOL, n, "an escaped configuration tag", line));
            }
            let tag = unescape_tag(raw_tag);
            match rest.strip_suffix("\";") {
                Some(value) => config.insert(n, tag, value.to_string())?,
                None => open = Some((n, tag, format!("{rest}\n"))),
            }
        }
        if let Some((start, tag, _)) = open {
            return Err(ParseError::Truncated {
                tool: TOOL,
                detail: format!("the value of {tag} (line {start}) never ends with `\";`"),
            });
        }
        if config.items.is_empty() && config.lists.is_empty() {
            return Err(ParseError::Empty { tool: TOOL });
        }
        Ok(config)
    }

    fn insert(&mut self, line: usize, tag: String, value: String) -> Result<(), ParseError> {
        // A list item has an empty last tag: `APT::Architectures:: "amd64";`.
        if let Some(parent) = tag.strip_suffix("::") {
            self.lists
                .entry(parent.to_ascii_lowercase())
                .or_default()
                .push(value);
            return Ok(());
        }
        let key = tag.to_ascii_lowercase();
        if self.items.contains_key(&key) {
            return Err(ParseError::Duplicate {
                tool: TOOL,
                line,
                key: tag,
            });
        }
        self.items.insert(key, value);
        Ok(())
    }

    /// The raw value of `tag` (case-insensitive, as apt looks it up).
    pub fn get(&self, tag: &str) -> Option<&str> {
        self.items
            .get(&tag.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The values of the list `tag` (`tag:: "…";` items), in order.
    pub fn list(&self, tag: &str) -> &[String] {
        self.lists
            .get(&tag.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// apt's `FindFile(tag)` (no default): the value made absolute through
    /// its parents, `RootDir` prepended, normalised. `None` where apt would
    /// return an empty string (the item unset or empty, and no `RootDir`).
    pub fn find_file(&self, tag: &str) -> Option<String> {
        let mut result = self.get("RootDir").unwrap_or("").to_string();
        if !result.is_empty() && !result.ends_with('/') {
            result.push('/');
        }
        if let Some(value) = self.get(tag).filter(|v| !v.is_empty()) {
            let mut val = value.to_string();
            let mut current = tag;
            while let Some((parent, _)) = current.rsplit_once("::") {
                current = parent;
                let parent_value = self.get(parent).unwrap_or("");
                if parent_value.is_empty() {
                    continue;
                }
                if val.starts_with('/') {
                    if val.starts_with("/dev/null") {
                        val.truncate("/dev/null".len());
                    }
                    break;
                }
                if val.starts_with("./") || val.starts_with("~/") || val.starts_with("../") {
                    break;
                }
                if !parent_value.ends_with('/') {
                    val.insert(0, '/');
                }
                val.insert_str(0, parent_value);
            }
            result.push_str(&val);
        }
        let normalized = normalize(&result);
        if normalized.is_empty() {
            None
        } else {
            Some(normalized)
        }
    }

    /// apt's `FindDir(tag)`: [`AptConfig::find_file`] with a trailing `/`
    /// (but `/dev/null` stays as is). `None` where apt's result is undefined
    /// (it reads before the start of an empty string; apt 2.6 happens to
    /// print `/`).
    pub fn find_dir(&self, tag: &str) -> Option<String> {
        let mut dir = self.find_file(tag)?;
        if !dir.ends_with('/') && !dir.ends_with("/dev/null") {
            dir.push('/');
        }
        Some(dir)
    }

    /// The directories of the apt procedure. Refuses a `sourceparts` or
    /// `archives` that is unset or not absolute: apt would resolve it against
    /// its working directory, which is no place for a root helper to look.
    pub fn dirs(&self) -> Result<AptDirs, ParseError> {
        let required = |tag: &'static str, dir: bool| -> Result<PathBuf, ParseError> {
            let found = if dir {
                self.find_dir(tag)
            } else {
                self.find_file(tag)
            };
            match found {
                Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
                Some(path) => Err(ParseError::Inconsistent {
                    tool: TOOL,
                    detail: format!(
                        "{tag} resolves to {path:?}, which is not absolute (apt would read it relative to its working directory)"
                    ),
                }),
                None => Err(ParseError::Missing {
                    tool: TOOL,
                    key: tag.to_string(),
                }),
            }
        };
        Ok(AptDirs {
            etc: required("Dir::Etc", true)?,
            sourcelist: required("Dir::Etc::sourcelist", false)?,
            sourceparts: required("Dir::Etc::sourceparts", true)?,
            cache: required("Dir::Cache", true)?,
            archives: required("Dir::Cache::archives", true)?,
        })
    }
}

/// Parses `apt-config dump` and resolves [`AptDirs`] in one step.
pub fn parse_dirs(dump: &str) -> Result<AptDirs, ParseError> {
    AptConfig::parse(dump)?.dirs()
}

/// Undoes apt's `QuoteString` on a tag: `%XX` becomes the byte `0xXX`.
fn unescape_tag(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_string();
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = hex {
                out.push(decoded);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// apt's `flNormalize`: every `/./` becomes `/`, then every `//` becomes
/// `/`, then anything starting with `/dev/null` is `/dev/null`. apt does it
/// by repeated search-and-replace; this is the same result in one pass each.
fn normalize(path: &str) -> String {
    // Pass 1: remove "./" wherever it follows a '/', including the ones
    // that removal exposes ("/././" → "/").
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with("/.") {
            out.pop();
        } else {
            out.push(c);
        }
    }
    // Pass 2: collapse runs of '/'.
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    if collapsed.starts_with("/dev/null") {
        collapsed.truncate("/dev/null".len());
    }
    collapsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::lines_like;
    use crate::parse::test_support::{fixture, fixture_rc};
    use proptest::prelude::*;

    fn shell_vars(name: &str) -> HashMap<String, String> {
        fixture(&format!("apt_config_shell_{name}.out"))
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.to_string(), v.trim_matches('\'').to_string()))
            })
            .collect()
    }

    #[test]
    fn host_dump_resolves_to_the_debian_defaults() {
        let dump = fixture("apt_config_dump_host.out");
        let dirs = parse_dirs(&dump).unwrap();
        assert_eq!(
            dirs,
            AptDirs {
                etc: "/etc/apt/".into(),
                sourcelist: "/etc/apt/sources.list".into(),
                sourceparts: "/etc/apt/sources.list.d/".into(),
                cache: "/var/cache/apt/".into(),
                archives: "/var/cache/apt/archives/".into(),
            }
        );
        let config = AptConfig::parse(&dump).unwrap();
        assert_eq!(config.list("APT::Architectures"), ["amd64".to_string()]);
        assert_eq!(config.get("dir::etc::SOURCEPARTS"), Some("sources.list.d"));
        // Values are printed raw: backslashes and `$` stay as they are.
        assert!(config
            .list("Dir::Ignore-Files-Silently")
            .contains(&"\\.disabled$".to_string()));
    }

    /// Each odd configuration was dumped and resolved by apt itself
    /// (`apt-config shell VAR Key/d`); ours must agree.
    #[test]
    fn resolution_matches_apt_config_shell() {
        for name in [
            "abs_archives",
            "relative_root",
            "empty_parents",
            "quotes",
            "devnull",
        ] {
            let config =
                AptConfig::parse(&fixture(&format!("apt_config_dump_{name}.out"))).unwrap();
            let apt = shell_vars(name);
            for (var, tag, dir) in [
                ("ETC", "Dir::Etc", true),
                ("SOURCEPARTS", "Dir::Etc::sourceparts", true),
                ("SOURCELIST", "Dir::Etc::sourcelist", false),
                ("CACHE", "Dir::Cache", true),
                ("ARCHIVES", "Dir::Cache::archives", true),
            ] {
                let ours = if dir {
                    config.find_dir(tag)
                } else {
                    config.find_file(tag)
                };
                // apt prints "/" for an empty item (undefined behaviour in
                // apt); we say "unresolvable" instead.
                let ours = ours.unwrap_or_else(|| "/".to_string());
                assert_eq!(Some(&ours), apt.get(var), "{name}: {tag}");
            }
        }
    }

    /// The same comparison against the apt installed here, when there is
    /// one (read-only: `apt-config` only prints).
    #[test]
    fn resolution_matches_the_live_apt_config() {
        use std::process::Command;
        let settings: [&[&str]; 4] = [
            &[],
            &[
                "-o",
                "Dir=/tmp/x/",
                "-o",
                "Dir::Cache::archives=/abs//a/./b",
            ],
            &["-o", "Dir::Etc=", "-o", "Dir::Etc::sourceparts=parts/./x//"],
            &[
                "-o",
                "Dir::Cache=/c",
                "-o",
                "Dir::Cache::archives=/dev/null/sub",
            ],
        ];
        for options in settings {
            let run = |tail: &[&str]| {
                Command::new("apt-config")
                    .env("LC_ALL", "C")
                    .args(options)
                    .args(tail)
                    .output()
            };
            let dump =
                run(&["dump"]).expect("this test compares with the real apt-config (package apt)");
            let shell = run(&[
                "shell",
                "SOURCEPARTS",
                "Dir::Etc::sourceparts/d",
                "ARCHIVES",
                "Dir::Cache::archives/d",
            ])
            .unwrap();
            let config = AptConfig::parse(&String::from_utf8_lossy(&dump.stdout)).unwrap();
            let shell = String::from_utf8_lossy(&shell.stdout).into_owned();
            for (var, tag) in [
                ("SOURCEPARTS", "Dir::Etc::sourceparts"),
                ("ARCHIVES", "Dir::Cache::archives"),
            ] {
                let apt = shell
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{var}=")))
                    .map(|v| v.trim_matches('\'').to_string());
                assert_eq!(config.find_dir(tag), apt, "{options:?} {tag}");
            }
        }
    }

    #[test]
    fn odd_settings_resolve_like_apt() {
        let dirs = parse_dirs(&fixture("apt_config_dump_abs_archives.out")).unwrap();
        assert_eq!(dirs.archives, PathBuf::from("/abs/"));
        assert_eq!(
            dirs.sourceparts,
            PathBuf::from("/tmp/x/etc/apt/sources.list.d/")
        );

        // Relative Dir: apt would look relative to its cwd; refused.
        let err = parse_dirs(&fixture("apt_config_dump_relative_root.out")).unwrap_err();
        assert!(matches!(err, ParseError::Inconsistent { .. }), "{err}");

        // Empty Dir::Etc and Dir::Cache are skipped on the way up.
        let config = AptConfig::parse(&fixture("apt_config_dump_empty_parents.out")).unwrap();
        assert_eq!(
            config.find_dir("Dir::Etc::sourceparts").as_deref(),
            Some("/srv/r/sources.list.d/")
        );
        assert_eq!(config.find_dir("Dir::Etc"), None);
        assert!(matches!(config.dirs(), Err(ParseError::Missing { .. })));

        // A value holding quotes and `;` is printed raw and read back whole.
        let config = AptConfig::parse(&fixture("apt_config_dump_quotes.out")).unwrap();
        assert_eq!(config.get("Dir::Etc::sourceparts"), Some("odd \"name\";"));
        assert_eq!(config.get("Weird::Key%x"), Some("1"));
        let dirs = config.dirs().unwrap_err();
        assert!(dirs.to_string().contains("../up/arch/"), "{dirs}");

        let config = AptConfig::parse(&fixture("apt_config_dump_devnull.out")).unwrap();
        assert_eq!(
            config.find_dir("Dir::Etc::sourceparts").as_deref(),
            Some("/dev/null")
        );
    }

    #[test]
    fn rootdir_is_prepended_even_to_absolute_values() {
        // apt-config refuses to start with a RootDir lacking dpkg's tables
        // (see apt_config_dump_rootdir.err), so this one is hand-written.
        assert_eq!(fixture_rc("apt_config_dump_rootdir"), 100);
        let dump = "Dir \"/\";\nDir::Etc \"etc/apt\";\nDir::Etc::sourceparts \"/abs/parts\";\n\
                    Dir::Etc::sourcelist \"sources.list\";\nDir::Cache \"var/cache/apt\";\n\
                    Dir::Cache::archives \"archives/\";\nRootDir \"/chroot\";\n";
        let dirs = parse_dirs(dump).unwrap();
        assert_eq!(dirs.sourceparts, PathBuf::from("/chroot/abs/parts/"));
        assert_eq!(
            dirs.archives,
            PathBuf::from("/chroot/var/cache/apt/archives/")
        );
    }

    #[test]
    fn multi_line_values_and_injected_items() {
        // What apt prints for `-o "Foo=a<newline>b"`.
        let dump = "Dir \"/\";\nFoo \"a\nb\";\nDir::Cache \"x\";\n";
        let config = AptConfig::parse(dump).unwrap();
        assert_eq!(config.get("Foo"), Some("a\nb"));
        // A value with a newline that forges a second `Dir` line.
        let forged = "Dir \"/\";\nFoo \"a\nb\";\nDir \"/evil\";\n";
        assert!(matches!(
            AptConfig::parse(forged),
            Err(ParseError::Duplicate { line: 4, .. })
        ));
        // Tags are compared as apt compares them: case-insensitively.
        let forged = "Dir \"/\";\nDIR \"/evil\";\n";
        assert!(matches!(
            AptConfig::parse(forged),
            Err(ParseError::Duplicate { .. })
        ));
    }

    #[test]
    fn garbage_truncated_and_empty_dumps_are_refused() {
        assert!(matches!(
            AptConfig::parse(""),
            Err(ParseError::Empty { .. })
        ));
        assert!(matches!(
            AptConfig::parse("\n\n"),
            Err(ParseError::Empty { .. })
        ));
        assert!(matches!(
            AptConfig::parse("Dir \"/\";\nDir::Etc \"etc/a"),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            AptConfig::parse("hello world\n"),
            Err(ParseError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            AptConfig::parse("Bad Tag \"x\";\n"),
            Err(ParseError::Malformed { .. })
        ));
        // The host's dump cut in the middle of the Dir block.
        let host = fixture("apt_config_dump_host.out");
        let cut = host.split("Dir::Cache::archives").next().unwrap();
        assert!(AptConfig::parse(cut).and_then(|c| c.dirs()).is_err());
        // No Dir section at all.
        assert!(matches!(
            parse_dirs("APT \"\";\n"),
            Err(ParseError::Missing { .. })
        ));
    }

    #[test]
    fn hostile_values_never_become_options() {
        let dump = "Dir \"/\";\nDir::Etc \"etc/apt\";\nDir::Etc::sourceparts \"-o Foo=1 x\";\n\
                    Dir::Etc::sourcelist \"sources.list\";\nDir::Cache \"var/cache/apt\";\n\
                    Dir::Cache::archives \"archives/\";\n";
        // Resolved against Dir::Etc like any relative name: a path, never
        // something that starts with '-'.
        let dirs = parse_dirs(dump).unwrap();
        assert_eq!(dirs.sourceparts, PathBuf::from("/etc/apt/-o Foo=1 x/"));
    }

    #[test]
    fn tag_escapes_are_undone() {
        assert_eq!(unescape_tag("Ba%20r"), "Ba r");
        assert_eq!(unescape_tag("a%25x"), "a%x");
        assert_eq!(unescape_tag("bad%zz%"), "bad%zz%");
        assert_eq!(unescape_tag("%e2%82%ac"), "€");
    }

    /// apt's flNormalize as written: repeated search-and-replace.
    fn normalize_like_apt(path: &str) -> String {
        let mut s = path.to_string();
        while let Some(i) = s.find("/./") {
            s.replace_range(i..i + 3, "/");
        }
        while let Some(i) = s.find("//") {
            s.replace_range(i..i + 2, "/");
        }
        if s.starts_with("/dev/null") {
            s.truncate(9);
        }
        s
    }

    proptest! {
        #[test]
        fn normalize_matches_apts_algorithm(path in "[/.a]{0,24}") {
            prop_assert_eq!(normalize(&path), normalize_like_apt(&path));
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC*") {
            if let Ok(c) = AptConfig::parse(&s) {
                let _ = c.dirs();
                let _ = c.find_dir("Dir::Cache::archives");
            }
        }

        #[test]
        fn dump_like_input_never_panics(
            text in lines_like(
                "(Dir|Dir::Etc|Dir::Cache|Dir::Cache::archives|Dir::Etc::sourceparts|RootDir|X::)( \"|\")[/.~a-z\"; ]{0,12}(\";)?",
                12,
            )
        ) {
            if let Ok(c) = AptConfig::parse(&text) {
                let _ = c.dirs();
            }
        }
    }
}
