//! The updater in a sandbox: the real `patchman-helper` as root and the
//! real `patchman-agent` as the sandbox's `patchman` user, against a
//! repository served over HTTP on 127.0.0.1. Used by the scenario tests
//! and by the `sandbox` demo.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::sandbox::apt_repo::{AptRepo, SourceFormat};
use crate::sandbox::http::HttpServer;
use crate::{workspace_bin, Sandbox};

/// The helper's socket inside the sandbox (DESIGN.md's default).
pub const SOCKET: &str = "/run/patchman/helper.sock";
/// The agent user created inside the sandbox.
pub const AGENT_USER: &str = "patchman";

/// The paths, inside the sandbox, of the helper and agent binaries a
/// scenario runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub helper: String,
    pub agent: String,
}

impl Binaries {
    /// This workspace's builds (`target/<profile>/`), which the host mode's
    /// sandbox sees at the same paths.
    pub fn workspace() -> Result<Binaries> {
        let path = |name: &str| -> Result<String> {
            Ok(workspace_bin(name)
                .to_str()
                .with_context(|| format!("the path of {name} is not UTF-8"))?
                .to_owned())
        };
        Ok(Binaries {
            helper: path("patchman-helper")?,
            agent: path("patchman-agent")?,
        })
    }
}

/// A sandbox with the patchman source configured, packages installed, and
/// (once started) the helper running.
pub struct Updater {
    pub sandbox: Sandbox,
    pub http: HttpServer,
    bins: Binaries,
    helper: Option<Child>,
    log: PathBuf,
}

impl Updater {
    /// A sandbox with user `patchman`, `repo` as the source named
    /// `patchman` (in `format`), served from `repos_root`, and `installed`
    /// installed with `dpkg -i`.
    pub fn new(
        repos_root: &Path,
        repo: &AptRepo,
        format: SourceFormat,
        installed: &[&Path],
    ) -> Result<Updater> {
        let bins = Binaries::workspace()?;
        Self::apt_in(Sandbox::new()?, bins, repos_root, repo, format, installed)
    }

    /// [`new`](Self::new) in `sandbox` (of either mode), running `bins`.
    pub fn apt_in(
        sandbox: Sandbox,
        bins: Binaries,
        repos_root: &Path,
        repo: &AptRepo,
        format: SourceFormat,
        installed: &[&Path],
    ) -> Result<Updater> {
        let http = HttpServer::start(repos_root)?;
        sandbox.add_system_user(AGENT_USER)?;
        sandbox.add_apt_repo("patchman", repo, &http.url(), format)?;
        if !installed.is_empty() {
            sandbox.install_debs(installed)?;
        }
        Ok(Self::with(sandbox, http, bins))
    }

    fn with(sandbox: Sandbox, http: HttpServer, bins: Binaries) -> Updater {
        let log = sandbox.dir().join("helper.log");
        Updater {
            sandbox,
            http,
            bins,
            helper: None,
            log,
        }
    }

    /// An EL sandbox (`release`'s release files, EL dnf.conf, a fresh rpm
    /// database) with user `patchman`, `repo` as the yum repository named
    /// `patchman`, served from `repos_root`, and `installed` installed with
    /// `rpm -U`.
    pub fn new_el(
        release: crate::sandbox::el::ElRelease,
        repo: &crate::sandbox::RpmRepo,
        installed: &[&Path],
    ) -> Result<Updater> {
        let bins = Binaries::workspace()?;
        Self::el_in(Sandbox::new()?, bins, release, repo, installed)
    }

    /// [`new_el`](Self::new_el) in `sandbox` (of either mode), running
    /// `bins`.
    pub fn el_in(
        sandbox: Sandbox,
        bins: Binaries,
        release: crate::sandbox::el::ElRelease,
        repo: &crate::sandbox::RpmRepo,
        installed: &[&Path],
    ) -> Result<Updater> {
        use crate::sandbox::el::ElSandbox;
        let fx = crate::el_fixture();
        let http = HttpServer::start(&fx.repos_root)?;
        sandbox.add_system_user(AGENT_USER)?;
        sandbox.make_el(release, fx)?;
        sandbox.add_rpm_repo("patchman", repo, &http.url())?;
        if !installed.is_empty() {
            sandbox.install_rpms(installed)?;
        }
        Ok(Self::with(sandbox, http, bins))
    }

    /// Adds another source (`name.list`) serving `repo` from the same server.
    pub fn add_source(&self, name: &str, repo: &AptRepo) -> Result<()> {
        self.sandbox
            .add_apt_repo(name, repo, &self.http.url(), SourceFormat::List)?;
        Ok(())
    }

    /// Writes the sandbox's `/etc/patchman/patchman.ini` `[updates]` lines.
    pub fn configure(&self, updates: &str) -> Result<()> {
        self.sandbox.write_file(
            "/etc/patchman/patchman.ini",
            format!("[updates]\n{updates}"),
        )
    }

    /// Starts `patchman-helper --socket SOCKET --agent-user patchman` as
    /// root inside, logging to a file; returns once its socket exists.
    pub fn start_helper(&mut self) -> Result<()> {
        let mut cmd = self.sandbox.command(&[
            &self.bins.helper,
            "--socket",
            SOCKET,
            "--agent-user",
            AGENT_USER,
        ]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        cmd.stdout(Stdio::null()).stderr(log);
        self.helper = Some(cmd.spawn().context("starting the helper")?);
        let t0 = Instant::now();
        while !self.sandbox.exists(SOCKET)? {
            if let Some(status) = self
                .helper
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("the helper exited with {status}:\n{}", self.helper_log());
            }
            if t0.elapsed() > Duration::from_secs(20) {
                bail!(
                    "the helper did not create its socket:\n{}",
                    self.helper_log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    /// The helper's pid (this process's child: `nsenter` execs it), while
    /// it has not been waited for.
    pub fn helper_pid(&self) -> Option<u32> {
        self.helper.as_ref().map(Child::id)
    }

    /// Asserts that `out`, from the agent run with `args`, ended with exit
    /// code `code`, showing its output and the helper's log when it did not.
    pub fn assert_agent_exited(&self, args: &[&str], out: &Output, code: i32) {
        assert_eq!(
            out.status.code(),
            Some(code),
            "patchman-agent {}: {}\n--- helper log\n{}",
            args.join(" "),
            crate::cmd::output_text(out),
            self.helper_log()
        );
    }

    /// Asserts that the helper's log contains `text`, showing the log when
    /// it does not.
    pub fn assert_helper_logged(&self, text: &str) {
        let log = self.helper_log();
        assert!(
            log.contains(text),
            "{text:?} not in the helper's log:\n{log}"
        );
    }

    /// The agent's state file in `state_dir`, as JSON: `Null` while it
    /// is missing or half written.
    pub fn agent_state(&self, state_dir: &str) -> serde_json::Value {
        self.sandbox
            .read_file(&format!("{state_dir}/state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Waits up to `within` for the agent's state file in `state_dir` to
    /// record a result. Returns whether it did, and the state last read.
    pub fn wait_for_recorded_result(
        &self,
        state_dir: &str,
        within: Duration,
    ) -> (bool, serde_json::Value) {
        let mut json = serde_json::Value::Null;
        let recorded = crate::attack_support::wait_until(within, || {
            json = self.agent_state(state_dir);
            !json["last_result"].is_null()
        });
        (recorded, json)
    }

    /// What the helper logged so far.
    pub fn helper_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the helper process has exited (it does after a changing
    /// update), waiting up to `wait` for it.
    pub fn helper_exited_within(&mut self, wait: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            match self.helper.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(_))) | None => return true,
                _ if t0.elapsed() >= wait => return false,
                _ => std::thread::sleep(Duration::from_millis(25)),
            }
        }
    }

    /// Waits (up to 5 s) for the helper to exit, as it does after a
    /// changing update, then starts it again (as systemd's socket would on
    /// the next connection). Fails if it does not exit.
    pub fn restart_helper(&mut self) -> Result<()> {
        if !self.helper_exited_within(Duration::from_secs(5)) {
            bail!("the helper did not exit:\n{}", self.helper_log());
        }
        self.helper.take();
        self.start_helper()
    }

    /// Runs `patchman-agent --socket SOCKET <args>` as `patchman` inside.
    pub fn agent(&self, args: &[&str]) -> Result<Output> {
        self.sandbox
            .run_as_unchecked(AGENT_USER, &self.agent_argv(args))
    }

    /// Starts the agent like [`agent`](Self::agent) with its output going
    /// straight to ours (the demo's live view); returns its exit code.
    pub fn agent_live(&self, args: &[&str]) -> Result<i32> {
        let status = self
            .sandbox
            .command_as(AGENT_USER, &self.agent_argv(args))?
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()?;
        Ok(status.code().unwrap_or(-1))
    }

    fn agent_argv<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut argv = vec![self.bins.agent.as_str(), "--socket", SOCKET];
        argv.extend_from_slice(args);
        argv
    }

    /// `(status, version)` of a package, as [`Sandbox::dpkg_status`].
    pub fn dpkg(&self, package: &str) -> Result<Option<(String, String)>> {
        self.sandbox.dpkg_status(package)
    }

    /// The installed version if `install ok installed`, else `None`.
    pub fn installed(&self, package: &str) -> Result<Option<String>> {
        Ok(self
            .dpkg(package)?
            .filter(|(s, _)| s == "install ok installed")
            .map(|(_, v)| v))
    }
}

impl Drop for Updater {
    fn drop(&mut self) {
        if let Some(mut c) = self.helper.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The lines of `after` not in `before` and of `before` not in `after`
/// (package database snapshots), for "nothing else changed" assertions.
pub fn db_changes(before: &str, after: &str) -> Vec<String> {
    let b: std::collections::BTreeSet<&str> = before.lines().collect();
    let a: std::collections::BTreeSet<&str> = after.lines().collect();
    let mut out: Vec<String> = b.difference(&a).map(|l| format!("- {l}")).collect();
    out.extend(a.difference(&b).map(|l| format!("+ {l}")));
    out
}

/// The package names in [`db_changes`] output.
pub fn changed_packages(changes: &[String]) -> std::collections::BTreeSet<String> {
    changes
        .iter()
        .filter_map(|l| l.get(2..)?.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The agent's state after its first failed attempt: one failure recorded,
/// and the next attempt the back-off's first step (45–60 s), not a retry
/// storm and not the whole interval. Returns the recorded error.
pub fn assert_first_failure_backed_off(json: &serde_json::Value) -> String {
    assert_eq!(json["last_result"], "failed", "{json}");
    assert_eq!(json["consecutive_failures"], 1, "{json}");
    let wait = json["next_check"].as_u64().unwrap() - json["last_check"].as_u64().unwrap();
    assert!(
        (45..=60).contains(&wait),
        "back-off, not a retry storm: {json}"
    );
    json["last_error"].as_str().unwrap_or_default().to_owned()
}
