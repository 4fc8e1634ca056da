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
//!   2.31) and Debian 13 (2.41): `--version` and `--help` in a chroot over an overlay of the cached
//!   bullseye tree (`tests/rootfs.sh bullseye`), in a private mount
//!   namespace, so the cached tree is never written; and the debug build of
//!   this workspace (linked against the build host's glibc 2.36) does not,
//!   which shows the chroot really runs bullseye's glibc;
//! * the `.rpm`'s `%pre` refuses an existing login account `patchman` (uid
//!   1000, outside SYS_UID_MIN..SYS_UID_MAX) and keeps or creates a system
//!   one (`rpm -i` in a bullseye chroot over an overlay); its `%post`
//!   presets the units (`%systemd_post`) and relabels `/var/lib/patchman`
//!   itself but not the tree under it, `/var/cache/patchman-helper` and
//!   `/run/patchman` (`rpm -qp --scripts`); every scriptlet of install,
//!   upgrade and removal runs without a complaint (`rpm -i`, `-U`, `-e` in
//!   the chroot; no systemd or SELinux there, so those branches are skipped).

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

/// A chroot over an overlay of a cached Debian tree (`tests/rootfs.sh
/// SUITE`): every command mounts the overlay in a fresh private mount
/// namespace and chroots into it, so the cached tree is only ever a lower
/// layer; what commands change stays in the upper layer, seen by the next
/// command, and goes with the scratch directory.
struct OverlayRoot {
    scratch: tempfile::TempDir,
    rootfs: PathBuf,
}

impl OverlayRoot {
    fn new(suite: &str) -> Result<OverlayRoot> {
        let rootfs = cmd::stdout(
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs.sh")).arg(suite),
        )?;
        let rootfs = PathBuf::from(rootfs.trim());
        ensure!(
            rootfs.join("usr/bin/apt-get").is_file(),
            "{} is not a Debian tree",
            rootfs.display()
        );
        let scratch = tempfile::Builder::new()
            .prefix(&format!("patchman-{suite}-"))
            .tempdir()?;
        for d in ["upper", "work", "merged"] {
            fs::create_dir(scratch.path().join(d))?;
        }
        Ok(OverlayRoot { scratch, rootfs })
    }

    /// Places a copy of `file` at `/opt/check/<dir>/<its name>` inside;
    /// returns that path.
    fn put(&self, dir: &str, file: &Path) -> Result<String> {
        let name = file.file_name().context("no file name")?.to_string_lossy();
        let inside = format!("/opt/check/{dir}/{name}");
        let at = self.scratch.path().join("upper").join(&inside[1..]);
        fs::create_dir_all(at.parent().context("no parent")?)?;
        fs::copy(file, &at).with_context(|| format!("{} → {}", file.display(), at.display()))?;
        Ok(inside)
    }

    /// Runs `argv` inside (bounded by [`TIMEOUT`]), whatever its exit.
    fn run(&self, argv: &[&str]) -> Result<Output> {
        let d = self.scratch.path();
        let mount = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.rootfs.display(),
            d.join("upper").display(),
            d.join("work").display()
        );
        let mut c = Command::new("timeout");
        c.args([TIMEOUT, "unshare", "--mount", "--propagation", "private"])
            .args(["sh", "-ec"])
            .arg("mount -t overlay overlay -o \"$1\" \"$2\"; shift; exec chroot \"$@\"")
            .arg("sh")
            .arg(&mount)
            .arg(d.join("merged"))
            .args(argv)
            .stdin(Stdio::null());
        cmd::output_unchecked(&mut c)
    }

    /// Fails if anything of ours reached the cached tree.
    fn check_cached_tree_untouched(&self) -> Result<()> {
        if self.rootfs.join("opt/check").exists() {
            bail!("the cached tree {} was written", self.rootfs.display());
        }
        Ok(())
    }
}

/// Runs each of `bins` with each of `args` on the Debian `suite`; returns
/// its `ldd --version` first line and one output per (binary, args), in
/// order.
fn run_on(suite: &str, bins: &[&Path], args: &[&str]) -> Result<(String, Vec<Output>)> {
    let root = OverlayRoot::new(suite)?;
    let ldd = root.run(&["ldd", "--version"])?;
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
        let path = root.put(&n.to_string(), bin)?;
        for arg in args {
            runs.push(root.run(&[&path, arg])?);
        }
    }
    root.check_cached_tree_untouched()?;
    Ok((glibc, runs))
}

/// Installs the `.rpm` with `rpm -i --nodeps` (Debian's rpm database knows
/// none of its dependencies) in a bullseye chroot after `prepare` (a shell
/// command, e.g. creating an account); returns rpm's output and
/// `getent passwd patchman` afterwards.
fn install_rpm_after(prepare: &str) -> (Output, String) {
    let root = OverlayRoot::new("bullseye").unwrap_or_else(|e| panic!("{e:#}"));
    let rpm = root.put("rpm", &built().rpm).unwrap();
    if !prepare.is_empty() {
        let out = root.run(&["sh", "-ec", prepare]).unwrap();
        assert!(
            out.status.success(),
            "{prepare}: {}",
            cmd::output_text(&out)
        );
    }
    let install = root
        .run(&["rpm", "--dbpath", "/var/tmp/rpmdb", "-i", "--nodeps", &rpm])
        .unwrap();
    let account = root.run(&["getent", "passwd", "patchman"]).unwrap();
    root.check_cached_tree_untouched().unwrap();
    (
        install,
        String::from_utf8_lossy(&account.stdout).into_owned(),
    )
}

/// The uid field of a passwd line.
fn uid_of(passwd_line: &str) -> u32 {
    passwd_line
        .split(':')
        .nth(2)
        .and_then(|u| u.trim().parse().ok())
        .unwrap_or_else(|| panic!("no uid in {passwd_line:?}"))
}

#[test]
fn rpm_pre_refuses_a_login_account_named_patchman() {
    let before = host_package_manifest().unwrap_or_else(|e| panic!("{e:#}"));
    let (install, account) =
        install_rpm_after("useradd --uid 1000 --create-home --shell /bin/bash patchman");
    let stderr = String::from_utf8_lossy(&install.stderr);
    assert!(
        !install.status.success()
            && stderr.contains("refusing to install: the account patchman exists with uid 1000")
            && stderr.contains("100..999"),
        "{}",
        cmd::output_text(&install)
    );
    // The login account is left as it was.
    assert_eq!(uid_of(&account), 1000, "{account}");
    assert!(account.trim_end().ends_with(":/bin/bash"), "{account}");
    assert_host_unchanged(&before);
}

#[test]
fn rpm_pre_creates_a_system_account_or_keeps_an_existing_one() {
    // None yet: %pre creates a system account (useradd -r).
    let (install, account) = install_rpm_after("");
    assert!(install.status.success(), "{}", cmd::output_text(&install));
    let uid = uid_of(&account);
    assert!((100..=999).contains(&uid), "{account}");
    assert!(account.trim_end().ends_with(":/sbin/nologin"), "{account}");
    // An existing system account is kept.
    let (install, account) = install_rpm_after(
        "groupadd --system patchman; \
         useradd --system --uid 990 --gid patchman --shell /usr/sbin/nologin patchman",
    );
    assert!(install.status.success(), "{}", cmd::output_text(&install));
    assert_eq!(uid_of(&account), 990, "{account}");
}

#[test]
fn rpm_scriptlets_relabel_and_follow_presets() {
    let db = tempfile::tempdir().unwrap();
    let scripts = cmd::stdout(
        Command::new("rpm")
            .arg("--dbpath")
            .arg(db.path())
            .args(["-qp", "--scripts"])
            .arg(&built().rpm),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let post = scripts
        .split("postinstall scriptlet")
        .nth(1)
        .and_then(|s| s.split("preuninstall scriptlet").next())
        .unwrap_or_else(|| panic!("no %post in:\n{scripts}"));
    // %systemd_post: presets, never an unconditional enable.
    assert!(
        post.contains("systemctl --no-reload preset patchman-helper.socket patchman-agent.service"),
        "{post}"
    );
    assert!(!post.contains("systemctl --no-reload enable"), "{post}");
    // Relabelled: /var/lib/patchman itself, never recursively; the cache and
    // the socket directory recursively.
    let relabels: Vec<&str> = post.lines().filter(|l| l.contains("restorecon")).collect();
    assert!(
        relabels
            .iter()
            .any(|l| l.contains("/var/lib/patchman") && !l.contains("-R")),
        "{post}"
    );
    assert!(
        !relabels
            .iter()
            .any(|l| l.contains("-R") && l.contains("/var/lib/patchman")),
        "{post}"
    );
    assert!(
        post.contains(
            "for d in /etc/patchman /var/cache/patchman-helper /run/patchman /var/lib/patchman-helper; do",
        )
            && post.contains("restorecon -R \"$d\""),
        "{post}"
    );
    // Upgrades: never a restart of the socket; the helper only --no-block.
    assert!(!post.contains("restart patchman-helper.socket"), "{post}");
    for line in post
        .lines()
        .filter(|l| l.contains("patchman-helper.service"))
    {
        assert!(line.contains("--no-block try-restart"), "{line}");
    }
    let preun = scripts
        .split("preuninstall scriptlet")
        .nth(1)
        .unwrap_or_else(|| panic!("no %preun in:\n{scripts}"));
    assert!(
        preun.contains("if [ $1 -eq 0 ]; then")
            && preun.contains("systemctl --no-reload disable --now patchman-helper.socket"),
        "{preun}"
    );
}

/// The binaries of both packages (the `.deb`'s, then the `.rpm`'s).
fn packaged_binaries() -> Vec<PathBuf> {
    let b = built();
    [&b.deb_root, &b.rpm_root]
        .iter()
        .flat_map(|root| BINARIES.iter().map(|bin| root.join(bin)))
        .collect()
}

/// Fails unless each of `bins` printed its name and version for
/// `--version` and its usage for `--help` (`runs`: two per binary).
fn assert_started(release: &str, bins: &[PathBuf], runs: &[Output]) {
    for (bin, pair) in bins.iter().zip(runs.chunks(2)) {
        let name = bin.file_name().unwrap().to_string_lossy();
        let (version, help) = (&pair[0], &pair[1]);
        assert!(
            version.status.success()
                && String::from_utf8_lossy(&version.stdout)
                    .starts_with(&format!("{name} {}", env!("CARGO_PKG_VERSION"))),
            "{} --version on {release}: {}",
            bin.display(),
            cmd::output_text(version)
        );
        assert!(
            help.status.success()
                && String::from_utf8_lossy(&help.stdout).starts_with(&format!("Usage: {name} ")),
            "{} --help on {release}: {}",
            bin.display(),
            cmd::output_text(help)
        );
    }
}

fn assert_host_unchanged(before: &str) {
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

/// `--version` and `--help` of each of `bins` (in that order) run in the
/// `suite` chroot by [`run_on`], whose `ldd` must say glibc `glibc`.
fn version_and_help_on(suite: &str, glibc: &str, bins: &[PathBuf]) -> Vec<Output> {
    let refs: Vec<&Path> = bins.iter().map(PathBuf::as_path).collect();
    let (ldd, runs) =
        run_on(suite, &refs, &["--version", "--help"]).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        ldd.contains(glibc),
        "the {suite} chroot's ldd says {ldd:?}, not glibc {glibc}"
    );
    runs
}

#[test]
fn packaged_binaries_start_on_debian_11_and_the_host_build_does_not() {
    let before = host_package_manifest().unwrap_or_else(|e| panic!("{e:#}"));
    let mut bins = packaged_binaries();
    // The negative control: linked against the build host's glibc 2.36.
    let host_build = patchman_tests::workspace_bin("patchman-helper");
    bins.push(host_build.clone());
    let runs = version_and_help_on("bullseye", "2.31", &bins);
    let (packaged, control) = runs.split_last_chunk::<2>().expect("runs of every binary");
    assert_started("Debian 11", &bins[..bins.len() - 1], packaged);
    let stderr = String::from_utf8_lossy(&control[0].stderr);
    assert!(
        !control[0].status.success() && stderr.contains("GLIBC_2.3"),
        "{} (the host build) was expected to fail on glibc 2.31 with a missing \
         GLIBC_2.3x version, which shows the chroot runs bullseye's glibc: {}",
        host_build.display(),
        cmd::output_text(&control[0])
    );
    assert_host_unchanged(&before);
}

#[test]
fn packaged_binaries_start_on_debian_13() {
    let before = host_package_manifest().unwrap_or_else(|e| panic!("{e:#}"));
    let bins = packaged_binaries();
    let runs = version_and_help_on("trixie", "2.41", &bins);
    assert_eq!(runs.len(), 2 * bins.len());
    assert_started("Debian 13", &bins, &runs);
    assert_host_unchanged(&before);
}

#[test]
fn rpm_scriptlets_run_clean_on_upgrade_and_removal() {
    let before = host_package_manifest().unwrap_or_else(|e| panic!("{e:#}"));
    let newer_dir = tempfile::tempdir().unwrap();
    let bin_dir = shipped_bin_dir().unwrap_or_else(|e| panic!("{e:#}"));
    let newer = build_packages(&bin_dir, Format::Rpm, &["1.7.1-1"], newer_dir.path())
        .unwrap_or_else(|e| panic!("{e:#}"))
        .remove(0);
    let root = OverlayRoot::new("bullseye").unwrap_or_else(|e| panic!("{e:#}"));
    let old = root.put("old", &built().rpm).unwrap();
    let new = root.put("new", &newer).unwrap();
    let rpm = |args: &[&str]| {
        let mut argv = vec!["rpm", "--dbpath", "/var/tmp/rpmdb"];
        argv.extend_from_slice(args);
        root.run(&argv).unwrap()
    };
    // A scriptlet that fails is a warning or error line of rpm's; one that
    // trips over its own shell prints the shell's complaint.
    let clean = |what: &str, out: &Output| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let noise = |l: &&str| {
            l.starts_with("rpm: RPM should not be used directly")
                || l.starts_with("rpm: However assuming you know")
        };
        let other: Vec<&str> = stderr.lines().filter(|l| !noise(l)).collect();
        assert!(
            out.status.success() && other.is_empty(),
            "{what}: {}",
            cmd::output_text(out)
        );
    };
    clean("install", &rpm(&["-i", "--nodeps", &old]));
    let account = root.run(&["getent", "passwd", "patchman"]).unwrap();
    let account = String::from_utf8_lossy(&account.stdout).into_owned();
    clean("upgrade", &rpm(&["-U", "--nodeps", &new]));
    let q = rpm(&["-q", "--qf", "%{VERSION}-%{RELEASE}", "patchman-client"]);
    assert_eq!(String::from_utf8_lossy(&q.stdout), "1.7.1-1");
    // The upgrade kept the account (same uid) and the state directory.
    let after = root.run(&["getent", "passwd", "patchman"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&after.stdout), account);
    let state = root
        .run(&["stat", "-c", "%U:%G %a", "/var/lib/patchman"])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "patchman:patchman 750"
    );
    clean("removal", &rpm(&["-e", "--nodeps", "patchman-client"]));
    let gone = root
        .run(&["test", "-e", "/usr/sbin/patchman-helper"])
        .unwrap();
    assert!(!gone.status.success(), "the helper is still installed");
    root.check_cached_tree_untouched().unwrap();
    assert_host_unchanged(&before);
}
