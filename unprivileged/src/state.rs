//! The daemon's state in `<state-dir>/state.json`: last check, its result
//! and error, next check, back-off counters, when each candidate version was
//! first seen (for the phased rollout), and a pending restart after an
//! update of our own package.
//!
//! Written atomically: a temporary file in the same directory, fsync, rename
//! over the old one, fsync of the directory; a crash leaves the old or the
//! new file, never half of one. Read tolerantly: a missing file is a fresh
//! state; an unreadable or corrupt one is reported (the caller logs it),
//! kept aside as `state.json.corrupt` and replaced by a fresh state on the
//! next write. A field of the wrong type is dropped, not fatal.
//!
//! Some values come in pairs that the daemon always sets together (a result
//! code and its words; an error and its time; the gate's code and reason):
//! each pair is one `Option` of a small struct, so half of one cannot be
//! held. The file keeps its flat keys (`last_result`, `last_result_detail`,
//! …); a file with only one half of a pair (no version of the daemon wrote
//! one) drops the whole pair, as a `restart` with a missing field is
//! dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

pub const STATE_FILE: &str = "state.json";
/// The state is small; a larger file is treated as corrupt.
const MAX_STATE: u64 = 256 * 1024;
/// At most this many candidate versions are remembered.
const MAX_FIRST_SEEN: usize = 16;

/// A restart of the daemon after it updated its own package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRestart {
    /// The client version the update installed.
    pub version: String,
    /// When the update finished (Unix seconds).
    pub at: u64,
    /// Set by the new process once the helper confirmed the version.
    pub confirmed: bool,
}

/// A stable code and the same in words: a check's result (`updated`:
/// `patchman-client: 1.7.0-1 → 1.7.1-1`) or the gate's verdict (`enabled`:
/// `automatic updates are on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coded {
    pub code: String,
    pub words: String,
}

/// The last error in words and when it happened (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub message: String,
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Unix seconds of the last completed check.
    pub last_check: Option<u64>,
    /// The last result (`up_to_date`, `updated`, …) and its detail; file
    /// keys `last_result` and `last_result_detail`.
    pub last_result: Option<Coded>,
    /// Kept after later successes; file keys `last_error`, `last_error_at`.
    pub last_error: Option<LastError>,
    /// Unix seconds of the next check the daemon scheduled.
    pub next_check: Option<u64>,
    pub consecutive_failures: u32,
    pub consecutive_busy: u32,
    /// Candidate version → Unix seconds it was first seen.
    pub first_seen: BTreeMap<String, u64>,
    pub restart: Option<PendingRestart>,
    /// The daemon's gate verdict at its last check: code and reason; file
    /// keys `automatic_code` and `automatic_reason`.
    pub automatic: Option<Coded>,
    /// The pid of the daemon that wrote this.
    pub daemon_pid: Option<u32>,
}

#[derive(Debug)]
pub enum StateError {
    /// The file exists but could not be used; `moved_to` is where it was
    /// kept aside, if that worked.
    Corrupt {
        path: PathBuf,
        why: String,
        moved_to: Option<PathBuf>,
    },
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Corrupt {
                path,
                why,
                moved_to,
            } => {
                write!(
                    f,
                    "the state file {} is unusable ({why}); starting from a fresh state",
                    path.display()
                )?;
                if let Some(m) = moved_to {
                    write!(f, " (the old file is kept as {})", m.display())?;
                }
                Ok(())
            }
            StateError::Write { path, error } => {
                write!(f, "cannot write the state file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for StateError {}

fn u64_field(m: &Map<String, Value>, k: &str) -> Option<u64> {
    m.get(k).and_then(Value::as_u64)
}

fn str_field(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k)
        .and_then(Value::as_str)
        .map(|s| s.chars().take(4096).collect())
}

/// A code under `code_key` and its words under `words_key`: both or none.
fn coded_field(m: &Map<String, Value>, code_key: &str, words_key: &str) -> Option<Coded> {
    let (code, words) = str_field(m, code_key).zip(str_field(m, words_key))?;
    Some(Coded { code, words })
}

impl State {
    /// Parses the file's text. Invalid JSON or not an object: an error;
    /// a field of the wrong type: dropped.
    pub fn parse(text: &str) -> Result<State, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let m = v.as_object().ok_or("not a JSON object")?;
        let first_seen = m
            .get("first_seen")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .take(MAX_FIRST_SEEN)
                    .collect()
            })
            .unwrap_or_default();
        let restart = m.get("restart").and_then(Value::as_object).and_then(|r| {
            Some(PendingRestart {
                version: str_field(r, "version")?,
                at: u64_field(r, "at")?,
                confirmed: r.get("confirmed").and_then(Value::as_bool).unwrap_or(false),
            })
        });
        let count = |k: &str| u64_field(m, k).map_or(0, |n| n.min(u64::from(u32::MAX)) as u32);
        Ok(State {
            last_check: u64_field(m, "last_check"),
            last_result: coded_field(m, "last_result", "last_result_detail"),
            last_error: str_field(m, "last_error")
                .zip(u64_field(m, "last_error_at"))
                .map(|(message, at)| LastError { message, at }),
            next_check: u64_field(m, "next_check"),
            consecutive_failures: count("consecutive_failures"),
            consecutive_busy: count("consecutive_busy"),
            first_seen,
            restart,
            automatic: coded_field(m, "automatic_code", "automatic_reason"),
            daemon_pid: u64_field(m, "daemon_pid").and_then(|p| u32::try_from(p).ok()),
        })
    }

    pub fn to_json(&self) -> Value {
        let result = self.last_result.as_ref();
        let error = self.last_error.as_ref();
        let automatic = self.automatic.as_ref();
        json!({
            "last_check": self.last_check,
            "last_result": result.map(|r| &r.code),
            "last_result_detail": result.map(|r| &r.words),
            "last_error": error.map(|e| &e.message),
            "last_error_at": error.map(|e| e.at),
            "next_check": self.next_check,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_busy": self.consecutive_busy,
            "first_seen": self.first_seen,
            "restart": self.restart.as_ref().map(|r| json!({
                "version": r.version,
                "at": r.at,
                "confirmed": r.confirmed,
            })),
            "automatic_code": automatic.map(|a| &a.code),
            "automatic_reason": automatic.map(|a| &a.words),
            "daemon_pid": self.daemon_pid,
        })
    }

    /// Remembers when `version` was first seen (keeping only the current
    /// candidate, so the map stays small) and returns that time.
    pub fn first_seen(&mut self, version: &str, now: u64) -> u64 {
        self.first_seen.retain(|v, _| v == version);
        *self.first_seen.entry(version.to_owned()).or_insert(now)
    }
}

/// The state file's path in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Reads the state. Missing: a fresh state. Unusable: a fresh state and
/// the reason (the file is moved aside when possible).
pub fn load(dir: &Path) -> (State, Option<StateError>) {
    let path = path(dir);
    let text = match read_bounded(&path) {
        Ok(None) => return (State::default(), None),
        Ok(Some(t)) => Ok(t),
        Err(e) => Err(e),
    };
    match text.and_then(|t| State::parse(&t)) {
        Ok(s) => (s, None),
        Err(why) => {
            let aside = dir.join(format!("{STATE_FILE}.corrupt"));
            let moved_to = std::fs::rename(&path, &aside).ok().map(|()| aside);
            (
                State::default(),
                Some(StateError::Corrupt {
                    path,
                    why,
                    moved_to,
                }),
            )
        }
    }
}

/// Reads the state without touching the file (for `status`, which may run
/// as another user than the daemon): a corrupt file is a fresh state and
/// the reason.
pub fn peek(dir: &Path) -> (State, Option<String>) {
    match read_bounded(&path(dir)).and_then(|t| t.map(|t| State::parse(&t)).transpose()) {
        Ok(s) => (s.unwrap_or_default(), None),
        Err(why) => (State::default(), Some(why)),
    }
}

fn read_bounded(path: &Path) -> Result<Option<String>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_STATE {
        return Err(format!("larger than {MAX_STATE} bytes"));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "not UTF-8".into())
}

/// Writes the state atomically (temp file, fsync, rename, fsync of the
/// directory). Creates `dir` (0755) when it is missing.
pub fn save(dir: &Path, state: &State) -> Result<(), StateError> {
    let target = path(dir);
    let err = |error| StateError::Write {
        path: target.clone(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{STATE_FILE}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        // A temp file a crash left behind is ours (same pid) or stale.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut text = serde_json::to_vec_pretty(&state.to_json())?;
        text.push(b'\n');
        f.write_all(&text)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            last_check: Some(1_700_000_000),
            last_result: Some(Coded {
                code: "updated".into(),
                words: "patchman-client: 1.7.0-1 → 1.7.1-1".into(),
            }),
            last_error: Some(LastError {
                message: "boom".into(),
                at: 1_699_999_000,
            }),
            next_check: Some(1_700_021_600),
            consecutive_failures: 2,
            consecutive_busy: 1,
            first_seen: [("1.7.1-1".to_string(), 1_699_990_000)].into(),
            restart: Some(PendingRestart {
                version: "1.7.1-1".into(),
                at: 1_700_000_001,
                confirmed: false,
            }),
            automatic: Some(Coded {
                code: "enabled".into(),
                words: "on".into(),
            }),
            daemon_pid: Some(42),
        }
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample();
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()).0, s);
        assert!(load(dir.path()).1.is_none());
        // No temp file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        // Overwriting works (rename over the old file).
        let mut s2 = s.clone();
        s2.consecutive_failures = 0;
        save(dir.path(), &s2).unwrap();
        assert_eq!(load(dir.path()).0, s2);
    }

    #[test]
    fn missing_is_fresh_without_complaint() {
        let dir = tempfile::tempdir().unwrap();
        let (s, e) = load(dir.path());
        assert_eq!(s, State::default());
        assert!(e.is_none());
        assert_eq!(peek(dir.path()), (State::default(), None));
    }

    #[test]
    fn corrupt_is_reported_kept_aside_and_replaced() {
        for garbage in [&b"{\"last_check\": 17"[..], b"[1,2]", b"\xff\xfe", b""] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(path(dir.path()), garbage).unwrap();
            assert!(peek(dir.path()).1.is_some());
            let (s, e) = load(dir.path());
            assert_eq!(s, State::default());
            let e = e.expect("reported");
            assert!(e.to_string().contains("fresh state"), "{e}");
            assert!(dir.path().join("state.json.corrupt").exists());
            save(dir.path(), &sample()).unwrap();
            assert_eq!(load(dir.path()).0, sample());
        }
    }

    /// The file's keys: part of the interface, flat, whatever the struct.
    fn sample_json() -> Value {
        json!({
            "last_check": 1_700_000_000u64,
            "last_result": "updated",
            "last_result_detail": "patchman-client: 1.7.0-1 → 1.7.1-1",
            "last_error": "boom",
            "last_error_at": 1_699_999_000u64,
            "next_check": 1_700_021_600u64,
            "consecutive_failures": 2,
            "consecutive_busy": 1,
            "first_seen": {"1.7.1-1": 1_699_990_000u64},
            "restart": {"version": "1.7.1-1", "at": 1_700_000_001u64, "confirmed": false},
            "automatic_code": "enabled",
            "automatic_reason": "on",
            "daemon_pid": 42,
        })
    }

    #[test]
    fn the_file_format_is_flat_keys() {
        assert_eq!(sample().to_json(), sample_json());
        assert_eq!(State::parse(&sample_json().to_string()), Ok(sample()));
        let fresh = State::default().to_json();
        for key in [
            "last_result",
            "last_result_detail",
            "last_error",
            "last_error_at",
        ] {
            assert_eq!(fresh[key], Value::Null, "{key}");
        }
        for key in ["automatic_code", "automatic_reason", "restart"] {
            assert_eq!(fresh[key], Value::Null, "{key}");
        }
    }

    #[test]
    fn half_a_pair_drops_the_pair() {
        // The key left out, then whether last_result, last_error and
        // automatic are still there.
        for (key, kept) in [
            ("last_result", [false, true, true]),
            ("last_result_detail", [false, true, true]),
            ("last_error", [true, false, true]),
            ("last_error_at", [true, false, true]),
            ("automatic_code", [true, true, false]),
            ("automatic_reason", [true, true, false]),
        ] {
            let mut v = sample_json();
            v.as_object_mut().unwrap().remove(key);
            let s = State::parse(&v.to_string()).unwrap();
            let got = [
                s.last_result.is_some(),
                s.last_error.is_some(),
                s.automatic.is_some(),
            ];
            assert_eq!(got, kept, "without {key:?}");
        }
    }

    #[test]
    fn wrong_types_are_dropped_not_fatal() {
        let s = State::parse(
            r#"{"last_check": "yesterday", "consecutive_failures": -1, "next_check": 5,
                "first_seen": {"1.7.1-1": 3, "x": "y"}, "restart": {"version": 1}}"#,
        )
        .unwrap();
        assert_eq!(s.last_check, None);
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.next_check, Some(5));
        assert_eq!(s.first_seen.len(), 1);
        assert_eq!(s.restart, None);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let e = save(Path::new("/proc/version/nope"), &sample()).unwrap_err();
        assert!(e.to_string().contains("cannot write"), "{e}");
    }

    #[test]
    fn only_the_current_candidate_is_remembered() {
        let mut s = State::default();
        assert_eq!(s.first_seen("1.7.1-1", 100), 100);
        assert_eq!(s.first_seen("1.7.1-1", 200), 100);
        assert_eq!(s.first_seen("1.7.2-1", 300), 300);
        assert_eq!(s.first_seen.len(), 1);
    }
}
