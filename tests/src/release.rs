//! The Debian release matrix: each [`Suite`]'s root file system (cached by
//! `tests/rootfs.sh`) as a [`Sandbox`] in the root-file-system mode, and the
//! SHIPPED binaries in it.
//!
//! The binaries a release row runs are those of the packages that ship:
//! [`shipped`] packages [`packages::shipped_bin_dir`] (the glibc 2.17
//! builds) once per test process with `deploy/package/build.sh`, and
//! [`install_shipped_binaries`] unpacks that `.deb` (`dpkg-deb -x`) or
//! `.rpm` (`rpm2archive`) inside the release's tree, with the release's own
//! tools, and installs its `patchman-helper` and `patchman-agent` under
//! `/usr/local`. They stay outside the package database: the scenarios'
//! `patchman-client` is the fixture's, and a row asserts that database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::packages::{self, Format};
use crate::updater::Binaries;
use crate::{cmd, Sandbox};

/// A Debian release the matrix runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// Debian 11: apt 2.2, dpkg 1.20, dnf 4.5, rpm 4.16.
    Bullseye,
    /// Debian 12: apt 2.6, dpkg 1.21, dnf 4.14, rpm 4.18.
    Bookworm,
    /// Debian 13: apt 3.0, dpkg 1.22, dnf 4.23, rpm 4.20.
    Trixie,
}

impl Suite {
    /// Debian's code name, as `tests/rootfs.sh` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
        }
    }

    /// The cached root file system (`tests/rootfs.sh SUITE`, which builds
    /// it with debootstrap when the cache lacks it, within 30 minutes).
    pub fn tree(self) -> Result<PathBuf> {
        static TREES: OnceLock<std::sync::Mutex<Vec<(Suite, PathBuf)>>> = OnceLock::new();
        let trees = TREES.get_or_init(Default::default);
        let mut trees = trees
            .lock()
            .map_err(|_| anyhow::anyhow!("a thread panicked finding a tree"))?;
        if let Some((_, t)) = trees.iter().find(|(s, _)| *s == self) {
            return Ok(t.clone());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs.sh");
        // Bounded: a first build runs debootstrap against Debian's archive.
        let mut c = Command::new("timeout");
        c.arg(ROOTFS_BUILD_BOUND)
            .arg("bash")
            .arg(&script)
            .arg(self.name());
        let out =
            cmd::stdout(&mut c).with_context(|| format!("the {} root file system", self.name()))?;
        let tree = PathBuf::from(out.trim());
        if !tree.join("usr/bin/apt-get").is_file() {
            bail!(
                "{} printed {}, which has no usr/bin/apt-get",
                script.display(),
                tree.display()
            );
        }
        trees.push((self, tree.clone()));
        Ok(tree)
    }

    /// A fresh sandbox over the release's tree.
    pub fn sandbox(self) -> Result<Sandbox> {
        Sandbox::with_rootfs(&self.tree()?)
    }
}

/// `timeout`'s bound on `tests/rootfs.sh` (a cached tree answers at once;
/// a first debootstrap takes minutes).
const ROOTFS_BUILD_BOUND: &str = "30m";

/// The version the shipped packages are built as (only their binaries are
/// used; the version is never seen by a scenario).
pub const SHIPPED_VERSION: &str = "1.0.0-1";
/// Where [`install_shipped_binaries`] puts the helper inside.
pub const HELPER_INSIDE: &str = "/usr/local/sbin/patchman-helper";
/// Where [`install_shipped_binaries`] puts the agent inside.
pub const AGENT_INSIDE: &str = "/usr/local/bin/patchman-agent";

/// The shipped packages, built once per test process.
#[derive(Debug)]
pub struct Shipped {
    pub deb: PathBuf,
    pub rpm: PathBuf,
}

impl Shipped {
    /// The package of `format`.
    pub fn package(&self, format: Format) -> &Path {
        match format {
            Format::Deb => &self.deb,
            Format::Rpm => &self.rpm,
        }
    }
}

/// The `.deb` and `.rpm` of [`SHIPPED_VERSION`] built from the shipped
/// binaries, on first use in this test process.
///
/// # Panics
/// When the shipped binaries are not built or `build.sh` fails, with the
/// reason (a missing build is an error, never a skip).
pub fn shipped() -> &'static Shipped {
    static SHIPPED: OnceLock<Shipped> = OnceLock::new();
    crate::sandbox::built_once(&SHIPPED, "the shipped packages", build_shipped)
}

fn build_shipped() -> Result<Shipped> {
    let bin_dir = packages::shipped_bin_dir()?;
    let parent = packages::target_dir().join("patchman-tests");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    crate::remove_stale_dirs(&parent, "shipped-");
    let out = parent.join(format!("shipped-{}", std::process::id()));
    let build = |format| -> Result<PathBuf> {
        let files = packages::build_packages(&bin_dir, format, &[SHIPPED_VERSION], &out)?;
        files.into_iter().next().context("build.sh built nothing")
    };
    Ok(Shipped {
        deb: build(Format::Deb)?,
        rpm: build(Format::Rpm)?,
    })
}

/// Unpacks the shipped package of `format` inside `sandbox` with the
/// release's own tool and installs its helper and agent at
/// [`HELPER_INSIDE`] and [`AGENT_INSIDE`] (mode 0755, root); checks that
/// both run there (`--version`: the release's C library loads them).
pub fn install_shipped_binaries(sandbox: &Sandbox, format: Format) -> Result<Binaries> {
    let package = shipped().package(format);
    let (inside, unpack) = match format {
        Format::Deb => ("/var/tmp/shipped.deb", r#"dpkg-deb -x "$1" "$2""#),
        // rpm2archive FILE writes FILE.tgz up to rpm 4.18, its stdout
        // (when not a terminal) from 4.20 on.
        Format::Rpm => (
            "/var/tmp/shipped.rpm",
            r#"rpm2archive "$1" > "$1.out"
if [ -s "$1.out" ]; then mv "$1.out" "$1.tgz"; fi
tar -xzf "$1.tgz" -C "$2"
rm -f "$1.out" "$1.tgz""#,
        ),
    };
    sandbox.copy_in(package, inside)?;
    let script = format!(
        "set -e\nrm -rf \"$2\"\nmkdir -p \"$2\"\n{unpack}\n\
         install -m 0755 \"$2/usr/sbin/patchman-helper\" \"$3\"\n\
         install -m 0755 \"$2/usr/bin/patchman-agent\" \"$4\"\n\
         rm -rf \"$1\" \"$2\"\n\"$3\" --version\n\"$4\" --version\n"
    );
    sandbox
        .run(&[
            "sh",
            "-c",
            &script,
            "sh",
            inside,
            "/var/tmp/shipped-root",
            HELPER_INSIDE,
            AGENT_INSIDE,
        ])
        .with_context(|| format!("installing the binaries of {}", package.display()))?;
    Ok(Binaries {
        helper: HELPER_INSIDE.to_owned(),
        agent: AGENT_INSIDE.to_owned(),
    })
}
