//! Probation, confirmation and rollback (docs/rollback.md). Beside
//! [`crate::dispatch`]'s table, this is the other table a reviewer reads:
//! when the helper may downgrade, and to what.
//!
//! | record | state        | deadline   | installed            | event          | action |
//! |--------|--------------|------------|----------------------|----------------|--------|
//! | none   | —            | —          | —                    | `Confirm`      | `NothingPending` (typed no-op) |
//! | none   | —            | —          | —                    | rollback check | nothing |
//! | yes    | pending      | not passed | = to, complete       | `Confirm`      | `Confirmed`: record removed |
//! | yes    | pending      | not passed | ≠ to, or incomplete  | `Confirm`      | `VersionsDiffer`, record kept |
//! | yes    | pending      | passed     | any                  | `Confirm`      | `PastDeadline`, record kept |
//! | yes    | rolling_back | any        | any                  | `Confirm`      | `PastDeadline` |
//! | yes    | pending      | not passed | any                  | rollback check | nothing yet |
//! | yes    | pending      | passed     | = to                 | rollback check | `rolling_back`, then roll back |
//! | yes    | pending      | passed     | ≠ to                 | rollback check | record dropped (someone else changed the packages): no downgrade |
//! | yes    | rolling_back | any        | any                  | rollback check | finish the same rollback |
//!
//! The rollback check runs in `patchman-helper --rollback-due` (the rescue
//! copy of the previous helper, started by `patchman-rollback.timer`) and
//! when the helper starts. Nothing the agent sends reaches it: `Confirm`
//! carries no data and can only remove a pending record.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use patchman_shared::{
    ConfirmOutcome, Evr, Failure, Package, Probation, RollbackEvent, RollbackStatus,
};
use serde::{Deserialize, Serialize};

use crate::files::{self, FileError, PrivateDir};
use crate::{family, lock, sha256, Helper};

/// The helper's own state (root, 0700).
pub const STATE_DIR: &str = "/var/lib/patchman-helper";
const RECORD: &str = "probation";
const HISTORY: &str = "history";
const MANIFEST: &str = "manifest.json";
const LOCK: &str = "lock";
/// Left after a rollback for the unit (see patchman-rollback.service).
const ROLLED_BACK_MARKER: &str = "rolled-back";
/// Where the previous helper is kept to execute a rollback.
pub const RESCUE_BINARY: &str = "/var/lib/patchman-helper/rescue/patchman-helper";
/// Every state file is small; a larger one is refused, not read.
const MAX_STATE_FILE: u64 = 64 * 1024;
/// Quarantined versions remembered (the oldest are forgotten).
const MAX_QUARANTINED: usize = 32;

/// Installed (or recorded) versions of our packages.
pub type Versions = BTreeMap<Package, Evr>;

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One verified package file in `kept/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptFile {
    pub package: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
}

impl KeptFile {
    fn is(&self, p: Package, v: &Evr) -> bool {
        self.package == p.name() && self.version == v.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Pending,
    RollingBack,
}

/// The pending probation: written after a changing update, before the
/// answer; removed by `Confirm` or after the rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub from: BTreeMap<String, String>,
    pub to: BTreeMap<String, String>,
    /// Unix seconds (wall clock: it must survive a reboot).
    pub deadline: u64,
    /// The way back: one file per package of `from`.
    pub kept: Vec<KeptFile>,
    pub state: RecordState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub from: BTreeMap<String, String>,
    pub to: BTreeMap<String, String>,
    pub at: u64,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default)]
    pub last: Option<Event>,
    #[serde(default)]
    pub quarantined: Vec<String>,
    /// Why the last changing update left no way back (None: it did).
    #[serde(default)]
    pub unavailable: Option<String>,
}

pub fn to_map(v: &Versions) -> BTreeMap<String, String> {
    v.iter()
        .map(|(p, e)| (p.name().to_string(), e.to_string()))
        .collect()
}

/// The versions of a record, each package known and each version valid.
pub fn from_map(m: &BTreeMap<String, String>) -> Result<Versions, String> {
    m.iter()
        .map(|(p, v)| {
            let package = Package::from_name(p).ok_or_else(|| format!("unknown package {p:?}"))?;
            let evr = Evr::parse(v).map_err(|e| format!("{p} {v:?}: {e}"))?;
            Ok((package, evr))
        })
        .collect()
}

fn pairs(m: &BTreeMap<String, String>) -> Vec<(Package, Evr)> {
    from_map(m).unwrap_or_default().into_iter().collect()
}

fn valid_kept(k: &KeptFile) -> bool {
    let name_ok = !k.file.is_empty()
        && !k.file.starts_with('.')
        && k.file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~%-".contains(&b));
    name_ok && k.sha256.len() == 64 && k.sha256.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Record {
    /// Refuses a record that names anything but our packages, a version
    /// that is not one, or a kept file that is not a plain name.
    pub fn validate(&self) -> Result<(Versions, Versions), String> {
        let from = from_map(&self.from)?;
        let to = from_map(&self.to)?;
        if from.is_empty() || to.is_empty() {
            return Err("empty version set".into());
        }
        for (p, v) in &from {
            let n = self.kept.iter().filter(|k| k.is(*p, v)).count();
            if n != 1 {
                return Err(format!("{n} kept files for {p} {v}"));
            }
        }
        if self.kept.len() != from.len() || !self.kept.iter().all(valid_kept) {
            return Err("kept files do not match the from-versions".into());
        }
        Ok((from, to))
    }
}

// ------------------------------------------------------------ the rules

/// What the rollback check decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// No record.
    Nothing,
    /// Pending, the deadline not passed.
    NotYet,
    /// Roll back to the record's from-versions (first or again).
    RollBack,
    /// The packages are no longer what the record is for: drop it.
    Abandon,
}

/// The rollback rows of the table. Pure.
pub fn due(record: Option<&Record>, installed: &Versions, now: u64) -> Due {
    let Some(r) = record else {
        return Due::Nothing;
    };
    match r.state {
        RecordState::RollingBack => Due::RollBack,
        RecordState::Pending if now < r.deadline => Due::NotYet,
        RecordState::Pending => match from_map(&r.to) {
            Ok(to) if &to == installed => Due::RollBack,
            _ => Due::Abandon,
        },
    }
}

/// The `Confirm` rows of the table. Pure.
pub fn confirm_outcome(
    record: Option<&Record>,
    installed: &Versions,
    complete: bool,
    now: u64,
) -> ConfirmOutcome {
    let Some(r) = record else {
        return ConfirmOutcome::NothingPending;
    };
    if r.state == RecordState::RollingBack || now >= r.deadline {
        return ConfirmOutcome::PastDeadline;
    }
    match from_map(&r.to) {
        Ok(to) if &to == installed && complete => ConfirmOutcome::Confirmed,
        _ => ConfirmOutcome::VersionsDiffer,
    }
}

// ------------------------------------------------------------ the store

#[derive(Debug)]
pub enum StoreError {
    File(FileError),
    Invalid { file: PathBuf, why: String },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::File(e) => write!(f, "{e}"),
            StoreError::Invalid { file, why } => {
                write!(f, "{} is not usable: {why}", file.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl From<FileError> for StoreError {
    fn from(e: FileError) -> StoreError {
        StoreError::File(e)
    }
}

fn failure(e: impl fmt::Display) -> Failure {
    family::internal(format!("rollback state: {e}"))
}

/// `/var/lib/patchman-helper` and what is in it.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn system() -> Store {
        Store::new(Path::new(STATE_DIR))
    }

    pub fn kept_dir(&self) -> PathBuf {
        self.dir.join("kept")
    }

    fn rescue_dir(&self) -> PathBuf {
        self.dir.join("rescue")
    }

    pub fn record_path(&self) -> PathBuf {
        self.dir.join(RECORD)
    }

    fn ensure(&self) -> Result<(), FileError> {
        files::ensure_private_dir(&self.dir)?;
        files::ensure_private_dir(&self.kept_dir())?;
        files::ensure_private_dir(&self.rescue_dir())
    }

    /// The cross-process update lock, shared by the helper and
    /// `--rollback-due`.
    pub fn lock(&self, wait: Duration) -> Result<lock::HeldLock, Failure> {
        self.ensure().map_err(failure)?;
        let path = self.dir.join(LOCK);
        lock::acquire(&path, wait).map_err(|e| match e {
            lock::LockError::Held { pid } => Failure::LockHeld { pid },
            lock::LockError::Open(e) => failure(format!("opening {}: {e}", path.display())),
        })
    }

    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, StoreError> {
        let Some(data) = files::read_small(path, MAX_STATE_FILE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| StoreError::Invalid {
                file: path.to_path_buf(),
                why: e.to_string(),
            })
    }

    fn write_json<T: Serialize>(
        &self,
        dir: &Path,
        name: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.ensure()?;
        let data = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Invalid {
            file: dir.join(name),
            why: e.to_string(),
        })?;
        files::replace_atomically(dir, name, 0o600, |f| std::io::Write::write_all(f, &data))?;
        Ok(())
    }

    /// The record, validated; `None` when there is none.
    pub fn record(&self) -> Result<Option<Record>, StoreError> {
        let path = self.record_path();
        let Some(r) = self.read_json::<Record>(&path)? else {
            return Ok(None);
        };
        r.validate()
            .map_err(|why| StoreError::Invalid { file: path, why })?;
        Ok(Some(r))
    }

    pub fn save_record(&self, r: &Record) -> Result<(), StoreError> {
        self.write_json(&self.dir, RECORD, r)
    }

    pub fn remove_record(&self) -> Result<(), StoreError> {
        match std::fs::remove_file(self.record_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::File(FileError::Io {
                    what: "remove",
                    path: self.record_path(),
                    error: e,
                }))
            }
            _ => Ok(()),
        }
    }

    /// The history; an unreadable one is reported and read as empty
    /// (it holds no decision, only what `Status` shows).
    pub fn history(&self) -> History {
        match self.read_json(&self.dir.join(HISTORY)) {
            Ok(h) => h.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "rollback history unreadable; starting a new one");
                History::default()
            }
        }
    }

    pub fn save_history(&self, h: &History) -> Result<(), StoreError> {
        self.write_json(&self.dir, HISTORY, h)
    }

    fn manifest(&self) -> Vec<KeptFile> {
        match self.read_json::<Vec<KeptFile>>(&self.kept_dir().join(MANIFEST)) {
            Ok(m) => m
                .unwrap_or_default()
                .into_iter()
                .filter(valid_kept)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "kept-file manifest unreadable; nothing is reused");
                Vec::new()
            }
        }
    }

    /// A kept file of exactly `p` `v` whose content still has the
    /// recorded SHA-256, if there is one.
    fn find_kept(&self, p: Package, v: &Evr, private: &PrivateDir) -> Option<KeptFile> {
        let k = self.manifest().into_iter().find(|k| k.is(p, v))?;
        let copy = files::copy_verified(&self.kept_dir(), &k.file, private).ok()?;
        let _ = std::fs::remove_file(&copy.path);
        (sha256::hex(&copy.sha256) == k.sha256).then_some(k)
    }

    /// Copies a verified file into `kept/` under its own name.
    fn keep(&self, p: Package, v: &Evr, path: &Path) -> Result<KeptFile, StoreError> {
        self.ensure()?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let digest =
            files::copy_atomically(files::open_nofollow(path)?, &self.kept_dir(), &file, 0o600)?;
        let k = KeptFile {
            package: p.name().to_string(),
            version: v.to_string(),
            file,
            sha256: sha256::hex(&digest),
        };
        if !valid_kept(&k) {
            return Err(StoreError::Invalid {
                file: path.to_path_buf(),
                why: "not a plain package file name".into(),
            });
        }
        Ok(k)
    }

    /// Writes the manifest as exactly `keep` and deletes every other file
    /// of `kept/`: at most the way back and the installed set remain.
    fn prune(&self, keep: &[KeptFile]) -> Result<(), StoreError> {
        let mut unique: Vec<KeptFile> = Vec::new();
        for k in keep {
            if !unique.contains(k) {
                unique.push(k.clone());
            }
        }
        self.write_json(&self.kept_dir(), MANIFEST, &unique)?;
        let dir = self.kept_dir();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name != MANIFEST && !unique.iter().any(|k| k.file == name) {
                    let _ = std::fs::remove_file(dir.join(&name));
                }
            }
        }
        Ok(())
    }

    /// Copies the running helper's own image (the release before the
    /// update) to the rescue path.
    fn save_rescue(&self) -> Result<(), StoreError> {
        self.ensure()?;
        // The kernel's link to the running image: the old release's inode,
        // whatever the path names after the update.
        let exe = Path::new("/proc/self/exe");
        let running = std::fs::File::open(exe).map_err(|error| FileError::Io {
            what: "open",
            path: exe.to_path_buf(),
            error,
        })?;
        files::copy_atomically(running, &self.rescue_dir(), "patchman-helper", 0o700)?;
        Ok(())
    }

    /// What `Status` reports.
    pub fn status(&self, installed: &Versions) -> RollbackStatus {
        let history = self.history();
        let (probation, record_problem) = match self.record() {
            Ok(Some(r)) => (
                Some(Probation {
                    versions: pairs(&r.to),
                    deadline: r.deadline,
                }),
                None,
            ),
            Ok(None) => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let (available, reason) = match (&probation, record_problem, &history.unavailable) {
            (_, Some(problem), _) => (false, problem),
            (Some(p), None, _) => (
                true,
                format!(
                    "on probation: rolled back unless confirmed by {} (Unix time)",
                    p.deadline
                ),
            ),
            (None, None, Some(why)) => (false, why.clone()),
            (None, None, None) => {
                let kept = self.manifest();
                let all = !installed.is_empty()
                    && installed
                        .iter()
                        .all(|(p, v)| kept.iter().any(|k| k.is(*p, v)));
                if all {
                    (
                        true,
                        "a verified copy of the installed packages is kept".into(),
                    )
                } else {
                    (
                        false,
                        "no update has run through the helper yet: the way back is kept at the next update"
                            .into(),
                    )
                }
            }
        };
        RollbackStatus {
            probation,
            available,
            reason,
            last: history.last.as_ref().map(|e| RollbackEvent {
                from: pairs(&e.from),
                to: pairs(&e.to),
                at: e.at,
                why: e.why.clone(),
            }),
            quarantined: history
                .quarantined
                .iter()
                .filter_map(|v| Evr::parse(v).ok())
                .collect(),
        }
    }
}

// ----------------------------------------------- hooks for the families

/// The way back for an update about to install, or why there is none.
#[derive(Debug)]
pub struct WayBack {
    from: Versions,
    result: Result<Vec<KeptFile>, String>,
}

/// A family's way to fetch verified packages of exactly the installed
/// versions (pinned download, verified as a new package except that the
/// version must equal the installed one): `(package, version, file)`.
pub type FetchInstalled<'a> = dyn FnMut(&[(Package, Evr)]) -> Result<Fetched, Failure> + 'a;

/// Verified package files: `(package, version, file)`.
pub type Fetched = Vec<(Package, Evr, PathBuf)>;

/// Before a changing update installs: the rescue copy of this helper and a
/// verified package of each installed version (kept, else fetched). Never
/// fails the update: a problem becomes "rollback unavailable".
pub fn prepare(
    h: &Helper,
    installed: &Versions,
    private: &PrivateDir,
    fetch: &mut FetchInstalled<'_>,
) -> WayBack {
    let store = Store::system();
    let result = prepare_in(h, &store, installed, private, fetch);
    match &result {
        Ok(k) => tracing::info!(
            kept = k.len(),
            "rollback: the way back to the installed versions is kept"
        ),
        Err(why) => tracing::warn!(reason = %why, "rollback unavailable for this update"),
    }
    WayBack {
        from: installed.clone(),
        result,
    }
}

fn prepare_in(
    h: &Helper,
    store: &Store,
    installed: &Versions,
    private: &PrivateDir,
    fetch: &mut FetchInstalled<'_>,
) -> Result<Vec<KeptFile>, String> {
    if h.config().probation.is_zero() {
        return Err("[updates] probation = 0 turns rollback off".into());
    }
    store
        .save_rescue()
        .map_err(|e| format!("cannot keep the rescue copy of the helper: {e}"))?;
    // An update during a pending probation keeps that probation's way back
    // (the last version not in doubt), not the unconfirmed one between.
    if let Ok(Some(r)) = store.record() {
        if from_map(&r.to).is_ok_and(|to| &to == installed) && r.state == RecordState::Pending {
            return Ok(r.kept);
        }
    }
    let mut kept = Vec::new();
    let mut missing = Vec::new();
    for (p, v) in installed {
        match store.find_kept(*p, v, private) {
            Some(k) => kept.push(k),
            None => missing.push((*p, v.clone())),
        }
    }
    if !missing.is_empty() {
        let fetched = fetch(&missing).map_err(|f| {
            format!("the installed version could not be fetched from the repository: {f}")
        })?;
        for (p, v, path) in fetched {
            kept.push(store.keep(p, &v, &path).map_err(|e| e.to_string())?);
        }
    }
    Ok(kept)
}

/// After a changing update installed `installed_files` (`to`): keeps them
/// as the next way back, prunes `kept/`, and writes the probation record.
pub fn begin(
    h: &Helper,
    way_back: WayBack,
    to: &Versions,
    installed_files: &[(Package, Evr, PathBuf)],
) {
    let store = Store::system();
    let mut history = store.history();
    let mut now_kept = Vec::new();
    for (p, v, path) in installed_files {
        match store.keep(*p, v, path) {
            Ok(k) => now_kept.push(k),
            Err(e) => tracing::warn!(error = %e, "cannot keep the installed package file"),
        }
    }
    let from = way_back.from.clone();
    match way_back.result {
        Ok(kept) => {
            let record = Record {
                from: to_map(&from_of(&kept, &from)),
                to: to_map(to),
                deadline: now_unix().saturating_add(h.config().probation.as_secs()),
                kept: kept.clone(),
                state: RecordState::Pending,
            };
            let all: Vec<KeptFile> = kept.iter().chain(&now_kept).cloned().collect();
            let written = store.prune(&all).and_then(|()| store.save_record(&record));
            match written {
                Ok(()) => {
                    history.unavailable = None;
                    tracing::info!(
                        from = ?record.from,
                        to = ?record.to,
                        deadline = record.deadline,
                        "probation started: rolled back unless the new agent confirms by the deadline"
                    );
                }
                Err(e) => {
                    history.unavailable =
                        Some(format!("the probation record was not written: {e}"));
                    tracing::error!(error = %e, "probation record not written: no rollback for this update");
                }
            }
        }
        Err(why) => {
            let _ = store.remove_record();
            let _ = store.prune(&now_kept);
            history.unavailable = Some(why);
        }
    }
    if let Err(e) = store.save_history(&history) {
        tracing::warn!(error = %e, "rollback history not saved");
    }
}

/// The versions the kept files are of (the pending record's own
/// from-versions when the way back was carried over from it).
fn from_of(kept: &[KeptFile], installed: &Versions) -> Versions {
    let m: BTreeMap<String, String> = kept
        .iter()
        .map(|k| (k.package.clone(), k.version.clone()))
        .collect();
    from_map(&m).unwrap_or_else(|_| installed.clone())
}

// -------------------------------------------------------- the requests

/// `Confirm`: ends a pending probation, or says why not. Changes nothing
/// else, ever.
pub fn confirm(h: &Helper) -> Result<ConfirmOutcome, Failure> {
    let store = Store::system();
    let _lock = store.lock(h.config().lock_wait)?;
    let record = store.record().map_err(failure)?;
    let (installed, complete) = family::installed_versions(h)?;
    let outcome = confirm_outcome(record.as_ref(), &installed, complete, now_unix());
    if outcome == ConfirmOutcome::Confirmed {
        store.remove_record().map_err(failure)?;
        tracing::info!(versions = ?to_map(&installed), "probation ended: the new version is confirmed");
    } else {
        tracing::info!(outcome = %outcome, "confirm changed nothing");
    }
    Ok(outcome)
}

/// What a rollback check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Nothing,
    NotYet { deadline: u64 },
    Abandoned,
    RolledBack { from: Versions, to: Versions },
}

/// The rollback check (`--rollback-due`, and at the helper's start).
pub fn run_due(h: &Helper) -> Result<Checked, Failure> {
    let store = Store::system();
    if !store.record_path().exists() {
        return Ok(Checked::Nothing);
    }
    let _lock = store.lock(h.config().lock_wait)?;
    let Some(mut record) = store.record().map_err(failure)? else {
        return Ok(Checked::Nothing);
    };
    let (installed, _) = family::installed_versions(h)?;
    match due(Some(&record), &installed, now_unix()) {
        Due::Nothing => Ok(Checked::Nothing),
        Due::NotYet => Ok(Checked::NotYet {
            deadline: record.deadline,
        }),
        Due::Abandon => {
            tracing::warn!(
                to = ?record.to,
                installed = ?to_map(&installed),
                "probation dropped: the installed packages are no longer the ones on probation; nothing is downgraded"
            );
            store.remove_record().map_err(failure)?;
            Ok(Checked::Abandoned)
        }
        Due::RollBack => {
            let (from, to) = record.validate().map_err(failure)?;
            if record.state == RecordState::Pending {
                record.state = RecordState::RollingBack;
                store.save_record(&record).map_err(failure)?;
                tracing::warn!(from = ?record.to, to = ?record.from, "probation deadline passed without Confirm: rolling back");
            } else {
                tracing::warn!(from = ?record.to, to = ?record.from, "finishing an interrupted rollback");
            }
            roll_back(h, &store, &record, &from)?;
            let mut history = store.history();
            history.last = Some(Event {
                from: record.to.clone(),
                to: record.from.clone(),
                at: now_unix(),
                why: "no Confirm from the new agent before the probation deadline".into(),
            });
            if let Some(v) = to.get(&Package::Client) {
                let v = v.to_string();
                history.quarantined.retain(|q| q != &v);
                history.quarantined.push(v);
                let excess = history.quarantined.len().saturating_sub(MAX_QUARANTINED);
                history.quarantined.drain(..excess);
            }
            history.unavailable = None;
            store.save_history(&history).map_err(failure)?;
            store.remove_record().map_err(failure)?;
            // For patchman-rollback.service's ExecStartPost=: reset and
            // restart the units the broken release may have failed.
            if let Err(e) =
                files::replace_atomically(&store.dir, ROLLED_BACK_MARKER, 0o600, |_| Ok(()))
            {
                tracing::warn!(error = %e, "cannot leave the rolled-back marker");
            }
            tracing::warn!(from = ?record.to, to = ?record.from, "rolled back; the version rolled back from is quarantined");
            Ok(Checked::RolledBack { from: to, to: from })
        }
    }
}

/// The kept files verified again (SHA-256 recorded at keep time, embedded
/// name and version), then one install of exactly those versions.
fn roll_back(h: &Helper, store: &Store, record: &Record, target: &Versions) -> Result<(), Failure> {
    let private = PrivateDir::create(Path::new(files::PRIVATE_BASE)).map_err(family::internal)?;
    let mut files_to_install = Vec::new();
    for k in &record.kept {
        let copy = files::copy_verified(&store.kept_dir(), &k.file, &private)
            .map_err(|e| failure(format!("kept file {}: {e}", k.file)))?;
        if sha256::hex(&copy.sha256) != k.sha256 {
            return Err(failure(format!(
                "kept file {} changed since it was verified",
                k.file
            )));
        }
        let package = Package::from_name(&k.package).ok_or_else(|| failure("unknown package"))?;
        let version = Evr::parse(&k.version).map_err(failure)?;
        family::verify_embedded(h, package, &version, &copy.path)?;
        files_to_install.push(copy.path);
    }
    family::install_exact(h, target, &files_to_install)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(Package, &str)]) -> Versions {
        pairs
            .iter()
            .map(|(p, s)| (*p, Evr::parse(s).unwrap()))
            .collect()
    }

    fn record(state: RecordState, deadline: u64) -> Record {
        let from = v(&[(Package::Client, "1.7.0-1")]);
        Record {
            from: to_map(&from),
            to: to_map(&v(&[(Package::Client, "1.7.1-1")])),
            deadline,
            kept: vec![KeptFile {
                package: "patchman-client".into(),
                version: "1.7.0-1".into(),
                file: "patchman-client_1.7.0-1_amd64.deb".into(),
                sha256: "a".repeat(64),
            }],
            state,
        }
    }

    #[test]
    fn the_rollback_rows_of_the_table() {
        use RecordState::*;
        let new = v(&[(Package::Client, "1.7.1-1")]);
        let other = v(&[(Package::Client, "1.7.2-1")]);
        let cases = [
            (None, &new, 50, Due::Nothing),
            (Some(record(Pending, 100)), &new, 50, Due::NotYet),
            (Some(record(Pending, 100)), &new, 100, Due::RollBack),
            (Some(record(Pending, 100)), &other, 150, Due::Abandon),
            (Some(record(RollingBack, 100)), &other, 50, Due::RollBack),
            (Some(record(RollingBack, 100)), &new, 150, Due::RollBack),
        ];
        for (r, installed, now, want) in cases {
            assert_eq!(due(r.as_ref(), installed, now), want, "{r:?} {now}");
        }
    }

    #[test]
    fn the_confirm_rows_of_the_table() {
        use ConfirmOutcome::*;
        use RecordState::*;
        let new = v(&[(Package::Client, "1.7.1-1")]);
        let old = v(&[(Package::Client, "1.7.0-1")]);
        let cases = [
            (None, &new, true, 50, NothingPending),
            (Some(record(Pending, 100)), &new, true, 50, Confirmed),
            (Some(record(Pending, 100)), &new, false, 50, VersionsDiffer),
            (Some(record(Pending, 100)), &old, true, 50, VersionsDiffer),
            (Some(record(Pending, 100)), &new, true, 100, PastDeadline),
            (Some(record(RollingBack, 100)), &new, true, 50, PastDeadline),
        ];
        for (r, installed, complete, now, want) in cases {
            assert_eq!(
                confirm_outcome(r.as_ref(), installed, complete, now),
                want,
                "{r:?} {now}"
            );
        }
    }

    #[test]
    fn a_record_naming_anything_else_is_refused() {
        assert!(record(RecordState::Pending, 1).validate().is_ok());
        let mut r = record(RecordState::Pending, 1);
        r.from.insert("bash".into(), "5.0".into());
        assert!(r.validate().is_err(), "another package");
        let mut r = record(RecordState::Pending, 1);
        r.kept[0].file = "../../etc/shadow".into();
        assert!(r.validate().is_err(), "a path");
        let mut r = record(RecordState::Pending, 1);
        r.kept[0].version = "1.6.0-1".into();
        assert!(r.validate().is_err(), "a file of another version");
        let mut r = record(RecordState::Pending, 1);
        r.to.insert("patchman-client".into(), "-o".into());
        assert!(r.validate().is_err(), "not a version");
    }

    #[test]
    fn state_files_round_trip_atomically_and_bounded() {
        let dir = tempfile::Builder::new()
            .prefix("probation")
            .tempdir_in("/run")
            .unwrap();
        let store = Store::new(&dir.path().join("state"));
        assert_eq!(store.record().unwrap(), None);
        let r = record(RecordState::Pending, 42);
        store.save_record(&r).unwrap();
        assert_eq!(store.record().unwrap(), Some(r));
        store.remove_record().unwrap();
        store.remove_record().unwrap();
        assert_eq!(store.record().unwrap(), None);
        std::fs::write(store.record_path(), vec![b' '; 70_000]).unwrap();
        assert!(store.record().is_err(), "oversized");
    }
}
