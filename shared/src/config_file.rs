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
        max: u64,
    },
    /// A link, a FIFO or a device; not owned by root; writable by others.
    Unsafe {
        path: PathBuf,
        why: &'static str,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ReadError::TooLarge { path, max } => {
                write!(f, "{} is larger than {max} bytes", path.display())
            }
            ReadError::Unsafe { path, why } => write!(
                f,
                "refusing {}: it {why} (root's settings must be a regular file owned by root, not group- or world-writable: chown root: and chmod go-w it)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ReadError {}

/// What either half can find wrong in the configuration file: it cannot be
/// read, it is not ini, or a key of `[updates]` has a value that key does
/// not take.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read, or is too large.
    Read(ReadError),
    Syntax(String),
    BadValue {
        key: &'static str,
        why: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(e) => write!(f, "{e}"),
            ConfigError::Syntax(e) => write!(f, "cannot parse the configuration: {e}"),
            ConfigError::BadValue { key, why } => write!(f, "[updates] {key}: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `[updates] key` as a duration, from the `value` the ini parser found
/// for it; `None` when the file does not set the key.
pub fn duration_value(
    key: &'static str,
    value: Option<String>,
) -> Result<Option<Duration>, ConfigError> {
    value
        .map(|v| {
            parse_duration(&v).map_err(|e| ConfigError::BadValue {
                key,
                why: e.to_string(),
            })
        })
        .transpose()
}

/// Reads the configuration file, at most [`MAX_CONFIG`] bytes, with the
/// checks of [`read_root_file`]. `None` when it does not exist: every
/// setting then has its default (the vendor says "create it if it does not
/// yet exist").
pub fn read_config(path: &Path) -> Result<Option<String>, ReadError> {
    read_root_file(path, MAX_CONFIG)
}

/// Reads the configuration file with [`read_config`] and parses its text
/// with `parse`; a file that does not exist is every default.
pub fn load_config<T: Default, E>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, E>,
    read_error: impl FnOnce(ReadError) -> E,
) -> Result<T, E> {
    match read_config(path).map_err(read_error)? {
        Some(text) => parse(&text),
        None => Ok(T::default()),
    }
}

/// Reads a settings file that root writes and both halves obey: opened
/// without following a final symlink and without waiting on a FIFO
/// (`O_NOFOLLOW|O_NONBLOCK`), then checked on the open file: a regular
/// file, owned by root, not group- or world-writable; at most `max` bytes.
/// `None` when it does not exist.
pub fn read_root_file(path: &Path, max: u64) -> Result<Option<String>, ReadError> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let io = |error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let unsafe_file = |why| ReadError::Unsafe {
        path: path.to_path_buf(),
        why,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(unsafe_file("is a symbolic link"))
        }
        Err(e) => return Err(io(e)),
    };
    let m = file.metadata().map_err(io)?;
    if !m.is_file() {
        return Err(unsafe_file("is not a regular file"));
    }
    if m.uid() != 0 {
        return Err(unsafe_file("is not owned by root"));
    }
    if m.mode() & 0o022 != 0 {
        return Err(unsafe_file("is group- or world-writable"));
    }
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > max {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            max,
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
    fn only_a_root_owned_regular_file_others_cannot_write_is_read() {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test chowns files: run as root"
        );
        let dir = std::env::temp_dir().join(format!("patchman-config-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let good = dir.join("good.ini");
        std::fs::write(&good, "[updates]\n").unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_config(&good).unwrap().as_deref(), Some("[updates]\n"));
        assert!(read_config(&dir.join("absent.ini")).unwrap().is_none());
        let refused = |p: &Path| match read_config(p) {
            Err(ReadError::Unsafe { why, .. }) => why,
            other => panic!("{} accepted: {other:?}", p.display()),
        };
        let link = dir.join("link.ini");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert_eq!(refused(&link), "is a symbolic link");
        let writable = dir.join("writable.ini");
        std::fs::write(&writable, "").unwrap();
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert_eq!(refused(&writable), "is group- or world-writable");
        let foreign = dir.join("foreign.ini");
        std::fs::write(&foreign, "").unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o644)).unwrap();
        nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        assert_eq!(refused(&foreign), "is not owned by root");
        // A FIFO nobody writes to: refused at once, not waited on.
        let fifo = dir.join("fifo.ini");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let t0 = std::time::Instant::now();
        assert_eq!(refused(&fifo), "is not a regular file");
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        let msg = read_config(&writable).unwrap_err().to_string();
        assert!(msg.contains("chmod go-w"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
