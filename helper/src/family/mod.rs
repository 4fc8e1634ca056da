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

/// Whether the install step (`dpkg -i`, `rpm -U`) may put an older version
/// in place: never in an update, only in the rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Downgrade {
    /// Every update: dpkg's `--refuse-downgrade`; rpm refuses downgrades
    /// itself.
    Refuse,
    /// Only the rollback to the helper's own record (issue 12): rpm's
    /// `--oldpackage`.
    RollBack,
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

/// A command failed at `step`: the error lines its parser classified, else
/// the end of its output.
pub(crate) fn command_failed(step: Step, out: &crate::exec::Output, excerpt: String) -> Failure {
    Failure::CommandFailed {
        step,
        exit_code: out.code(),
        excerpt: if excerpt.is_empty() {
            out.excerpt(crate::parse::MAX_EXCERPT)
        } else {
            excerpt
        },
    }
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
    let out = whole(step, cmd, out)?;
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

/// The output of a command that may be killed, refused unless it ran to
/// its end and was read whole: a timeout is `Timeout`, and output cut at
/// the capture cap is `UnexpectedOutput`, never parsed (the plan, the
/// candidate list, the signature verdict are decided on what is read, and
/// what was cut off could be the line that refuses). A command that must
/// never be killed (`dpkg -i`, `rpm -U`) has run by then: its output is
/// passed on, and its step confirms the result by querying.
fn whole(
    step: Step,
    cmd: &crate::exec::Cmd,
    out: crate::exec::Output,
) -> Result<crate::exec::Output, Failure> {
    if cmd.on_timeout != crate::exec::OnTimeout::Kill {
        return Ok(out);
    }
    if out.timed_out {
        return Err(Failure::Timeout { step });
    }
    if out.truncated {
        return Err(unexpected(
            step,
            format_args!(
                "{} printed more than the {} KiB the helper reads; not read",
                cmd.tool.name(),
                cmd.output_cap / 1024
            ),
        ));
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
/// metadata each time. The interval counts from the END of the last
/// attempt, and doubles after each failed or killed one (capped at
/// [`MAX_BACKOFF`]): a repository server that trickles one byte every few
/// seconds makes every refresh run to its kill time, and counting from the
/// start let the next `Check` begin another at once, so apt's lists lock
/// (and dnf's metadata lock) stayed held nearly all the time.
/// The last attempt is also stamped in [`REFRESH_STAMP`] (root's 0700
/// private base), so a helper that exits (after an update that changed a
/// package, or 60 s idle under socket activation) does not start the
/// interval over.
/// The file whose modification time is the end of the last refresh
/// attempt, and whose contents name the repository and the failures since
/// the last success.
pub const REFRESH_STAMP: &str = "last-refresh";
const MAX_STAMP_LEN: u64 = 256;
/// The longest wait the back-off after failed refreshes reaches (unless
/// `refresh_interval` itself is longer).
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Default)]
pub struct RefreshClock {
    /// Where the stamp lives; `None`: in memory only (unit tests).
    stamp_dir: Option<std::path::PathBuf>,
    last: std::sync::Mutex<Option<Refreshed>>,
}

#[derive(Debug)]
struct Refreshed {
    repository: String,
    /// When the last attempt ended; `None` while one runs (no second
    /// begins meanwhile).
    ended: Option<std::time::Instant>,
    /// Failed or killed attempts since the last success: the back-off.
    failures: u32,
    succeeded: Option<std::time::Instant>,
}

impl Refreshed {
    /// When the next attempt is due, at the earliest.
    fn next_due(&self, interval: std::time::Duration) -> Option<std::time::Instant> {
        let ended = self.ended?;
        Some(ended + backoff(interval, self.failures))
    }
}

/// The wait after an attempt: `interval`, doubled per failure since the
/// last success, at most [`MAX_BACKOFF`] (or `interval` if longer).
pub fn backoff(interval: std::time::Duration, failures: u32) -> std::time::Duration {
    let cap = MAX_BACKOFF.max(interval);
    interval
        .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap)
}

/// A refresh that [`RefreshClock::begin`] let start. Dropped without
/// [`RefreshAttempt::succeeded`] (an error, a timeout, a panic) it counts
/// as failed: the end is stamped and the back-off grows.
#[derive(Debug)]
pub struct RefreshAttempt<'a> {
    clock: &'a RefreshClock,
    repository: String,
    ok: bool,
}

impl RefreshAttempt<'_> {
    /// The refresh came through.
    pub fn succeeded(mut self) {
        self.ok = true;
    }
}

impl Drop for RefreshAttempt<'_> {
    fn drop(&mut self) {
        self.clock.end(&self.repository, self.ok);
    }
}

/// Why a request that was not due to refresh has no metadata to answer
/// from, and when the next refresh may run.
pub(crate) fn metadata_unavailable(h: &Helper) -> Failure {
    let repository = h.config().repository.to_string();
    Failure::MetadataUnavailable {
        next_refresh_secs: h
            .refresh
            .until_due(&repository, h.config().refresh_interval)
            .map(|d| d.as_secs()),
        repository,
    }
}

impl RefreshClock {
    /// A clock that keeps its stamp in `dir` (the helper's private base).
    pub fn persistent(dir: &std::path::Path) -> RefreshClock {
        RefreshClock {
            stamp_dir: Some(dir.to_path_buf()),
            last: std::sync::Mutex::new(None),
        }
    }

    /// The end of the last attempt an earlier helper stamped for
    /// `repository`, and its failures, if the stamp is root's own, in a
    /// root-only directory, and not in the future.
    fn read_stamp(&self, repository: &str) -> Option<(std::time::Instant, u32)> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let dir = self.stamp_dir.as_deref()?;
        crate::files::check_root_dir(dir).ok()?;
        let mut f = crate::files::open_no_follow(&dir.join(REFRESH_STAMP)).ok()?;
        let m = f.metadata().ok()?;
        if !m.is_file() || m.uid() != 0 || m.mode() & 0o022 != 0 || m.len() > MAX_STAMP_LEN {
            return None;
        }
        let mut text = String::new();
        f.by_ref()
            .take(MAX_STAMP_LEN)
            .read_to_string(&mut text)
            .ok()?;
        let mut lines = text.lines();
        if lines.next() != Some(repository) {
            return None;
        }
        let failures = lines
            .next()
            .and_then(|l| l.strip_prefix("failures "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let ago = std::time::SystemTime::now()
            .duration_since(m.modified().ok()?)
            .ok()?;
        Some((std::time::Instant::now().checked_sub(ago)?, failures))
    }

    /// Stamps an attempt's end (or start) now; a failure only costs the
    /// persistence.
    fn write_stamp(&self, repository: &str, failures: u32) {
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
            .and_then(|mut f| writeln!(f, "{repository}\nfailures {failures}"));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot stamp the metadata refresh; the rate limit is kept in memory only");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Refreshed>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record for `repository`, read from the stamp if this helper
    /// has none yet.
    fn load<'g>(
        &self,
        last: &'g mut std::sync::MutexGuard<'_, Option<Refreshed>>,
        repository: &str,
    ) -> Option<&'g mut Refreshed> {
        if last.is_none() {
            **last = self
                .read_stamp(repository)
                .map(|(ended, failures)| Refreshed {
                    repository: repository.to_string(),
                    ended: Some(ended),
                    failures,
                    succeeded: None,
                });
        }
        last.as_mut().filter(|r| r.repository == repository)
    }

    /// Whether this request refreshes `repository`'s metadata: none yet, a
    /// different repository (a reload), or the last attempt ended at least
    /// `interval` (backed off after failures) ago, and none is running. If
    /// so, the attempt has begun; it ends when the returned guard drops.
    pub fn begin(
        &self,
        repository: &str,
        interval: std::time::Duration,
    ) -> Option<RefreshAttempt<'_>> {
        let mut last = self.lock();
        let now = std::time::Instant::now();
        let (due, failures, succeeded) = match self.load(&mut last, repository) {
            Some(r) => (
                r.next_due(interval).is_some_and(|t| now >= t),
                r.failures,
                r.succeeded,
            ),
            None => (true, 0, None),
        };
        if !due {
            return None;
        }
        *last = Some(Refreshed {
            repository: repository.to_string(),
            ended: None,
            failures,
            succeeded,
        });
        // Stamped at the start too: a helper killed mid-refresh still
        // counts the attempt.
        self.write_stamp(repository, failures);
        Some(RefreshAttempt {
            clock: self,
            repository: repository.to_string(),
            ok: false,
        })
    }

    fn end(&self, repository: &str, ok: bool) {
        let mut last = self.lock();
        let Some(r) = last.as_mut().filter(|r| r.repository == repository) else {
            return;
        };
        let now = std::time::Instant::now();
        r.ended = Some(now);
        if ok {
            r.failures = 0;
            r.succeeded = Some(now);
        } else {
            r.failures = r.failures.saturating_add(1);
        }
        let failures = r.failures;
        drop(last);
        self.write_stamp(repository, failures);
    }

    /// How long until the next refresh of `repository` may run (`None`:
    /// one is running).
    pub fn until_due(
        &self,
        repository: &str,
        interval: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let mut last = self.lock();
        match self.load(&mut last, repository) {
            Some(r) => r
                .next_due(interval)
                .map(|t| t.saturating_duration_since(std::time::Instant::now())),
            None => Some(std::time::Duration::ZERO),
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
    fn output_cut_at_the_cap_is_never_read() {
        use crate::exec::{testing::sh, OnTimeout};
        // A plan whose refusing line comes after the cap.
        let script = "i=0; while [ $i -lt 200 ]; do echo \"---> Package patchman-client.noarch 1.7.1-1 will be an upgrade\"; i=$((i+1)); done; echo '---> Package victim.noarch 1.0-1 will be erased'";
        let cap = 4096;
        let cmd =
            crate::exec::Cmd::new(crate::exec::Tool::Dnf, Duration::from_secs(10)).output_cap(cap);
        let out = sh(script, Duration::from_secs(10), OnTimeout::Kill, cap);
        assert!(
            out.truncated && !out.stdout.contains("victim"),
            "the cap cut it"
        );
        match whole(Step::CheckDependencies, &cmd, out) {
            Err(Failure::UnexpectedOutput { step, detail }) => {
                assert_eq!(step, Step::CheckDependencies);
                assert!(detail.contains("more than the 4 KiB"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let short = sh("echo ok", Duration::from_secs(10), OnTimeout::Kill, cap);
        assert!(whole(Step::CheckDependencies, &cmd, short).is_ok());
        // An install's output is passed on even when long: it has run.
        let mut install = cmd.clone();
        install.on_timeout = OnTimeout::Wait;
        let long = sh(script, Duration::from_secs(10), OnTimeout::Wait, cap);
        assert!(whole(Step::Install, &install, long).is_ok());
    }

    #[test]
    fn refreshes_at_most_once_per_interval() {
        let c = RefreshClock::default();
        let minute = Duration::from_secs(60);
        let a = c.begin("patchman", minute).expect("the first is due");
        assert_eq!(c.age("patchman"), None, "not succeeded yet");
        assert!(
            c.begin("patchman", Duration::ZERO).is_none(),
            "none while one runs"
        );
        a.succeeded();
        assert!(c.age("patchman").is_some());
        for _ in 0..20 {
            assert!(c.begin("patchman", minute).is_none());
        }
        drop(c.begin("other", minute).expect("a reload"));
        assert_eq!(c.age("other"), None);
        drop(c.begin("patchman", Duration::ZERO));
        drop(c.begin("patchman", Duration::ZERO).expect("0s: every time"));
    }

    /// The interval counts from the end of an attempt, and a failed one
    /// doubles the wait: a trickling server cannot keep a refresh running
    /// back to back.
    #[test]
    fn the_interval_counts_from_the_end_and_backs_off_after_failures() {
        let c = RefreshClock::default();
        let interval = Duration::from_millis(200);
        let slow = c.begin("patchman", interval).unwrap();
        std::thread::sleep(interval * 2);
        drop(slow); // failed, after longer than the interval
        assert!(
            c.begin("patchman", interval).is_none(),
            "not due right after a long attempt ended"
        );
        let wait = c.until_due("patchman", interval).unwrap();
        assert!(wait > interval && wait <= interval * 2, "{wait:?}");
        std::thread::sleep(interval * 2);
        let ok = c
            .begin("patchman", interval)
            .expect("due after the back-off");
        ok.succeeded();
        let wait = c.until_due("patchman", interval).unwrap();
        assert!(wait <= interval, "a success resets it: {wait:?}");
    }

    #[test]
    fn the_backoff_doubles_and_is_capped() {
        let m = Duration::from_secs(60);
        assert_eq!(backoff(m, 0), m);
        assert_eq!(backoff(m, 1), m * 2);
        assert_eq!(backoff(m, 5), m * 32);
        assert_eq!(backoff(m, 6), MAX_BACKOFF);
        assert_eq!(backoff(m, u32::MAX), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 9), Duration::ZERO);
        let day = Duration::from_secs(86400);
        assert_eq!(backoff(day, 3), day, "an interval above the cap");
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
        let minute = Duration::from_secs(60);
        let first = RefreshClock::persistent(&base);
        first.begin("patchman", minute).unwrap().succeeded();
        let second = RefreshClock::persistent(&base);
        assert!(
            second.begin("patchman", minute).is_none(),
            "within the interval"
        );
        assert_eq!(second.age("patchman"), None, "its success is not known");
        let third = RefreshClock::persistent(&base);
        drop(third.begin("other", minute).expect("another repository"));
        drop(
            RefreshClock::persistent(&base)
                .begin("patchman", Duration::ZERO)
                .unwrap(),
        ); // failed: one failure stamped
        let backed_off = RefreshClock::persistent(&base);
        let wait = backed_off
            .until_due("patchman", Duration::from_secs(10))
            .unwrap();
        assert!(
            wait > Duration::from_secs(10),
            "the back-off survives: {wait:?}"
        );
        // A stamp someone else could have written is not believed.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(RefreshClock::persistent(&base)
            .begin("patchman", minute)
            .is_some());
    }
}
