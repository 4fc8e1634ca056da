//! The helper's own configuration: `/etc/patchman/patchman.ini`,
//! `[updates] repository`. Read at start and on SIGHUP; never taken from the
//! agent. Other keys of the file belong to the agent and are ignored here.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use patchman_shared::config_file::{duration_value, ConfigError as FileError};

pub const DEFAULT_CONFIG: &str = "/etc/patchman/patchman.ini";
pub const DEFAULT_REPOSITORY: &str = "patchman";

const MAX_REPOSITORY_LEN: usize = 100;

/// A validated repository name: `[A-Za-z0-9._-]`, no leading `-`, not
/// only dots. It becomes part of an argv (`--enablerepo=<name>`) and of a
/// path (`<sourceparts>/<name>.list`), so nothing else can pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn new(s: &str) -> Result<RepositoryName, ConfigError> {
        let bad = |why: &str| ConfigError::BadRepository {
            value: s.chars().take(MAX_REPOSITORY_LEN).collect(),
            why: why.to_string(),
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > MAX_REPOSITORY_LEN {
            return Err(bad("it is longer than 100 characters"));
        }
        if s.starts_with('-') {
            return Err(bad("it starts with '-'"));
        }
        if s.bytes().all(|b| b == b'.') {
            return Err(bad("it is only dots"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(bad(&format!(
                "character {c:?} is not one of [A-Za-z0-9._-]"
            )));
        }
        Ok(RepositoryName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Default bound on waiting for another program's package-manager lock.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);
const MAX_LOCK_WAIT: Duration = Duration::from_secs(3600);
/// Default probation after a changing update (issue 12).
pub const DEFAULT_PROBATION: Duration = Duration::from_secs(600);
const MAX_PROBATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default minimum time between two refreshes of the repository's metadata.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Default kill time of one metadata refresh. Short, unlike the download's:
/// a refresh fetches a few small index files, and while it runs it holds
/// apt's lists lock (dnf's metadata lock), so a server that trickles one
/// byte every few seconds would otherwise keep root's own `apt-get update`
/// out for as long as the kill time (300 s before).
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(90);
const MAX_REFRESH_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub repository: RepositoryName,
    /// `[updates] lock_wait`: how long to wait for a lock another program
    /// (unattended-upgrades, a person's apt) holds before answering
    /// `LockHeld`. An addition of ours; the vendor's file has no such key.
    pub lock_wait: Duration,
    /// `[updates] refresh_interval`: the helper refreshes the repository's
    /// metadata at most once per this interval, whatever the agent asks;
    /// in between, `Check` and `Update` use what it fetched last (and a
    /// `Check` says so). `0s` refreshes on every request, as the vendor's
    /// steps do. An addition of ours.
    pub refresh_interval: Duration,
    /// `[updates] probation`: how long a changing update waits for the new
    /// agent's `Confirm` before the helper rolls it back; zero: never.
    pub probation: Duration,
    /// `[updates] refresh_timeout`: a metadata refresh still running after
    /// this is killed (and counts as failed: the back-off). An addition of
    /// ours.
    pub refresh_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            repository: RepositoryName(DEFAULT_REPOSITORY.to_string()),
            lock_wait: DEFAULT_LOCK_WAIT,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            probation: DEFAULT_PROBATION,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
        }
    }
}

/// A duration key of `[updates]`: its name, its bound (and how an error
/// writes the bound), and the field of [`Config`] it sets; a key the file
/// does not set keeps [`Config::default`]'s value.
type DurationKey = (
    &'static str,
    Duration,
    &'static str,
    fn(&mut Config) -> &mut Duration,
);

/// The duration keys, in the order they are checked. `probation = 0`:
/// rollback off.
#[rustfmt::skip]
const DURATION_KEYS: [DurationKey; 4] = [
    ("lock_wait",        MAX_LOCK_WAIT,        "1h",  |c| &mut c.lock_wait),
    ("refresh_interval", MAX_REFRESH_INTERVAL, "24h", |c| &mut c.refresh_interval),
    ("probation",        MAX_PROBATION,        "7d",  |c| &mut c.probation),
    ("refresh_timeout",  MAX_REFRESH_TIMEOUT,  "15m", |c| &mut c.refresh_timeout),
];

#[derive(Debug)]
pub enum ConfigError {
    /// What the agent can find wrong in the file too: it cannot be read (or
    /// is too large), it is not ini, or a key has a bad value.
    File(FileError),
    BadRepository {
        value: String,
        why: String,
    },
}

impl From<FileError> for ConfigError {
    fn from(e: FileError) -> ConfigError {
        ConfigError::File(e)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File(e) => write!(f, "{e}"),
            ConfigError::BadRepository { value, why } => {
                write!(
                    f,
                    "[updates] repository = {value:?} is not a valid repository name: {why}"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses the text of patchman.ini. Missing section or key: the default.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut ini = configparser::ini::Ini::new();
    ini.read(text.to_string()).map_err(FileError::Syntax)?;
    let mut config = Config::default();
    if let Some(v) = ini.get("updates", "repository") {
        config.repository = RepositoryName::new(v.trim())?;
    }
    for (key, max, max_text, field) in DURATION_KEYS {
        if let Some(d) = duration_value(key, ini.get("updates", key))? {
            if d > max {
                return Err(FileError::BadValue {
                    key,
                    why: format!("at most {max_text}"),
                }
                .into());
            }
            *field(&mut config) = d;
        }
    }
    if config.refresh_timeout < Duration::from_secs(1) {
        return Err(FileError::BadValue {
            key: "refresh_timeout",
            why: "at least 1s".to_string(),
        }
        .into());
    }
    Ok(config)
}

/// Reads and parses `path`. A missing file means every default (the vendor
/// says "create it if it does not yet exist").
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    patchman_shared::load_config(path, parse, |e| FileError::Read(e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_absent() {
        // Absent, or only other sections: every default.
        for text in ["", "[other]\nx = 1\n"] {
            assert_eq!(parse(text).ok(), Some(Config::default()), "{text:?}");
        }
        assert_eq!(
            load(Path::new("/nonexistent/patchman.ini")).unwrap(),
            Config::default()
        );
        assert_eq!(Config::default().refresh_interval, Duration::from_secs(60));
    }

    #[test]
    fn reads_the_vendor_example_and_ignores_agent_keys() {
        let c = parse("[updates]\nrepository = patchman-beta\nautomatic = no\ninterval = 6h\n");
        let beta = RepositoryName::new("patchman-beta").unwrap();
        let want = Config {
            repository: beta,
            ..Config::default()
        };
        assert_eq!(c.ok(), Some(want));
    }

    /// The duration that `[updates] key` sets.
    fn field<'c>(c: &'c mut Config, key: &str) -> &'c mut Duration {
        let (.., field) = DURATION_KEYS
            .iter()
            .find(|(k, ..)| *k == key)
            .unwrap_or_else(|| panic!("no duration key {key}"));
        field(c)
    }

    #[test]
    fn durations_as_the_file_writes_them() {
        let s = Duration::from_secs;
        for (key, value, want) in [
            ("probation", "60s", s(60)),
            ("probation", "0", s(0)),
            ("lock_wait", "5s", s(5)),
            ("refresh_timeout", "3s", s(3)),
            ("refresh_interval", "10m", s(600)),
            ("refresh_interval", "0s", s(0)),
        ] {
            let text = format!("[updates]\n{key} = {value}\n");
            let mut expected = Config::default();
            *field(&mut expected, key) = want;
            assert_eq!(parse(&text).ok(), Some(expected), "{text:?}");
        }
    }

    #[test]
    fn bad_durations_are_errors_that_name_the_key() {
        for (key, bad) in [
            ("probation", "30d"),
            ("lock_wait", "5"),
            ("lock_wait", "2h"),
            ("refresh_timeout", "0s"),
            ("refresh_timeout", "1h"),
            ("refresh_timeout", "90"),
            ("refresh_interval", "60"),
            ("refresh_interval", "2d"),
            ("refresh_interval", "soon"),
        ] {
            let text = format!("[updates]\n{key} = {bad}\n");
            let got = parse(&text);
            assert!(
                matches!(got, Err(ConfigError::File(FileError::BadValue { key: k, .. })) if k == key),
                "{text:?}: {got:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_key_and_what_it_takes() {
        for (text, want) in [
            (
                "[updates]\nlock_wait = 2h\n",
                "[updates] lock_wait: at most 1h",
            ),
            (
                "[updates]\nprobation = soon\n",
                "[updates] probation: \"soon\" is not a duration: write a whole number \
                 followed by s, m, h or d (30s, 15m, 6h)",
            ),
            (
                "[updates]\nrefresh_timeout = 0s\n",
                "[updates] refresh_timeout: at least 1s",
            ),
            (
                "[updates]\nrepository = a/b\n",
                "[updates] repository = \"a/b\" is not a valid repository name: \
                 character '/' is not one of [A-Za-z0-9._-]",
            ),
        ] {
            let got = parse(text).map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "{text:?}");
        }
    }

    #[test]
    fn hostile_repository_names_are_refused() {
        for bad in [
            "-o",
            "--enablerepo=*",
            "a b",
            "*",
            "../../etc/x",
            "a/b",
            "..",
            "",
            "x|rm",
            "x$y",
            "é",
            "repo\u{0}",
        ] {
            let text = format!("[updates]\nrepository = {bad}\n");
            match parse(&text) {
                Err(ConfigError::BadRepository { .. }) => {}
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
        assert!(RepositoryName::new(&"a".repeat(101)).is_err());
        for good in ["patchman", "patchman.repo", "Patch_man-2", "a.b"] {
            assert!(RepositoryName::new(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("patchman.ini");
        std::fs::write(&p, format!("[updates]\n#{}\n", "x".repeat(70_000))).unwrap();
        assert!(matches!(
            load(&p),
            Err(ConfigError::File(FileError::Read(
                patchman_shared::config_file::ReadError::TooLarge { .. }
            )))
        ));
    }
}
