//! The ONLY place in the helper that opens package files.
//!
//! A downloaded package is opened without following links, checked
//! (regular file, root-owned, not group/world-writable, one link, not too
//! large, in a directory that is itself root-owned and not writable by
//! others), and copied — hashed on the way — into a fresh root-only
//! directory made for this run. The package manager installs the copy.
//! What was verified is therefore exactly what is installed: nobody but
//! root can change the copy between our check and `dpkg -i` / `rpm -U`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::OFlag;
use patchman_shared::VerificationFailure;

use crate::sha256;

/// Where the helper keeps its per-run private directories.
pub const PRIVATE_BASE: &str = "/var/cache/patchman-helper";

/// Largest package file accepted.
pub const MAX_PACKAGE_SIZE: u64 = 512 * 1024 * 1024;

#[derive(Debug)]
pub enum FileError {
    /// The file failed a check; nothing was copied.
    Refused(VerificationFailure),
    /// A directory we rely on is unsafe or could not be made.
    UnsafeDir { path: PathBuf, why: String },
    Io {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Refused(v) => write!(f, "{v}"),
            FileError::UnsafeDir { path, why } => {
                write!(f, "unsafe directory {}: {why}", path.display())
            }
            FileError::Io { what, path, error } => {
                write!(f, "cannot {what} {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for FileError {}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_path_buf();
    move |error| FileError::Io { what, path, error }
}

/// Checks that `dir` and every directory above it is a real directory
/// (not a symlink), owned by root, not writable by group or others.
/// Opens `path` for reading without following a final symlink, without
/// blocking on a FIFO or device, and never as a controlling terminal.
pub fn open_no_follow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(
            (OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY).bits(),
        )
        .open(path)
}

pub fn check_root_dir(dir: &Path) -> Result<(), FileError> {
    // "archives/" as apt prints it: lstat of a path ending in '/' follows
    // a symlink at its last component, so look at the components only.
    let dir: PathBuf = dir.components().collect();
    let dir = dir.as_path();
    let unsafe_dir = |p: &Path, why: &str| FileError::UnsafeDir {
        path: p.to_path_buf(),
        why: why.to_string(),
    };
    for p in dir.ancestors() {
        if p.as_os_str().is_empty() {
            continue;
        }
        let m = fs::symlink_metadata(p).map_err(io_err("inspect", p))?;
        if m.file_type().is_symlink() {
            // Any link on the way is refused: whoever can change where it
            // points would choose the directory we read packages from.
            return Err(unsafe_dir(p, "is a symbolic link"));
        }
        if !m.is_dir() {
            return Err(unsafe_dir(p, "is not a directory"));
        }
        if m.uid() != 0 {
            return Err(unsafe_dir(p, "is not owned by root"));
        }
        // World-writable with the sticky bit (/tmp, /var/tmp) only above
        // our own private directories, never for the archives.
        if m.mode() & 0o022 != 0 {
            return Err(unsafe_dir(p, "is group- or world-writable"));
        }
    }
    Ok(())
}

/// A fresh, root-only (0700) directory for one run; removed with its
/// contents when dropped.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

impl PrivateDir {
    /// Creates `<base>/run-<pid>-<n>`, making `base` (0700 root) if
    /// missing and refusing a `base` that is not root's alone.
    pub fn create(base: &Path) -> Result<PrivateDir, FileError> {
        ensure_private_dir(base)?;
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("run-{}-{n}", std::process::id()));
        // A leftover from a crashed run of the same pid: ours to remove.
        if fs::symlink_metadata(&path).is_ok() {
            fs::remove_dir_all(&path).map_err(io_err("remove stale", &path))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_err("create", &path))?;
        Ok(PrivateDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the private directory");
        }
    }
}

/// Removes the private directories (`run-<pid>-<n>`) that runs which no
/// longer exist left behind (a crash, a kill, a power cut), so downloaded
/// packages do not pile up. Those of a live pid (a helper serving now, in
/// a test beside us) are kept. Only in a root-only `base`: nothing in it
/// can be a link planted by someone else. Returns how many it removed.
pub fn sweep_stale(base: &Path) -> Result<usize, FileError> {
    match fs::symlink_metadata(base) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("inspect", base)(e)),
        Ok(_) => {}
    }
    check_root_dir(base)?;
    let mut removed = 0;
    for entry in fs::read_dir(base).map_err(io_err("list", base))? {
        let entry = entry.map_err(io_err("list", base))?;
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, n)| n.parse::<u64>().ok().and(pid.parse::<u32>().ok()))
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        fs::remove_dir_all(&path).map_err(io_err("remove stale", &path))?;
        removed += 1;
    }
    Ok(removed)
}

/// A package file that passed the checks, copied into a private dir.
#[derive(Debug, Clone)]
pub struct VerifiedCopy {
    pub path: PathBuf,
    pub sha256: [u8; 32],
    pub size: u64,
}

/// Opens `dir/name` without following a link or waiting on a FIFO, and
/// checks what it is: a regular file, root-owned, not group/world-writable,
/// one link, not too large, in a root-only directory chain.
fn open_checked(dir: &Path, name: &str) -> Result<(File, fs::Metadata, PathBuf), FileError> {
    let refused = FileError::Refused;
    if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
        return Err(refused(VerificationFailure::Missing));
    }
    check_root_dir(dir)?;
    let source_path = dir.join(name);
    let file = match open_no_follow(&source_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(refused(VerificationFailure::Missing))
        }
        // ELOOP: the last component is a symlink.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(refused(VerificationFailure::NotRegularFile))
        }
        Err(e) => return Err(io_err("open", &source_path)(e)),
    };
    let m = file.metadata().map_err(io_err("inspect", &source_path))?;
    if !m.is_file() {
        return Err(refused(VerificationFailure::NotRegularFile));
    }
    if m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(refused(VerificationFailure::UnsafeOwnerOrMode));
    }
    if m.nlink() != 1 {
        // A hard link planted to another file: not what the tool wrote.
        return Err(refused(VerificationFailure::NotRegularFile));
    }
    if m.len() > MAX_PACKAGE_SIZE {
        return Err(refused(VerificationFailure::MetadataMismatch {
            expected: format!("at most {MAX_PACKAGE_SIZE} bytes"),
            found: format!("{} bytes", m.len()),
        }));
    }
    Ok((file, m, source_path))
}

/// Checks a file the package manager wrote into our own private directory
/// (dnf's `--downloaddir`), where it is installed from as it is.
pub fn verify_in_place(private: &PrivateDir, name: &str) -> Result<PathBuf, FileError> {
    let (_, _, path) = open_checked(private.path(), name)?;
    Ok(path)
}

/// The names of the entries of our private directory, in order.
pub fn list_private(private: &PrivateDir) -> Result<Vec<String>, FileError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(private.path()).map_err(io_err("list", private.path()))? {
        let entry = entry.map_err(io_err("list", private.path()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
        if names.len() > 1000 {
            break;
        }
    }
    names.sort();
    Ok(names)
}

/// Opens `dir/name` (see [`open_checked`]) and copies it into `private`,
/// hashing as it goes.
pub fn copy_verified(
    dir: &Path,
    name: &str,
    private: &PrivateDir,
) -> Result<VerifiedCopy, FileError> {
    let refused = FileError::Refused;
    let (file, m, source_path) = open_checked(dir, name)?;
    let dest_path = private.path().join(name);
    let mut dest = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(&dest_path)
        .map_err(io_err("create", &dest_path))?;
    let mut hasher = sha256::Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut src = (&file).take(MAX_PACKAGE_SIZE + 1);
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", &source_path)(e)),
        };
        hasher.update(&buf[..n]);
        dest.write_all(&buf[..n])
            .map_err(io_err("write", &dest_path))?;
        size += n as u64;
    }
    if size != m.len() {
        // It changed while we read it.
        return Err(refused(VerificationFailure::Changed));
    }
    dest.sync_all().map_err(io_err("sync", &dest_path))?;
    Ok(VerifiedCopy {
        path: dest_path,
        sha256: hasher.finish(),
        size,
    })
}

/// Makes `dir` (and missing parents, 0755) root-only (0700) if missing, and
/// refuses one that is not root's alone: the helper's own state.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FileError> {
    if let Err(e) = fs::symlink_metadata(dir) {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(io_err("inspect", dir)(e));
        }
        if let Some(parent) = dir.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io_err("create", parent))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create", dir))?;
    }
    check_root_dir(dir)?;
    let m = fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
    if m.mode() & 0o077 != 0 {
        return Err(FileError::UnsafeDir {
            path: dir.to_path_buf(),
            why: "is accessible to users other than root (want 0700)".into(),
        });
    }
    Ok(())
}

/// Replaces `dir/name` atomically with what `fill` writes: a temporary
/// file in the same directory (mode `mode`), fsync, rename, fsync of the
/// directory. A crash leaves the old file or the new one, never a part.
pub fn replace_atomically(
    dir: &Path,
    name: &str,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), FileError> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let dest = dir.join(name);
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    let written = fill(&mut file).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(e));
    }
    drop(file);
    fs::rename(&tmp, &dest).map_err(io_err("rename into place", &dest))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

/// Opens `path` for reading without following a link at its last
/// component.
pub fn open_nofollow(path: &Path) -> Result<File, FileError> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(io_err("open", path))
}

/// Copies what `from` reads to `dir/name` atomically; returns its SHA-256.
pub fn copy_atomically(
    mut from: File,
    dir: &Path,
    name: &str,
    mode: u32,
) -> Result<[u8; 32], FileError> {
    let mut hasher = sha256::Hasher::new();
    replace_atomically(dir, name, mode, |to| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut limited = (&mut from).take(MAX_PACKAGE_SIZE + 1);
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            to.write_all(&buf[..n])?;
        }
    })?;
    Ok(hasher.finish())
}

/// Reads a small root-owned state file whole, refusing one larger than
/// `max` bytes (never allocating more). `None` when it does not exist.
pub fn read_small(path: &Path, max: u64) -> Result<Option<Vec<u8>>, FileError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let m = file.metadata().map_err(io_err("inspect", path))?;
    if !m.is_file() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(FileError::UnsafeDir {
            path: path.to_path_buf(),
            why: "is not a regular root-owned file writable only by root".into(),
        });
    }
    let mut data = Vec::new();
    (&file)
        .take(max + 1)
        .read_to_end(&mut data)
        .map_err(io_err("read", path))?;
    if data.len() as u64 > max {
        return Err(FileError::UnsafeDir {
            path: path.to_path_buf(),
            why: format!("is larger than {max} bytes"),
        });
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// /tmp is world-writable (an unacceptable ancestor), so tests build
    /// their tree under /run, whose ancestors are root's alone.
    fn root_tree() -> tempfile::TempDir {
        let d = tempfile::Builder::new()
            .prefix("patchman-files-test")
            .tempdir_in("/run")
            .unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test checks root ownership: run as root"
        );
    }

    /// As root, a [`root_tree`] with an empty `archives` directory and a
    /// run's private directory in it.
    fn archives_and_private() -> (tempfile::TempDir, PathBuf, PrivateDir) {
        require_root();
        let t = root_tree();
        let archives = t.path().join("archives");
        fs::create_dir(&archives).unwrap();
        let private = PrivateDir::create(&t.path().join("private")).unwrap();
        (t, archives, private)
    }

    #[test]
    fn copies_and_hashes_a_good_file() {
        let (_t, archives, private) = archives_and_private();
        fs::write(archives.join("p_1_all.deb"), b"hello").unwrap();
        let copy = copy_verified(&archives, "p_1_all.deb", &private).unwrap();
        assert_eq!(fs::read(&copy.path).unwrap(), b"hello");
        assert_eq!(copy.sha256, sha256::digest(b"hello"));
        assert_eq!(fs::metadata(&copy.path).unwrap().mode() & 0o777, 0o600);
        let dir = private.path().to_path_buf();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        drop(private);
        assert!(!dir.exists(), "private dir removed after the run");
    }

    #[test]
    fn refuses_links_fifos_and_unsafe_modes() {
        let (t, archives, private) = archives_and_private();
        fs::write(t.path().join("elsewhere"), b"x").unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), archives.join("sym.deb")).unwrap();
        fs::hard_link(t.path().join("elsewhere"), archives.join("hard.deb")).unwrap();
        nix::unistd::mkfifo(
            &archives.join("fifo.deb"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        fs::write(archives.join("ww.deb"), b"x").unwrap();
        fs::set_permissions(archives.join("ww.deb"), fs::Permissions::from_mode(0o666)).unwrap();
        fs::write(archives.join("nobody.deb"), b"x").unwrap();
        nix::unistd::chown(
            &archives.join("nobody.deb"),
            Some(nix::unistd::Uid::from_raw(65534)),
            None,
        )
        .unwrap();
        use VerificationFailure::*;
        for (name, want) in [
            ("sym.deb", NotRegularFile),
            ("hard.deb", NotRegularFile),
            ("fifo.deb", NotRegularFile),
            ("ww.deb", UnsafeOwnerOrMode),
            ("nobody.deb", UnsafeOwnerOrMode),
            ("absent.deb", Missing),
            ("../elsewhere", Missing),
        ] {
            match copy_verified(&archives, name, &private) {
                Err(FileError::Refused(v)) => assert_eq!(v, want, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Nothing was copied for any of them.
        assert_eq!(fs::read_dir(private.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_an_archives_dir_others_can_write_or_that_is_a_link() {
        require_root();
        let t = root_tree();
        let private = PrivateDir::create(&t.path().join("private")).unwrap();
        let open = t.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(open.join("p.deb"), b"x").unwrap();
        std::os::unix::fs::symlink(&open, t.path().join("link")).unwrap();
        // With a trailing slash, as apt-config prints directories.
        let safe = t.path().join("safe");
        fs::create_dir(&safe).unwrap();
        fs::write(safe.join("p.deb"), b"x").unwrap();
        std::os::unix::fs::symlink(&safe, t.path().join("link2")).unwrap();
        let mut with_slash = t.path().join("link2").into_os_string();
        with_slash.push("/");
        for dir in [
            open.as_path(),
            &t.path().join("link"),
            Path::new(&with_slash),
        ] {
            let got = copy_verified(dir, "p.deb", &private);
            assert!(
                matches!(got, Err(FileError::UnsafeDir { .. })),
                "{}: {got:?}",
                dir.display()
            );
        }
    }

    #[test]
    fn directories_of_dead_runs_are_swept_and_live_ones_kept() {
        require_root();
        let t = root_tree();
        let base = t.path().join("base");
        let ours = PrivateDir::create(&base).unwrap();
        fs::write(ours.path().join("p.deb"), b"x").unwrap();
        // A pid that has just ended: a crashed run's directory.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = base.join(format!("run-{dead}-7"));
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("left.deb"), b"x").unwrap();
        // A live process's directory, and a name that is not ours.
        let live = base.join("run-1-0");
        fs::create_dir(&live).unwrap();
        let other = base.join("keep-me");
        fs::create_dir(&other).unwrap();
        assert_eq!(sweep_stale(&base).unwrap(), 1);
        assert!(!stale.exists());
        assert!(ours.path().join("p.deb").exists() && live.exists() && other.exists());
        assert_eq!(sweep_stale(&t.path().join("absent")).unwrap(), 0);
    }

    #[test]
    fn private_base_must_be_root_only() {
        require_root();
        let t = root_tree();
        let base = t.path().join("base");
        fs::create_dir(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            PrivateDir::create(&base),
            Err(FileError::UnsafeDir { .. })
        ));
    }
}
