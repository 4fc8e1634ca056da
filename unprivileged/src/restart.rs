//! Re-executing the daemon after it updated its own package. The running
//! image is then the old, deleted file, so `/proc/self/exe` would start the
//! old program again: the path is resolved once at start, while it still
//! names the running binary, and the new file at that path is executed,
//! with the same arguments. `exec` keeps the pid, so systemd keeps tracking
//! the service.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// What to execute to restart: recorded by [`Relaunch::at_start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relaunch {
    /// The binary's absolute path.
    pub exe: PathBuf,
    /// `argv[0]` as we were started.
    pub arg0: OsString,
    /// The other arguments, unchanged.
    pub args: Vec<OsString>,
}

impl Relaunch {
    /// Records the running binary's path and our arguments. Call it first
    /// thing in `main`, before anything could replace the file.
    pub fn at_start() -> std::io::Result<Relaunch> {
        let exe = std::env::current_exe()?;
        let mut argv = std::env::args_os();
        let arg0 = argv.next().unwrap_or_else(|| exe.clone().into_os_string());
        Ok(Relaunch {
            exe: strip_deleted(exe),
            arg0,
            args: argv.collect(),
        })
    }

    /// Replaces this process with a fresh start of the binary at
    /// [`exe`](Self::exe). Returns only on failure, with the error.
    pub fn exec(&self) -> std::io::Error {
        unblock_stop_signals();
        std::process::Command::new(&self.exe)
            .arg0(&self.arg0)
            .args(&self.args)
            .exec()
    }
}

/// `exec` keeps the signal mask (std does not reset it), and the daemon
/// blocks SIGTERM and SIGINT for its signal thread: a new binary that does
/// not handle them itself (one that hangs at start) could then not be
/// stopped, and a rollback's restart of the agent waited for systemd's
/// stop timeout (found by the hung-agent scenario under systemd). SIGHUP
/// stays blocked: a reload asked for meanwhile stays pending for the new
/// daemon instead of killing this one. A stop signal already pending ends
/// this process now, which is what it asked for.
fn unblock_stop_signals() {
    use nix::sys::signal::{SigSet, Signal};
    if let Err(e) = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT]).thread_unblock() {
        tracing::warn!(error = %e, "cannot unblock SIGTERM and SIGINT before the re-exec");
    }
}

/// The kernel names a running binary whose file was replaced
/// `/path (deleted)`; the path is what we want.
fn strip_deleted(p: PathBuf) -> PathBuf {
    let bytes = p.as_os_str().as_bytes();
    match bytes.strip_suffix(b" (deleted)") {
        Some(b) => PathBuf::from(std::ffi::OsStr::from_bytes(b)),
        None => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_an_absolute_path_and_the_arguments() {
        let r = Relaunch::at_start().unwrap();
        assert!(r.exe.is_absolute(), "{}", r.exe.display());
        assert!(r.exe.is_file(), "{}", r.exe.display());
        assert_eq!(r.args, std::env::args_os().skip(1).collect::<Vec<_>>());
    }

    #[test]
    fn a_replaced_binary_is_named_by_its_path() {
        assert_eq!(
            strip_deleted(PathBuf::from("/usr/bin/patchman-agent (deleted)")),
            PathBuf::from("/usr/bin/patchman-agent")
        );
        assert_eq!(
            strip_deleted(PathBuf::from("/usr/bin/patchman-agent")),
            PathBuf::from("/usr/bin/patchman-agent")
        );
    }

    #[test]
    fn the_stop_signals_are_unblocked_before_the_exec_and_sighup_stays_blocked() {
        use nix::sys::signal::{SigSet, Signal};
        // A thread of its own: the mask is per thread.
        std::thread::spawn(|| {
            SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP])
                .thread_block()
                .unwrap();
            unblock_stop_signals();
            let mask = SigSet::thread_get_mask().unwrap();
            assert!(!mask.contains(Signal::SIGTERM));
            assert!(!mask.contains(Signal::SIGINT));
            assert!(mask.contains(Signal::SIGHUP));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_failed_exec_returns_the_error() {
        let r = Relaunch {
            exe: PathBuf::from("/nonexistent/patchman-agent"),
            arg0: "patchman-agent".into(),
            args: vec![],
        };
        assert_eq!(r.exec().kind(), std::io::ErrorKind::NotFound);
    }
}
