//! The procedures, per family. Each reads top to bottom like the vendor's
//! numbered steps.

pub mod apt;
pub mod rpm;

use std::path::{Path, PathBuf};

use patchman_shared::{
    Candidate, CheckReport, Evr, Failure, Family, Package, StatusReport, Step, UpdateReport,
};

use crate::probation::{self, RecordState, Versions};
use crate::Helper;

/// Progress callback: called as each step starts.
pub type Progress<'a> = dyn FnMut(Step) + 'a;

pub fn status(h: &Helper) -> Result<StatusReport, Failure> {
    let mut s = match h.family {
        Family::Apt => apt::status(h),
        Family::Dnf | Family::Yum => rpm::status(h),
    }?;
    let installed: Versions = [
        (Package::Client, &s.client),
        (Package::Realtime, &s.realtime),
    ]
    .into_iter()
    .filter_map(|(p, i)| Some((p, i.as_ref()?.evr.clone())))
    .collect();
    s.rollback = probation::Store::system().status(&installed);
    Ok(s)
}

/// The installed versions of ours, and whether every one is complete.
pub fn installed_versions(h: &Helper) -> Result<(Versions, bool), Failure> {
    match h.family {
        Family::Apt => apt::installed_versions(h),
        Family::Dnf | Family::Yum => rpm::installed_versions(h),
    }
}

/// A kept package file embeds exactly `package` `version`.
pub fn verify_embedded(
    h: &Helper,
    package: Package,
    version: &Evr,
    path: &Path,
) -> Result<(), Failure> {
    match h.family {
        Family::Apt => apt::verify_embedded(h, package, version, path),
        Family::Dnf | Family::Yum => rpm::verify_embedded(h, package, version, path),
    }
}

/// The rollback's one transaction to exactly `target`.
pub fn install_exact(h: &Helper, target: &Versions, files: &[PathBuf]) -> Result<(), Failure> {
    match h.family {
        Family::Apt => apt::install_exact(h, target, files),
        Family::Dnf | Family::Yum => rpm::install_exact(h, target, files),
    }
}

pub fn check(h: &Helper, progress: &mut Progress<'_>) -> Result<CheckReport, Failure> {
    match h.family {
        Family::Apt => apt::check(h, progress),
        Family::Dnf | Family::Yum => rpm::check(h, progress),
    }
}

pub fn update(h: &Helper, progress: &mut Progress<'_>) -> Result<UpdateReport, Failure> {
    // The helper's cross-process lock, shared with `--rollback-due`: the
    // keep, install and record of an update never meet a rollback.
    let store = probation::Store::system();
    let _lock = store.lock(h.config().lock_wait)?;
    if let Ok(Some(r)) = store.record() {
        if r.state == RecordState::RollingBack {
            return Err(internal(
                "a rollback is being finished (patchman-rollback.service); the next run updates",
            ));
        }
    }
    match h.family {
        Family::Apt => apt::update(h, progress),
        Family::Dnf | Family::Yum => rpm::update(h, progress),
    }
}

/// The exit codes with which a step's command may end and still be read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exits {
    /// 0 only.
    Success,
    /// These (`rpm -q` exits with the number of packages not installed).
    Among(&'static [i32]),
    /// Any: the step reads the outcome from the output.
    Any,
}

/// Runs `cmd` for `step`, the one way both families do: a timeout of a
/// command that may be killed is `Timeout`; a failed command whose output
/// names another program's lock (apt's, dpkg's, rpm's messages) is
/// `LockHeld`; an exit outside `exits` is `CommandFailed` with an excerpt.
/// A command that must never be killed (`dpkg -i`, `rpm -U`) comes back
/// with `timed_out` set for its step to report.
pub(crate) fn run(
    h: &Helper,
    step: Step,
    cmd: &crate::exec::Cmd,
    exits: Exits,
) -> Result<crate::exec::Output, Failure> {
    let out = h.programs.run(cmd).map_err(internal)?;
    if out.timed_out && cmd.on_timeout == crate::exec::OnTimeout::Kill {
        return Err(Failure::Timeout { step });
    }
    if !out.success() {
        let lock = match h.family {
            Family::Apt => apt::lock_in(&out),
            Family::Dnf | Family::Yum => rpm::lock_in(&out),
        };
        if let Some(failure) = lock {
            return Err(failure);
        }
    }
    let accepted = match exits {
        Exits::Success => out.success(),
        Exits::Among(codes) => out.code().is_some_and(|c| codes.contains(&c)),
        Exits::Any => true,
    };
    if !accepted {
        return Err(Failure::CommandFailed {
            step,
            exit_code: out.code(),
            excerpt: out.excerpt(crate::parse::MAX_EXCERPT),
        });
    }
    Ok(out)
}

/// A failure on the helper's side (I/O, spawning), for a person to read.
pub(crate) fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::Internal {
        detail: e.to_string(),
    }
}

/// A tool's output that could not be understood at `step`.
pub(crate) fn unexpected(step: Step, e: impl std::fmt::Display) -> Failure {
    Failure::UnexpectedOutput {
        step,
        detail: e.to_string(),
    }
}

/// When this helper last refreshed the repository's metadata: the rate
/// limit on refreshes. A compromised agent looping `Check` would otherwise
/// run `apt-get update` back to back (root's own `apt-get update` then
/// fails on the lists lock, measured 10 of 20) or make dnf fetch the
/// metadata fetch each time. The last attempt is also stamped in
/// [`REFRESH_STAMP`] (root's 0700 private base), so a helper that exits
/// (after an update that changed a package, or 60 s idle under socket
/// activation) does not start the interval over.
/// The file whose modification time is the last refresh attempt, and
/// whose contents name the repository.
pub const REFRESH_STAMP: &str = "last-refresh";
const MAX_STAMP_LEN: u64 = 256;

#[derive(Debug, Default)]
pub struct RefreshClock {
    /// Where the stamp lives; `None`: in memory only (unit tests).
    stamp_dir: Option<std::path::PathBuf>,
    last: std::sync::Mutex<Option<Refreshed>>,
}

#[derive(Debug)]
struct Refreshed {
    repository: String,
    /// The last refresh started: attempts count, so a failing repository
    /// is not retried on every request either.
    attempted: std::time::Instant,
    succeeded: Option<std::time::Instant>,
}

impl RefreshClock {
    /// A clock that keeps its stamp in `dir` (the helper's private base).
    pub fn persistent(dir: &std::path::Path) -> RefreshClock {
        RefreshClock {
            stamp_dir: Some(dir.to_path_buf()),
            last: std::sync::Mutex::new(None),
        }
    }

    /// The last attempt an earlier helper stamped for `repository`, if
    /// the stamp is root's own, in a root-only directory, and not in the
    /// future.
    fn read_stamp(&self, repository: &str) -> Option<std::time::Instant> {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let dir = self.stamp_dir.as_deref()?;
        crate::files::check_root_dir(dir).ok()?;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (nix::fcntl::OFlag::O_NOFOLLOW
                    | nix::fcntl::OFlag::O_NONBLOCK
                    | nix::fcntl::OFlag::O_CLOEXEC)
                    .bits(),
            )
            .open(dir.join(REFRESH_STAMP))
            .ok()?;
        let m = f.metadata().ok()?;
        if !m.is_file() || m.uid() != 0 || m.mode() & 0o022 != 0 || m.len() > MAX_STAMP_LEN {
            return None;
        }
        let mut text = String::new();
        f.by_ref()
            .take(MAX_STAMP_LEN)
            .read_to_string(&mut text)
            .ok()?;
        if text.trim_end() != repository {
            return None;
        }
        let ago = std::time::SystemTime::now()
            .duration_since(m.modified().ok()?)
            .ok()?;
        std::time::Instant::now().checked_sub(ago)
    }

    /// Stamps an attempt now; a failure only costs the persistence.
    fn write_stamp(&self, repository: &str) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let Some(dir) = self.stamp_dir.as_deref() else {
            return;
        };
        // The private base made, or checked, as for a run's directory
        // (root's, 0700, a root-only chain); the run directory itself goes
        // at once.
        if crate::files::PrivateDir::create(dir).is_err() {
            return;
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC).bits())
            .open(dir.join(REFRESH_STAMP))
            .and_then(|mut f| writeln!(f, "{repository}"));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot stamp the metadata refresh; the rate limit is kept in memory only");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Refreshed>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this request refreshes `repository`'s metadata: none yet, a
    /// different repository (a reload), or the last attempt at least
    /// `interval` ago. If so, the attempt is recorded now.
    pub fn begin(&self, repository: &str, interval: std::time::Duration) -> bool {
        let mut last = self.lock();
        let now = std::time::Instant::now();
        if last.is_none() {
            *last = self.read_stamp(repository).map(|attempted| Refreshed {
                repository: repository.to_string(),
                attempted,
                succeeded: None,
            });
        }
        let due = match last.as_ref() {
            Some(r) if r.repository == repository => now.duration_since(r.attempted) >= interval,
            _ => true,
        };
        if due {
            let succeeded = last
                .as_ref()
                .filter(|r| r.repository == repository)
                .and_then(|r| r.succeeded);
            *last = Some(Refreshed {
                repository: repository.to_string(),
                attempted: now,
                succeeded,
            });
            self.write_stamp(repository);
        }
        due
    }

    /// The refresh begun for `repository` succeeded.
    pub fn succeeded(&self, repository: &str) {
        if let Some(r) = self.lock().as_mut().filter(|r| r.repository == repository) {
            r.succeeded = Some(r.attempted);
        }
    }

    /// How long ago `repository` was last refreshed successfully.
    pub fn age(&self, repository: &str) -> Option<std::time::Duration> {
        self.lock()
            .as_ref()
            .filter(|r| r.repository == repository)
            .and_then(|r| r.succeeded)
            .map(|t| t.elapsed())
    }
}

/// The `Check` answer for `packages`, saying whether it refreshed.
pub(crate) fn check_report(h: &Helper, packages: Vec<Candidate>, refreshed: bool) -> CheckReport {
    let age = h.refresh.age(h.config().repository.as_str());
    CheckReport {
        packages,
        cached: !refreshed,
        metadata_age_secs: if refreshed {
            Some(0)
        } else {
            age.map(|a| a.as_secs())
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refreshes_at_most_once_per_interval() {
        let c = RefreshClock::default();
        assert!(c.begin("patchman", Duration::from_secs(60)));
        assert_eq!(c.age("patchman"), None, "not succeeded yet");
        c.succeeded("patchman");
        assert!(c.age("patchman").is_some());
        for _ in 0..20 {
            assert!(!c.begin("patchman", Duration::from_secs(60)));
        }
        assert!(c.begin("other", Duration::from_secs(60)), "a reload");
        assert_eq!(c.age("other"), None);
        assert!(c.begin("patchman", Duration::ZERO));
        assert!(c.begin("patchman", Duration::ZERO), "0s: every time");
    }

    #[test]
    fn a_new_helper_keeps_the_interval_of_the_last() {
        use std::os::unix::fs::PermissionsExt;
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        // Not under /tmp: a world-writable directory in the chain is
        // (rightly) not root-only.
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        let dir = tempfile::tempdir_in(target).unwrap();
        let base = dir.path().join("base");
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            crate::files::check_root_dir(&base).is_ok(),
            "a root-only chain"
        );
        let first = RefreshClock::persistent(&base);
        assert!(first.begin("patchman", Duration::from_secs(60)));
        let second = RefreshClock::persistent(&base);
        assert!(
            !second.begin("patchman", Duration::from_secs(60)),
            "within the interval"
        );
        assert_eq!(second.age("patchman"), None, "its success is not known");
        let third = RefreshClock::persistent(&base);
        assert!(
            third.begin("other", Duration::from_secs(60)),
            "another repository"
        );
        assert!(RefreshClock::persistent(&base).begin("patchman", Duration::ZERO));
        // A stamp someone else could have written is not believed.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(RefreshClock::persistent(&base).begin("patchman", Duration::from_secs(60)));
    }
}
