//! The standard `.rpm` test packages and repositories, built once per test
//! process by [`el_fixture`] (the EL twin of
//! [`apt_fixture`](super::fixture::apt_fixture)).
//!
//! # Packages
//!
//! All `noarch`. Every `patchman-client` ships
//! `/usr/share/patchman-client/VERSION` and the `%config(noreplace)` file
//! `/etc/patchman/patchman.ini`; every package's `%post` appends
//! `<package> <version> <$1>` to
//! [`POSTINST_LOG`](super::fixture::POSTINST_LOG) (`$1` is rpm's count of
//! instances after the transaction: `1` fresh, `2` upgrade).
//!
//! | package                    | version     | requires                       | note |
//! |----------------------------|-------------|--------------------------------|------|
//! | `patchman-client`          | `1.6.9-1`   |                                | below the 1.7.0-1 gate; [`CONFFILE_OLD`](super::fixture::CONFFILE_OLD) |
//! | `patchman-client`          | `1.7.0-1`   |                                | [`CONFFILE_OLD`](super::fixture::CONFFILE_OLD) |
//! | `patchman-client`          | `1.7.1-1`   |                                | [`CONFFILE_NEW`](super::fixture::CONFFILE_NEW) |
//! | `patchman-client`          | `1.7.2-1`   | `libpatchman-new >= 1.0`       | a new dependency |
//! | `patchman-client`          | `1:1.2.7-1` |                                | epoch: newer than all the above |
//! | `patchman-client`          | `9.9.9-1`   |                                | only in the `other` repository |
//! | `patchman-client-realtime` | `1.7.0-1`   | `patchman-client = 1.7.0-1`    | |
//! | `patchman-client-realtime` | `1.7.1-1`   | `patchman-client = 1.7.1-1`    | |
//! | `libpatchman-new`          | `1.0-1`     |                                | the new dependency of 1.7.2-1 |
//! | `patchman-tests-el-base`   | `6-1`, `7-1`, `8-1` | provides `/bin/sh`, `system-release(releasever) = N` | registered by [`ElSandbox::make_el`](super::el::ElSandbox::make_el) with `--justdb`; never signed |
//!
//! Each is built once unsigned ([`ElFixture::unsigned_rpm`]) and copied and
//! signed with the `patchman` key ([`ElFixture::rpm`]); client 1.7.1-1 is
//! also signed with the `other` key ([`ElFixture::foreign_rpm`]).
//!
//! # Repositories
//!
//! All under [`ElFixture::repos_root`], one directory each: serve that root
//! with one [`HttpServer`](super::http::HttpServer) and add one with
//! [`ElSandbox::add_rpm_repo`](super::el::ElSandbox::add_rpm_repo) (every
//! `.repo` file has `gpgcheck=1` and the `patchman` key as `gpgkey`).
//!
//! | field        | packages signed by | client versions            | realtime         | other                   | dnf's candidate (client) |
//! |--------------|--------------------|----------------------------|------------------|-------------------------|------|
//! | `patchman`   | `patchman`         | 1.6.9-1, 1.7.0-1, 1.7.1-1  | 1.7.0-1, 1.7.1-1 |                         | 1.7.1-1 |
//! | `newdep`     | `patchman`         | 1.7.0-1, 1.7.1-1, 1.7.2-1  | 1.7.0-1, 1.7.1-1 |                         | none: `nothing provides libpatchman-new` (`best=True`) |
//! | `newdep_lib` | `patchman`         | 1.7.0-1, 1.7.1-1, 1.7.2-1  | 1.7.0-1, 1.7.1-1 | `libpatchman-new` 1.0-1 | 1.7.2-1, dragging `libpatchman-new` |
//! | `other`      | `patchman`         | 9.9.9-1                    |                  |                         | 9.9.9-1 (another repository with a newer client) |
//! | `unsigned`   | nobody             | 1.7.0-1, 1.7.1-1           |                  |                         | (dnf: `is not signed`, `GPG check FAILED`) |
//! | `epoch`      | `patchman`         | 1.7.1-1, 1:1.2.7-1         |                  |                         | 1:1.2.7-1 |
//! | `foreign`    | `other` (not imported) | 1.7.0-1, 1.7.1-1       |                  |                         | (dnf: `NOKEY`/GPG check fails) |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::apt_repo::{GpgHome, SigningKey};
use super::fixture::{
    package_set, postinst_log_line, FixturePackage, CLIENT, CLIENT_VERSIONS, NEW_DEP, REALTIME,
    REALTIME_VERSIONS,
};
use super::rpm::{build_rpms, export_armored, sign_rpms, RpmSpec};
use super::rpm_repo::{build_rpm_repo, RpmRepo};

/// The base package's name.
pub const EL_BASE: &str = "patchman-tests-el-base";

/// The EL releases a base package is built for.
pub const RELEASEVERS: &[u32] = &[6, 7, 8];

/// The standard packages and repositories; see the module documentation.
#[derive(Debug)]
pub struct ElFixture {
    /// The fixture's directory (removed by the next test process once this
    /// one is gone).
    pub root: PathBuf,
    /// The directory to serve over HTTP: each repository is a subdirectory.
    pub repos_root: PathBuf,
    /// Signed with the `patchman` key, by `(package, version)`.
    pub signed: BTreeMap<(String, String), PathBuf>,
    /// As built, unsigned, by `(package, version)`.
    pub unsigned: BTreeMap<(String, String), PathBuf>,
    /// Client 1.7.0-1 and 1.7.1-1 signed with the `other` key.
    pub foreign: BTreeMap<(String, String), PathBuf>,
    /// The `patchman` key, ASCII-armored (what the sandbox imports).
    pub patchman_key_file: PathBuf,
    /// The `other` key, ASCII-armored (never imported by the sandbox).
    pub other_key_file: PathBuf,
    /// See the table.
    pub patchman: RpmRepo,
    /// See the table.
    pub newdep: RpmRepo,
    /// See the table.
    pub newdep_lib: RpmRepo,
    /// See the table.
    pub other: RpmRepo,
    /// See the table.
    pub unsigned_repo: RpmRepo,
    /// See the table.
    pub epoch: RpmRepo,
    /// See the table.
    pub foreign_repo: RpmRepo,
    /// The `patchman` signing key.
    pub patchman_key: SigningKey,
    /// The `other` signing key.
    pub other_key: SigningKey,
    /// How long building it took.
    pub build_time: Duration,
}

fn get<'a>(map: &'a BTreeMap<(String, String), PathBuf>, p: &str, v: &str, what: &str) -> &'a Path {
    map.get(&(p.to_owned(), v.to_owned()))
        .unwrap_or_else(|| panic!("the EL fixture has no {what} {p} {v}"))
}

impl ElFixture {
    /// `package` at `version`, signed with the `patchman` key.
    ///
    /// # Panics
    /// When the fixture has no such package (a typo in a test).
    pub fn rpm(&self, package: &str, version: &str) -> &Path {
        get(&self.signed, package, version, "signed")
    }

    /// `package` at `version`, unsigned.
    ///
    /// # Panics
    /// As [`rpm`](Self::rpm).
    pub fn unsigned_rpm(&self, package: &str, version: &str) -> &Path {
        get(&self.unsigned, package, version, "unsigned")
    }

    /// The client at `version` (1.7.0-1, 1.7.1-1) signed with the `other` key.
    ///
    /// # Panics
    /// As [`rpm`](Self::rpm).
    pub fn foreign_rpm(&self, version: &str) -> &Path {
        get(&self.foreign, CLIENT, version, "foreign-signed")
    }

    /// The signed client at `version`.
    pub fn client(&self, version: &str) -> &Path {
        self.rpm(CLIENT, version)
    }

    /// The signed realtime package at `version`.
    pub fn realtime(&self, version: &str) -> &Path {
        self.rpm(REALTIME, version)
    }

    /// The base package for `releasever` (6, 7 or 8).
    ///
    /// # Panics
    /// For another release.
    pub fn base(&self, releasever: u32) -> &Path {
        self.unsigned_rpm(EL_BASE, &format!("{releasever}-1"))
    }
}

/// The fixture, built on first use in this test process (about a second:
/// the rpmbuilds run in parallel) and shared by every test after.
///
/// # Panics
/// When it cannot be built (a tool missing: rpm (rpmbuild, rpmsign),
/// createrepo-c, gnupg), with the reason.
pub fn el_fixture() -> &'static ElFixture {
    static FIXTURE: OnceLock<ElFixture> = OnceLock::new();
    super::built_once(&FIXTURE, "the EL test fixture", build_fixture)
}

impl FixturePackage for RpmSpec {
    fn package(name: &str, version: &str) -> Self {
        RpmSpec::new(name, version)
            .file(
                &format!("/usr/share/{name}/VERSION"),
                &format!("{version}\n"),
            )
            .post(&postinst_log_line(name, version, "$1"))
    }

    fn needs(self, name: &str, op: &str, version: &str) -> Self {
        self.requires(&format!("{name} {op} {version}"))
    }

    fn config(self, path: &str, contents: &str) -> Self {
        self.config_file(path, contents)
    }
}

/// The fixtures' package set ([`package_set`]) and the base package of
/// each release.
fn specs() -> Vec<RpmSpec> {
    let mut specs: Vec<RpmSpec> = package_set();
    for n in RELEASEVERS {
        specs.push(
            RpmSpec::new(EL_BASE, &format!("{n}-1"))
                .provides("/bin/sh")
                .provides(&format!("system-release(releasever) = {n}")),
        );
    }
    specs
}

fn copy_all(
    from: &BTreeMap<(String, String), PathBuf>,
    keys: &[(&str, &str)],
    dir: &Path,
) -> Result<BTreeMap<(String, String), PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = BTreeMap::new();
    for (p, v) in keys {
        let key = ((*p).to_owned(), (*v).to_owned());
        let src = from
            .get(&key)
            .with_context(|| format!("no {p} {v} built"))?;
        let dest = dir.join(src.file_name().context("file name")?);
        std::fs::copy(src, &dest)?;
        out.insert(key, dest);
    }
    Ok(out)
}

fn build_fixture() -> Result<ElFixture> {
    let started = Instant::now();
    let root = crate::fresh_fixture_root("el-fixture-")?;

    // Keys first (a short gpg home: its agent's socket lives there), while
    // the packages build.
    let gpg_dir = tempfile::Builder::new().prefix("pmrpmgpg").tempdir()?;
    let specs = specs();
    let unsigned_dir = root.join("unsigned");
    let (built, keys) = std::thread::scope(|s| {
        let builder = s.spawn(|| build_rpms(&specs, &unsigned_dir));
        let keys = (|| -> Result<_> {
            let gpg = GpgHome::new(gpg_dir.path())?;
            let keys_dir = root.join("keys");
            let patchman_key = gpg.generate_key("patchman", &keys_dir)?;
            let other_key = gpg.generate_key("other", &keys_dir)?;
            Ok((gpg, patchman_key, other_key))
        })();
        let built = builder
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the rpmbuild thread panicked")));
        (built, keys)
    });
    let built = built?;
    let (gpg, patchman_key, other_key) = keys?;
    let mut unsigned = BTreeMap::new();
    for (spec, path) in specs.iter().zip(built) {
        unsigned.insert((spec.name.clone(), spec.evr.clone()), path);
    }

    let mut all: Vec<(&str, &str)> = CLIENT_VERSIONS.iter().map(|v| (CLIENT, *v)).collect();
    all.extend(REALTIME_VERSIONS.iter().map(|v| (REALTIME, *v)));
    all.push((NEW_DEP, "1.0-1"));
    let signed = copy_all(&unsigned, &all, &root.join("signed"))?;
    let foreign = copy_all(
        &unsigned,
        &[(CLIENT, "1.7.0-1"), (CLIENT, "1.7.1-1")],
        &root.join("foreign"),
    )?;
    let to_sign: Vec<PathBuf> = signed.values().cloned().collect();
    let foreign_paths: Vec<PathBuf> = foreign.values().cloned().collect();
    sign_rpms(gpg_dir.path(), &patchman_key, &to_sign)?;
    sign_rpms(gpg_dir.path(), &other_key, &foreign_paths)?;
    let patchman_key_file = root.join("keys/RPM-GPG-KEY-patchman-tests");
    let other_key_file = root.join("keys/RPM-GPG-KEY-other");
    export_armored(gpg_dir.path(), &patchman_key, &patchman_key_file)?;
    export_armored(gpg_dir.path(), &other_key, &other_key_file)?;
    drop(gpg);

    let repos_root = root.join("repos");
    let pick = |map: &BTreeMap<(String, String), PathBuf>, keys: &[(&str, &str)]| -> Vec<PathBuf> {
        keys.iter()
            .filter_map(|(p, v)| map.get(&((*p).to_owned(), (*v).to_owned())).cloned())
            .collect()
    };
    let rt = [(REALTIME, "1.7.0-1"), (REALTIME, "1.7.1-1")];
    let with_rt = |clients: &[&'static str]| {
        let mut k: Vec<(&str, &str)> = clients.iter().map(|v| (CLIENT, *v)).collect();
        k.extend(rt);
        k
    };
    let newdep_keys = with_rt(&["1.7.0-1", "1.7.1-1", "1.7.2-1"]);
    let mut newdep_lib_keys = newdep_keys.clone();
    newdep_lib_keys.push((NEW_DEP, "1.0-1"));
    let repo = |name: &str, files: Vec<PathBuf>, key: Option<&str>| {
        build_rpm_repo(&repos_root, name, &files, key)
    };
    let fixture = ElFixture {
        patchman: repo(
            "patchman",
            pick(&signed, &with_rt(&["1.6.9-1", "1.7.0-1", "1.7.1-1"])),
            Some("patchman"),
        )?,
        newdep: repo("newdep", pick(&signed, &newdep_keys), Some("patchman"))?,
        newdep_lib: repo(
            "newdep-lib",
            pick(&signed, &newdep_lib_keys),
            Some("patchman"),
        )?,
        other: repo(
            "other",
            pick(&signed, &[(CLIENT, "9.9.9-1")]),
            Some("patchman"),
        )?,
        unsigned_repo: repo(
            "unsigned",
            pick(&unsigned, &[(CLIENT, "1.7.0-1"), (CLIENT, "1.7.1-1")]),
            None,
        )?,
        epoch: repo(
            "epoch",
            pick(&signed, &[(CLIENT, "1.7.1-1"), (CLIENT, "1:1.2.7-1")]),
            Some("patchman"),
        )?,
        foreign_repo: repo("foreign", foreign_paths.clone(), Some("other"))?,
        root,
        repos_root,
        signed,
        unsigned,
        foreign,
        patchman_key_file,
        other_key_file,
        patchman_key,
        other_key,
        build_time: Duration::ZERO,
    };
    Ok(ElFixture {
        build_time: started.elapsed(),
        ..fixture
    })
}
