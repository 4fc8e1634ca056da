//! Hostile and faulty packages and repositories for `tests/tests/attacks.rs`
//! and `tests/tests/faults.rs`, built once per test process by
//! [`attack_fixture`] (apt) and [`el_attack_fixture`] (rpm). The standard
//! fixtures ([`apt_fixture`](super::fixture::apt_fixture),
//! [`el_fixture`](super::el_fixture::el_fixture)) are not changed: their
//! packages are reused (copied into these repositories) where a normal
//! version is needed.
//!
//! # apt packages (besides the standard `patchman-client` 1.7.0-1)
//!
//! | key (`AttackFixture::…`) | control says                     | file name                          | note |
//! |--------------------------|----------------------------------|------------------------------------|------|
//! | `evil_1`, `evil_2`       | `patchman-client-evil` 1.0-1 / 2.0-1 | conventional                   | a look-alike name |
//! | `misnamed`               | `patchman-client-evil` 1.7.1-1   | `patchman-client_1.7.1-1_all.deb`  | embedded name differs from the file name |
//! | `swapped_in`             | `patchman-client` 1.7.1-1        | conventional                       | `VERSION` says [`EVIL_PAYLOAD`]: what an attacker swaps in |
//! | `slow`                   | `patchman-client` 1.7.1-1        | conventional                       | postinst touches [`SLOW_MARKER`], sleeps [`SLOW_SECONDS`] s |
//! | `failing`                | `patchman-client` 1.7.1-1        | conventional                       | postinst prints [`FAILURE_MARKER`] to stderr and exits 1 |
//! | `replacing`              | `patchman-client` 1.7.1-1, `Conflicts:` and `Replaces:` [`VICTIM`] | conventional | apt would remove the victim |
//! | `victim`                 | [`VICTIM`] 1.0-1                 | conventional                       | what a test installs |
//!
//! # apt repositories
//!
//! All `dists/stable/main`, signed with the fixture's own `attack` key
//! (installed by [`Sandbox::add_apt_repo`](super::namespace::Sandbox::add_apt_repo)
//! as `/etc/apt/keyrings/patchman-tests-attack.gpg`), served from
//! [`AttackFixture::repos_root`].
//!
//! | field      | `patchman-client`                        | other |
//! |------------|------------------------------------------|-------|
//! | `evil`     | 1.7.0-1, 1.7.1-1 (standard)              | `patchman-client-evil` 1.0-1, 2.0-1 |
//! | `misnamed` | 1.7.0-1; the index's 1.7.1-1 is `misnamed` (index rewritten: `Package: patchman-client`, the file's true SHA-256) | |
//! | `slow`     | 1.7.0-1, `slow` 1.7.1-1                  | |
//! | `failing`  | 1.7.0-1, `failing` 1.7.1-1               | |
//! | `replacing_repo` | 1.7.0-1, `replacing` 1.7.1-1       | [`VICTIM`] 1.0-1 |
//!
//! # rpm packages and repositories ([`ElAttackFixture`])
//!
//! Unsigned: their repository files must say `gpgcheck=0` (these are fault
//! tests, not trust tests). `slow` and `failing` repositories each hold the
//! standard signed client 1.7.0-1 and a 1.7.1-1 whose `%post` sleeps
//! [`SLOW_SECONDS`] s after touching [`SLOW_MARKER`], or prints
//! [`FAILURE_MARKER`] and exits 1.
//!
//! Signed with the fixture's own `atk-el` key, which no sandbox imports
//! unless a test does ([`ElAttackFixture::key_file`]):
//!
//! | field        | packages | note |
//! |--------------|----------|------|
//! | `served_key` | client 1.7.1-1 whose `%post` touches [`ATTACKER_POST_MARKER`] | the key file itself at [`SERVED_KEY_FILE`] in the repository's directory: the repository server handing out its own key |
//! | `obsoleting` | client 1.7.1-1 with `Obsoletes:` [`VICTIM`] | [`ElAttackFixture::victim`] (unsigned) is what a test installs |
//! | `conflicting`| client 1.7.1-1 with `Conflicts:` [`VICTIM`] | |

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result};

use super::apt_repo::{build_repo, native_arch, AptRepo, GpgHome, RepoLayout, RepoSpec};
use super::deb::DebSpec;
use super::fixture::{apt_fixture, postinst_log_line, CLIENT, POSTINST_LOG};
use super::rpm::{build_rpms, export_armored, sign_rpms, RpmSpec};
use super::rpm_repo::{build_rpm_repo, RpmRepo};
use crate::cmd;

/// The look-alike package name.
pub const EVIL: &str = "patchman-client-evil";
/// The `VERSION` file's contents in [`AttackFixture::swapped_in`].
pub const EVIL_PAYLOAD: &str = "EVIL, NOT VERIFIED\n";
/// Touched by the slow maintainer scripts when they start sleeping.
pub const SLOW_MARKER: &str = "/run/patchman-tests-slow-script-started";
/// How long the slow maintainer scripts sleep.
pub const SLOW_SECONDS: u32 = 6;
/// Touched by the `%post` of the package signed with the served key: the
/// proof that a key a repository handed out was trusted.
pub const ATTACKER_POST_MARKER: &str = "/root/patchman-tests-attacker-post-ran";
/// The served key's file name in the `served_key` repository's directory.
pub const SERVED_KEY_FILE: &str = "RPM-GPG-KEY-atk-el";
/// An unrelated installed package that a new client obsoletes or
/// conflicts with.
pub const VICTIM: &str = "patchman-tests-victim";
/// What the failing maintainer scripts print (to stderr) before `exit 1`.
pub const FAILURE_MARKER: &str = "patchman-tests: postinst cannot configure this system";

/// See the module documentation.
#[derive(Debug)]
pub struct AttackFixture {
    pub root: PathBuf,
    pub repos_root: PathBuf,
    pub evil_1: PathBuf,
    pub evil_2: PathBuf,
    pub misnamed: PathBuf,
    pub swapped_in: PathBuf,
    pub slow: PathBuf,
    pub failing: PathBuf,
    pub replacing: PathBuf,
    pub victim: PathBuf,
    pub evil: AptRepo,
    pub misnamed_repo: AptRepo,
    pub slow_repo: AptRepo,
    pub failing_repo: AptRepo,
    pub replacing_repo: AptRepo,
}

/// See the module documentation.
#[derive(Debug)]
pub struct ElAttackFixture {
    pub root: PathBuf,
    pub repos_root: PathBuf,
    pub slow: RpmRepo,
    pub failing: RpmRepo,
    pub served_key: RpmRepo,
    pub obsoleting: RpmRepo,
    pub conflicting: RpmRepo,
    /// [`VICTIM`] 1.0-1, unsigned.
    pub victim: PathBuf,
    /// The `atk-el` key, ASCII-armored (what `rpm --import` takes).
    pub key_file: PathBuf,
    /// Its short id as rpm prints it (`key ID 3cd178d3`).
    pub key_id: String,
}

fn parent_dir() -> PathBuf {
    crate::profile_dir()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("patchman-tests")
}

fn fresh_root(prefix: &str) -> Result<PathBuf> {
    let parent = parent_dir();
    std::fs::create_dir_all(&parent)?;
    crate::remove_stale_dirs(&parent, prefix);
    let root = parent.join(format!("{prefix}{}", std::process::id()));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    Ok(root)
}

/// The apt side, built on first use.
///
/// # Panics
/// When it cannot be built, with the reason.
pub fn attack_fixture() -> &'static AttackFixture {
    static F: OnceLock<AttackFixture> = OnceLock::new();
    super::built_once(&F, "the attack fixture", build)
}

/// The rpm side, built on first use.
///
/// # Panics
/// When it cannot be built, with the reason.
pub fn el_attack_fixture() -> &'static ElAttackFixture {
    static F: OnceLock<ElAttackFixture> = OnceLock::new();
    super::built_once(&F, "the EL attack fixture", build_el)
}

fn log_line(version: &str) -> String {
    format!("{}\n", postinst_log_line(CLIENT, version, "$*"))
}

fn client(version: &str, payload: &str, postinst: &str) -> DebSpec {
    DebSpec::new(CLIENT, version)
        .file("/usr/share/patchman-client/VERSION", payload, 0o644)
        .postinst(postinst)
}

fn build() -> Result<AttackFixture> {
    let fx = apt_fixture();
    let root = fresh_root("attack-fixture-")?;
    let debs = root.join("debs");
    for d in ["debs", "swapped", "slow", "failing", "misnamed"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let evil_1 = DebSpec::new(EVIL, "1.0-1")
        .file("/usr/share/patchman-client-evil/VERSION", "1.0-1\n", 0o644)
        .build(&debs)?;
    let evil_2 = DebSpec::new(EVIL, "2.0-1")
        .file("/usr/share/patchman-client-evil/VERSION", "2.0-1\n", 0o644)
        .build(&debs)?;
    let swapped_in = client(
        "1.7.1-1",
        EVIL_PAYLOAD,
        &format!("#!/bin/sh\nset -e\n{}", log_line("1.7.1-1-EVIL")),
    )
    .build(&root.join("swapped"))?;
    let slow = client(
        "1.7.1-1",
        "1.7.1-1\n",
        &format!(
            "#!/bin/sh\nset -e\ntouch {SLOW_MARKER}\nsleep {SLOW_SECONDS}\n{}",
            log_line("1.7.1-1")
        ),
    )
    .build(&root.join("slow"))?;
    let failing = client(
        "1.7.1-1",
        "1.7.1-1\n",
        &format!("#!/bin/sh\necho '{FAILURE_MARKER}' >&2\nexit 1\n"),
    )
    .build(&root.join("failing"))?;
    std::fs::create_dir_all(root.join("replacing"))?;
    let replacing = client(
        "1.7.1-1",
        "1.7.1-1\n",
        &format!("#!/bin/sh\n{}", log_line("1.7.1-1")),
    )
    .field("Conflicts", VICTIM)
    .field("Replaces", VICTIM)
    .build(&root.join("replacing"))?;
    let victim = DebSpec::new(VICTIM, "1.0-1")
        .file("/usr/share/patchman-tests-victim/VERSION", "1.0-1\n", 0o644)
        .build(&debs)?;
    // Embedded name patchman-client-evil, file named as apt names ours.
    let misnamed_dir = root.join("misnamed");
    let built = DebSpec::new(EVIL, "1.7.1-1")
        .file("/usr/share/patchman-client/VERSION", EVIL_PAYLOAD, 0o644)
        .build(&misnamed_dir)?;
    let misnamed = misnamed_dir.join("patchman-client_1.7.1-1_all.deb");
    std::fs::rename(&built, &misnamed)?;

    let gpg_dir = tempfile::Builder::new().prefix("pmatk").tempdir()?;
    let gpg = GpgHome::new(gpg_dir.path())?;
    let key = gpg.generate_key("attack", &root.join("keys"))?;
    let arch = native_arch()?;
    let repos_root = root.join("repos");
    let repo = |name: &str, debs: &[PathBuf]| {
        build_repo(
            &repos_root,
            &RepoSpec {
                name,
                layout: RepoLayout::stable_main(),
                debs,
                key: Some(&key),
            },
            Some(&gpg),
            &arch,
        )
    };
    let c170 = fx.client("1.7.0-1").to_path_buf();
    let c171 = fx.client("1.7.1-1").to_path_buf();
    let evil = repo(
        "atk-evil",
        &[c170.clone(), c171, evil_1.clone(), evil_2.clone()],
    )?;
    let slow_repo = repo("atk-slow", &[c170.clone(), slow.clone()])?;
    let failing_repo = repo("atk-failing", &[c170.clone(), failing.clone()])?;
    let replacing_repo = repo(
        "atk-replacing",
        &[c170.clone(), replacing.clone(), victim.clone()],
    )?;
    let misnamed_repo = repo("atk-misnamed", &[c170, misnamed.clone()])?;
    // The index now says what the file's control does not: rewrite it
    // (name only; size and SHA-256 stay the file's true ones), then the
    // Release over it, and sign again.
    let dist = misnamed_repo.dir.join("dists/stable");
    let packages = dist.join(format!("main/binary-{arch}/Packages"));
    let text = std::fs::read_to_string(&packages)?;
    let rewritten = text.replace(
        &format!("Package: {EVIL}\n"),
        &format!("Package: {CLIENT}\n"),
    );
    anyhow::ensure!(rewritten != text, "no {EVIL} stanza in {text}");
    std::fs::write(&packages, rewritten)?;
    let mut release = Command::new("apt-ftparchive");
    release.current_dir(&dist);
    for (k, v) in [
        ("Origin", "atk-misnamed"),
        ("Label", "atk-misnamed"),
        ("Architectures", arch.as_str()),
        ("Suite", "stable"),
        ("Codename", "stable"),
        ("Components", "main"),
    ] {
        release
            .arg("-o")
            .arg(format!("APT::FTPArchive::Release::{k}={v}"));
    }
    release.args(["release", "."]);
    // `release .` would list the old Release too: write it elsewhere first.
    for f in ["Release", "InRelease", "Release.gpg"] {
        let _ = std::fs::remove_file(dist.join(f));
    }
    let out = cmd::output(&mut release).context("re-writing the misnamed Release")?;
    std::fs::write(dist.join("Release"), out.stdout)?;
    gpg.sign_release(&key, &dist.join("Release"))?;
    drop(gpg);
    Ok(AttackFixture {
        root,
        repos_root,
        evil_1,
        evil_2,
        misnamed,
        swapped_in,
        slow,
        failing,
        replacing,
        victim,
        evil,
        misnamed_repo,
        slow_repo,
        failing_repo,
        replacing_repo,
    })
}

fn build_el() -> Result<ElAttackFixture> {
    let fx = crate::el_fixture();
    let root = fresh_root("el-attack-fixture-")?;
    let specs = [
        RpmSpec::new(CLIENT, "1.7.1-1")
            .file("/usr/share/patchman-client/VERSION", "1.7.1-1\n")
            .post(&format!(
                "touch {SLOW_MARKER}\nsleep {SLOW_SECONDS}\necho \"{CLIENT} 1.7.1-1 $1\" >> {POSTINST_LOG}"
            )),
        RpmSpec::new(CLIENT, "1.7.1-1")
            .file("/usr/share/patchman-client/VERSION", "1.7.1-1\n")
            .post(&format!("echo '{FAILURE_MARKER}' >&2\nexit 1")),
    ];
    let slow = build_rpms(&specs[..1], &root.join("slow"))?;
    let failing = build_rpms(&specs[1..], &root.join("failing"))?;
    let repos_root = root.join("repos");
    let c170 = fx.client("1.7.0-1").to_path_buf();
    let slow = build_rpm_repo(
        &repos_root,
        "atk-el-slow",
        &[c170.clone(), slow[0].clone()],
        None,
    )?;
    let failing = build_rpm_repo(
        &repos_root,
        "atk-el-failing",
        &[c170, failing[0].clone()],
        None,
    )?;
    let signed_specs = [
        RpmSpec::new(CLIENT, "1.7.1-1")
            .file("/usr/share/patchman-client/VERSION", "1.7.1-1\n")
            .post(&format!("touch {ATTACKER_POST_MARKER}")),
        RpmSpec::new(CLIENT, "1.7.1-1")
            .file("/usr/share/patchman-client/VERSION", "1.7.1-1\n")
            .tag("Obsoletes", VICTIM),
        RpmSpec::new(CLIENT, "1.7.1-1")
            .file("/usr/share/patchman-client/VERSION", "1.7.1-1\n")
            .tag("Conflicts", VICTIM),
    ];
    let served = build_rpms(&signed_specs[..1], &root.join("served"))?;
    let obsoleting = build_rpms(&signed_specs[1..2], &root.join("obsoleting"))?;
    let conflicting = build_rpms(&signed_specs[2..], &root.join("conflicting"))?;
    let victim = build_rpms(
        &[RpmSpec::new(VICTIM, "1.0-1")
            .file("/usr/share/patchman-tests-victim/VERSION", "1.0-1\n")],
        &root.join("victim"),
    )?
    .remove(0);
    let gpg_dir = tempfile::Builder::new().prefix("pmatkel").tempdir()?;
    let gpg = GpgHome::new(gpg_dir.path())?;
    let key = gpg.generate_key("atk-el", &root.join("keys"))?;
    let signed: Vec<PathBuf> = served
        .iter()
        .chain(&obsoleting)
        .chain(&conflicting)
        .cloned()
        .collect();
    sign_rpms(gpg_dir.path(), &key, &signed)?;
    let key_file = root.join("keys").join(SERVED_KEY_FILE);
    let key_id = key.fingerprint[key.fingerprint.len().saturating_sub(8)..].to_ascii_lowercase();
    export_armored(gpg_dir.path(), &key, &key_file)?;
    drop(gpg);
    let served_key = build_rpm_repo(&repos_root, "atk-el-served-key", &served, Some("atk-el"))?;
    std::fs::copy(&key_file, served_key.dir.join(SERVED_KEY_FILE))?;
    let obsoleting = build_rpm_repo(
        &repos_root,
        "atk-el-obsoleting",
        &obsoleting,
        Some("atk-el"),
    )?;
    let conflicting = build_rpm_repo(
        &repos_root,
        "atk-el-conflicting",
        &conflicting,
        Some("atk-el"),
    )?;
    Ok(ElAttackFixture {
        root,
        repos_root,
        slow,
        failing,
        served_key,
        obsoleting,
        conflicting,
        victim,
        key_file,
        key_id,
    })
}
