//! Shared by `tests/tests/attacks.rs`, `faults.rs` and `channel.rs`: finding
//! the helper's process inside a sandbox, reading its `/proc` status,
//! driving the `probe` client inside the sandbox as the agent user, and
//! wrapping a tool inside the sandbox (and holding an update mid-download).

use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use crate::sandbox::attack_fixture::SLOW_MARKER;
use crate::updater::{Updater, AGENT_USER, SOCKET};
use crate::workspace_bin;

/// Polls `f` every 25 ms until it is true or `within` has passed.
pub fn wait_until(within: Duration, f: impl FnMut() -> bool) -> bool {
    wait_until_every(Duration::from_millis(25), within, f)
}

/// Polls `f` every `every` until it is true or `within` has passed. For
/// a check that starts a program (`dpkg-query`, `rpm -q`) each time, and a
/// wait of seconds, a slower poll leaves the cores to the test's work.
pub fn wait_until_every(every: Duration, within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() >= within {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// The host pid of the sandbox's running `patchman-helper`, if any.
pub fn helper_pid(u: &Updater) -> Option<u32> {
    u.sandbox.processes().into_iter().find(|pid| {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
            exe.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("patchman-helper"))
        })
    })
}

/// A numeric field (`VmRSS`, `Threads`, …) of `/proc/<pid>/status`.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Host pids in the sandbox whose command line's first word ends with
/// `name` (e.g. `dpkg`, `rpm`).
pub fn processes_named(u: &Updater, name: &str) -> Vec<u32> {
    u.sandbox
        .processes()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let first = c.split(|b| *b == 0).next().unwrap_or_default();
                Path::new(std::str::from_utf8(first).unwrap_or_default())
                    .file_name()
                    .is_some_and(|n| n == name)
            })
        })
        .collect()
}

/// Runs `probe SOCKET actions…` inside the sandbox as the agent user;
/// returns its stdout.
pub fn probe(u: &Updater, actions: &[&str]) -> String {
    probe_in(&u.sandbox, actions)
}

/// [`probe`] in any sandbox whose helper listens on the default socket.
pub fn probe_in(sandbox: &crate::Sandbox, actions: &[&str]) -> String {
    let probe = workspace_bin("probe");
    let mut argv = vec![probe.to_str().expect("probe path"), SOCKET];
    argv.extend_from_slice(actions);
    let out = sandbox
        .run_as_unchecked(AGENT_USER, &argv)
        .expect("running probe");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `probe SOCKET actions…` inside as the agent user, not waiting.
pub fn spawn_probe(u: &Updater, actions: &[&str]) -> Child {
    let probe = workspace_bin("probe");
    let mut argv = vec![probe.to_str().expect("probe path"), SOCKET];
    argv.extend_from_slice(actions);
    u.sandbox
        .spawn_as(AGENT_USER, &argv)
        .expect("starting probe")
}

/// Starts `patchman-agent --socket SOCKET args…` inside as the agent
/// user, not waiting. The child's pid is the agent's own (nsenter and
/// setpriv exec in place).
pub fn spawn_agent(u: &Updater, args: &[&str]) -> Child {
    let agent = workspace_bin("patchman-agent");
    let mut argv = vec![agent.to_str().expect("agent path"), "--socket", SOCKET];
    argv.extend_from_slice(args);
    u.sandbox
        .spawn_as(AGENT_USER, &argv)
        .expect("starting the agent")
}

/// Replaces the executable `path` inside the sandbox by the script that
/// `script` writes, given the path the real program was moved to
/// (`<path>.real`). The script is root-owned 0755, as the helper demands
/// of what it runs.
pub fn wrap_tool_with(u: &Updater, path: &str, script: impl FnOnce(&str) -> String) {
    let real = format!("{path}.real");
    u.sandbox
        .run(&["mv", path, &real])
        .expect("moving the tool");
    u.sandbox
        .write_file_mode(path, script(&real), 0o755)
        .expect("writing the wrapper");
}

/// Replaces the executable `path` inside the sandbox by a `/bin/sh`
/// wrapper: `before` runs first (with the arguments in `"$@"`), then the
/// real program is exec'd with the same arguments.
pub fn wrap_tool(u: &Updater, path: &str, before: &str) {
    wrap_tool_with(u, path, |real| {
        format!("#!/bin/sh\n{before}\nexec {real} \"$@\"\n")
    });
}

/// stdout and stderr of `out`, for failure messages.
pub fn text(out: &Output) -> String {
    crate::cmd::output_text(out)
}

/// Like [`wrap_tool`], but `after` runs once the real program has exited
/// (its exit code in `$rc`, returned by the wrapper).
pub fn wrap_tool_after(u: &Updater, path: &str, after: &str) {
    wrap_tool_with(u, path, |real| {
        format!("#!/bin/sh\n{real} \"$@\"\nrc=$?\n{after}\nexit $rc\n")
    });
}

/// The rpm keyring as `rpm -q gpg-pubkey` lists it, then the SHA-256 of
/// every file of the rpm database (`/var/lib/rpm`): "byte-for-byte
/// unchanged" compares two of these.
pub fn rpm_keyring(u: &Updater) -> String {
    u.sandbox
        .run_stdout(&[
            "sh",
            "-c",
            "rpm -q gpg-pubkey | sort; cd /var/lib/rpm && find . -type f | sort | xargs sha256sum",
        ])
        .expect("reading the rpm keyring")
}

/// Only the `gpg-pubkey` entries of the rpm database.
pub fn rpm_pubkeys(u: &Updater) -> String {
    u.sandbox
        .run_unchecked(&["rpm", "-q", "gpg-pubkey"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .expect("rpm -q gpg-pubkey")
}

/// Makes apt-get's download step (`-d install`) wait, for up to 60 s,
/// until [`release_download`]: an update held mid-way. Call in a
/// scenario's `prepare`; [`wait_for_held_download`] waits until it is
/// there.
pub fn hold_download(u: &Updater) {
    wrap_tool(
        u,
        "/usr/bin/apt-get",
        "case \" $* \" in *\" -d install \"*) touch /run/atk-waiting; i=0; \
         while [ ! -e /run/atk-go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;; esac",
    );
}

/// Waits (60 s at most) until an update reached the download that
/// [`hold_download`] holds.
pub fn wait_for_held_download(u: &Updater) {
    assert!(
        wait_until(Duration::from_secs(60), || u
            .sandbox
            .exists("/run/atk-waiting")
            .unwrap()),
        "the update never reached the download:\n{}",
        u.helper_log()
    );
}

/// Lets the held download go on.
pub fn release_download(u: &Updater) {
    u.sandbox
        .run(&["touch", "/run/atk-go"])
        .expect("releasing the download");
}

/// Waits (60 s at most) until the attack fixture's slow maintainer script
/// (postinst or `%post`) runs under an update the test started.
pub fn wait_for_slow_script(u: &Updater) {
    assert!(
        wait_until(Duration::from_secs(60), || u
            .sandbox
            .exists(SLOW_MARKER)
            .unwrap()),
        "the maintainer script never ran:\n{}",
        u.helper_log()
    );
}

/// Asserts that the helper's log does not contain `text` (a command it
/// must not have run), showing the log when it does.
pub fn assert_helper_never_logged(u: &Updater, text: &str) {
    let log = u.helper_log();
    assert!(!log.contains(text), "{text:?} in the helper's log:\n{log}");
}

/// A source package `patchman-client` 1.7.1-1 (`rpmbuild -bs`) signed by a
/// fresh key, in `out_dir`; returns it and the key, ASCII-armored (what
/// `rpm --import` takes). A source package is no binary package to
/// install, whoever signed it.
pub fn signed_source_rpm(
    out_dir: &Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    use crate::sandbox::apt_repo::GpgHome;
    use crate::sandbox::rpm::{export_armored, host_rpm_command, sign_rpms, RpmSpec};
    use anyhow::Context;
    std::fs::create_dir_all(out_dir)?;
    // A short gpg home: its agent's socket lives there.
    let gpg_dir = tempfile::Builder::new().prefix("pmsrc").tempdir()?;
    let gpg = GpgHome::new(gpg_dir.path())?;
    let key = gpg.generate_key("srcatk", out_dir)?;
    let spec = RpmSpec::new("patchman-client", "1.7.1-1")
        .file("/usr/share/patchman-client/VERSION", "1.7.1-1\n");
    let work = tempfile::tempdir_in(out_dir)?;
    let spec_file = work.path().join("patchman-client.spec");
    std::fs::write(&spec_file, spec.spec_text()?)?;
    let mut c = host_rpm_command("rpmbuild", work.path())?;
    c.arg("--define")
        .arg(format!("_srcrpmdir {}", out_dir.display()))
        .args(["--quiet", "-bs"])
        .arg(&spec_file);
    crate::cmd::output(&mut c).context("rpmbuild -bs")?;
    let srpm = out_dir.join("patchman-client-1.7.1-1.src.rpm");
    anyhow::ensure!(srpm.is_file(), "rpmbuild wrote no {}", srpm.display());
    sign_rpms(gpg_dir.path(), &key, std::slice::from_ref(&srpm))?;
    let key_file = out_dir.join("RPM-GPG-KEY-srcatk");
    export_armored(gpg_dir.path(), &key, &key_file)?;
    drop(gpg);
    Ok((srpm, key_file))
}
