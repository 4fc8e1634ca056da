//! The agent's part of `/etc/patchman/patchman.ini`, section `[updates]`:
//! `automatic` (default yes), `interval` (default 6h), `jitter` (default
//! 1h). The helper reads the same file for `repository`; keys that are not
//! ours are ignored here.

use std::path::Path;
use std::time::Duration;

use patchman_shared::config_file::duration_value;

/// Default `[updates] interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Default `[updates] jitter`.
pub const DEFAULT_JITTER: Duration = Duration::from_secs(3600);
/// A configuration file larger than this is refused (it is a few lines).
pub const MAX_CONFIG: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[updates] automatic`: the local switch for unattended updates.
    pub automatic: bool,
    /// `[updates] interval`: time between two checks of the daemon.
    pub interval: Duration,
    /// `[updates] jitter`: the upper bound of the random delay added to
    /// the first check and to every interval.
    pub jitter: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            automatic: true,
            interval: DEFAULT_INTERVAL,
            jitter: DEFAULT_JITTER,
        }
    }
}

/// What the agent can find wrong in the file is what the helper can (but
/// for the helper's `repository`): the one type both halves share.
pub use patchman_shared::config_file::ConfigError;

/// `yes`/`no` and the usual spellings (ini files are written by people).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Parses the text of patchman.ini. A missing section or key is the default.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut ini = configparser::ini::Ini::new();
    ini.read(text.to_string()).map_err(ConfigError::Syntax)?;
    let mut config = Config::default();
    if let Some(v) = ini.get("updates", "automatic") {
        config.automatic = parse_bool(&v).ok_or_else(|| ConfigError::BadValue {
            key: "automatic",
            why: format!("{v:?} is not yes or no"),
        })?;
    }
    let duration = |key| duration_value(key, ini.get("updates", key));
    if let Some(d) = duration("interval")? {
        // Zero would make the daemon check in a loop.
        if d.is_zero() {
            return Err(ConfigError::BadValue {
                key: "interval",
                why: "must be more than zero (e.g. 6h)".into(),
            });
        }
        config.interval = d;
    }
    if let Some(d) = duration("jitter")? {
        config.jitter = d;
    }
    Ok(config)
}

/// Reads and parses `path`; a missing file means every default.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    patchman_shared::load_config(path, parse, ConfigError::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_absent() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(
            parse("[updates]\nrepository = x\n").unwrap(),
            Config::default()
        );
        assert_eq!(
            load(Path::new("/nonexistent/patchman.ini")).unwrap(),
            Config::default()
        );
        let d = Config::default();
        assert!(d.automatic);
        assert_eq!(d.interval, Duration::from_secs(21600));
        assert_eq!(d.jitter, Duration::from_secs(3600));
    }

    #[test]
    fn the_keys_of_the_interface() {
        let c = parse("[updates]\nautomatic = no\ninterval = 1h\njitter = 0s\n").unwrap();
        assert_eq!(
            c,
            Config {
                automatic: false,
                interval: Duration::from_secs(3600),
                jitter: Duration::ZERO,
            }
        );
        // Inline comments, as the README's example writes them.
        let c = parse("[updates]\nautomatic = yes   # on\ninterval = 15m ; x\n").unwrap();
        assert!(c.automatic);
        assert_eq!(c.interval, Duration::from_secs(900));
        // The shipped conffile comments the keys out.
        let c =
            parse("[updates]\nrepository = patchman\n# automatic = no\n# interval = 1s\n").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn bad_values_are_errors_that_name_the_key() {
        for (text, key) in [
            ("[updates]\nautomatic = maybe\n", "automatic"),
            ("[updates]\ninterval = 6 hours\n", "interval"),
            ("[updates]\ninterval = 0s\n", "interval"),
            ("[updates]\njitter = -1h\n", "jitter"),
        ] {
            match parse(text) {
                Err(ConfigError::BadValue { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn spellings_of_yes_and_no() {
        for y in ["yes", "Yes", "true", "on", "1", " YES "] {
            assert_eq!(parse_bool(y), Some(true), "{y}");
        }
        for n in ["no", "NO", "false", "off", "0"] {
            assert_eq!(parse_bool(n), Some(false), "{n}");
        }
        assert_eq!(parse_bool("y"), None);
    }
}
