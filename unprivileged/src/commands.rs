//! The commands a person runs: `status`, `check`, `update`. Each prints
//! what happens as it happens and returns the process exit code.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use patchman_shared::{Failure, Installed, LockState, Reply, Request, StatusReport, Step};

use crate::client::{Client, ClientError};

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
        "agent_version": crate::VERSION,
        "agent_privileges": privileges_json(&crate::privs::PrivState::current()),
    })
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
    eprintln!("patchman-agent: {e}");
    EXIT_FAILED
}

pub fn status(socket: &Path, json: bool) -> i32 {
    let reply = Client::connect(socket).and_then(|mut c| c.request(Request::Status, |_| {}));
    match reply {
        Ok(Reply::Status(s)) => {
            if json {
                println!("{}", status_json(&s));
            } else {
                println!("family:                   {}", s.family);
                println!("patchman-client:          {}", describe(&s.client));
                println!("patchman-client-realtime: {}", describe(&s.realtime));
                match s.lock {
                    LockState::Free => println!("package manager lock:     free"),
                    LockState::Held { pid: Some(p) } => {
                        println!("package manager lock:     held by pid {p}")
                    }
                    LockState::Held { pid: None } => println!("package manager lock:     held"),
                }
                println!("helper version:           {}", s.helper_version);
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

    fn step(&mut self, step: Step) {
        self.finish_current();
        print!("  {}…", capitalize(step.describe()));
        let _ = std::io::stdout().flush();
        self.current = Some((step, Instant::now()));
    }

    fn finish_current(&mut self) {
        if let Some((_, t)) = self.current.take() {
            println!(" {:.2} s", t.elapsed().as_secs_f64());
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
    eprintln!("patchman-agent: {f}");
    if let Some(a) = advice(f) {
        eprintln!("{a}");
    }
    EXIT_FAILED
}

pub fn check(socket: &Path) -> i32 {
    println!("Checking for updates of patchman-client");
    let mut printer = StepPrinter::new();
    let reply =
        Client::connect(socket).and_then(|mut c| c.request(Request::Check, |s| printer.step(s)));
    printer.finish_current();
    match reply {
        Ok(Reply::Check(report)) => {
            for c in &report.packages {
                match &c.candidate {
                    Some(new) => println!("{}: {} → {} available", c.package, c.installed, new),
                    None => println!("{}: {} is up to date", c.package, c.installed),
                }
            }
            if report.update_available() {
                println!("Update available ({:.2} s).", printer.total());
                EXIT_UPDATE_AVAILABLE
            } else {
                println!("Up to date ({:.2} s).", printer.total());
                EXIT_OK
            }
        }
        Ok(Reply::Failed(f)) => report_failure(&f),
        Ok(Reply::Busy) => fail("an update is already running; try again shortly"),
        Ok(other) => fail(ClientError::Unexpected(format!("{other:?}"))),
        Err(e) => fail(e),
    }
}

pub fn update(socket: &Path) -> i32 {
    println!("Updating patchman-client");
    let mut printer = StepPrinter::new();
    let reply =
        Client::connect(socket).and_then(|mut c| c.request(Request::Update, |s| printer.step(s)));
    printer.finish_current();
    match reply {
        Ok(Reply::Updated(report)) if report.changes.is_empty() => {
            println!("Already up to date ({:.2} s).", printer.total());
            EXIT_OK
        }
        Ok(Reply::Updated(report)) => {
            for c in &report.changes {
                println!("{}: {} → {}", c.package, c.from, c.to);
            }
            println!("Updated in {:.2} s.", printer.total());
            EXIT_OK
        }
        Ok(Reply::Failed(f)) => report_failure(&f),
        Ok(Reply::Busy) => fail("an update is already running; try again shortly"),
        Ok(other) => fail(ClientError::Unexpected(format!("{other:?}"))),
        Err(e) => fail(e),
    }
}
