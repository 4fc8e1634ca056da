//! `cargo run --release -p patchman-tests --bin bench [-- RUNS [WINDOW]]`
//! (as root, after `apt-get update` on the host):
//! the benchmark. Prints figures; asserts nothing.
//!
//! Two setups for apt, side by side:
//! * "only the patchman index": a sandbox whose apt sees only the patchman
//!   source (the host's sources, lists and caches hidden);
//! * "the host's own indexes": a sandbox that keeps the host's sources,
//!   lists and binary caches, as a real server's apt has them. The vendor's
//!   steps 3 and 4 are unrestricted, so there they parse every index the
//!   server has. Fails if the host has no indexes.
//!
//! In each:
//! * the whole update through agent and helper (`patchman-agent update`,
//!   every check included) against the bare vendor command sequence run by
//!   a shell script, same sandbox, same repository, 1.7.0-1 → 1.7.1-1 in a
//!   fresh sandbox per run;
//! * the up-to-date check (`patchman-agent check`, 1.7.1-1 installed and the
//!   newest) against the vendor's steps 1–3, as a host runs it every few
//!   hours: the second check in the same sandbox, with the lists the first
//!   left, so apt's refresh finds the `InRelease` unchanged ("Hit"; verified
//!   from the requests the repository's server saw). The helper is
//!   configured with `[updates] refresh_interval = 0s` so that second check
//!   refreshes for real instead of answering from the first one's metadata
//!   (its default is 60 s). The first, cold check (the index fetched for the
//!   first time) is printed too;
//! * where our up-to-date check's CPU goes: the commands the helper ran (from
//!   its log), run again by themselves with their CPU;
//! * per update and per check, the wall time and the CPU seconds (user +
//!   sys) of every process involved: the agent, the helper from its start to
//!   its exit, and every process they ran, or the shell and every process it
//!   ran. Measured as the change in `getrusage(RUSAGE_CHILDREN)` of this
//!   process: each of those is a descendant that is waited for before the
//!   figure is read (the helper is stopped with SIGTERM after a check). The
//!   HTTP server answering on 127.0.0.1 (threads of this process) is the
//!   repository's side and is not counted.
//!
//! Then, as before: the dnf family (an AlmaLinux 8 sandbox, the vendor's dnf
//! sequence), with its up-to-date check against the vendor's dnf steps 1–2
//! (the same way: second check, `refresh_interval = 0s`, `repomd.xml`
//! fetched again) and where its CPU goes; Debian's `unattended-upgrades` limited to `patchman-client`
//! (`apt-get update` plus `unattended-upgrade`, as its timer runs them), in
//! the first setup; the helper's cold start to `Welcome` and its RSS; the
//! agent daemon (`run`) idle between checks: RSS, and context switches of
//! all its threads over WINDOW seconds (default 60). Medians over RUNS
//! (default 7).
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use patchman_tests::sandbox::apt_repo::SourceFormat;
use patchman_tests::sandbox::fixture::CLIENT;
use patchman_tests::updater::{Binaries, Updater};
use patchman_tests::{apt_fixture, workspace_bin, Sandbox};

/// The vendor's apt steps 1–3 (DESIGN.md, without our hardening): whether
/// 1.7.1-1 is the candidate.
const BARE_CHECK: &str = r#"set -e
apt-config dump >/dev/null
apt-get update -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/patchman.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 >/dev/null 2>&1
apt-cache policy patchman-client | grep -q 'Candidate: 1.7.1-1'
"#;

/// The rest of the vendor's sequence for one package, steps 4–7, as a
/// person would script it (`-y` because stdin is not a terminal).
const BARE_INSTALL: &str = r#"apt-get -y -d install patchman-client >/dev/null 2>&1
f=/var/cache/apt/archives/patchman-client_1.7.1-1_all.deb
test -f "$f"
dpkg -i "$f" >/dev/null
dpkg-query -W -f '${Status} ${Version}' patchman-client | grep -q 'install ok installed 1.7.1-1'
"#;

/// The vendor's dnf steps 1–2 (EL 8), as a person would script them: clean
/// the repository's metadata, download whatever is newer.
const BARE_DNF_CHECK: &str = r#"set -e
dnf clean all --disablerepo="*" --enablerepo="patchman" >/dev/null 2>&1
d=/var/cache/patchman-bench; rm -rf "$d"; mkdir -m 0700 "$d"
dnf install -y --downloadonly --downloaddir="$d" --verbose patchman-client >/dev/null 2>&1
"#;

/// The rest of the vendor's dnf sequence, steps 3–5.
const BARE_DNF_INSTALL: &str = r#"f=$(ls "$d"/patchman-client-*.rpm)
rpm -U "$f"
rpm -q patchman-client | grep -q 1.7.1-1
"#;

/// After [`BARE_DNF_CHECK`] with the newest installed: nothing downloaded.
const BARE_DNF_NOTHING_NEWER: &str = r#"test -z "$(ls "$d")"
"#;

fn fresh_el(installed: &str) -> Result<Updater> {
    let fx = patchman_tests::el_fixture();
    Updater::new_el(
        patchman_tests::sandbox::el::ElRelease::AlmaLinux8,
        &fx.patchman,
        &[fx.client(installed)],
    )
}

fn dnf_ours_once() -> Result<Sample> {
    use patchman_tests::sandbox::el::ElSandbox;
    let mut u = fresh_el("1.7.0-1")?;
    let (out, sample) = agent_measured(&mut u, "update")?;
    if !out.status.success() || u.sandbox.rpm_query(CLIENT)?.as_deref() != Some("1.7.1-1") {
        bail!(
            "our dnf update failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(sample)
}

fn dnf_bare_once() -> Result<Sample> {
    let u = fresh_el("1.7.0-1")?;
    shell_measured(
        &u.sandbox,
        &format!("{BARE_DNF_CHECK}{BARE_DNF_INSTALL}"),
        "the bare dnf sequence",
    )
}

/// Two up-to-date checks by the agent in a fresh EL sandbox: (first,
/// second); see [`ours_checks`].
fn dnf_ours_check_once() -> Result<(Sample, Sample)> {
    let (first, second, _) = ours_checks(&mut fresh_el("1.7.1-1")?, Family::Dnf)?;
    Ok((first, second))
}

/// The vendor's dnf steps 1–2 twice in a fresh EL sandbox: (first, second).
fn dnf_bare_check_once() -> Result<(Sample, Sample)> {
    bare_checks(
        fresh_el("1.7.1-1")?,
        Family::Dnf,
        &format!("{BARE_DNF_CHECK}{BARE_DNF_NOTHING_NEWER}"),
        "the vendor's dnf steps 1-2",
    )
}

/// One measurement: wall time, and CPU (user + sys) of every process
/// involved.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// User + sys of every descendant of this process waited for so far.
fn children_cpu() -> Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// `patchman-agent <command>` against a helper started for it: wall time of
/// the agent, CPU of the agent and of the helper from its start to its exit
/// (it exits by itself after a changing update, else on SIGTERM), their
/// children included.
fn agent_measured(u: &mut Updater, command: &str) -> Result<(std::process::Output, Sample)> {
    let cpu0 = children_cpu()?;
    u.start_helper()?;
    let t = Instant::now();
    let out = u.agent(&[command])?;
    let wall = t.elapsed();
    stop_helper(u)?;
    let cpu = children_cpu()? - cpu0;
    Ok((out, Sample { wall, cpu }))
}

/// Waits for the helper to exit (SIGTERM unless it is leaving already) and
/// reaps it, so its CPU is in `RUSAGE_CHILDREN`.
fn stop_helper(u: &mut Updater) -> Result<()> {
    if u.helper_exited_within(Duration::from_millis(500)) {
        return Ok(());
    }
    let pid = u.helper_pid().context("the helper's pid")?;
    kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGTERM).context("SIGTERM to the helper")?;
    if !u.helper_exited_within(Duration::from_secs(20)) {
        bail!("the helper did not exit on SIGTERM:\n{}", u.helper_log());
    }
    Ok(())
}

/// `sh -c script` inside: wall time, and CPU of the shell and everything
/// it ran.
fn shell_measured(sandbox: &Sandbox, script: &str, what: &str) -> Result<Sample> {
    let cpu0 = children_cpu()?;
    let t = Instant::now();
    let out = sandbox.run_unchecked(&["sh", "-c", script])?;
    let wall = t.elapsed();
    let cpu = children_cpu()? - cpu0;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Sample { wall, cpu })
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

fn uu_once(debs: &[std::path::PathBuf]) -> Result<Sample> {
    let u = fresh(Setup::PatchmanOnly, "1.7.0-1")?;
    let refs: Vec<&std::path::Path> = debs.iter().map(|p| p.as_path()).collect();
    u.sandbox.install_debs(&refs)?;
    u.sandbox
        .write_file("/etc/apt/apt.conf.d/51patchman-bench", UU_CONF)?;
    let sample = shell_measured(
        &u.sandbox,
        "apt-get update -q >/dev/null 2>&1 && unattended-upgrade",
        "unattended-upgrade",
    )?;
    if u.installed(CLIENT)?.as_deref() != Some("1.7.1-1") {
        bail!("unattended-upgrade did not update patchman-client");
    }
    Ok(sample)
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
    let mut u = fresh(Setup::PatchmanOnly, "1.7.0-1")?;
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

/// What apt in the sandbox sees besides the patchman source.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    PatchmanOnly,
    HostIndexes,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::PatchmanOnly => "only the patchman index",
            Setup::HostIndexes => "the host's own indexes",
        }
    }
}

/// The host's apt indexes (`*_Packages*` in `/var/lib/apt/lists`): their
/// number and the age of the newest, or an error saying what to do.
fn host_indexes() -> Result<(usize, Duration)> {
    let mut count = 0;
    let mut newest = None;
    for entry in std::fs::read_dir("/var/lib/apt/lists").context("/var/lib/apt/lists")? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().contains("_Packages") {
            count += 1;
            let modified = entry.metadata()?.modified()?;
            newest = newest.max(Some(modified));
        }
    }
    match newest {
        Some(t) if count > 0 => Ok((count, t.elapsed().unwrap_or_default())),
        _ => bail!(
            "the host has no apt indexes (no *_Packages in /var/lib/apt/lists): \
             run `apt-get update` on the host first; the second setup measures \
             what a server with its standard indexes sees"
        ),
    }
}

fn fresh(setup: Setup, installed: &str) -> Result<Updater> {
    let fx = apt_fixture();
    let sandbox = match setup {
        Setup::PatchmanOnly => Sandbox::new()?,
        Setup::HostIndexes => Sandbox::with_host_indexes()?,
    };
    Updater::apt_in(
        sandbox,
        Binaries::workspace()?,
        &fx.repos_root,
        &fx.patchman,
        SourceFormat::List,
        &[fx.client(installed)],
    )
}

fn ours_once(setup: Setup) -> Result<Sample> {
    let mut u = fresh(setup, "1.7.0-1")?;
    let (out, sample) = agent_measured(&mut u, "update")?;
    if !out.status.success() || u.installed(CLIENT)?.as_deref() != Some("1.7.1-1") {
        bail!(
            "our update failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(sample)
}

fn bare_once(setup: Setup) -> Result<Sample> {
    let u = fresh(setup, "1.7.0-1")?;
    let sample = shell_measured(
        &u.sandbox,
        &format!("{BARE_CHECK}{BARE_INSTALL}"),
        "the bare sequence",
    )?;
    Ok(sample)
}

/// Two up-to-date checks by the agent in one sandbox: (first, second).
fn ours_check_once(setup: Setup) -> Result<(Sample, Sample)> {
    let (first, second, _) = ours_checks(&mut fresh(setup, "1.7.1-1")?, Family::Apt)?;
    Ok((first, second))
}

/// The vendor's apt steps 1–3 twice in one sandbox: (first, second).
fn bare_check_once(setup: Setup) -> Result<(Sample, Sample)> {
    bare_checks(
        fresh(setup, "1.7.1-1")?,
        Family::Apt,
        BARE_CHECK,
        "the vendor's steps 1-3",
    )
}

/// Which package manager a check runs, for what its refresh must fetch.
#[derive(Clone, Copy)]
enum Family {
    Apt,
    Dnf,
}

impl Family {
    /// Fails unless `paths` (what the repository's server was asked during
    /// one check) show a real refresh that found the repository unchanged,
    /// as on a host that checked before: apt fetched the `InRelease` file
    /// and no index again (its "Hit"); dnf fetched `repomd.xml`.
    fn verify_refresh(self, paths: &[String], what: &str) -> Result<()> {
        let (release, index) = match self {
            Family::Apt => ("/InRelease", Some("/Packages")),
            Family::Dnf => ("/repomd.xml", None),
        };
        if !paths.iter().any(|p| p.ends_with(release)) {
            bail!("{what} did not refresh (no {release} requested): {paths:?}");
        }
        if let Some(index) = index.filter(|i| paths.iter().any(|p| p.contains(i))) {
            bail!("{what} fetched {index} again, so not a Hit: {paths:?}");
        }
        Ok(())
    }
}

/// What the repository's server was asked from request `from` on.
fn paths_since(u: &Updater, from: usize) -> Vec<String> {
    u.http
        .requests()
        .into_iter()
        .skip(from)
        .map(|r| r.path)
        .collect()
}

/// Two up-to-date checks by the agent in `u`: the first fetches the
/// repository's index for the first time (the cold figure); the second is
/// the one a host runs every few hours, with the lists already there. The
/// helper is configured with `refresh_interval = 0s` so the second refreshes
/// for real instead of answering from what the first fetched.
fn ours_checks(u: &mut Updater, family: Family) -> Result<(Sample, Sample, String)> {
    u.configure("refresh_interval = 0s\n")?;
    let check = |u: &mut Updater| -> Result<Sample> {
        let (out, sample) = agent_measured(u, "check")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(0) || stdout.contains("from the repository metadata fetched") {
            bail!(
                "our check did not refresh and say up to date ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(sample)
    };
    let first = check(u)?;
    let (requests, log) = (u.http.requests().len(), u.helper_log().len());
    let second = check(u)?;
    family.verify_refresh(&paths_since(u, requests), "our second check")?;
    let log = u.helper_log().get(log..).unwrap_or_default().to_string();
    Ok((first, second, log))
}

/// `script` twice in `u`'s sandbox: (first, second), the second verified as
/// a refresh of an unchanged repository.
fn bare_checks(u: Updater, family: Family, script: &str, what: &str) -> Result<(Sample, Sample)> {
    let first = shell_measured(&u.sandbox, script, what)?;
    let requests = u.http.requests().len();
    let second = shell_measured(&u.sandbox, script, what)?;
    family.verify_refresh(&paths_since(&u, requests), what)?;
    Ok((first, second))
}

/// Runs `a` and `b` `runs` times, alternating which goes first so drift in
/// the machine's load hits both alike.
fn alternate<T>(
    runs: usize,
    mut a: impl FnMut() -> Result<T>,
    mut b: impl FnMut() -> Result<T>,
) -> Result<(Vec<T>, Vec<T>)> {
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    for i in 0..runs {
        if i % 2 == 0 {
            va.push(a()?);
            vb.push(b()?);
        } else {
            vb.push(b()?);
            va.push(a()?);
        }
    }
    Ok((va, vb))
}

/// Medians of a series: (wall, cpu).
fn medians(v: &[Sample]) -> (Duration, Duration) {
    (
        median(v.iter().map(|s| s.wall).collect()),
        median(v.iter().map(|s| s.cpu).collect()),
    )
}

/// One line: median wall and CPU, and every run's wall time; returns the
/// medians.
fn report(out: &mut impl Write, label: &str, v: &[Sample]) -> Result<(Duration, Duration)> {
    let (wall, cpu) = medians(v);
    writeln!(
        out,
        "{label}: median {:.1} ms, CPU {:.3} s  (runs, ms: {}; CPU, s: {})",
        ms(wall),
        cpu.as_secs_f64(),
        list(&v.iter().map(|s| s.wall).collect::<Vec<_>>()),
        v.iter()
            .map(|s| format!("{:.3}", s.cpu.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok((wall, cpu))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The apt figures of one setup: the update and the up-to-date check, ours
/// against the vendor's; returns the median wall time of our update.
fn apt_setup(out: &mut impl Write, setup: Setup, runs: usize) -> Result<Duration> {
    writeln!(out, "\n[apt, {}]", setup.name())?;
    let (ours, bare) = alternate(runs, || ours_once(setup), || bare_once(setup))?;
    let (mo, co) = report(out, "update, agent+helper (all checks)", &ours)?;
    let (mb, cb) = report(out, "update, vendor sequence (sh)", &bare)?;
    writeln!(
        out,
        "update ratio agent+helper / vendor: wall {:.2}, CPU {:.2}",
        ratio(mo, mb),
        ratio(co, cb)
    )?;
    let (ours, bare) = alternate(runs, || ours_check_once(setup), || bare_check_once(setup))?;
    checks_report(out, "vendor steps 1-3", &ours, &bare)?;
    check_breakdown(out, fresh(setup, "1.7.1-1")?, Family::Apt, 5)?;
    Ok(mo)
}

/// The cold (first) and the up-to-date (second) check, ours against the
/// vendor's.
fn checks_report(
    out: &mut impl Write,
    vendor: &str,
    ours: &[(Sample, Sample)],
    bare: &[(Sample, Sample)],
) -> Result<()> {
    let first = |v: &[(Sample, Sample)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    let second = |v: &[(Sample, Sample)]| v.iter().map(|p| p.1).collect::<Vec<_>>();
    let cold = ("cold check", "(index fetched for the first time)");
    compare(out, cold, vendor, &first(ours), &first(bare))?;
    let warm = ("up-to-date check", "(lists there, repository unchanged)");
    compare(out, warm, vendor, &second(ours), &second(bare))
}

/// Ours against the vendor's for `what` (a name and what it means), and
/// their ratio.
fn compare(
    out: &mut impl Write,
    (name, meaning): (&str, &str),
    vendor: &str,
    ours: &[Sample],
    bare: &[Sample],
) -> Result<()> {
    let (wo, ko) = report(out, &format!("{name} {meaning}, agent+helper"), ours)?;
    let (wb, kb) = report(out, &format!("{name}, {vendor}"), bare)?;
    writeln!(
        out,
        "{name} ratio agent+helper / vendor: wall {:.2}, CPU {:.2}",
        ratio(wo, wb),
        ratio(ko, kb)
    )?;
    Ok(())
}

/// One "ran command" line of the helper's log.
struct Ran {
    /// As the helper displays it.
    command: String,
    /// Its `exit` field, e.g. `Code(0)`.
    exit: String,
    /// Its wall time in the check, ms.
    ms: String,
}

/// The helper's "ran command" lines.
fn commands_run(log: &str) -> Vec<Ran> {
    log.lines()
        .filter(|l| l.contains("ran command"))
        .filter_map(|l| {
            let field = |name: &str| l.split(name).nth(1)?.split_whitespace().next();
            Some(Ran {
                command: l
                    .split(" command=")
                    .nth(1)?
                    .split(" exit=")
                    .next()?
                    .to_string(),
                exit: field(" exit=")?.to_string(),
                ms: field("duration_ms=")?.to_string(),
            })
        })
        .collect()
}

/// Splits a command line as the helper displays it (an argument with a
/// space, a quote or a backslash in Rust's `{:?}` quoting) back into argv.
/// `\t` and `\n` stay escaped: the only such argument is dpkg-query's
/// format, which reads those escapes itself.
fn split_display(line: &str) -> Vec<String> {
    let mut argv = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut arg = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some(e @ ('"' | '\\' | '\'')) => arg.push(e),
                        Some(e) => {
                            arg.push('\\');
                            arg.push(e);
                        }
                        None => {}
                    },
                    c => arg.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        argv.push(arg);
    }
    argv
}

/// Where the CPU of our up-to-date check goes: in a fresh sandbox, two
/// checks (the second as in [`ours_checks`]), then the commands the helper
/// ran in the second one, run again in the same order inside the sandbox,
/// `repeat` times, each with its median CPU; what is left of the check's CPU
/// is the agent's and the helper's own, and their process starts. Twice:
/// with the helper's private directory (apt's `Dir::Cache::pkgcache=DIR/..`,
/// dnf's `--downloaddir=DIR`) made afresh, empty, before each repetition,
/// as the helper does per request; and kept from the previous repetition,
/// which shows what a private cache that outlived the request would save.
fn check_breakdown(
    out: &mut impl Write,
    mut u: Updater,
    family: Family,
    repeat: usize,
) -> Result<()> {
    let (_, second, log) = ours_checks(&mut u, family)?;
    writeln!(
        out,
        "where our up-to-date check's CPU goes ({:.3} s in all in this check; its commands run again \
         {repeat} times, median CPU with the private directory made afresh / kept):",
        second.cpu.as_secs_f64()
    )?;
    let ran = commands_run(&log);
    let argvs: Vec<Vec<String>> = ran.iter().map(|r| split_display(&r.command)).collect();
    let private: Vec<String> = argvs
        .iter()
        .flatten()
        .filter_map(|a| {
            a.strip_prefix("Dir::Cache::pkgcache=")
                .and_then(|p| std::path::Path::new(p).parent()?.to_str())
                .or_else(|| a.strip_prefix("--downloaddir="))
        })
        .map(str::to_string)
        .collect();
    let mut cpu = vec![[Vec::new(), Vec::new()]; ran.len()];
    for kept in [0, 1] {
        for _ in 0..repeat {
            for dir in &private {
                if kept == 0 {
                    u.sandbox.run(&["rm", "-rf", dir])?;
                }
                u.sandbox.run(&["mkdir", "-p", "-m", "0700", dir])?;
            }
            for (i, (r, argv)) in ran.iter().zip(&argvs).enumerate() {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let cpu0 = children_cpu()?;
                let run = u.sandbox.run_unchecked(&argv)?;
                cpu[i][kept].push(children_cpu()? - cpu0);
                // The same outcome as in the check (dpkg-query exits 1 for
                // a package that is not installed, and the helper expects it).
                if run.status.code().map(|c| format!("Code({c})")) != Some(r.exit.clone()) {
                    bail!(
                        "{} ended with {} when run again, {} in the check: {}",
                        r.command,
                        run.status,
                        r.exit,
                        String::from_utf8_lossy(&run.stderr)
                    );
                }
            }
        }
    }
    let mut commands_cpu = Duration::ZERO;
    for (r, [fresh, kept]) in ran.iter().zip(cpu) {
        let (fresh, kept) = (median(fresh), median(kept));
        commands_cpu += fresh;
        writeln!(
            out,
            "  {:.3} s / {:.3} s CPU, {:>4} ms in the check: {}",
            fresh.as_secs_f64(),
            kept.as_secs_f64(),
            r.ms,
            r.command
        )?;
    }
    writeln!(
        out,
        "  {:.3} s CPU: the rest (agent, helper, nsenter, process starts; one check, so noisy)",
        second.cpu.saturating_sub(commands_cpu).as_secs_f64()
    )?;
    Ok(())
}

/// Spawn to `Welcome`: how long a socket-activated helper makes the first
/// client wait. The client is the `probe` binary as the agent user
/// (`systemd-network` here: the helper serves only a system account, and
/// that one comes with the systemd package CI installs), so the figure
/// includes that process's own start.
const COLD_START_AGENT: &str = "systemd-network";

fn cold_start_once() -> Result<(Duration, u64)> {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let socket = dir.path().join("run/helper.sock");
    let agent = nix::unistd::User::from_name(COLD_START_AGENT)?
        .with_context(|| format!("no system user {COLD_START_AGENT} to serve"))?;
    let t0 = Instant::now();
    let mut child = Command::new(workspace_bin("patchman-helper"))
        .arg("--socket")
        .arg(&socket)
        .args([
            "--agent-user",
            COLD_START_AGENT,
            "--config",
            "/nonexistent.ini",
        ])
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
        .uid(agent.uid.as_raw())
        .gid(agent.gid.as_raw())
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
    let (indexes, age) = host_indexes()?;
    let _ = apt_fixture();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "benchmark: {runs} runs each, fresh sandbox per run, alternating; \
         the host has {indexes} Packages indexes, the newest {} min old",
        age.as_secs() / 60
    )?;
    let mo = apt_setup(&mut out, Setup::PatchmanOnly, runs)?;
    apt_setup(&mut out, Setup::HostIndexes, runs)?;

    writeln!(out, "\n[dnf, only the patchman repository]")?;
    let _ = patchman_tests::el_fixture();
    let (dours, dbare) = alternate(runs, dnf_ours_once, dnf_bare_once)?;
    let (mdo, cdo) = report(&mut out, "update, agent+helper (all checks)", &dours)?;
    let (mdb, cdb) = report(&mut out, "update, vendor sequence (sh)", &dbare)?;
    writeln!(
        out,
        "update ratio agent+helper / vendor: wall {:.2}, CPU {:.2}",
        ratio(mdo, mdb),
        ratio(cdo, cdb)
    )?;
    let (ours, bare) = alternate(runs, dnf_ours_check_once, dnf_bare_check_once)?;
    checks_report(&mut out, "vendor dnf steps 1-2", &ours, &bare)?;
    check_breakdown(&mut out, fresh_el("1.7.1-1")?, Family::Dnf, 5)?;

    writeln!(out, "\n[apt, unattended-upgrades, only the patchman index]")?;
    let dir = tempfile::tempdir()?;
    let debs = unattended_upgrades_debs(dir.path())?;
    let mut uu = Vec::new();
    for _ in 0..runs {
        uu.push(uu_once(&debs)?);
    }
    let (mu, _) = report(
        &mut out,
        "update, unattended-upgrades (apt-get update + unattended-upgrade)",
        &uu,
    )?;
    writeln!(
        out,
        "ratio agent+helper / unattended-upgrades: {:.2}",
        ratio(mo, mu)
    )?;

    writeln!(out, "\n[helper and agent]")?;

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
