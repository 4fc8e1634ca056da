//! Running host commands with errors a person can act on: the argv, the exit
//! status and the captured stderr, and a hint when the tool is missing.

use std::ffi::OsStr;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// The Debian package that ships each tool this crate runs, for the error
/// shown when one is missing.
fn package_of(program: &str) -> Option<&'static str> {
    Some(match program {
        "dpkg-deb" | "dpkg" | "dpkg-query" => "dpkg",
        "apt-ftparchive" => "apt-utils",
        "apt-get" | "apt-cache" | "apt-config" => "apt",
        "gpg" | "gpgconf" => "gnupg",
        "nsenter" | "setpriv" | "unshare" => "util-linux",
        "useradd" => "passwd",
        "sha256sum" => "coreutils",
        _ => return None,
    })
}

/// A readable one-line rendering of a command's argv.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion, capturing stdout and stderr, whatever its exit
/// status. Fails only when it cannot be started (with a hint naming the
/// package to install when the program is missing).
pub fn output_unchecked(cmd: &mut Command) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output().map_err(|e| {
        let hint = match (e.kind(), package_of(&program)) {
            (std::io::ErrorKind::NotFound, Some(pkg)) => {
                format!(" (is the Debian package `{pkg}` installed?)")
            }
            _ => String::new(),
        };
        anyhow::anyhow!("cannot run `{}`: {e}{hint}", describe(cmd))
    })
}

/// Runs `cmd` to completion and fails unless it exits 0; the error carries
/// the argv, the exit status and stderr (and stdout, if stderr is empty).
pub fn output(cmd: &mut Command) -> Result<Output> {
    let out = output_unchecked(cmd)?;
    check(cmd, &out)?;
    Ok(out)
}

/// Fails unless `out` (the result of `cmd`) is a zero exit, with the error
/// described in [`output`].
pub fn check(cmd: &Command, out: &Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    bail!(
        "`{}` failed ({}):\n{}{}",
        describe(cmd),
        out.status,
        stderr.trim_end(),
        if stderr.trim().is_empty() {
            format!("stdout:\n{}", stdout.trim_end())
        } else {
            String::new()
        }
    )
}

/// Runs `cmd` and returns its stdout as UTF-8, failing as [`output`] does.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    String::from_utf8(out.stdout)
        .with_context(|| format!("stdout of `{}` is not UTF-8", describe(cmd)))
}

/// A command's exit code, stdout and stderr, for an assertion message.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
