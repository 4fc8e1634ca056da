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
        std::process::Command::new(&self.exe)
            .arg0(&self.arg0)
            .args(&self.args)
            .exec()
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
    fn a_failed_exec_returns_the_error() {
        let r = Relaunch {
            exe: PathBuf::from("/nonexistent/patchman-agent"),
            arg0: "patchman-agent".into(),
            args: vec![],
        };
        assert_eq!(r.exec().kind(), std::io::ErrorKind::NotFound);
    }
}
