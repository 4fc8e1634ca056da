//! The packages that ship: `patchman-client` `.deb`/`.rpm` built by
//! `deploy/package/build.sh` from the release binaries with a glibc 2.17
//! symbol floor (`cargo zigbuild --target x86_64-unknown-linux-gnu.2.17`).
//!
//! The release tiers (the Debian matrix, the systemd container) run these,
//! never `target/release`. `tests/ci.sh` builds them once, before the tests,
//! with `deploy/package/build.sh VERSION OUTDIR`; a test that finds them
//! missing fails with that instruction.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// The Rust target of the shipped binaries, as `cargo zigbuild` names it
/// (the `.2.17` suffix is the glibc symbol floor, not part of the directory).
pub const SHIPPED_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Which package format to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Deb,
    Rpm,
}

impl Format {
    fn flag(self) -> &'static str {
        match self {
            Format::Deb => "--deb",
            Format::Rpm => "--rpm",
        }
    }
}

/// `deploy/package/build.sh` of this workspace.
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/package/build.sh")
}

/// The workspace's target directory (`$CARGO_TARGET_DIR`, else the parent
/// of the running test's profile directory, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    crate::profile_dir()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The directory holding the shipped `patchman-helper` and
/// `patchman-agent` (glibc 2.17 floor), as `build.sh` without `--bin-dir`
/// leaves them: `<target>/x86_64-unknown-linux-gnu/release`, or
/// `$PATCHMAN_SHIPPED_BIN_DIR`.
pub fn shipped_bin_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("PATCHMAN_SHIPPED_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => target_dir().join(SHIPPED_TARGET).join("release"),
    };
    for bin in ["patchman-helper", "patchman-agent"] {
        if !dir.join(bin).is_file() {
            bail!(
                "the shipped binaries are not built ({} is missing): run \
                 `deploy/package/build.sh VERSION OUTDIR` first (tests/ci.sh does), \
                 which builds them with cargo zigbuild for glibc 2.17",
                dir.join(bin).display()
            );
        }
    }
    Ok(dir)
}

/// Builds one package per version from the binaries in `bin_dir` (one
/// `build.sh --bin-dir` each, in parallel), into `<out>/<version>/`;
/// returns the package files in the order of `versions`.
pub fn build_packages(
    bin_dir: &Path,
    format: Format,
    versions: &[&str],
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let mut children: Vec<(Child, String)> = Vec::new();
    for v in versions {
        let mut c = Command::new("sh");
        c.arg(build_script())
            .arg("--bin-dir")
            .arg(bin_dir)
            .arg(format.flag())
            // Payload compression: gzip is ten times faster than xz on the
            // tests' large binaries; the format is the same.
            .args(["--compress", "gzip", v])
            .arg(out.join(v))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().with_context(|| cmd::describe(&c))?;
        children.push((child, cmd::describe(&c)));
    }
    let mut files = Vec::new();
    for (child, argv) in children {
        let output = child.wait_with_output().context(argv.clone())?;
        if !output.status.success() {
            bail!(
                "`{argv}` failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let file = stdout
            .lines()
            .map(PathBuf::from)
            .next()
            .with_context(|| format!("`{argv}` printed no package"))?;
        if !file.is_file() {
            bail!("`{argv}` printed {}, which is not a file", file.display());
        }
        files.push(file);
    }
    Ok(files)
}
