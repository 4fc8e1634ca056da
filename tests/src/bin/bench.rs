//! `cargo run --release -p patchman-tests --bin bench [-- RUNS]` (as root):
//! the benchmark. Prints figures; asserts nothing.
//!
//! * The whole update through agent and helper (`patchman-agent update`,
//!   every check included) against the bare vendor command sequence run by
//!   a shell script, in the same kind of sandbox, against the same
//!   repository: median wall time of each over RUNS fresh sandboxes (default
//!   7), and their ratio.
//! * The helper's cold start to `Welcome` (median of RUNS), and its RSS
//!   while serving.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use patchman_tests::sandbox::apt_repo::SourceFormat;
use patchman_tests::sandbox::fixture::CLIENT;
use patchman_tests::updater::Updater;
use patchman_tests::{apt_fixture, workspace_bin};

/// The vendor's sequence for one package, as a person would script it
/// (DESIGN.md's apt steps 1–7 without our hardening; `-y` because stdin is
/// not a terminal).
const BARE_SEQUENCE: &str = r#"set -e
apt-config dump >/dev/null
apt-get update -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/patchman.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 >/dev/null 2>&1
apt-cache policy patchman-client | grep -q 'Candidate: 1.7.1-1'
apt-get -y -d install patchman-client >/dev/null 2>&1
f=/var/cache/apt/archives/patchman-client_1.7.1-1_all.deb
test -f "$f"
dpkg -i "$f" >/dev/null
dpkg-query -W -f '${Status} ${Version}' patchman-client | grep -q 'install ok installed 1.7.1-1'
"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fresh() -> Result<Updater> {
    let fx = apt_fixture();
    Updater::new(
        &fx.repos_root,
        &fx.patchman,
        SourceFormat::List,
        &[fx.client("1.7.0-1")],
    )
}

fn ours_once() -> Result<Duration> {
    let mut u = fresh()?;
    u.start_helper()?;
    let t = Instant::now();
    let out = u.agent(&["update"])?;
    let took = t.elapsed();
    if !out.status.success() || u.installed(CLIENT)?.as_deref() != Some("1.7.1-1") {
        bail!(
            "our update failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

fn bare_once() -> Result<Duration> {
    let u = fresh()?;
    let t = Instant::now();
    let out = u.sandbox.run_unchecked(&["sh", "-c", BARE_SEQUENCE])?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "the bare sequence failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Spawn to `Welcome`: how long a socket-activated helper makes the first
/// client wait. The client is the `probe` binary as the agent user
/// (`nobody` here), so the figure includes that process's own start.
fn cold_start_once() -> Result<(Duration, u64)> {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let socket = dir.path().join("run/helper.sock");
    let t0 = Instant::now();
    let mut child = Command::new(workspace_bin("patchman-helper"))
        .arg("--socket")
        .arg(&socket)
        .args(["--agent-user", "nobody", "--config", "/nonexistent.ini"])
        .stderr(Stdio::null())
        .spawn()?;
    while !socket.exists() {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("the helper did not start");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let out = Command::new(workspace_bin("probe"))
        .arg(&socket)
        .args(["hello", "recv"])
        .uid(65534)
        .gid(65534)
        .output()?;
    let welcome_at = t0.elapsed();
    if !String::from_utf8_lossy(&out.stdout).contains("reply Welcome") {
        bail!("no Welcome: {}", String::from_utf8_lossy(&out.stdout));
    }
    let rss = rss_kib(child.id()).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    Ok((welcome_at, rss))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let mut text = String::new();
    std::fs::File::open(format!("/proc/{pid}/status"))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("run the benchmark as root (sandboxes, the helper)");
    }
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("RUNS")?
        .unwrap_or(7);
    if runs == 0 {
        bail!("RUNS must be at least 1");
    }
    let _ = apt_fixture();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "benchmark: {runs} runs each, fresh sandbox per run, alternating"
    )?;
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // Alternate so drift in the machine's load hits both alike.
        if i % 2 == 0 {
            ours.push(ours_once()?);
            bare.push(bare_once()?);
        } else {
            bare.push(bare_once()?);
            ours.push(ours_once()?);
        }
    }
    let (mo, mb) = (median(ours.clone()), median(bare.clone()));
    writeln!(
        out,
        "apt update, agent+helper (all checks): median {:.1} ms  (runs: {})",
        ms(mo),
        list(&ours)
    )?;
    writeln!(
        out,
        "apt update, bare vendor sequence (sh): median {:.1} ms  (runs: {})",
        ms(mb),
        list(&bare)
    )?;
    writeln!(
        out,
        "ratio agent+helper / bare: {:.2}",
        mo.as_secs_f64() / mb.as_secs_f64()
    )?;

    let mut starts = Vec::new();
    let mut rss = 0;
    for _ in 0..runs {
        let (d, r) = cold_start_once()?;
        starts.push(d);
        rss = rss.max(r);
    }
    writeln!(
        out,
        "helper cold start to Welcome (incl. the client's start): median {:.1} ms  (runs: {})",
        ms(median(starts.clone())),
        list(&starts)
    )?;
    writeln!(out, "helper RSS while serving: {rss} KiB")?;
    Ok(())
}

fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.0}", ms(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}
