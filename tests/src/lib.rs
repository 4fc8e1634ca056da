//! End-to-end test support for the patchman updater: a sandbox that runs the
//! real package managers (dpkg, apt) in a private mount namespace whose
//! overlays hide the host's package state, test `.deb` packages and signed
//! apt repositories built at test time, and a tiny HTTP server to serve them.
//!
//! Everything here needs root (mounts) and the tools `dpkg-deb`,
//! `apt-ftparchive` (apt-utils), `gpg` (gnupg), `nsenter` / `setpriv`
//! (util-linux). Missing any of them is an error with a clear message, never
//! a skipped test.
#![forbid(unsafe_code)]

pub mod attack_support;
pub mod cmd;
pub mod container;
pub mod daemon;
pub mod host;
pub mod installed;
pub mod packages;
pub mod release;
pub mod sandbox;
pub mod scenario;
pub mod sdtests;
pub mod updater;

use std::path::{Path, PathBuf};

pub use host::{assert_host_unchanged, host_package_state};
pub use sandbox::el_fixture::{el_fixture, ElFixture};
pub use sandbox::fixture::{apt_fixture, AptFixture};
pub use sandbox::namespace::Sandbox;

/// The path of a binary built from this workspace (`patchman-helper`,
/// `patchman-agent`, this crate's `sandbox-init`, …).
///
/// Looks next to the running test executable first (`target/<profile>/`, the
/// parent of its `deps/` directory), then in `$CARGO_TARGET_DIR/<profile>/`.
///
/// # Panics
/// When the binary is not built, with a message saying to run
/// `cargo build --workspace` first. Use [`try_workspace_bin`] for a `Result`.
pub fn workspace_bin(name: &str) -> PathBuf {
    try_workspace_bin(name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Like [`workspace_bin`], returning an error instead of panicking.
pub fn try_workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    let profile_dir = profile_dir();
    if let Some(dir) = &profile_dir {
        candidates.push(dir.join(name));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let profile = profile_dir
            .as_deref()
            .and_then(Path::file_name)
            .map(|p| p.to_os_string())
            .unwrap_or_else(|| "debug".into());
        candidates.push(PathBuf::from(&target).join(profile).join(name));
    }
    candidates.dedup();
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    anyhow::bail!(
        "the workspace binary `{name}` is not built (looked at {}): run \
         `cargo build --workspace` first, with the same profile and \
         CARGO_TARGET_DIR as the tests",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The `target/<profile>` directory the running executable was built into:
/// the parent of `deps/` for test executables, else the executable's own
/// directory. `None` when the executable's path cannot be read.
pub fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

/// `<target>/patchman-tests`: where the test fixtures are built.
pub(crate) fn fixtures_parent() -> PathBuf {
    profile_dir()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("patchman-tests")
}

/// `<target>/patchman-tests/<prefix><pid>`, this test process's fixture
/// directory, with nothing left in it from before (and what dead processes
/// left under `prefix` removed). Not created: the builder makes what it
/// needs below it.
pub(crate) fn fresh_fixture_root(prefix: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let parent = fixtures_parent();
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    remove_stale_dirs(&parent, prefix);
    let root = parent.join(format!("{prefix}{}", std::process::id()));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    Ok(root)
}

/// Removes the directories `<parent>/<prefix><pid>[-…]` whose process `pid`
/// is gone: what a test process killed outright (no `Drop` ran) left behind.
pub(crate) fn remove_stale_dirs(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
