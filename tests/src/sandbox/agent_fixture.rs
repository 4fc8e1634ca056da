//! Packages whose payload is the freshly built `patchman-agent`, for the
//! end-to-end test of the daemon re-executing itself after it updated its
//! own package. Built once per test process by [`agent_fixture`]; the
//! standard fixture ([`super::fixture`]) is not touched.
//!
//! | package           | version   | payload |
//! |-------------------|-----------|---------|
//! | `patchman-client` | `1.7.0-1` | `/usr/bin/patchman-agent`: the built agent, plus a trailing marker line `patchman-agent test payload 1.7.0-1` |
//! | `patchman-client` | `1.7.1-1` | the same binary with the marker `… 1.7.1-1` |
//!
//! The marker (bytes after the ELF image, which the loader ignores) makes
//! the two files differ, so a test can tell by hashing `/proc/<pid>/exe`
//! which of them a process is running. Both also ship
//! `/usr/share/patchman-client/VERSION`. The repository `agent` (dists
//! layout, suite `stable`, component `main`, signed by its own key `agent`)
//! offers both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};

use super::apt_repo::{build_repo, native_arch, AptRepo, GpgHome, RepoLayout, RepoSpec};
use super::deb::DebSpec;
use super::fixture::CLIENT;

/// Where the packaged agent is installed.
pub const AGENT_PATH: &str = "/usr/bin/patchman-agent";
/// The client versions built, oldest first.
pub const AGENT_CLIENT_VERSIONS: &[&str] = &["1.7.0-1", "1.7.1-1"];

/// See the module documentation.
#[derive(Debug)]
pub struct AgentFixture {
    /// The fixture's directory (removed by the next test process once this
    /// one is gone).
    pub root: PathBuf,
    /// The directory to serve over HTTP.
    pub repos_root: PathBuf,
    /// The repository `agent`.
    pub repo: AptRepo,
    /// The `.deb` of each client version.
    pub debs: BTreeMap<String, PathBuf>,
    /// SHA-256 (hex) of the packaged agent binary of each client version.
    pub payload_sha256: BTreeMap<String, String>,
}

impl AgentFixture {
    /// The `.deb` of client `version`.
    ///
    /// # Panics
    /// When the fixture has no such version (a typo in a test).
    pub fn deb(&self, version: &str) -> &Path {
        self.debs
            .get(version)
            .unwrap_or_else(|| panic!("the agent fixture has no client {version}"))
    }

    /// The SHA-256 of the agent binary packaged in client `version`.
    ///
    /// # Panics
    /// As [`deb`](Self::deb).
    pub fn payload_sha256(&self, version: &str) -> &str {
        self.payload_sha256
            .get(version)
            .unwrap_or_else(|| panic!("the agent fixture has no client {version}"))
    }
}

/// The fixture, built on first use in this test process and shared after.
///
/// # Panics
/// When it cannot be built (the agent not built, a tool missing), with the
/// reason.
pub fn agent_fixture() -> &'static AgentFixture {
    static FIXTURE: OnceLock<AgentFixture> = OnceLock::new();
    super::built_once(&FIXTURE, "the agent test fixture", build)
}

fn build() -> Result<AgentFixture> {
    let agent = crate::try_workspace_bin("patchman-agent")?;
    let binary = std::fs::read(&agent).with_context(|| format!("reading {}", agent.display()))?;
    let root = crate::fresh_fixture_root("agent-fixture-")?;
    let debs_dir = root.join("debs");
    std::fs::create_dir_all(&debs_dir)?;

    let mut debs = BTreeMap::new();
    let mut payload_sha256 = BTreeMap::new();
    for version in AGENT_CLIENT_VERSIONS {
        let mut payload = binary.clone();
        payload.extend_from_slice(format!("\npatchman-agent test payload {version}\n").as_bytes());
        payload_sha256.insert(version.to_string(), crate::host::sha256_hex(&payload)?);
        let deb = DebSpec::new(CLIENT, version)
            .file(AGENT_PATH, payload, 0o755)
            .file(
                "/usr/share/patchman-client/VERSION",
                format!("{version}\n"),
                0o644,
            )
            .build(&debs_dir)?;
        debs.insert(version.to_string(), deb);
    }

    let gpg_dir = tempfile::Builder::new().prefix("pmagpg").tempdir()?;
    let gpg = GpgHome::new(gpg_dir.path())?;
    let key = gpg.generate_key("agent", &root.join("keys"))?;
    let repos_root = root.join("repos");
    let all: Vec<PathBuf> = debs.values().cloned().collect();
    let repo = build_repo(
        &repos_root,
        &RepoSpec {
            name: "agent",
            layout: RepoLayout::stable_main(),
            debs: &all,
            key: Some(&key),
        },
        Some(&gpg),
        &native_arch()?,
    )?;
    drop(gpg);
    Ok(AgentFixture {
        root,
        repos_root,
        repo,
        debs,
        payload_sha256,
    })
}
