//! The shipped packages run on the fleet's oldest glibc: checked on the
//! built `.deb` and `.rpm` themselves, not on the build tree.
//!
//! From `shipped_bin_dir()` (the glibc-2.17 binaries `deploy/package/build.sh`
//! builds with `cargo zigbuild`; `tests/ci.sh` builds them before the tests)
//! this builds both packages once with `build.sh --bin-dir`, extracts them,
//! and checks:
//! * every ELF binary inside needs no GLIBC symbol version above 2.17
//!   (`objdump -T`, binutils);
//! * the `.deb`'s `Depends` asks for at most `libc6 (>= 2.17)`
//!   (`dpkg-deb -f`);
//! * the `.rpm` requires nothing above `GLIBC_2.17` (`rpm -qpR`);
//! * the binaries extracted from each package start on Debian 11 (glibc
//!   2.31): `--version` and `--help` in a chroot over an overlay of the cached
//!   bullseye tree (`tests/rootfs.sh bullseye`), in a private mount
//!   namespace, so the cached tree is never written; and the debug build of
//!   this workspace (linked against the build host's glibc 2.36) does not,
//!   which shows the chroot really runs bullseye's glibc.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, ensure, Context, Result};
use patchman_tests::cmd;
use patchman_tests::host::host_package_manifest;
use patchman_tests::packages::{build_packages, shipped_bin_dir, Format};

/// The symbol floor the shipped binaries promise (EL 7's glibc).
const GLIBC_FLOOR: &str = "2.17";
/// The binaries each package ships, relative to its root.
const BINARIES: [&str; 2] = ["usr/sbin/patchman-helper", "usr/bin/patchman-agent"];
/// Every command here is quick; a hang is a failure.
const TIMEOUT: &str = "120";

/// The packages, built once for all tests, and where each was extracted.
struct Built {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    rpm: PathBuf,
    deb_root: PathBuf,
    rpm_root: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| build().unwrap_or_else(|e| panic!("building the packages: {e:#}")))
}

fn build() -> Result<Built> {
    let bin_dir = shipped_bin_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("patchman-packages-")
        .tempdir()?;
    let deb = build_packages(&bin_dir, Format::Deb, &["1.7.0-1"], dir.path())?.remove(0);
    let rpm = build_packages(&bin_dir, Format::Rpm, &["1.7.0-1"], dir.path())?.remove(0);
    let deb_root = dir.path().join("deb-root");
    let rpm_root = dir.path().join("rpm-root");
    fs::create_dir(&deb_root)?;
    fs::create_dir(&rpm_root)?;
    cmd::output(
        Command::new("timeout")
            .args([TIMEOUT, "dpkg-deb", "-x"])
            .arg(&deb)
            .arg(&deb_root),
    )?;
    // rpm2archive (rpm 4.18) turns the payload into a tar; no cpio needed.
    cmd::output(
        Command::new("timeout")
            .args([
                TIMEOUT,
                "sh",
                "-ec",
                "rpm2archive - <\"$1\" >\"$2.tgz\"; tar -xzf \"$2.tgz\" -C \"$2\"",
                "sh",
            ])
            .arg(&rpm)
            .arg(&rpm_root),
    )?;
    for root in [&deb_root, &rpm_root] {
        for bin in BINARIES {
            ensure!(
                root.join(bin).is_file(),
                "{} holds no {bin}",
                root.display()
            );
        }
    }
    Ok(Built {
        _dir: dir,
        deb,
        rpm,
        deb_root,
        rpm_root,
    })
}

/// `2.17` → `[2, 17]`, for ordering dotted versions.
fn dotted(v: &str) -> Vec<u32> {
    v.split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|e| panic!("version {v:?} is not dotted numbers: {e}"))
        })
        .collect()
}

fn above_floor(v: &str) -> bool {
    dotted(v) > dotted(GLIBC_FLOOR)
}

/// The `GLIBC_x.y` versions `text` names (in `(GLIBC_2.17)` of `objdump -T`
/// or `libc.so.6(GLIBC_2.17)(64bit)` of `rpm -qpR`).
fn glibc_versions(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("GLIBC_") {
        rest = &rest[at + "GLIBC_".len()..];
        let v: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let v = v.trim_end_matches('.').to_owned();
        if !v.is_empty() {
            found.push(v);
        }
    }
    found.sort_by_key(|v| dotted(v));
    found.dedup();
    found
}

/// Every regular file under `root` that starts with the ELF magic.
fn elf_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let bytes = fs::read(entry.path())?;
                if bytes.starts_with(b"\x7fELF") {
                    found.push(entry.path());
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The GLIBC symbol versions each ELF file under `root` references; fails
/// unless both shipped binaries are among them.
fn symbol_versions(root: &Path) -> Result<Vec<(PathBuf, Vec<String>)>> {
    let files = elf_files(root)?;
    for bin in BINARIES {
        ensure!(
            files.contains(&root.join(bin)),
            "{bin} is not an ELF file in {}",
            root.display()
        );
    }
    files
        .into_iter()
        .map(|f| {
            let dump = cmd::stdout(Command::new("objdump").arg("-T").arg(&f))?;
            Ok((f, glibc_versions(&dump)))
        })
        .collect()
}

fn assert_symbol_floor(root: &Path) {
    let versions = symbol_versions(root).unwrap_or_else(|e| panic!("{e:#}"));
    for (file, v) in &versions {
        assert!(
            !v.is_empty(),
            "{} references no GLIBC symbol version: not the glibc build?",
            file.display()
        );
        let too_new: Vec<&String> = v.iter().filter(|v| above_floor(v)).collect();
        assert!(
            too_new.is_empty(),
            "{} needs GLIBC {too_new:?}, above the floor {GLIBC_FLOOR} (all: {v:?})",
            file.display()
        );
    }
}

#[test]
fn deb_binaries_need_no_glibc_above_2_17() {
    assert_symbol_floor(&built().deb_root);
}

#[test]
fn rpm_binaries_need_no_glibc_above_2_17() {
    assert_symbol_floor(&built().rpm_root);
}

#[test]
fn deb_depends_on_at_most_libc6_2_17() {
    let deb = &built().deb;
    let depends = cmd::stdout(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Depends"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let libc: Vec<&str> = depends
        .split([',', '|'])
        .map(str::trim)
        .filter(|d| d.starts_with("libc6"))
        .collect();
    assert_eq!(libc.len(), 1, "one libc6 dependency in {depends:?}");
    let Some(version) = libc[0]
        .strip_prefix("libc6 (>= ")
        .and_then(|v| v.strip_suffix(')'))
    else {
        panic!("{:?} is not `libc6 (>= V)` (Depends: {depends:?})", libc[0]);
    };
    assert!(
        !above_floor(version),
        "the .deb depends on libc6 (>= {version}), above {GLIBC_FLOOR}: {depends:?}"
    );
}

#[test]
fn rpm_requires_nothing_above_glibc_2_17() {
    let rpm = &built().rpm;
    // A private database: even a query touches the default one (~/.rpmdb).
    let db = tempfile::tempdir().unwrap();
    let requires = cmd::stdout(
        Command::new("rpm")
            .arg("--dbpath")
            .arg(db.path())
            .arg("-qpR")
            .arg(rpm),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let versions = glibc_versions(&requires);
    assert!(
        versions.iter().any(|v| v == GLIBC_FLOOR),
        "rpm -qpR names no GLIBC_{GLIBC_FLOOR} (the binaries' floor): {requires}"
    );
    let too_new: Vec<&String> = versions.iter().filter(|v| above_floor(v)).collect();
    assert!(
        too_new.is_empty(),
        "the .rpm requires GLIBC {too_new:?}:\n{requires}"
    );
}

/// Runs each of `bins` with each of `args` in a chroot over an overlay of
/// the cached bullseye tree, in a private mount namespace (so the overlay
/// vanishes with the process and the cached tree is never written). The
/// binaries are placed in the overlay's upper layer under `/opt/check/<n>/`.
/// Returns one output per (binary, args), in order, and bullseye's
/// `ldd --version` first line.
fn run_on_bullseye(bins: &[&Path], args: &[&str]) -> Result<(String, Vec<Output>)> {
    let rootfs = cmd::stdout(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs.sh")).arg("bullseye"),
    )?;
    let rootfs = PathBuf::from(rootfs.trim());
    ensure!(
        rootfs.join("usr/bin/apt-get").is_file(),
        "{} is not a Debian tree",
        rootfs.display()
    );
    let scratch = tempfile::Builder::new()
        .prefix("patchman-bullseye-")
        .tempdir()?;
    let (upper, work, merged) = (
        scratch.path().join("upper"),
        scratch.path().join("work"),
        scratch.path().join("merged"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d)?;
    }
    for (n, bin) in bins.iter().enumerate() {
        let dir = upper.join(format!("opt/check/{n}"));
        fs::create_dir_all(&dir)?;
        let name = bin.file_name().context("a binary has no file name")?;
        fs::copy(bin, dir.join(name))?;
    }
    let mount = format!(
        "lowerdir={},upperdir={},workdir={}",
        rootfs.display(),
        upper.display(),
        work.display()
    );
    // Mounts the overlay in a private mount namespace, then chroots into it.
    let in_chroot = |argv: &[&str]| {
        let mut c = Command::new("timeout");
        c.args([TIMEOUT, "unshare", "--mount", "--propagation", "private"])
            .args(["sh", "-ec"])
            .arg("mount -t overlay overlay -o \"$1\" \"$2\"; shift; exec chroot \"$@\"")
            .arg("sh")
            .arg(&mount)
            .arg(&merged)
            .args(argv)
            .stdin(Stdio::null());
        cmd::output_unchecked(&mut c)
    };
    let ldd = in_chroot(&["ldd", "--version"])?;
    ensure!(
        ldd.status.success(),
        "ldd --version in the chroot: {}",
        cmd::output_text(&ldd)
    );
    let glibc = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let mut runs = Vec::new();
    for (n, bin) in bins.iter().enumerate() {
        let name = bin.file_name().context("no file name")?.to_string_lossy();
        let path = format!("/opt/check/{n}/{name}");
        for arg in args {
            runs.push(in_chroot(&[&path, arg])?);
        }
    }
    // The cached tree is a lower layer only: nothing of ours reached it.
    if rootfs.join("opt/check").exists() {
        bail!("the cached bullseye tree {} was written", rootfs.display());
    }
    Ok((glibc, runs))
}

#[test]
fn packaged_binaries_start_on_debian_11_and_the_host_build_does_not() {
    let before = host_package_manifest().unwrap_or_else(|e| panic!("{e:#}"));
    let b = built();
    let mut bins: Vec<PathBuf> = Vec::new();
    for root in [&b.deb_root, &b.rpm_root] {
        for bin in BINARIES {
            bins.push(root.join(bin));
        }
    }
    // The negative control: linked against the build host's glibc 2.36.
    let host_build = patchman_tests::workspace_bin("patchman-helper");
    bins.push(host_build.clone());
    let refs: Vec<&Path> = bins.iter().map(PathBuf::as_path).collect();
    let (glibc, runs) =
        run_on_bullseye(&refs, &["--version", "--help"]).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        glibc.contains("2.31"),
        "the bullseye chroot's ldd says {glibc:?}, not glibc 2.31"
    );
    let mut runs = runs.chunks(2);
    for bin in &bins[..4] {
        let name = bin.file_name().unwrap().to_string_lossy();
        let pair = runs.next().expect("two runs per binary");
        let (version, help) = (&pair[0], &pair[1]);
        assert!(
            version.status.success()
                && String::from_utf8_lossy(&version.stdout)
                    .starts_with(&format!("{name} {}", env!("CARGO_PKG_VERSION"))),
            "{} --version on Debian 11: {}",
            bin.display(),
            cmd::output_text(version)
        );
        assert!(
            help.status.success()
                && String::from_utf8_lossy(&help.stdout).starts_with(&format!("Usage: {name} ")),
            "{} --help on Debian 11: {}",
            bin.display(),
            cmd::output_text(help)
        );
    }
    let control = runs.next().expect("the host build's runs");
    let stderr = String::from_utf8_lossy(&control[0].stderr);
    assert!(
        !control[0].status.success() && stderr.contains("GLIBC_2.3"),
        "{} (the host build) was expected to fail on glibc 2.31 with a missing \
         GLIBC_2.3x version, which shows the chroot runs bullseye's glibc: {}",
        host_build.display(),
        cmd::output_text(&control[0])
    );
    let after = host_package_manifest().unwrap_or_else(|e| panic!("{e:#}"));
    let changed: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    assert!(
        changed.is_empty(),
        "the host's package state changed: {changed:?}"
    );
}
