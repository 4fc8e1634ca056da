//! `/etc/patchman/patchman.ini`, which both halves read: the same bounded
//! read of the file, and durations as it writes them (`30s`, `15m`, `6h`,
//! `1d`), parsed by the same code on both sides.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest configuration file read.
pub const MAX_CONFIG: u64 = 64 * 1024;

/// Why the configuration file could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    TooLarge {
        path: PathBuf,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ReadError::TooLarge { path } => {
                write!(f, "{} is larger than {MAX_CONFIG} bytes", path.display())
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads the configuration file, at most [`MAX_CONFIG`] bytes. `None` when
/// it does not exist: every setting then has its default (the vendor says
/// "create it if it does not yet exist").
pub fn read_config(path: &Path) -> Result<Option<String>, ReadError> {
    let io = |error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    file.take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(Some(text))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(pub String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a duration: write a whole number followed by s, m, h or d (30s, 15m, 6h)",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses `<digits><unit>` with unit `s`, `m`, `h` or `d`. A bare `0` is
/// zero. At most ten years, so arithmetic on it never overflows.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(s.chars().take(40).collect());
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() || digits.len() > 9 {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(err()),
    };
    if secs > 10 * 365 * 86400 {
        return Err(err());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_of_the_interface() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(21600)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172800)));
    }

    #[test]
    fn everything_else_is_an_error() {
        for bad in [
            "",
            "s",
            "6",
            "6 h",
            "6hours",
            "-1h",
            "1.5h",
            "h6",
            "99999999999h",
            "4000d",
            "1e3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
