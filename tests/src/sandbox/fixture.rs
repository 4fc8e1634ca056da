//! The standard test packages and repositories, built once per test process
//! by [`apt_fixture`].
//!
//! # Packages
//!
//! Every `patchman-client` ships `/usr/share/patchman-client/VERSION` (its
//! version and a newline) and the conffile `/etc/patchman/patchman.ini`;
//! every package's `postinst` appends `<package> <version> <args>` to
//! [`POSTINST_LOG`], so a test can tell whether it was configured.
//!
//! | package                    | version     | depends                        | note |
//! |----------------------------|-------------|--------------------------------|------|
//! | `patchman-client`          | `1.6.9-1`   |                                | below the 1.7.0-1 gate; conffile [`CONFFILE_OLD`] |
//! | `patchman-client`          | `1.7.0-1`   |                                | conffile [`CONFFILE_OLD`] |
//! | `patchman-client`          | `1.7.1-1`   |                                | **changes the conffile** to [`CONFFILE_NEW`] |
//! | `patchman-client`          | `1.7.2-1`   | `libpatchman-new (>= 1.0)`     | a new dependency; [`CONFFILE_NEW`] |
//! | `patchman-client`          | `1:1.2.7-1` |                                | epoch: newer than all the above |
//! | `patchman-client`          | `9.9.9-1`   |                                | only in the `other` source |
//! | `patchman-client-realtime` | `1.7.0-1`   | `patchman-client (= 1.7.0-1)`  | |
//! | `patchman-client-realtime` | `1.7.1-1`   | `patchman-client (= 1.7.1-1)`  | |
//! | `libpatchman-new`          | `1.0-1`     |                                | the new dependency of 1.7.2-1 |
//!
//! # Repositories
//!
//! All under [`AptFixture::repos_root`], one directory each: serve that root
//! with one [`HttpServer`](super::http::HttpServer) per test and add a
//! repository with [`Sandbox::add_apt_repo`](super::namespace::Sandbox::add_apt_repo).
//! `dists`-style ones use suite `stable`, component `main`.
//!
//! | field          | layout | signed by  | client versions                | realtime          | other | apt's candidate (client) |
//! |----------------|--------|------------|--------------------------------|-------------------|-------|------|
//! | `patchman`     | dists  | `patchman` | 1.6.9-1, 1.7.0-1, 1.7.1-1      | 1.7.0-1, 1.7.1-1  |       | 1.7.1-1 |
//! | `newdep`       | dists  | `patchman` | 1.7.0-1, 1.7.1-1, 1.7.2-1      | 1.7.0-1, 1.7.1-1  |       | 1.7.2-1, whose dependency no source here has |
//! | `newdep_lib`   | dists  | `patchman` | 1.7.0-1, 1.7.1-1, 1.7.2-1      | 1.7.0-1, 1.7.1-1  | `libpatchman-new` 1.0-1 | 1.7.2-1, installable |
//! | `extras`       | dists  | `other`    |                                |                   | `libpatchman-new` 1.0-1 | — (another source able to satisfy 1.7.2-1) |
//! | `other`        | dists  | `other`    | 9.9.9-1                        |                   |       | 9.9.9-1 (another source with a newer client) |
//! | `unsigned`     | dists  | no         | 1.7.0-1, 1.7.1-1               |                   |       | (apt refuses it: not signed) |
//! | `epoch`        | dists  | `patchman` | 1.7.1-1, 1:1.2.7-1             |                   |       | 1:1.2.7-1 |
//! | `flat`         | flat   | `patchman` | 1.7.0-1, 1.7.1-1               | 1.7.0-1, 1.7.1-1  |       | 1.7.1-1 |
//!
//! The `patchman` and `other` keys are distinct, so a source signed by one
//! and declared `signed-by` the other fails verification.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;

use super::apt_repo::{
    build_repo, native_arch, AptRepo, GpgHome, RepoLayout, RepoSpec, SigningKey,
};
use super::deb::DebSpec;

/// The client's package name.
pub const CLIENT: &str = "patchman-client";
/// The realtime package's name.
pub const REALTIME: &str = "patchman-client-realtime";
/// The new dependency of client 1.7.2-1.
pub const NEW_DEP: &str = "libpatchman-new";
/// The conffile every client version ships.
pub const CONFFILE: &str = "/etc/patchman/patchman.ini";
/// Its contents up to 1.7.0-1.
pub const CONFFILE_OLD: &str = "[updates]\nrepository = patchman\n";
/// Its contents from 1.7.1-1 on.
pub const CONFFILE_NEW: &str =
    "[updates]\nrepository = patchman\n# automatic = yes\n# interval = 6h\n# jitter = 1h\n";
/// Where each package's postinst logs its run (inside the sandbox).
pub const POSTINST_LOG: &str = "/var/lib/patchman-tests/postinst.log";

/// The client versions built, oldest first.
pub const CLIENT_VERSIONS: &[&str] = &[
    "1.6.9-1",
    "1.7.0-1",
    "1.7.1-1",
    "1.7.2-1",
    "1:1.2.7-1",
    "9.9.9-1",
];
/// The realtime versions built.
pub const REALTIME_VERSIONS: &[&str] = &["1.7.0-1", "1.7.1-1"];

/// The standard packages and repositories; see the module documentation.
#[derive(Debug)]
pub struct AptFixture {
    /// The fixture's directory (removed by the next test process once this
    /// one is gone).
    pub root: PathBuf,
    /// The directory to serve over HTTP: each repository is a subdirectory.
    pub repos_root: PathBuf,
    /// Every built `.deb`, by `(package, version)`.
    pub debs: BTreeMap<(String, String), PathBuf>,
    /// See the table.
    pub patchman: AptRepo,
    /// See the table.
    pub newdep: AptRepo,
    /// See the table.
    pub newdep_lib: AptRepo,
    /// See the table.
    pub extras: AptRepo,
    /// See the table.
    pub other: AptRepo,
    /// See the table.
    pub unsigned: AptRepo,
    /// See the table.
    pub epoch: AptRepo,
    /// See the table.
    pub flat: AptRepo,
    /// The key signing `patchman`, `newdep`, `newdep_lib`, `epoch`, `flat`.
    pub patchman_key: SigningKey,
    /// The key signing `other` and `extras`.
    pub other_key: SigningKey,
}

impl AptFixture {
    /// The `.deb` of `package` at `version`.
    ///
    /// # Panics
    /// When the fixture has no such package (a typo in a test).
    pub fn deb(&self, package: &str, version: &str) -> &Path {
        self.debs
            .get(&(package.to_owned(), version.to_owned()))
            .unwrap_or_else(|| panic!("the fixture has no {package} {version}"))
    }

    /// The client's `.deb` at `version`.
    pub fn client(&self, version: &str) -> &Path {
        self.deb(CLIENT, version)
    }

    /// The realtime package's `.deb` at `version`.
    pub fn realtime(&self, version: &str) -> &Path {
        self.deb(REALTIME, version)
    }
}

/// The fixture, built on first use in this test process (a second or so)
/// and shared by every test after.
///
/// # Panics
/// When it cannot be built (a tool missing: dpkg-dev, apt-utils, gnupg), with
/// the reason.
pub fn apt_fixture() -> &'static AptFixture {
    static FIXTURE: OnceLock<AptFixture> = OnceLock::new();
    super::built_once(&FIXTURE, "the apt test fixture", build_fixture)
}

/// The shell lines of a maintainer script that append `<package>
/// <version> <args>` to [`POSTINST_LOG`] (`args` is the script's own, as
/// the shell writes them: `$*` for dpkg's, `$1` for rpm's count), with no
/// newline after.
pub fn postinst_log_line(package: &str, version: &str, args: &str) -> String {
    format!(
        "mkdir -p \"$(dirname {POSTINST_LOG})\"\n\
         echo \"{package} {version} {args}\" >> {POSTINST_LOG}"
    )
}

/// A package of the set both fixtures build, in its format's words: what
/// [`package_set`] says of each package.
pub trait FixturePackage: Sized {
    /// `name` at `version`, holding `/usr/share/<name>/VERSION` (the
    /// version and a newline) and a maintainer script that logs its run to
    /// [`POSTINST_LOG`].
    fn package(name: &str, version: &str) -> Self;
    /// … which needs `name` at a version `op` (`=`, `>=`) `version`.
    fn needs(self, name: &str, op: &str, version: &str) -> Self;
    /// … with the config file `path` holding `contents`.
    fn config(self, path: &str, contents: &str) -> Self;
}

/// The packages both fixtures build: every client version (its conffile
/// old up to 1.7.0-1, new after; 1.7.2-1 needing [`NEW_DEP`]), every
/// realtime version (needing the client at the same version), and
/// [`NEW_DEP`] 1.0-1.
pub fn package_set<P: FixturePackage>() -> Vec<P> {
    let mut set = Vec::new();
    for v in CLIENT_VERSIONS {
        let conffile = match *v {
            "1.6.9-1" | "1.7.0-1" => CONFFILE_OLD,
            _ => CONFFILE_NEW,
        };
        let mut client = P::package(CLIENT, v).config(CONFFILE, conffile);
        if *v == "1.7.2-1" {
            client = client.needs(NEW_DEP, ">=", "1.0");
        }
        set.push(client);
    }
    for v in REALTIME_VERSIONS {
        set.push(P::package(REALTIME, v).needs(CLIENT, "=", v));
    }
    set.push(P::package(NEW_DEP, "1.0-1"));
    set
}

impl FixturePackage for DebSpec {
    fn package(name: &str, version: &str) -> Self {
        let log = postinst_log_line(name, version, "$*");
        DebSpec::new(name, version)
            .file(
                &format!("/usr/share/{name}/VERSION"),
                format!("{version}\n"),
                0o644,
            )
            .postinst(&format!("#!/bin/sh\nset -e\n{log}\n"))
    }

    fn needs(self, name: &str, op: &str, version: &str) -> Self {
        self.depends(&format!("{name} ({op} {version})"))
    }

    fn config(self, path: &str, contents: &str) -> Self {
        self.conffile(path, contents)
    }
}

fn build_fixture() -> Result<AptFixture> {
    let root = crate::fresh_fixture_root("fixture-")?;
    let debs_dir = root.join("debs");
    std::fs::create_dir_all(&debs_dir)?;

    // The packages, built two at a time (dpkg-deb is the slow part).
    let specs: Vec<DebSpec> = package_set();
    let built: Vec<Result<PathBuf>> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .chunks(specs.len().div_ceil(2))
            .map(|chunk| {
                let dir = &debs_dir;
                s.spawn(move || chunk.iter().map(|spec| spec.build(dir)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(anyhow::anyhow!("build thread panicked"))])
            })
            .collect()
    });
    let mut debs = BTreeMap::new();
    for (spec, path) in specs.iter().zip(built) {
        debs.insert((spec.name.clone(), spec.version.clone()), path?);
    }
    let deb = |p: &str, v: &str| debs[&(p.to_owned(), v.to_owned())].clone();

    // Keys: a short gpg home (its agent's socket path must stay short).
    let gpg_dir = tempfile::Builder::new().prefix("pmgpg").tempdir()?;
    let gpg = GpgHome::new(gpg_dir.path())?;
    let keys_dir = root.join("keys");
    let patchman_key = gpg.generate_key("patchman", &keys_dir)?;
    let other_key = gpg.generate_key("other", &keys_dir)?;

    let arch = native_arch()?;
    let repos_root = root.join("repos");
    let stable = RepoLayout::stable_main;
    let client_rt = |versions: &[&str]| {
        let mut v: Vec<PathBuf> = versions.iter().map(|v| deb(CLIENT, v)).collect();
        v.extend(REALTIME_VERSIONS.iter().map(|r| deb(REALTIME, r)));
        v
    };
    let newdep_debs = client_rt(&["1.7.0-1", "1.7.1-1", "1.7.2-1"]);
    let mut newdep_lib_debs = newdep_debs.clone();
    newdep_lib_debs.push(deb(NEW_DEP, "1.0-1"));
    let build = |name: &str, layout: RepoLayout, debs: &[PathBuf], key: Option<&SigningKey>| {
        build_repo(
            &repos_root,
            &RepoSpec {
                name,
                layout,
                debs,
                key,
            },
            Some(&gpg),
            &arch,
        )
    };
    let fixture = AptFixture {
        patchman: build(
            "patchman",
            stable(),
            &client_rt(&["1.6.9-1", "1.7.0-1", "1.7.1-1"]),
            Some(&patchman_key),
        )?,
        newdep: build("newdep", stable(), &newdep_debs, Some(&patchman_key))?,
        newdep_lib: build(
            "newdep-lib",
            stable(),
            &newdep_lib_debs,
            Some(&patchman_key),
        )?,
        extras: build(
            "extras",
            stable(),
            &[deb(NEW_DEP, "1.0-1")],
            Some(&other_key),
        )?,
        other: build(
            "other",
            stable(),
            &[deb(CLIENT, "9.9.9-1")],
            Some(&other_key),
        )?,
        unsigned: build(
            "unsigned",
            stable(),
            &[deb(CLIENT, "1.7.0-1"), deb(CLIENT, "1.7.1-1")],
            None,
        )?,
        epoch: build(
            "epoch",
            stable(),
            &[deb(CLIENT, "1.7.1-1"), deb(CLIENT, "1:1.2.7-1")],
            Some(&patchman_key),
        )?,
        flat: build(
            "flat",
            RepoLayout::Flat,
            &client_rt(&["1.7.0-1", "1.7.1-1"]),
            Some(&patchman_key),
        )?,
        root,
        repos_root,
        debs,
        patchman_key,
        other_key,
    };
    drop(gpg);
    Ok(fixture)
}
