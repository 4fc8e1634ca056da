//! The package managers' own locks: probing them for `Status`, and taking
//! dpkg's `lock-frontend` as a frontend does before running dpkg.
//!
//! dpkg, apt and rpm all use POSIX record locks (`fcntl(F_SETLK)`) on whole
//! files. We test and take open-file-description locks (`F_OFD_*`), which
//! conflict with those both ways but belong to one open file, not to the
//! whole process: with classic locks, a `Status` probe that opens and
//! closes `lock-frontend` would silently drop the lock an `Update` in
//! another thread holds. (Kernels before 3.15 lack OFD locks: there the
//! classic calls are used.) We never remove or break a lock file: another
//! program's lock is waited for with a bound, then reported.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc;
use patchman_shared::LockState;

/// dpkg's frontend lock, taken by apt and by us.
pub const DPKG_FRONTEND_LOCK: &str = "/var/lib/dpkg/lock-frontend";
/// dpkg's database lock.
pub const DPKG_LOCK: &str = "/var/lib/dpkg/lock";
/// rpm's transaction lock (rpm ≥ 4.6).
pub const RPM_LOCK: &str = "/var/lib/rpm/.rpm.lock";

fn whole_file(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Asks the kernel whether another process holds a lock on `path`. A
/// missing file is an unheld lock. Read-only: opens without creating.
pub fn probe(path: &Path) -> LockState {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
    {
        Ok(f) => f,
        Err(_) => return LockState::Free,
    };
    let mut fl = whole_file(libc::F_WRLCK);
    let asked = match fcntl(&file, FcntlArg::F_OFD_GETLK(&mut fl)) {
        Err(nix::errno::Errno::EINVAL) => {
            fl = whole_file(libc::F_WRLCK);
            fcntl(&file, FcntlArg::F_GETLK(&mut fl))
        }
        other => other,
    };
    match asked {
        Ok(_) if fl.l_type == libc::F_UNLCK as libc::c_short => LockState::Free,
        Ok(_) => LockState::Held {
            pid: u32::try_from(fl.l_pid).ok().filter(|&p| p > 0),
        },
        Err(_) => LockState::Free,
    }
}

/// Probes every lock in `paths`; the first one held wins.
pub fn probe_all(paths: &[&str]) -> LockState {
    paths
        .iter()
        .map(|p| probe(Path::new(p)))
        .find(|s| *s != LockState::Free)
        .unwrap_or(LockState::Free)
}

/// A lock we hold; released when dropped (closing the file releases it).
#[derive(Debug)]
pub struct HeldLock {
    _file: File,
    pub path: PathBuf,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Still held by someone else when the bounded wait ran out.
    Held { pid: Option<u32> },
    /// The lock file could not be opened or created.
    Open(std::io::Error),
}

/// Takes an exclusive lock on `path` (created 0640 if missing, never
/// following a symlink), retrying until `wait` has passed.
pub fn acquire(path: &Path, wait: Duration) -> Result<HeldLock, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(LockError::Open)?;
    let deadline = Instant::now() + wait;
    loop {
        let fl = whole_file(libc::F_WRLCK);
        let taken = match fcntl(&file, FcntlArg::F_OFD_SETLK(&fl)) {
            Err(nix::errno::Errno::EINVAL) => fcntl(&file, FcntlArg::F_SETLK(&fl)),
            other => other,
        };
        match taken {
            Ok(_) => {
                return Ok(HeldLock {
                    _file: file,
                    path: path.to_path_buf(),
                })
            }
            Err(nix::errno::Errno::EACCES | nix::errno::Errno::EAGAIN) => {
                if Instant::now() >= deadline {
                    let pid = match probe(path) {
                        LockState::Held { pid } => pid,
                        LockState::Free => None,
                    };
                    return Err(LockError::Held { pid });
                }
                thread::sleep(Duration::from_millis(250).min(wait));
            }
            Err(e) => return Err(LockError::Open(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Holds a real fcntl lock from another process, as dpkg would:
    /// flock(1) uses flock(2), which fcntl locks do not see, so use
    /// python's fcntl.lockf (F_SETLK).
    fn hold_in_child(path: &Path) -> std::process::Child {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,time\nf=open(sys.argv[1],'a')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(60)",
            ])
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        child
    }

    #[test]
    fn probe_sees_another_process_lock_and_acquire_waits_then_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock-frontend");
        assert_eq!(probe(&path), LockState::Free);
        let mut child = hold_in_child(&path);
        assert_eq!(
            probe(&path),
            LockState::Held {
                pid: Some(child.id())
            }
        );
        let t0 = Instant::now();
        match acquire(&path, Duration::from_millis(600)) {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(child.id())),
            other => panic!("expected Held, got {other:?}"),
        }
        assert!(t0.elapsed() >= Duration::from_millis(600));
        child.kill().unwrap();
        child.wait().unwrap();
        let held = acquire(&path, Duration::from_secs(5)).expect("free after the holder died");
        drop(held);
        // Free once no fd of its open file description is left. A child
        // another test thread is spawning holds a copy of every fd until
        // its exec closes the close-on-exec ones: a few milliseconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while probe(&path) != LockState::Free && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(probe(&path), LockState::Free);
    }

    #[test]
    fn a_probe_does_not_drop_a_lock_this_process_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock-frontend");
        let held = acquire(&path, Duration::ZERO).unwrap();
        // What Status does while Update holds the lock, in another thread.
        assert!(matches!(probe(&path), LockState::Held { .. }));
        assert!(matches!(probe(&path), LockState::Held { .. }));
        // Another process (dpkg, apt) must still find it taken.
        let out = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys\nf=open(sys.argv[1],'a')\ntry:\n fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)\n print('got it')\nexcept OSError:\n print('held')",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "held");
        drop(held);
        assert_eq!(probe(&path), LockState::Free);
    }

    #[test]
    fn acquire_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join("lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            acquire(&link, Duration::ZERO),
            Err(LockError::Open(_))
        ));
        assert!(!target.exists());
    }
}
