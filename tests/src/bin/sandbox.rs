//! `cargo run --release -p patchman-tests --bin sandbox` (as root): the
//! main job, end to end, in a throwaway sandbox.
//!
//! Builds two versions of `patchman-client` and a signed apt repository,
//! serves it over HTTP on 127.0.0.1, installs the older version in a
//! private mount namespace whose overlays hide the host's package state,
//! starts the real helper as root and runs the real agent's `update` as the
//! sandbox's `patchman` user, with its live output; then prints the
//! versions before and after, checks that the host did not change, and
//! cleans up.
#![forbid(unsafe_code)]

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use patchman_tests::sandbox::apt_repo::SourceFormat;
use patchman_tests::sandbox::fixture::CLIENT;
use patchman_tests::updater::{Updater, AGENT_USER, SOCKET};
use patchman_tests::{apt_fixture, host_package_state};

/// Builds the binaries the demo runs, with the cargo that runs us (`cargo
/// run` builds only this binary).
fn build_binaries() -> Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(()); // not under cargo: use what is built
    };
    let release = patchman_tests::profile_dir().is_some_and(|d| d.ends_with("release"));
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--bin",
        "patchman-helper",
        "--bin",
        "patchman-agent",
        "--bin",
        "sandbox-init",
    ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the helper and agent failed");
    }
    Ok(())
}

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("run the sandbox demo as root: it creates a mount namespace and runs the helper as root");
    }
    println!("patchman updater — sandbox demo\n");
    build_binaries()?;
    let host_before = host_package_state();

    let t = Instant::now();
    let fx = apt_fixture();
    println!(
        "built test packages ({} of them) and signed apt repositories in {:.2} s",
        fx.debs.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut u = Updater::new(
        &fx.repos_root,
        &fx.patchman,
        SourceFormat::List,
        &[fx.client("1.7.0-1")],
    )?;
    println!(
        "sandbox ready in {:.2} s: private mount namespace, overlays over /etc /var /opt /usr, fresh /run and /tmp",
        t.elapsed().as_secs_f64()
    );
    println!("repository: {}", fx.patchman.uri(&u.http.url()));
    let before = u.installed(CLIENT)?.unwrap_or_else(|| "(none)".into());
    println!("installed:  {CLIENT} {before}");
    u.start_helper()?;
    println!("helper:     patchman-helper --socket {SOCKET} --agent-user {AGENT_USER}   (root, pid inside the sandbox)");
    println!("\n$ patchman-agent --socket {SOCKET} update     (as user {AGENT_USER})");
    let t = Instant::now();
    let code = u.agent_live(&["update"])?;
    let took = t.elapsed();
    println!("(exit {code}, {:.2} s)\n", took.as_secs_f64());

    let after = u.installed(CLIENT)?.unwrap_or_else(|| "(none)".into());
    println!("before: {CLIENT} {before}");
    println!("after:  {CLIENT} {after}");
    // The helper exits after an update that changed a package, so the next
    // connection runs the new binary; start it again, as systemd would.
    u.start_helper()?;
    let status = u.agent(&["status", "--json"])?;
    println!(
        "status --json: {}",
        String::from_utf8_lossy(&status.stdout).trim()
    );
    println!("\nhelper log (the commands it ran):");
    for line in u.helper_log().lines().filter(|l| l.contains("ran command")) {
        if let Some(cmd) = line.split("command=").nth(1) {
            let ms = line
                .split("duration_ms=")
                .nth(1)
                .and_then(|d| d.split_whitespace().next())
                .unwrap_or("?");
            let cmd = cmd.split(" exit=").next().unwrap_or(cmd);
            println!(
                "  {ms:>4} ms  {}",
                cmd.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
    drop(u);
    let unchanged = host_package_state() == host_before;
    println!(
        "\nsandbox removed; host package database unchanged: {}",
        if unchanged { "yes" } else { "NO" }
    );
    if code != 0 || after != "1.7.1-1" || !unchanged {
        bail!("the demo update did not do what it should");
    }
    Ok(())
}
