//! The procedures, per family. Each reads top to bottom like the vendor's
//! numbered steps.

pub mod apt;
pub mod rpm;

use patchman_shared::{Candidate, CheckReport, Failure, Family, StatusReport, Step, UpdateReport};

use crate::Helper;

/// Progress callback: called as each step starts.
pub type Progress<'a> = dyn FnMut(Step) + 'a;

pub fn status(h: &Helper) -> Result<StatusReport, Failure> {
    match h.family {
        Family::Apt => apt::status(h),
        Family::Dnf | Family::Yum => rpm::status(h),
    }
}

pub fn check(h: &Helper, progress: &mut Progress<'_>) -> Result<CheckReport, Failure> {
    match h.family {
        Family::Apt => apt::check(h, progress),
        Family::Dnf | Family::Yum => rpm::check(h, progress),
    }
}

pub fn update(h: &Helper, progress: &mut Progress<'_>) -> Result<UpdateReport, Failure> {
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
/// metadata each time. Kept in memory: a helper that exits (after an
/// update that changed a package, or 60 s idle under socket activation)
/// refreshes once more on its next start.
#[derive(Debug, Default)]
pub struct RefreshClock {
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
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Refreshed>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this request refreshes `repository`'s metadata: none yet, a
    /// different repository (a reload), or the last attempt at least
    /// `interval` ago. If so, the attempt is recorded now.
    pub fn begin(&self, repository: &str, interval: std::time::Duration) -> bool {
        let mut last = self.lock();
        let now = std::time::Instant::now();
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
}
