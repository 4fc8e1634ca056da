//! `patchman-agent run` as a child of a test, with its log (stderr)
//! collected by a thread, for the tests that drive the daemon itself.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::attack_support::wait_until;

/// The daemon, with its stderr (the log) collected by a thread.
pub struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Takes over `child`, spawned with a piped stderr, and returns once
    /// `runs(pid)` says the pid runs the agent itself (setpriv execs it in
    /// place), which must happen within `within`.
    pub fn started(
        mut child: Child,
        within: Duration,
        mut runs: impl FnMut(u32) -> bool,
    ) -> Daemon {
        let stderr = child.stderr.take().expect("the daemon's stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let pid = child.id();
        assert!(wait_until(within, || runs(pid)), "the daemon did not start");
        Daemon { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        wait_until(within, || self.log().contains(needle))
    }

    /// Asserts that the log contains `needle` within `within`, showing the
    /// log when it does not.
    pub fn assert_logs(&self, needle: &str, within: Duration) {
        assert!(self.wait_for_log(needle, within), "{}", self.log());
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Asserts that its process, once re-executed, runs the file at `path`
    /// (not the deleted old file) with the arguments it had before,
    /// `cmdline` (as `/proc/<pid>/cmdline` reads), and is still running.
    pub fn assert_reexecuted(&mut self, path: &Path, cmdline: &[u8]) {
        let pid = self.pid();
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
            path,
            "not the deleted old file"
        );
        assert_eq!(
            std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
            cmdline,
            "arguments kept"
        );
        assert!(self.alive(), "{}", self.log());
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then its exit code, which must come within `within`.
    pub fn stop(mut self, within: Duration) -> Option<i32> {
        self.signal(Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon did not stop on SIGTERM:\n{}", self.log());
    }
}
