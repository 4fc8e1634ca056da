//! A digest of the host's package state, compared before and after a
//! scenario to prove the sandbox never changed the host.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::cmd;

/// The files whose contents are part of the digest (those that exist).
const FILES: &[&str] = &[
    "/var/lib/dpkg/status",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/dnf/dnf.conf",
    "/etc/os-release",
    "/usr/lib/os-release",
];

/// Paths the EL sandbox creates, replaces or removes inside: whether each
/// exists (and what it is) is part of the digest, so one appearing or
/// vanishing on the host shows.
const PRESENCE: &[&str] = &[
    "/etc/os-release",
    "/usr/lib/os-release",
    "/etc/redhat-release",
    "/etc/rpm/macros",
    "/usr/bin/yum",
    "/var/lib/rpm/.rpm.lock",
];

/// The directories whose listing (name, size, mtime; recursively) is part
/// of the digest (those that exist).
/// (`~/.rpmdb`, Debian rpm's default database, is added from `$HOME`.)
const LISTED: &[&str] = &[
    "/var/lib/dpkg/info",
    "/var/lib/rpm",
    "/var/lib/dnf",
    "/var/cache/dnf",
    "/etc/yum.repos.d",
    "/etc/pki/rpm-gpg",
    "/etc/rpm",
];

/// The directories whose files' contents are part of the digest too
/// (and `~/.rpmdb`).
const HASHED_TREES: &[&str] = &["/var/lib/rpm", "/etc/yum.repos.d", "/etc/rpm"];

/// Debian rpm's default database, `~/.rpmdb` (rpm creates it on the first
/// `rpm` run that does not pin `%_dbpath`).
fn home_rpmdb() -> Option<String> {
    let home = std::env::var_os("HOME")?;
    Some(
        Path::new(&home)
            .join(".rpmdb")
            .to_string_lossy()
            .into_owned(),
    )
}

/// The SHA-256 (hex) of [`host_package_manifest`].
///
/// # Panics
/// When the host's files cannot be read or `sha256sum` cannot run, with the
/// reason: this is test support, a failure here is a failed test.
pub fn host_package_state() -> String {
    host_package_manifest()
        .and_then(|m| sha256_hex(m.as_bytes()))
        .unwrap_or_else(|e| panic!("computing the host's package state: {e:#}"))
}

/// Panics unless the host's package state is still `before` (what
/// [`host_package_state`] said before the test).
pub fn assert_host_unchanged(before: &str) {
    assert_eq!(
        host_package_state(),
        before,
        "the host's package state changed"
    );
}

/// A readable manifest of the host's package state: the SHA-256 of
/// `/var/lib/dpkg/status`, `/etc/passwd`, `/etc/group` (and the shadow
/// files), the listing of `/var/lib/dpkg/info` and the listing and contents
/// of `/var/lib/rpm` if present; for the EL sandbox also rpm's and dnf's
/// state (`~/.rpmdb`, `/var/lib/dnf`, `/var/cache/dnf`, `/etc/yum.repos.d`,
/// `/etc/rpm`, `/etc/pki/rpm-gpg`, `/etc/dnf/dnf.conf`), the os-release
/// files, and whether `/usr/bin/yum`, `/etc/redhat-release` … exist. Print
/// two of them to see what changed.
pub fn host_package_manifest() -> Result<String> {
    let mut manifest = String::new();
    let mut hashed: Vec<String> = FILES
        .iter()
        .filter(|f| Path::new(f).is_file())
        .map(|f| (*f).to_owned())
        .collect();
    for p in PRESENCE {
        let kind = match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => "symlink",
            Ok(m) if m.is_dir() => "dir",
            Ok(_) => "file",
            Err(_) => "absent",
        };
        writeln!(manifest, "{p}: {kind}")?;
    }
    let rpmdb = home_rpmdb();
    let listed = LISTED.iter().map(|d| (*d).to_owned()).chain(rpmdb.clone());
    for dir in listed {
        let mut entries = Vec::new();
        walk(Path::new(&dir), &mut entries)?;
        entries.sort();
        for (path, size, mtime, is_file) in entries {
            writeln!(manifest, "{path} {size} {mtime}")?;
            let hashed_tree = HASHED_TREES.iter().any(|t| path.starts_with(t))
                || rpmdb.as_deref().is_some_and(|d| path.starts_with(d));
            if is_file && hashed_tree {
                hashed.push(path);
            }
        }
    }
    if !hashed.is_empty() {
        manifest.push_str(&cmd::stdout(
            Command::new("sha256sum").arg("--").args(&hashed),
        )?);
    }
    Ok(manifest)
}

/// Appends `(path, size, mtime, is_file)` for everything under `dir`
/// (nothing when `dir` does not exist).
fn walk(dir: &Path, out: &mut Vec<(String, u64, i64, bool)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        out.push((
            path.to_string_lossy().into_owned(),
            meta.len(),
            meta.mtime(),
            meta.is_file(),
        ));
        if meta.is_dir() {
            walk(&path, out)?;
        }
    }
    Ok(())
}

/// SHA-256 of `bytes` in hex, computed by `sha256sum`.
pub fn sha256_hex(bytes: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum (coreutils)")?;
    child.stdin.take().context("stdin")?.write_all(bytes)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "sha256sum failed: {}", out.status);
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
