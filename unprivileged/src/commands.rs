//! The commands a person runs: `status`, `check`, `update`. Each prints
//! what happens as it happens and returns the process exit code.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use patchman_shared::{
    ConfirmOutcome, Evr, Failure, Installed, LockState, Package, Reply, Request, StatusReport, Step,
};

use patchman_shared::escape_controls;
use patchman_shared::sanitize::json_escape_c1;

use crate::client::{Client, ClientError};
use crate::config::Config;
use crate::policy::{self, Gate};
use crate::state::State;
use crate::time::rfc3339;

// Everything a person reads goes through these: versions, paths, the
// helper's failures (which quote tool output) and the strings of
// state.json (which a compromised `patchman` can write) are printed with
// their control characters escaped, so none reaches the terminal as an
// escape sequence. `status --json` is escaped by serde_json (C0) and
// `json_escape_c1` (C1).
macro_rules! out {
    ($($t:tt)*) => { print!("{}", escape_controls(&format!($($t)*))) };
}
macro_rules! outln {
    ($($t:tt)*) => { println!("{}", escape_controls(&format!($($t)*))) };
}
macro_rules! errln {
    ($($t:tt)*) => { eprintln!("{}", escape_controls(&format!($($t)*))) };
}

/// Exit codes (DESIGN.md's interface).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_UPDATE_AVAILABLE: i32 = 100;

fn version_or_none(i: &Option<Installed>) -> serde_json::Value {
    match i {
        Some(i) => serde_json::Value::String(i.evr.to_string()),
        None => serde_json::Value::Null,
    }
}

fn describe(i: &Option<Installed>) -> String {
    match i {
        Some(i) if i.complete => i.evr.to_string(),
        Some(i) => format!(
            "{} (install interrupted; the next update finishes it)",
            i.evr
        ),
        None => "not installed".into(),
    }
}

/// The JSON of `status --json`: `installed.client`, `installed.realtime`
/// (version or null) and `family` are part of the interface.
pub fn status_json(s: &StatusReport) -> serde_json::Value {
    serde_json::json!({
        "installed": {
            "client": version_or_none(&s.client),
            "realtime": version_or_none(&s.realtime),
        },
        "complete": {
            "client": s.client.as_ref().map(|i| i.complete),
            "realtime": s.realtime.as_ref().map(|i| i.complete),
        },
        "family": s.family.as_str(),
        "lock": match s.lock {
            LockState::Free => serde_json::json!({"held": false}),
            LockState::Held { pid } => serde_json::json!({"held": true, "pid": pid}),
        },
        "helper_version": s.helper_version,
        "probation": s.rollback.probation.as_ref().map(|p| serde_json::json!({
            "versions": versions_json(&p.versions),
            "deadline": rfc3339(p.deadline),
        })),
        "rollback": {
            "available": s.rollback.available,
            "reason": s.rollback.reason,
            "last": s.rollback.last.as_ref().map(|e| serde_json::json!({
                "from": versions_json(&e.from),
                "to": versions_json(&e.to),
                "at": rfc3339(e.at),
                "why": e.why,
            })),
        },
        "quarantined": s.rollback.quarantined.iter().map(Evr::to_string).collect::<Vec<_>>(),
        "agent_version": crate::VERSION,
        "agent_privileges": privileges_json(&crate::privs::PrivState::current()),
    })
}

/// `{"patchman-client": "1.7.1-1", …}`.
fn versions_json(v: &[(Package, Evr)]) -> serde_json::Value {
    v.iter()
        .map(|(p, e)| {
            (
                p.name().to_string(),
                serde_json::Value::String(e.to_string()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn privileges_json(p: &crate::privs::PrivState) -> serde_json::Value {
    serde_json::json!({
        "no_new_privs": p.no_new_privs,
        "holds_capabilities": !p.holds_none(),
        "cap_effective": format!("{:016x}", p.effective),
        "cap_permitted": format!("{:016x}", p.permitted),
        "cap_inheritable": format!("{:016x}", p.inheritable),
        "cap_ambient": format!("{:016x}", p.ambient),
        "cap_bounding": format!("{:016x}", p.bounding),
    })
}

fn fail(e: impl std::fmt::Display) -> i32 {
    errln!("patchman-agent: {e}");
    EXIT_FAILED
}

/// `status [--json]`: the helper's view (installed versions, family, lock)
/// and the agent's own (automatic on/off and why, last and next check).
pub fn status(
    socket: &Path,
    config: &Path,
    state_dir: &Path,
    server_group: &Path,
    json: bool,
) -> i32 {
    let reply = Client::connect(socket).and_then(|mut c| c.request(Request::Status, |_| {}));
    match reply {
        Ok(Reply::Status(s)) => {
            let agent = AgentView::gather(config, state_dir, server_group, &s);
            if json {
                let mut v = status_json(&s);
                agent.add_to_json(&mut v);
                println!("{}", json_escape_c1(&v.to_string()));
            } else {
                outln!("family:                   {}", s.family);
                outln!("patchman-client:          {}", describe(&s.client));
                outln!("patchman-client-realtime: {}", describe(&s.realtime));
                match s.lock {
                    LockState::Free => outln!("package manager lock:     free"),
                    LockState::Held { pid: Some(p) } => {
                        outln!("package manager lock:     held by pid {p}")
                    }
                    LockState::Held { pid: None } => outln!("package manager lock:     held"),
                }
                outln!("helper version:           {}", s.helper_version);
                agent.print();
            }
            EXIT_OK
        }
        Ok(Reply::Failed(f)) => fail(f),
        Ok(Reply::Busy) => fail("the helper is busy; try again shortly"),
        Ok(other) => fail(ClientError::Unexpected(format!("{other:?}"))),
        Err(e) => fail(e),
    }
}

/// Prints each step on its own line as it starts, and its duration when
/// the next one (or the final answer) arrives.
struct StepPrinter {
    started: Instant,
    current: Option<(Step, Instant)>,
}

impl StepPrinter {
    fn new() -> StepPrinter {
        StepPrinter {
            started: Instant::now(),
            current: None,
        }
    }

    /// Sends `request`, printing each step as the helper starts it and
    /// its time as it ends; the printer keeps the total.
    fn request(socket: &Path, request: Request) -> (Result<Reply, ClientError>, StepPrinter) {
        let mut printer = StepPrinter::new();
        let reply =
            Client::connect(socket).and_then(|mut c| c.request(request, |s| printer.step(s)));
        printer.finish_current();
        (reply, printer)
    }

    fn step(&mut self, step: Step) {
        self.finish_current();
        out!("  {}…", capitalize(step.describe()));
        let _ = std::io::stdout().flush();
        self.current = Some((step, Instant::now()));
    }

    fn finish_current(&mut self) {
        if let Some((_, t)) = self.current.take() {
            outln!(" {:.2} s", t.elapsed().as_secs_f64());
        }
    }

    fn total(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// What a person should do about a failure.
pub fn advice(f: &Failure) -> Option<String> {
    match f {
        Failure::DependencyProblem { command, .. } => {
            Some(format!("This update needs an attended upgrade. Run as root: {command}"))
        }
        Failure::LockHeld { .. } | Failure::Timeout { .. } => {
            Some("Another package operation is running or the repository is slow; the daemon retries later.".into())
        }
        Failure::NotInstalled => Some("Install patchman-client first.".into()),
        Failure::RepositoryMissing { repository } => Some(format!(
            "Configure the {repository:?} repository, or set [updates] repository in /etc/patchman/patchman.ini and run `service patchman reload`."
        )),
        Failure::Verification { .. } => Some(
            "Nothing was installed. Check the repository and its signing key; report this to your administrator.".into(),
        ),
        _ => None,
    }
}

fn report_failure(f: &Failure) -> i32 {
    errln!("patchman-agent: {f}");
    if let Some(a) = advice(f) {
        errln!("{a}");
    }
    EXIT_FAILED
}

pub fn check(socket: &Path) -> i32 {
    outln!("Checking for updates of patchman-client");
    let (reply, printer) = StepPrinter::request(socket, Request::Check);
    match reply {
        Ok(Reply::Check(report)) => {
            if report.cached {
                let age = report
                    .metadata_age_secs
                    .map_or("before".into(), |a| format!("{a} s ago"));
                outln!("(from the repository metadata fetched {age}: the helper refreshes it at most once per interval)");
            }
            for c in &report.packages {
                match &c.candidate {
                    Some(new) => outln!("{}: {} → {} available", c.package, c.installed, new),
                    None => outln!("{}: {} is up to date", c.package, c.installed),
                }
            }
            if report.update_available() {
                outln!("Update available ({:.2} s).", printer.total());
                EXIT_UPDATE_AVAILABLE
            } else {
                outln!("Up to date ({:.2} s).", printer.total());
                EXIT_OK
            }
        }
        Ok(Reply::Failed(f)) => report_failure(&f),
        Ok(Reply::Busy) => fail("an update is already running; try again shortly"),
        Ok(other) => fail(ClientError::Unexpected(format!("{other:?}"))),
        Err(e) => fail(e),
    }
}

pub fn update(args: &crate::cli::Args, relaunch: Option<&crate::restart::Relaunch>) -> i32 {
    let socket = &args.socket;
    // Known before the update: a quarantined version is still installed
    // when a person asks, and said so.
    let quarantined = status_within(socket, std::time::Duration::ZERO)
        .map(|s| s.rollback.quarantined)
        .unwrap_or_default();
    outln!("Updating patchman-client");
    let (reply, printer) = StepPrinter::request(socket, Request::Update);
    match reply {
        Ok(Reply::Updated(report)) if report.changes.is_empty() => {
            outln!("Already up to date ({:.2} s).", printer.total());
            EXIT_OK
        }
        Ok(Reply::Updated(report)) => {
            for c in &report.changes {
                outln!("{}: {} → {}", c.package, c.from, c.to);
                if c.package == Package::Client && quarantined.contains(&c.to) {
                    outln!(
                        "  note: {} {} was quarantined (the helper rolled it back after it failed its probation); installed because you asked",
                        c.package, c.to
                    );
                }
            }
            outln!("Updated in {:.2} s.", printer.total());
            probation_after_update(args, relaunch);
            EXIT_OK
        }
        Ok(Reply::Failed(f)) => report_failure(&f),
        Ok(Reply::Busy) => fail("an update is already running; try again shortly"),
        Ok(other) => fail(ClientError::Unexpected(format!("{other:?}"))),
        Err(e) => fail(e),
    }
}

/// How long the commands wait for the helper that restarts after an
/// update, and for the new agent's `confirm`.
const AFTER_UPDATE: std::time::Duration = std::time::Duration::from_secs(60);

/// `Status`, retried until `within` has passed (the helper exits after an
/// update and its socket starts it again).
///
/// Under socket activation the socket stays while the helper restarts, so
/// this waits up to `within`. A socket that is gone (a helper run by hand
/// removes it when it exits) for [`NO_SOCKET_GRACE`] means nothing will
/// answer: it stops waiting then.
fn status_within(socket: &Path, within: std::time::Duration) -> Option<StatusReport> {
    let t0 = Instant::now();
    let mut gone_since: Option<Instant> = None;
    loop {
        let reply = Client::connect(socket).and_then(|mut c| c.request(Request::Status, |_| {}));
        if let Ok(Reply::Status(s)) = reply {
            return Some(s);
        }
        if socket.exists() {
            gone_since = None;
        } else if gone_since.get_or_insert_with(Instant::now).elapsed() >= NO_SOCKET_GRACE {
            return None;
        }
        if t0.elapsed() >= within {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// How long [`status_within`] waits for a socket that is gone to appear
/// again (a supervisor restarting the helper recreates it at once).
const NO_SOCKET_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// After a changing update: says when probation starts, has the NEW agent
/// binary (at the path this one was started from) confirm, and says when
/// it ends. The new agent vouches for itself only by running: a release
/// whose agent cannot start never confirms, and the helper rolls it back.
fn probation_after_update(args: &crate::cli::Args, relaunch: Option<&crate::restart::Relaunch>) {
    let Some(s) = status_within(&args.socket, AFTER_UPDATE) else {
        outln!("Probation: the helper did not answer after the update; the daemon confirms when it runs.");
        return;
    };
    let Some(p) = &s.rollback.probation else {
        outln!("No probation: {}", s.rollback.reason);
        return;
    };
    let deadline = rfc3339(p.deadline);
    outln!("Probation started: the new version must confirm by {deadline}, or the helper rolls it back.");
    let Some(r) = relaunch else {
        outln!("Cannot find this program's path; the daemon confirms when it runs.");
        return;
    };
    let mut cmd = std::process::Command::new(&r.exe);
    cmd.arg("--socket")
        .arg(&args.socket)
        .arg("--config")
        .arg(&args.config)
        .arg("--state-dir")
        .arg(&args.state_dir)
        .arg("confirm")
        .stdin(std::process::Stdio::null());
    let ended = match cmd.spawn() {
        Ok(mut child) => {
            let t0 = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        break status.success().then_some(()).ok_or(format!("{status}"))
                    }
                    Ok(None) if t0.elapsed() < AFTER_UPDATE => {
                        std::thread::sleep(std::time::Duration::from_millis(100))
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(format!("no answer within {} s", AFTER_UPDATE.as_secs()));
                    }
                    Err(e) => break Err(e.to_string()),
                }
            }
        }
        Err(e) => Err(format!("cannot start {}: {e}", r.exe.display())),
    };
    match ended {
        Ok(()) => outln!("Probation ended: the new agent confirmed."),
        Err(why) => outln!(
            "Probation: the new agent did not confirm ({why}); unless it does by {deadline}, the helper rolls back."
        ),
    }
}

/// `confirm`: this agent started and read its configuration and state;
/// if the helper's `Status` shows the versions on probation installed and
/// complete, `Confirm`.
pub fn confirm(socket: &Path, config: &Path, state_dir: &Path) -> i32 {
    if let Err(e) = crate::config::load(config) {
        return fail(format!("not confirming: patchman.ini is unusable: {e}"));
    }
    let (_, problem) = crate::state::peek(state_dir);
    if let Some(p) = problem {
        return fail(format!("not confirming: the state file is unusable: {p}"));
    }
    let Some(s) = status_within(socket, AFTER_UPDATE) else {
        return fail("not confirming: the helper does not answer Status");
    };
    if s.rollback.probation.is_none() {
        outln!("Nothing to confirm: no probation is pending.");
        return EXIT_OK;
    }
    if !crate::daemon::probation_matches(&s) {
        return fail("not confirming: the installed versions are not the ones on probation");
    }
    match Client::connect(socket).and_then(|mut c| c.request(Request::Confirm, |_| {})) {
        Ok(Reply::Confirmed(o)) => {
            outln!("Confirm: {o}.");
            if matches!(
                o,
                ConfirmOutcome::Confirmed | ConfirmOutcome::NothingPending
            ) {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Ok(Reply::Failed(f)) => report_failure(&f),
        Ok(Reply::Busy) => fail("the helper is busy; try again shortly"),
        Ok(other) => fail(ClientError::Unexpected(format!("{other:?}"))),
        Err(e) => fail(e),
    }
}

/// The agent's side of `status`: what the daemon recorded, and the gates
/// evaluated now from patchman.ini, server-group.json and the helper's
/// report.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub config: Result<Config, String>,
    /// `Err(code, reason)` when a gate is closed or the config is unusable.
    pub automatic: Result<(), (&'static str, String)>,
    pub rollout_window: Option<std::time::Duration>,
    pub state: State,
    pub state_problem: Option<String>,
    pub daemon_running: bool,
}

/// Whether `pid` is a `patchman-agent … run` process.
fn is_daemon(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0);
    let is_agent = args
        .next()
        .is_some_and(|a0| a0.ends_with(b"patchman-agent"));
    is_agent && args.any(|a| a == b"run")
}

fn time_or_null(t: Option<u64>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| rfc3339(t).into())
}

impl AgentView {
    pub fn gather(
        config: &Path,
        state_dir: &Path,
        server_group: &Path,
        s: &StatusReport,
    ) -> AgentView {
        let config = crate::config::load(config).map_err(|e| e.to_string());
        let group = policy::read_server_group(server_group);
        let automatic = match &config {
            Err(e) => Err(("config_invalid", format!("patchman.ini is unusable: {e}"))),
            Ok(c) => match policy::evaluate(c.automatic, &group, s.family, s.client.as_ref()) {
                Gate::Allowed => Ok(()),
                g => Err((g.code(), g.to_string())),
            },
        };
        let (mut state, state_problem) = crate::state::peek(state_dir);
        // A rollback since the daemon's last check shows as its result.
        crate::daemon::note_rollback(s, &mut state, crate::time::now_unix());
        let daemon_running = state.daemon_pid.is_some_and(is_daemon);
        AgentView {
            config,
            automatic,
            rollout_window: group.rollout_window(),
            state,
            state_problem,
            daemon_running,
        }
    }

    fn automatic_text(&self) -> (bool, &str, String) {
        match &self.automatic {
            Ok(()) => (true, "enabled", Gate::Allowed.to_string()),
            Err((code, why)) => (false, code, why.clone()),
        }
    }

    /// Adds the agent's fields to `status --json`'s object.
    pub fn add_to_json(&self, v: &mut serde_json::Value) {
        let Some(obj) = v.as_object_mut() else {
            return;
        };
        let st = &self.state;
        let (enabled, code, reason) = self.automatic_text();
        let rollout = self.rollout_window.map(|w| {
            serde_json::json!({
                "window_seconds": w.as_secs(),
                "first_seen": st.first_seen.iter()
                    .map(|(v, t)| (v.clone(), rfc3339(*t).into()))
                    .collect::<serde_json::Map<String, serde_json::Value>>(),
            })
        });
        let extra = serde_json::json!({
            "automatic": {"enabled": enabled, "code": code, "reason": reason},
            "schedule": self.config.as_ref().ok().map(|c| serde_json::json!({
                "interval_seconds": c.interval.as_secs(),
                "jitter_seconds": c.jitter.as_secs(),
            })),
            "last_check": time_or_null(st.last_check),
            "last_result": st.last_result.as_ref().map(|r| &r.code),
            "last_result_detail": st.last_result.as_ref().map(|r| &r.words),
            "last_error": st.last_error.as_ref().map(|e| &e.message),
            "last_error_at": time_or_null(st.last_error.as_ref().map(|e| e.at)),
            "next_check": if self.daemon_running { time_or_null(st.next_check) } else { serde_json::Value::Null },
            "consecutive_failures": st.consecutive_failures,
            "rollout": rollout,
            "restart": st.restart.as_ref().map(|r| serde_json::json!({
                "version": r.version,
                "at": rfc3339(r.at),
                "confirmed": r.confirmed,
            })),
            "daemon": {"running": self.daemon_running, "pid": st.daemon_pid},
            "state_problem": self.state_problem,
        });
        if let serde_json::Value::Object(extra) = extra {
            obj.extend(extra);
        }
    }

    /// The same for a person.
    pub fn print(&self) {
        let st = &self.state;
        let (enabled, _, reason) = self.automatic_text();
        let on = if enabled { "on" } else { "off" };
        outln!("automatic updates:        {on} — {reason}");
        if let Ok(c) = &self.config {
            outln!(
                "schedule:                 every {} s plus up to {} s",
                c.interval.as_secs(),
                c.jitter.as_secs()
            );
        }
        let when = |t: Option<u64>| t.map_or_else(|| "never".to_string(), rfc3339);
        match &st.last_result {
            Some(r) => outln!(
                "last check:               {} — {}: {}",
                when(st.last_check),
                r.code,
                r.words
            ),
            None => outln!("last check:               {}", when(st.last_check)),
        }
        if let Some(e) = &st.last_error {
            outln!(
                "last error:               {} — {}",
                when(Some(e.at)),
                e.message
            );
        }
        if self.daemon_running {
            outln!("next check:               {}", when(st.next_check));
        } else {
            outln!(
                "next check:               none (the daemon `patchman-agent run` is not running)"
            );
        }
        if let Some(p) = &self.state_problem {
            outln!("state file:               unusable ({p})");
        }
    }
}
