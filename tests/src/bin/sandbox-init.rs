//! The holder process of a test sandbox (see `patchman_tests::Sandbox`).
//!
//! `sandbox-init <dir> [--bind-ro PATH]...`, as root:
//! 1. moves itself into a new, private mount namespace (so nothing below can
//!    reach the host's mount table);
//! 2. mounts a tmpfs on `<dir>/layers` and, from it, overlayfs over `/etc`,
//!    `/var`, `/opt`, `/usr`, `/root`, `/home`, `/srv` (those that exist),
//!    so every write there lands in the tmpfs;
//! 3. mounts fresh tmpfs on `/run` and `/tmp`;
//! 4. bind-mounts each `--bind-ro PATH` read-only at the same path (for host
//!    paths the fresh `/tmp` hid, such as a `CARGO_TARGET_DIR` under `/tmp`);
//! 5. prints `ready` on stdout and waits until stdin reaches end-of-file
//!    (its parent closed it, or died) or it is killed; at end-of-file it
//!    SIGKILLs every other process left in the namespace, then exits.
//!
//! `sandbox-init <dir> --rootfs TREE [--bind-ro PATH]...` (root-file-system
//! mode) instead, after step 1:
//! 2. mounts a tmpfs on `<dir>/layers` and, from it, one overlay whose lower
//!    dir is `TREE` (a Debian release's root file system, never written) at
//!    `<dir>/layers/root/merged`;
//! 3. mounts in it a fresh `/proc`, the host's `/sys` and `/dev` (bind,
//!    recursive; `/sys` read-only), fresh tmpfs `/run` and `/tmp`;
//! 4. binds each `--bind-ro PATH` read-only at the same path inside the tree;
//! 5. chroots into the tree (so `nsenter --root --wd` lands there), then as
//!    above.
//!
//! The mounts belong to the namespace alone: when the last process in it is
//! gone, they are gone.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;

/// The host directories overlaid, when they exist as real directories.
const OVERLAID: &[&str] = &["/etc", "/var", "/opt", "/usr", "/root", "/home", "/srv"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox-init: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: sandbox-init <dir> [--rootfs TREE] [--bind-ro PATH]...")?,
    );
    let mut binds = Vec::new();
    let mut rootfs = None;
    while let Some(a) = args.next() {
        if a == "--rootfs" {
            rootfs = Some(PathBuf::from(args.next().ok_or("--rootfs needs a path")?));
        } else if a == "--bind-ro" {
            binds.push(PathBuf::from(args.next().ok_or("--bind-ro needs a path")?));
        } else {
            return Err(format!("unknown argument {a:?}"));
        }
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root (it mounts overlayfs and tmpfs)".into());
    }

    // 1. Our own mount namespace, with no propagation back to the host.
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount_(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;

    // 2. The writable layers live in a tmpfs of their own: never on an
    //    overlay (overlayfs refuses an overlay upper dir), never on the host's
    //    disk, and freed with the namespace.
    let layers = dir.join("layers");
    std::fs::create_dir_all(&layers).map_err(|e| format!("mkdir {}: {e}", layers.display()))?;
    mount_(
        Some("tmpfs"),
        &layers,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0700"),
    )?;
    // The root-file-system mode: the tree's mount points, not the host's.
    let root = match &rootfs {
        Some(tree) => Some(mount_tree(tree, &layers)?),
        None => {
            overlay_host_dirs(&layers)?;
            None
        }
    };
    let root = root.as_deref().unwrap_or(Path::new("/"));

    // 4 (prepared). Open the bind sources now: the fresh /tmp hides them.
    let mut sources = Vec::new();
    for b in &binds {
        let fd = open(b, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| format!("open {}: {e}", b.display()))?;
        sources.push((b, fd));
    }

    // 3. Fresh /run and /tmp.
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount_(
        Some("tmpfs"),
        &root.join("run"),
        Some("tmpfs"),
        nodev,
        Some("mode=0755"),
    )?;
    mount_(
        Some("tmpfs"),
        &root.join("tmp"),
        Some("tmpfs"),
        nodev,
        Some("mode=1777"),
    )?;
    make_dir_mode(&root.join("run/lock"), 0o1777)?;

    // 4. Read-only binds at the same paths.
    for (target, fd) in &sources {
        let target = root.join(target.strip_prefix("/").unwrap_or(target));
        let is_dir = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| format!("stat {}: {e}", target.display()))?
            .is_dir();
        if is_dir {
            std::fs::create_dir_all(&target)
        } else {
            target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&target, b"").map(drop))
        }
        .map_err(|e| format!("creating the mount point {}: {e}", target.display()))?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        bind_ro(&source, &target)?;
    }
    drop(sources);

    // 5 (root-file-system mode). Into the tree: `nsenter --root --wd`
    // takes our root and working directory.
    if rootfs.is_some() {
        nix::unistd::chroot(root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
        std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    }

    // 5. Ready; hold the namespace until our parent lets go.
    hold()
}

/// Overlays the host's [`OVERLAID`] directories, their writable layers in
/// `layers` (host mode).
fn overlay_host_dirs(layers: &Path) -> Result<(), String> {
    for target in OVERLAID {
        let target = Path::new(target);
        let is_real_dir = std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir());
        if !is_real_dir {
            continue;
        }
        let name = target.strip_prefix("/").unwrap_or(target);
        let upper = layers.join(name).join("upper");
        let work = layers.join(name).join("work");
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            option_path(target)?,
            option_path(&upper)?,
            option_path(&work)?
        );
        mount_(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(&options),
        )?;
    }

    Ok(())
}

/// Mounts the overlay of `tree` (upper and work dirs in `layers`) and, in
/// it, `/proc`, `/sys`, `/dev`; returns the merged tree's path.
fn mount_tree(tree: &Path, layers: &Path) -> Result<PathBuf, String> {
    let tree = tree
        .canonicalize()
        .map_err(|e| format!("the root file system {}: {e}", tree.display()))?;
    if !tree.join("usr/bin").is_dir() {
        return Err(format!(
            "{} is not a root file system (no usr/bin)",
            tree.display()
        ));
    }
    let upper = layers.join("root/upper");
    let work = layers.join("root/work");
    let merged = layers.join("root/merged");
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        option_path(&tree)?,
        option_path(&upper)?,
        option_path(&work)?
    );
    mount_(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )?;
    for d in ["proc", "sys", "dev", "run", "tmp"] {
        std::fs::create_dir_all(merged.join(d))
            .map_err(|e| format!("mkdir {}: {e}", merged.join(d).display()))?;
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_(
        Some("proc"),
        &merged.join("proc"),
        Some("proc"),
        nosuid,
        None,
    )?;
    bind_ro(Path::new("/sys"), &merged.join("sys"))?;
    mount_(
        Some("/dev"),
        &merged.join("dev"),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    Ok(merged)
}

/// Binds `source` (recursively) at `target`, then makes it read-only.
fn bind_ro(source: &Path, target: &Path) -> Result<(), String> {
    mount_(
        Some(source.as_os_str().to_str().unwrap_or_default()),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    mount_(
        None,
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None,
    )
}

/// Prints `ready` and waits for end-of-file on stdin; then ends every other
/// process in the namespace.
fn hold() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(out);
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("sandbox-init: stdin: {e}");
                break;
            }
        }
    }
    // Our parent is gone (or let go) without killing what runs in here, a
    // test process killed outright for instance: end it all, so the
    // namespace and its mounts go with us.
    kill_namespace_peers();
    Ok(())
}

/// SIGKILLs every other process in our mount namespace (a fresh one, made
/// by `unshare` above: nothing of the host's is in it), until none is left
/// or 10 s have passed.
fn kill_namespace_peers() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let Some(ours) = ns("self") else { return };
    let me = std::process::id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let peers: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| u32::try_from(*pid).is_ok_and(|p| p != me))
            .filter(|pid| ns(&pid.to_string()).as_ref() == Some(&ours))
            .collect();
        if peers.is_empty() {
            return;
        }
        for pid in peers {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn mount_(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    mount(source, target, fstype, flags, data).map_err(|e| {
        format!(
            "mount {} on {} (type {}, options {}): {e}",
            source.unwrap_or("-"),
            target.display(),
            fstype.unwrap_or("-"),
            data.unwrap_or("-")
        )
    })
}

/// A path as an overlayfs mount option value: commas, colons and
/// backslashes would need escaping, so refuse them.
fn option_path(p: &Path) -> Result<&str, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))?;
    if s.contains([',', ':', '\\']) {
        return Err(format!("path {s:?} cannot be an overlayfs option"));
    }
    Ok(s)
}

fn make_dir_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p)
        .and_then(|()| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| format!("mkdir {}: {e}", p.display()))
}
