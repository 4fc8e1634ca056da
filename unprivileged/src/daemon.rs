//! `patchman-agent run`: the unattended daemon.
//!
//! One check ([`check_once`]) is: the local and server-group switches, then
//! the helper's `Status` for the version gate, its `Check` for a candidate,
//! the phased-rollout wait, and `Update`. [`record`] turns its outcome into
//! the state and the time of the next check ([`crate::schedule`]). The loop
//! ([`run`]) sleeps until then in one `recv_timeout` on the channel its
//! signal thread feeds: no timer ticks, no polling; SIGHUP reloads
//! patchman.ini, SIGTERM/SIGINT stop it (after a running request).
//!
//! After an update of our own package the daemon records it, then
//! re-executes itself ([`crate::restart`]); the new process confirms the
//! installed version with the helper, which exited after the update and
//! is started again by its socket (or, outside systemd, by whoever runs
//! it): until then the socket may be missing or refuse us, which is retried
//! with a short back-off, never fatal.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use patchman_shared::{
    Change, CheckReport, ConfirmOutcome, Failure, Package, Reply, Request, StatusReport,
    UpdateReport,
};

use crate::client::{Client, ClientError};
use crate::config::{self, Config};
use crate::policy::{self, Gate, GroupSetting};
use crate::restart::Relaunch;
use crate::schedule::{self, Random};
use crate::state::{self, Coded, LastError, PendingRestart, State};
use crate::time::{now_unix, rfc3339};

/// How many times the post-restart confirmation is tried (about 3.5 min
/// with its back-off) before it is left to the next regular check.
pub const CONFIRM_ATTEMPTS: u32 = 10;

/// Why a request to the helper did not give its answer.
#[derive(Debug)]
pub enum CallError {
    Client(ClientError),
    Failed(Failure),
    Busy,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Client(e) => write!(f, "{e}"),
            CallError::Failed(e) => {
                write!(f, "{e}")?;
                if let Some(a) = crate::commands::advice(e) {
                    write!(f, " — {a}")?;
                }
                Ok(())
            }
            CallError::Busy => write!(f, "the helper is busy with another update"),
        }
    }
}

impl std::error::Error for CallError {}

/// The helper's four requests the daemon uses; a fake in the tests.
pub trait HelperApi {
    fn status(&mut self) -> Result<StatusReport, CallError>;
    fn check(&mut self) -> Result<CheckReport, CallError>;
    fn update(&mut self) -> Result<UpdateReport, CallError>;
    fn confirm(&mut self) -> Result<ConfirmOutcome, CallError>;
}

/// The real helper: one fresh connection per request, so a helper that
/// exited after an update is simply reached again through its socket.
#[derive(Debug, Clone)]
pub struct SocketHelper {
    pub socket: PathBuf,
}

impl SocketHelper {
    fn call(&self, request: Request) -> Result<Reply, CallError> {
        let name = request.name();
        let reply = Client::connect(&self.socket)
            .and_then(|mut c| {
                c.request(request, |step| {
                    tracing::debug!(request = name, step = step.describe(), "progress")
                })
            })
            .map_err(CallError::Client)?;
        match reply {
            Reply::Failed(f) => Err(CallError::Failed(f)),
            Reply::Busy => Err(CallError::Busy),
            other => Ok(other),
        }
    }
}

fn unexpected(r: Reply) -> CallError {
    CallError::Client(ClientError::Unexpected(format!("{r:?}")))
}

/// `SocketHelper`'s methods, one a row: the method, the request it sends
/// and the one reply that answers it (any other is `unexpected`).
macro_rules! socket_calls {
    ($($method:ident: $request:ident => $reply:ident($answer:ty);)*) => {
        impl HelperApi for SocketHelper {
            $(fn $method(&mut self) -> Result<$answer, CallError> {
                match self.call(Request::$request)? {
                    Reply::$reply(v) => Ok(v),
                    other => Err(unexpected(other)),
                }
            })*
        }
    };
}

socket_calls! {
    status: Status => Status(StatusReport);
    check: Check => Check(CheckReport);
    update: Update => Updated(UpdateReport);
    confirm: Confirm => Confirmed(ConfirmOutcome);
}

/// What one check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A gate is closed: nothing asked of the helper beyond `Status`.
    Gated(Gate),
    UpToDate,
    /// A candidate exists; the phased rollout makes this host wait.
    Waiting {
        version: String,
        until: u64,
    },
    Updated {
        changes: Vec<Change>,
        own_package: bool,
    },
    /// The candidate is a `patchman-client` version the helper rolled
    /// back from: skipped until a newer one appears.
    Quarantined {
        version: String,
    },
    /// `Busy` or `LockHeld`: another package operation is running.
    Busy(String),
    Failed(String),
}

impl Outcome {
    /// The stable code of `status --json`'s `last_result`.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Gated(_) => "automatic_updates_off",
            Outcome::UpToDate => "up_to_date",
            Outcome::Waiting { .. } => "waiting_for_rollout",
            Outcome::Updated { .. } => "updated",
            Outcome::Quarantined { .. } => "quarantined",
            Outcome::Busy(_) => "busy",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The outcome in words.
    pub fn detail(&self) -> String {
        match self {
            Outcome::Gated(g) => g.to_string(),
            Outcome::UpToDate => "patchman-client is up to date".into(),
            Outcome::Waiting { version, until } => format!(
                "{version} is available; phased rollout: this host installs it after {}",
                rfc3339(*until)
            ),
            Outcome::Updated { changes, .. } => changes
                .iter()
                .map(|c| format!("{}: {} → {}", c.package, c.from, c.to))
                .collect::<Vec<_>>()
                .join(", "),
            Outcome::Quarantined { version } => format!(
                "patchman-client {version} is quarantined (rolled back after it failed its probation); waiting for a newer version"
            ),
            Outcome::Busy(d) | Outcome::Failed(d) => d.clone(),
        }
    }
}

/// What [`check_once`] needs besides the helper.
#[derive(Debug, Clone)]
pub struct CheckInput<'a> {
    pub config: &'a Config,
    pub group: &'a GroupSetting,
    /// `None`: unknown identity, the rollout does not wait.
    pub machine_id: Option<&'a str>,
    pub now: u64,
}

fn classify(e: CallError) -> Outcome {
    match e {
        CallError::Busy => Outcome::Busy(e.to_string()),
        CallError::Failed(Failure::LockHeld { .. }) => Outcome::Busy(e.to_string()),
        CallError::Failed(Failure::NotInstalled) => Outcome::Gated(Gate::ClientNotInstalled),
        other => Outcome::Failed(other.to_string()),
    }
}

/// One check: gates, `Status`, `Check`, rollout, `Update`. Records in
/// `state` the gate verdict and when a candidate was first seen.
pub fn check_once(
    helper: &mut dyn HelperApi,
    input: &CheckInput<'_>,
    state: &mut State,
) -> Outcome {
    let mut gate = policy::switches(input.config.automatic, input.group);
    let mut status = None;
    if gate.allows() {
        match helper.status() {
            Ok(s) => {
                gate = policy::version_gate(s.family, s.client.as_ref());
                status = Some(s);
            }
            Err(e) => return classify(e),
        }
    }
    state.automatic = Some(Coded {
        code: gate.code().into(),
        words: gate.to_string(),
    });
    if !gate.allows() {
        return Outcome::Gated(gate);
    }
    if let Some(s) = &status {
        tracing::debug!(family = %s.family, helper_version = %s.helper_version, "helper status");
    }
    let report = match helper.check() {
        Ok(r) => r,
        Err(e) => return classify(e),
    };
    // The version the rollout is keyed on: the client's candidate, else
    // the realtime package's.
    let candidate = [Package::Client, Package::Realtime].iter().find_map(|p| {
        report
            .packages
            .iter()
            .find(|c| c.package == *p)
            .and_then(|c| c.candidate.as_ref())
            .map(|v| v.to_string())
    });
    let Some(version) = candidate else {
        state.first_seen.clear();
        return Outcome::UpToDate;
    };
    let client_candidate = report
        .packages
        .iter()
        .find(|c| c.package == Package::Client)
        .and_then(|c| c.candidate.as_ref());
    if let (Some(s), Some(c)) = (&status, client_candidate) {
        if s.rollback.quarantined.contains(c) {
            return Outcome::Quarantined {
                version: c.to_string(),
            };
        }
    }
    if let Some(window) = input.group.rollout_window() {
        let first = state.first_seen(&version, input.now);
        match input.machine_id {
            Some(id) => {
                let until = first.saturating_add(crate::rollout::delay(id, &version, window).as_secs());
                if input.now < until {
                    return Outcome::Waiting { version, until };
                }
            }
            None => tracing::warn!(
                "no machine-id or host name: this host's place in the phased rollout is unknown, so it does not wait"
            ),
        }
    }
    match helper.update() {
        Ok(r) if r.changes.is_empty() => Outcome::UpToDate,
        Ok(r) => {
            state.first_seen.clear();
            let own_package = r.changes.iter().any(|c| c.package == Package::Client);
            Outcome::Updated {
                changes: r.changes,
                own_package,
            }
        }
        Err(e) => classify(e),
    }
}

/// Records `outcome` of the check finished at `now` in `state` and returns
/// the next check's time.
pub fn record(
    state: &mut State,
    outcome: &Outcome,
    now: u64,
    config: &Config,
    rng: &mut dyn Random,
) -> u64 {
    state.last_check = Some(now);
    state.last_result = Some(Coded {
        code: outcome.code().into(),
        words: outcome.detail(),
    });
    let (i, j) = (config.interval, config.jitter);
    let next = match outcome {
        Outcome::Failed(e) => {
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            state.consecutive_busy = 0;
            state.last_error = Some(LastError {
                message: e.clone(),
                at: now,
            });
            schedule::after_failure(now, state.consecutive_failures, i, rng)
        }
        Outcome::Busy(_) => {
            state.consecutive_busy = state.consecutive_busy.saturating_add(1);
            schedule::after_busy(now, state.consecutive_busy, i, rng)
        }
        Outcome::Waiting { until, .. } => {
            state.consecutive_failures = 0;
            state.consecutive_busy = 0;
            schedule::while_waiting(now, *until, i, j, rng)
        }
        Outcome::Gated(_)
        | Outcome::UpToDate
        | Outcome::Updated { .. }
        | Outcome::Quarantined { .. } => {
            state.consecutive_failures = 0;
            state.consecutive_busy = 0;
            schedule::regular(now, i, j, rng)
        }
    };
    state.next_check = Some(next);
    next
}

/// Sent by the signal thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIGHUP: re-read patchman.ini.
    Reload,
    /// SIGTERM / SIGINT.
    Stop,
}

#[derive(Debug)]
pub enum DaemonError {
    Config(config::ConfigError),
    /// The signal thread is gone: the daemon could neither sleep nor stop.
    SignalsLost,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Config(e) => write!(f, "{e}"),
            DaemonError::SignalsLost => write!(f, "the signal thread stopped"),
        }
    }
}

impl std::error::Error for DaemonError {}

/// Where the daemon finds everything.
#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    /// The server group's file (`--server-group`).
    pub server_group: PathBuf,
    pub relaunch: Relaunch,
}

fn save(dir: &Path, state: &State) {
    if let Err(e) = state::save(dir, state) {
        tracing::error!(error = %e, "state not saved; the daemon goes on");
    }
}

/// The post-restart confirmation in progress.
struct Confirm {
    attempts: u32,
    at: u64,
    /// The helper's `Status` showed a rollback new to us.
    saw_rollback: bool,
}

/// Runs the daemon until a stop event. Fails only when patchman.ini is
/// unusable at start or the signal thread is gone.
pub fn run(
    opts: &Options,
    events: &Receiver<Event>,
    rng: &mut dyn Random,
) -> Result<(), DaemonError> {
    let mut config = config::load(&opts.config_path).map_err(DaemonError::Config)?;
    let (mut st, problem) = state::load(&opts.state_dir);
    if let Some(p) = problem {
        tracing::warn!(error = %p, "state file replaced");
    }
    let mut helper = SocketHelper {
        socket: opts.socket.clone(),
    };
    let machine_id = crate::rollout::machine_id();
    let now = now_unix();
    // A restart after our own update keeps the schedule computed before
    // it; any other start begins with the interface's first-check delay.
    let resumed = st.restart.as_ref().is_some_and(|r| !r.confirmed);
    let horizon = schedule::after(now, config.interval + config.jitter);
    let mut next = match st.next_check {
        Some(n) if resumed && n <= horizon => n,
        _ => schedule::first_check(now, config.jitter, rng),
    };
    // Every start asks the helper once: after our own update to confirm
    // the restart, and always to end a pending probation (issue 12) and
    // to learn of a rollback.
    let mut confirm = Some(Confirm {
        attempts: 0,
        at: now,
        saw_rollback: false,
    });
    st.next_check = Some(next);
    st.daemon_pid = Some(std::process::id());
    save(&opts.state_dir, &st);
    tracing::info!(
        version = crate::VERSION,
        exe = %opts.relaunch.exe.display(),
        socket = %opts.socket.display(),
        state_dir = %opts.state_dir.display(),
        automatic = config.automatic,
        interval_s = config.interval.as_secs(),
        jitter_s = config.jitter.as_secs(),
        next_check = %rfc3339(next),
        resumed_after_update = resumed,
        "patchman-agent daemon started"
    );

    loop {
        let now = now_unix();
        let due = confirm.as_ref().map_or(next, |c| c.at.min(next));
        // The one place the daemon sleeps: until the next check or a
        // signal. Whole seconds, rounded up, so it wakes once. When work is
        // due already it still looks (without waiting) for a signal that
        // came during the last request: a stop must win over the next
        // check, or a SIGTERM sent while the helper answered `Status`
        // would go unseen through a whole update.
        match events.recv_timeout(Duration::from_secs(due.saturating_sub(now))) {
            Ok(Event::Reload) => {
                reload(opts, &mut config, &mut next, rng);
                st.next_check = Some(next);
                save(&opts.state_dir, &st);
                continue;
            }
            Ok(Event::Stop) => {
                tracing::info!("stopping");
                return Ok(());
            }
            Err(RecvTimeoutError::Timeout) if due > now => continue,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err(DaemonError::SignalsLost),
        }
        if let Some(c) = confirm.as_mut().filter(|c| c.at <= now) {
            if confirm_restart(&mut helper, &mut st, c, now) {
                // After a rollback the schedule from before the update
                // means nothing: check now (and find the quarantine).
                if c.saw_rollback {
                    next = now;
                    st.next_check = Some(next);
                }
                confirm = None;
            }
            save(&opts.state_dir, &st);
            continue;
        }

        let group = policy::read_server_group(&opts.server_group);
        if let GroupSetting::Invalid(why) = &group {
            tracing::warn!(reason = %why, "server-group.json is unusable: automatic updates stay off until it is fixed");
        }
        let input = CheckInput {
            config: &config,
            group: &group,
            machine_id: machine_id.as_deref(),
            now,
        };
        tracing::info!("checking for updates");
        let outcome = check_once(&mut helper, &input, &mut st);
        let finished = now_unix();
        next = record(&mut st, &outcome, finished, &config, rng);
        log_outcome(&outcome, &st, next);
        if let Outcome::Updated {
            own_package: true,
            changes,
        } = &outcome
        {
            let version = changes
                .iter()
                .find(|c| c.package == Package::Client)
                .map(|c| c.to.to_string())
                .unwrap_or_default();
            st.restart = Some(PendingRestart {
                version: version.clone(),
                at: finished,
                confirmed: false,
            });
            save(&opts.state_dir, &st);
            // A stop asked for while the update ran wins over the re-exec:
            // the new process would not know of it and run on.
            if stop_pending(events) {
                tracing::info!(
                    "stop requested during the update: exiting instead of re-executing; the next start runs the new binary"
                );
                return Ok(());
            }
            tracing::info!(
                exe = %opts.relaunch.exe.display(),
                version = %version,
                "patchman-client updated: re-executing the agent by path to run the new binary"
            );
            let error = opts.relaunch.exec();
            tracing::error!(
                error = %error,
                exe = %opts.relaunch.exe.display(),
                "cannot re-execute the agent; this process goes on with the old binary (restart the service to run the new one)"
            );
            confirm = Some(Confirm {
                attempts: 0,
                at: finished,
                saw_rollback: false,
            });
        }
        save(&opts.state_dir, &st);
    }
}

/// Whether a stop arrived while the daemon was busy (other events are
/// dropped: a reload is moot when the process is about to be replaced).
fn stop_pending(events: &Receiver<Event>) -> bool {
    while let Ok(event) = events.try_recv() {
        if event == Event::Stop {
            return true;
        }
    }
    false
}

fn reload(opts: &Options, config: &mut Config, next: &mut u64, rng: &mut dyn Random) {
    match config::load(&opts.config_path) {
        Ok(c) => {
            let now = now_unix();
            // A shorter interval takes effect now, not after the old one.
            let latest = schedule::after(now, c.interval + c.jitter);
            if *next > latest {
                *next = schedule::regular(now, c.interval, c.jitter, rng);
            }
            tracing::info!(
                config = %opts.config_path.display(),
                automatic = c.automatic,
                interval_s = c.interval.as_secs(),
                jitter_s = c.jitter.as_secs(),
                next_check = %rfc3339(*next),
                "configuration reloaded (SIGHUP)"
            );
            *config = c;
        }
        Err(e) => tracing::error!(
            config = %opts.config_path.display(),
            error = %e,
            "configuration not reloaded: keeping the previous one"
        ),
    }
}

/// Asks the helper for the installed version after our restart. True when
/// done (confirmed, or given up after [`CONFIRM_ATTEMPTS`]).
fn confirm_restart(helper: &mut dyn HelperApi, st: &mut State, c: &mut Confirm, now: u64) -> bool {
    match helper.status() {
        Ok(s) => {
            c.saw_rollback |= probation_step(helper, &s, st, now);
            let Some(pending) = st.restart.as_mut().filter(|r| !r.confirmed) else {
                return true;
            };
            let installed = s
                .client
                .as_ref()
                .map(|i| i.evr.to_string())
                .unwrap_or_default();
            if installed == pending.version {
                tracing::info!(
                    version = %installed,
                    pid = std::process::id(),
                    "the new agent runs after the update; the helper confirms patchman-client {installed}"
                );
            } else {
                tracing::warn!(
                    expected = %pending.version,
                    installed = %installed,
                    "after the restart the helper reports another patchman-client version than the update installed"
                );
            }
            pending.confirmed = true;
            true
        }
        Err(e) => {
            c.attempts += 1;
            if c.attempts >= CONFIRM_ATTEMPTS {
                tracing::warn!(error = %e, attempts = c.attempts, "the helper is still unreachable after the update; leaving it to the next regular check");
                return true;
            }
            let wait = schedule::confirm_retry(c.attempts);
            c.at = schedule::after(now, wait);
            tracing::warn!(
                error = %e,
                attempt = c.attempts,
                retry_in_s = wait.as_secs(),
                "the helper is not reachable yet (it restarts after an update); retrying"
            );
            false
        }
    }
}

/// Issue 12: this process started, read its configuration and state, and
/// the running helper's `Status` shows the versions on probation installed
/// and complete: that is the health the `Confirm` vouches for. Also records
/// a rollback the helper made since the last check as `rolled_back`.
/// Returns whether it saw a rollback new to `st`.
fn probation_step(helper: &mut dyn HelperApi, s: &StatusReport, st: &mut State, now: u64) -> bool {
    let rolled_back = note_rollback(s, st, now);
    if rolled_back {
        tracing::warn!(
            detail = st.last_result.as_ref().map_or("", |r| r.words.as_str()),
            "the helper rolled back an update"
        );
    }
    if s.rollback.probation.is_none() {
        return rolled_back;
    }
    if !probation_matches(s) {
        tracing::warn!(
            "a probation is pending for versions that are not the ones installed; not confirming"
        );
        return rolled_back;
    }
    match helper.confirm() {
        Ok(outcome) => tracing::info!(outcome = %outcome, "probation: Confirm sent"),
        Err(e) => tracing::warn!(error = %e, "probation: Confirm failed"),
    }
    rolled_back
}

/// Whether `Status` shows a pending probation whose versions are exactly
/// the ones installed, each complete.
pub fn probation_matches(s: &StatusReport) -> bool {
    let Some(p) = &s.rollback.probation else {
        return false;
    };
    let installed = |pkg: Package| match pkg {
        Package::Client => s.client.as_ref(),
        Package::Realtime => s.realtime.as_ref(),
    };
    p.versions
        .iter()
        .all(|(pkg, v)| installed(*pkg).is_some_and(|i| i.complete && &i.evr == v))
}

/// A rollback the helper made since `st`'s last check becomes its last
/// result, `rolled_back`. True when it was new.
pub fn note_rollback(s: &StatusReport, st: &mut State, now: u64) -> bool {
    let Some(last) = &s.rollback.last else {
        return false;
    };
    if last.at <= st.last_check.unwrap_or(0) {
        return false;
    }
    let versions = |v: &[(Package, patchman_shared::Evr)]| {
        v.iter()
            .map(|(p, e)| format!("{p} {e}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    st.last_check = Some(now.max(last.at));
    st.last_result = Some(Coded {
        code: "rolled_back".into(),
        words: format!(
            "rolled back from {} to {}: {}",
            versions(&last.from),
            versions(&last.to),
            last.why
        ),
    });
    true
}

fn log_outcome(outcome: &Outcome, st: &State, next: u64) {
    let next_check = rfc3339(next);
    let detail = outcome.detail();
    match outcome {
        Outcome::Failed(_) => tracing::error!(
            result = outcome.code(),
            error = %detail,
            consecutive_failures = st.consecutive_failures,
            next_check = %next_check,
            "check failed; backing off"
        ),
        Outcome::Busy(_) => tracing::warn!(
            result = outcome.code(),
            detail = %detail,
            next_check = %next_check,
            "another package operation is running; retrying sooner"
        ),
        Outcome::Gated(Gate::ClientTooOld { .. }) => tracing::warn!(
            result = outcome.code(),
            gate = "client_too_old",
            detail = %detail,
            next_check = %next_check,
            "manual upgrade needed"
        ),
        Outcome::Gated(g) => tracing::info!(
            result = outcome.code(),
            gate = g.code(),
            detail = %detail,
            next_check = %next_check,
            "not updating"
        ),
        _ => tracing::info!(
            result = outcome.code(),
            detail = %detail,
            next_check = %next_check,
            "check finished"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ServerGroup;
    use crate::schedule::tests::Fixed;
    use patchman_shared::{Candidate, Evr, Family, Installed, LockState};

    fn evr(s: &str) -> Evr {
        Evr::parse(s).unwrap()
    }

    fn result_code(st: &State) -> Option<&str> {
        st.last_result.as_ref().map(|r| r.code.as_str())
    }

    fn automatic_code(st: &State) -> Option<&str> {
        st.automatic.as_ref().map(|a| a.code.as_str())
    }

    fn last_error(st: &State) -> Option<(&str, u64)> {
        st.last_error.as_ref().map(|e| (e.message.as_str(), e.at))
    }

    /// A helper that answers from fixed values and records what was asked.
    struct Fake {
        installed: Option<&'static str>,
        family: Family,
        candidate: Option<&'static str>,
        update: Result<(), fn() -> CallError>,
        calls: Vec<&'static str>,
        rollback: patchman_shared::RollbackStatus,
    }

    impl Fake {
        fn new(installed: &'static str, candidate: Option<&'static str>) -> Fake {
            Fake {
                installed: Some(installed),
                family: Family::Apt,
                candidate,
                update: Ok(()),
                calls: vec![],
                rollback: Default::default(),
            }
        }
    }

    impl HelperApi for Fake {
        fn status(&mut self) -> Result<StatusReport, CallError> {
            self.calls.push("status");
            Ok(StatusReport {
                family: self.family,
                client: self.installed.map(|v| Installed {
                    evr: evr(v),
                    complete: true,
                }),
                realtime: None,
                lock: LockState::Free,
                helper_version: "0.1.0".into(),
                rollback: self.rollback.clone(),
            })
        }
        fn check(&mut self) -> Result<CheckReport, CallError> {
            self.calls.push("check");
            Ok(CheckReport {
                packages: vec![Candidate {
                    package: Package::Client,
                    installed: evr(self.installed.unwrap_or("0")),
                    candidate: self.candidate.map(evr),
                }],
                cached: false,
                metadata_age_secs: Some(0),
            })
        }
        fn update(&mut self) -> Result<UpdateReport, CallError> {
            self.calls.push("update");
            if let Err(e) = &self.update {
                return Err(e());
            }
            Ok(UpdateReport {
                changes: match (self.installed, self.candidate) {
                    (Some(i), Some(c)) => vec![Change {
                        package: Package::Client,
                        from: evr(i),
                        to: evr(c),
                    }],
                    _ => vec![],
                },
                helper_restarting: self.candidate.is_some(),
            })
        }
        fn confirm(&mut self) -> Result<ConfirmOutcome, CallError> {
            self.calls.push("confirm");
            Ok(ConfirmOutcome::Confirmed)
        }
    }

    fn input<'a>(config: &'a Config, group: &'a GroupSetting, now: u64) -> CheckInput<'a> {
        CheckInput {
            config,
            group,
            machine_id: Some("3d1219c7c4c5404aaa1f6d2a48adfda4"),
            now,
        }
    }

    #[test]
    fn allowed_and_available_updates_and_asks_for_a_restart() {
        let mut h = Fake::new("1.7.0-1", Some("1.7.1-1"));
        let mut st = State::default();
        let c = Config::default();
        let o = check_once(&mut h, &input(&c, &GroupSetting::Absent, 100), &mut st);
        assert_eq!(h.calls, ["status", "check", "update"]);
        assert!(
            matches!(&o, Outcome::Updated { own_package: true, changes } if changes[0].to == evr("1.7.1-1"))
        );
        assert_eq!(o.detail(), "patchman-client: 1.7.0-1 → 1.7.1-1");
        assert_eq!(automatic_code(&st), Some("enabled"));
    }

    #[test]
    fn each_closed_gate_stops_before_check_and_update() {
        let c_off = Config {
            automatic: false,
            ..Config::default()
        };
        let on = Config::default();
        let group_off = GroupSetting::Valid(ServerGroup {
            automatic_updates: false,
            rollout_window: None,
        });
        let bad = GroupSetting::Invalid("not valid JSON".into());
        for (config, group, installed, code, calls) in [
            (
                &c_off,
                &GroupSetting::Absent,
                "1.7.0-1",
                "disabled_locally",
                vec![],
            ),
            (
                &on,
                &group_off,
                "1.7.0-1",
                "disabled_by_server_group",
                vec![],
            ),
            (&on, &bad, "1.7.0-1", "server_group_file_invalid", vec![]),
            (
                &on,
                &GroupSetting::Absent,
                "1.6.9-1",
                "client_too_old",
                vec!["status"],
            ),
        ] {
            let mut h = Fake::new(installed, Some("1.7.1-1"));
            let mut st = State::default();
            let o = check_once(&mut h, &input(config, group, 0), &mut st);
            match &o {
                Outcome::Gated(g) => assert_eq!(g.code(), code),
                other => panic!("{code}: {other:?}"),
            }
            assert_eq!(h.calls, calls, "{code}");
            assert_eq!(automatic_code(&st), Some(code), "{code}");
        }
        // rpm families: rpm's ordering.
        let mut h = Fake::new("1.6.9-1", Some("1.7.2-1"));
        h.family = Family::Dnf;
        let o = check_once(
            &mut h,
            &input(&on, &GroupSetting::Absent, 0),
            &mut State::default(),
        );
        assert_eq!(
            o,
            Outcome::Gated(Gate::ClientTooOld {
                installed: "1.6.9-1".into()
            })
        );
        assert_eq!(h.calls, ["status"]);
    }

    #[test]
    fn up_to_date_installs_nothing() {
        let mut h = Fake::new("1.7.1-1", None);
        let c = Config::default();
        let o = check_once(
            &mut h,
            &input(&c, &GroupSetting::Absent, 0),
            &mut State::default(),
        );
        assert_eq!(o, Outcome::UpToDate);
        assert_eq!(h.calls, ["status", "check"]);
    }

    #[test]
    fn the_rollout_waits_then_installs() {
        let id = "3d1219c7c4c5404aaa1f6d2a48adfda4";
        let window = Duration::from_secs(86400);
        let wait = crate::rollout::delay(id, "1.7.1-1", window).as_secs();
        assert!(wait > 0, "pick a machine id that waits");
        let group = GroupSetting::Valid(ServerGroup {
            automatic_updates: true,
            rollout_window: Some(window),
        });
        let c = Config::default();
        let mut st = State::default();
        let t0 = 1_000_000;
        let mut h = Fake::new("1.7.0-1", Some("1.7.1-1"));
        let o = check_once(&mut h, &input(&c, &group, t0), &mut st);
        assert_eq!(
            o,
            Outcome::Waiting {
                version: "1.7.1-1".into(),
                until: t0 + wait
            }
        );
        assert_eq!(h.calls, ["status", "check"]);
        // Still waiting later: counted from the first sighting, not reset.
        let o = check_once(&mut h, &input(&c, &group, t0 + wait - 1), &mut st);
        assert!(matches!(o, Outcome::Waiting { until, .. } if until == t0 + wait));
        // The wake-up is the end of the wait when that comes first.
        let next = record(&mut st, &o, t0 + wait - 1, &c, &mut Fixed(vec![0], 0));
        assert_eq!(next, t0 + wait);
        // Then it installs.
        let o = check_once(&mut h, &input(&c, &group, t0 + wait), &mut st);
        assert!(matches!(o, Outcome::Updated { .. }), "{o:?}");
        assert!(st.first_seen.is_empty());
    }

    #[test]
    fn failures_back_off_and_busy_retries_sooner() {
        let c = Config::default();
        let mut st = State::default();
        let mut rng = Fixed(vec![0], 0); // the bottom of every spread: ¾ of it
        let fail = Outcome::Failed("cannot reach the helper".into());
        assert_eq!(record(&mut st, &fail, 0, &c, &mut rng), 45);
        assert_eq!(record(&mut st, &fail, 0, &c, &mut rng), 90);
        assert_eq!(record(&mut st, &fail, 0, &c, &mut rng), 180);
        assert_eq!(st.consecutive_failures, 3);
        assert_eq!(last_error(&st), Some(("cannot reach the helper", 0)));
        assert_eq!(result_code(&st), Some("failed"));
        let busy = Outcome::Busy("lock held".into());
        assert_eq!(record(&mut st, &busy, 0, &c, &mut rng), 45);
        assert_eq!(record(&mut st, &busy, 0, &c, &mut rng), 90);
        let next = record(
            &mut st,
            &Outcome::UpToDate,
            1000,
            &c,
            &mut Fixed(vec![30], 0),
        );
        assert_eq!(next, 1000 + 6 * 3600 + 30);
        assert_eq!((st.consecutive_failures, st.consecutive_busy), (0, 0));
        // The last error stays visible after a success, with its time.
        assert_eq!(last_error(&st), Some(("cannot reach the helper", 0)));
        assert_eq!(st.next_check, Some(next));
    }

    #[test]
    fn helper_failures_are_classified() {
        let c = Config::default();
        let g = GroupSetting::Absent;
        let mut h = Fake::new("1.7.0-1", Some("1.7.1-1"));
        h.update = Err(|| CallError::Failed(Failure::LockHeld { pid: Some(7) }));
        let o = check_once(&mut h, &input(&c, &g, 0), &mut State::default());
        assert!(matches!(o, Outcome::Busy(_)), "{o:?}");
        h.update = Err(|| CallError::Busy);
        let o = check_once(&mut h, &input(&c, &g, 0), &mut State::default());
        assert!(matches!(o, Outcome::Busy(_)), "{o:?}");
        h.update = Err(|| {
            CallError::Failed(Failure::DependencyProblem {
                detail: "needs libpatchman-new".into(),
                command: "apt-get install patchman-client".into(),
            })
        });
        let o = check_once(&mut h, &input(&c, &g, 0), &mut State::default());
        match o {
            Outcome::Failed(d) => assert!(d.contains("apt-get install patchman-client"), "{d}"),
            other => panic!("{other:?}"),
        }
        h.update = Err(|| {
            CallError::Client(ClientError::Connect {
                socket: "/run/patchman/helper.sock".into(),
                error: std::io::ErrorKind::NotFound.into(),
            })
        });
        let o = check_once(&mut h, &input(&c, &g, 0), &mut State::default());
        match o {
            Outcome::Failed(d) => assert!(d.contains("is patchman-helper running"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_restart_is_confirmed_or_retried() {
        let mut st = State {
            restart: Some(PendingRestart {
                version: "1.7.1-1".into(),
                at: 0,
                confirmed: false,
            }),
            ..State::default()
        };
        let mut c = Confirm {
            attempts: 0,
            at: 0,
            saw_rollback: false,
        };
        let mut h = Fake::new("1.7.1-1", None);
        assert!(confirm_restart(&mut h, &mut st, &mut c, 10));
        assert!(st.restart.as_ref().unwrap().confirmed);

        struct Gone;
        impl HelperApi for Gone {
            fn status(&mut self) -> Result<StatusReport, CallError> {
                Err(CallError::Client(ClientError::Connect {
                    socket: "/x".into(),
                    error: std::io::ErrorKind::NotFound.into(),
                }))
            }
            fn check(&mut self) -> Result<CheckReport, CallError> {
                unreachable!()
            }
            fn update(&mut self) -> Result<UpdateReport, CallError> {
                unreachable!()
            }
            fn confirm(&mut self) -> Result<ConfirmOutcome, CallError> {
                unreachable!()
            }
        }
        st.restart.as_mut().unwrap().confirmed = false;
        let mut c = Confirm {
            attempts: 0,
            at: 0,
            saw_rollback: false,
        };
        let mut at = Vec::new();
        while !confirm_restart(&mut Gone, &mut st, &mut c, 100) {
            at.push(c.at - 100);
        }
        assert_eq!(at, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(!st.restart.unwrap().confirmed);
    }
    #[test]
    fn a_pending_probation_of_the_installed_versions_is_confirmed_once_status_shows_them() {
        let mut h = Fake::new("1.7.1-1", None);
        h.rollback.probation = Some(patchman_shared::Probation {
            versions: vec![(Package::Client, evr("1.7.1-1"))],
            deadline: 1000,
        });
        let mut st = State::default();
        let mut c = Confirm {
            attempts: 0,
            at: 0,
            saw_rollback: false,
        };
        assert!(confirm_restart(&mut h, &mut st, &mut c, 10));
        assert_eq!(h.calls, ["status", "confirm"]);
        // Another version installed than the one on probation: no Confirm.
        let mut h = Fake::new("1.7.0-1", None);
        h.rollback.probation = Some(patchman_shared::Probation {
            versions: vec![(Package::Client, evr("1.7.1-1"))],
            deadline: 1000,
        });
        assert!(confirm_restart(&mut h, &mut st, &mut c, 10));
        assert_eq!(h.calls, ["status"]);
    }

    #[test]
    fn a_rollback_is_recorded_as_rolled_back_once() {
        let mut h = Fake::new("1.7.0-1", None);
        h.rollback.last = Some(patchman_shared::RollbackEvent {
            from: vec![(Package::Client, evr("1.7.1-1"))],
            to: vec![(Package::Client, evr("1.7.0-1"))],
            at: 50,
            why: "no Confirm".into(),
        });
        let mut st = State {
            last_check: Some(40),
            ..State::default()
        };
        let mut c = Confirm {
            attempts: 0,
            at: 0,
            saw_rollback: false,
        };
        confirm_restart(&mut h, &mut st, &mut c, 60);
        assert_eq!(result_code(&st), Some("rolled_back"));
        let words = &st.last_result.as_ref().unwrap().words;
        assert!(
            words.contains("from patchman-client 1.7.1-1 to patchman-client 1.7.0-1"),
            "{words:?}"
        );
        st.last_result = Some(Coded {
            code: "up_to_date".into(),
            words: String::new(),
        });
        confirm_restart(&mut h, &mut st, &mut c, 70);
        assert_eq!(result_code(&st), Some("up_to_date"), "recorded once");
    }

    #[test]
    fn the_daemon_skips_a_quarantined_candidate_until_a_newer_one_appears() {
        let c = Config::default();
        let group = GroupSetting::Absent;
        let mut h = Fake::new("1.7.0-1", Some("1.7.1-1"));
        h.rollback.quarantined = vec![evr("1.7.1-1")];
        let mut st = State::default();
        let out = check_once(&mut h, &input(&c, &group, 100), &mut st);
        assert_eq!(
            out,
            Outcome::Quarantined {
                version: "1.7.1-1".into()
            }
        );
        assert_eq!(out.code(), "quarantined");
        assert_eq!(h.calls, ["status", "check"], "no update asked");
        let mut h = Fake::new("1.7.0-1", Some("1.7.2-1"));
        h.rollback.quarantined = vec![evr("1.7.1-1")];
        let out = check_once(&mut h, &input(&c, &group, 100), &mut st);
        assert!(matches!(out, Outcome::Updated { .. }), "{out:?}");
    }
}

#[cfg(test)]
mod stop_tests {
    use super::*;

    #[test]
    fn a_stop_that_arrived_during_an_update_is_seen_before_the_re_exec() {
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(!stop_pending(&rx));
        tx.send(Event::Reload).unwrap();
        assert!(!stop_pending(&rx));
        tx.send(Event::Reload).unwrap();
        tx.send(Event::Stop).unwrap();
        assert!(stop_pending(&rx));
    }

    /// A stop queued before work is due (as when SIGTERM arrives while the
    /// helper answers the start-up `Status`) ends the daemon before it
    /// asks the helper anything: no check is run or recorded.
    #[test]
    fn a_stop_is_seen_before_work_that_is_due_already() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("patchman.ini");
        std::fs::write(&config_path, "[updates]\njitter = 0s\n").unwrap();
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).unwrap();
        let opts = Options {
            // Nobody listens: a request would fail and be recorded.
            socket: dir.path().join("absent.sock"),
            config_path,
            state_dir: state_dir.clone(),
            server_group: dir.path().join("server-group.json"),
            relaunch: Relaunch {
                exe: PathBuf::from("/nonexistent"),
                arg0: "patchman-agent".into(),
                args: Vec::new(),
            },
        };
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(Event::Stop).unwrap();
        let mut rng = crate::schedule::tests::Fixed(vec![0], 0);
        run(&opts, &rx, &mut rng).unwrap();
        let (st, problem) = state::load(&state_dir);
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(st.last_check, None, "a check ran after the stop");
        assert_eq!(st.consecutive_failures, 0);
        assert_eq!(st.daemon_pid, Some(std::process::id()));
    }
}
