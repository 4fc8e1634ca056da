//! `cargo run --release -p patchman-tests --bin bench [-- RUNS [WINDOW]]`
//! (as root):
//! the benchmark. Prints figures; asserts nothing.
//!
//! * The whole update through agent and helper (`patchman-agent update`,
//!   every check included) against the bare vendor command sequence run by
//!   a shell script, in the same kind of sandbox, against the same
//!   repository: median wall time of each over RUNS fresh sandboxes (default
//!   7), and their ratio.
//! * The same on dnf (an AlmaLinux 8 sandbox, the vendor's dnf sequence).
//! * The same update by Debian's `unattended-upgrades`, configured to
//!   upgrade only `patchman-client` from that repository (`apt-get update`
//!   plus `unattended-upgrade`, as its timer would run them); installed
//!   inside the sandbox from the .debs `apt-get download` fetches.
//! * The helper's cold start to `Welcome` (median of RUNS), and its RSS
//!   while serving.
//! * The agent daemon (`run`) idle between checks: RSS, and context
//!   switches of all its threads over WINDOW seconds (default 60).
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

/// The vendor's dnf sequence (EL 8), as a person would script it.
const BARE_DNF_SEQUENCE: &str = r#"set -e
dnf clean all --disablerepo="*" --enablerepo="patchman" >/dev/null 2>&1
d=/var/cache/patchman-bench; rm -rf "$d"; mkdir -m 0700 "$d"
dnf install -y --downloadonly --downloaddir="$d" --verbose patchman-client >/dev/null 2>&1
f=$(ls "$d"/patchman-client-*.rpm)
rpm -U "$f"
rpm -q patchman-client | grep -q 1.7.1-1
"#;

fn fresh_el() -> Result<Updater> {
    let fx = patchman_tests::el_fixture();
    Updater::new_el(
        patchman_tests::sandbox::el::ElRelease::AlmaLinux8,
        &fx.patchman,
        &[fx.client("1.7.0-1")],
    )
}

fn dnf_ours_once() -> Result<Duration> {
    use patchman_tests::sandbox::el::ElSandbox;
    let mut u = fresh_el()?;
    u.start_helper()?;
    let t = Instant::now();
    let out = u.agent(&["update"])?;
    let took = t.elapsed();
    if !out.status.success() || u.sandbox.rpm_query(CLIENT)?.as_deref() != Some("1.7.1-1") {
        bail!(
            "our dnf update failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

fn dnf_bare_once() -> Result<Duration> {
    let u = fresh_el()?;
    let t = Instant::now();
    let out = u.sandbox.run_unchecked(&["sh", "-c", BARE_DNF_SEQUENCE])?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "the bare dnf sequence failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The .debs of unattended-upgrades and what the host lacks of its
/// dependencies, fetched once with `apt-get download` (no change to the
/// host's package database).
fn unattended_upgrades_debs(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let status = Command::new("apt-get")
        .args([
            "download",
            "-q",
            "unattended-upgrades",
            "python3-distro-info",
            "distro-info-data",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("apt-get download")?;
    if !status.success() {
        bail!("apt-get download unattended-upgrades failed (run apt-get update first)");
    }
    let mut debs: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    Ok(debs)
}

/// unattended-upgrades limited to our package from our repository.
const UU_CONF: &str = r#"Unattended-Upgrade::Origins-Pattern { "origin=patchman"; };
Unattended-Upgrade::Package-Whitelist { "patchman-client"; };
Unattended-Upgrade::Package-Whitelist-Strict "true";
Unattended-Upgrade::Allowed-Origins { };
Unattended-Upgrade::OnlyOnACPower "false";
Unattended-Upgrade::Skip-Updates-On-Metered-Connections "false";
"#;

fn uu_once(debs: &[std::path::PathBuf]) -> Result<Duration> {
    let u = fresh()?;
    let refs: Vec<&std::path::Path> = debs.iter().map(|p| p.as_path()).collect();
    u.sandbox.install_debs(&refs)?;
    u.sandbox
        .write_file("/etc/apt/apt.conf.d/51patchman-bench", UU_CONF)?;
    let t = Instant::now();
    let out = u.sandbox.run_unchecked(&[
        "sh",
        "-c",
        "apt-get update -q >/dev/null 2>&1 && unattended-upgrade",
    ])?;
    let took = t.elapsed();
    if !out.status.success() || u.installed(CLIENT)?.as_deref() != Some("1.7.1-1") {
        bail!(
            "unattended-upgrade did not update: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Context switches (voluntary + involuntary) of every thread of `pid`.
fn context_switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>()?;
            }
        }
    }
    Ok(total)
}

/// The agent daemon between checks: (RSS KiB, context switches in window).
fn agent_idle(window: Duration) -> Result<(u64, u64)> {
    let mut u = fresh()?;
    u.start_helper()?;
    u.configure("interval = 6h\njitter = 1h\n")?;
    u.sandbox.run(&[
        "install",
        "-d",
        "-o",
        "patchman",
        "-g",
        "patchman",
        "/var/lib/patchman",
    ])?;
    let agent = workspace_bin("patchman-agent");
    let mut child = u.sandbox.spawn_as(
        "patchman",
        &[
            agent.to_str().context("path")?,
            "--socket",
            patchman_tests::updater::SOCKET,
            "--state-dir",
            "/var/lib/patchman",
            "run",
        ],
    )?;
    let pid = child.id();
    // Let it start, read its state and go to sleep.
    std::thread::sleep(Duration::from_secs(3));
    let before = context_switches(pid)?;
    std::thread::sleep(window);
    let after = context_switches(pid)?;
    let rss = rss_kib(pid).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    Ok((rss, after - before))
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
    let window = Duration::from_secs(
        std::env::args()
            .nth(2)
            .map(|a| a.parse())
            .transpose()
            .context("WINDOW")?
            .unwrap_or(60),
    );
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

    let _ = patchman_tests::el_fixture();
    let (mut dours, mut dbare) = (Vec::new(), Vec::new());
    for i in 0..runs {
        if i % 2 == 0 {
            dours.push(dnf_ours_once()?);
            dbare.push(dnf_bare_once()?);
        } else {
            dbare.push(dnf_bare_once()?);
            dours.push(dnf_ours_once()?);
        }
    }
    let (mdo, mdb) = (median(dours.clone()), median(dbare.clone()));
    writeln!(
        out,
        "dnf update, agent+helper (all checks): median {:.1} ms  (runs: {})",
        ms(mdo),
        list(&dours)
    )?;
    writeln!(
        out,
        "dnf update, bare vendor sequence (sh): median {:.1} ms  (runs: {})",
        ms(mdb),
        list(&dbare)
    )?;
    writeln!(
        out,
        "ratio agent+helper / bare (dnf): {:.2}",
        mdo.as_secs_f64() / mdb.as_secs_f64()
    )?;

    let dir = tempfile::tempdir()?;
    let debs = unattended_upgrades_debs(dir.path())?;
    let mut uu = Vec::new();
    for _ in 0..runs {
        uu.push(uu_once(&debs)?);
    }
    let mu = median(uu.clone());
    writeln!(
        out,
        "apt update, unattended-upgrades (apt-get update + unattended-upgrade): median {:.1} ms  (runs: {})",
        ms(mu),
        list(&uu)
    )?;
    writeln!(
        out,
        "ratio agent+helper / unattended-upgrades: {:.2}",
        mo.as_secs_f64() / mu.as_secs_f64()
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
    let (agent_rss, switches) = agent_idle(window)?;
    writeln!(
        out,
        "agent daemon idle: RSS {agent_rss} KiB, {switches} context switches in {} s",
        window.as_secs()
    )?;
    Ok(())
}

fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.0}", ms(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}
