//! Turning a [`Sandbox`] into a small Enterprise Linux system for the real
//! dnf and rpm of Debian: [`ElSandbox::make_el`] and the helpers of the
//! [`ElSandbox`] trait (`use patchman_tests::sandbox::el::ElSandbox;`).
//!
//! What `make_el` does inside (only the sandbox's overlays change):
//! * the release files: `/etc/os-release` (a regular file; Debian's is a
//!   symlink to `/usr/lib/os-release`, removed too) and
//!   `/etc/redhat-release`; for CentOS 6 only `/etc/redhat-release`;
//! * `/etc/rpm/macros`: `%_dbpath /var/lib/rpm`, `%_tmppath /var/tmp`
//!   (Debian's rpm defaults to `~/.rpmdb`); a fresh, empty rpm database
//!   there; `~/.rpmdb`, `/var/lib/dnf` and `/var/cache/dnf` emptied;
//! * `/etc/dnf/dnf.conf` with EL's defaults (Debian's has `best=False` and
//!   `skip_if_unavailable=True`, which hide a missing dependency);
//!   `/etc/yum.repos.d/` emptied;
//! * the base package `patchman-tests-el-base` registered with
//!   `rpm -i --justdb --nodeps`: it provides `/bin/sh` (every scriptlet
//!   requires it) and `system-release(releasever) = N` (where dnf reads
//!   `$releasever`); an empty rpm database provides nothing at all;
//! * the patchman test key at [`SANDBOX_RPM_KEY`] and imported with
//!   `rpm --import` (a `gpg-pubkey` entry in the database);
//! * `/usr/bin/yum` → `dnf-3` (Debian ships only `dnf` → `dnf-3`), so the
//!   yum family's command lines run dnf under the name `yum`.
//!
//! Command lines measured to work inside (dnf 4.14, rpm 4.18):
//! `dnf clean all --disablerepo=* --enablerepo=patchman`;
//! `dnf install -y --downloadonly --downloaddir=/var/cache/x --verbose
//! --disablerepo=* --enablerepo=patchman patchman-client`;
//! `rpm -U FILE…`; `rpmkeys --checksig FILE`. The download directory must
//! be on a sandbox overlay or tmpfs (`/var/…`, `/tmp/…`): `/` itself is the
//! host's.

use std::path::Path;
use std::process::Output;

use anyhow::{bail, Context, Result};

use super::el_fixture::ElFixture;
use super::namespace::Sandbox;
use super::rpm_repo::{RpmRepo, SANDBOX_RPM_KEY};

/// Where [`ElSandbox::install_rpms`] copies the packages it installs.
pub const SANDBOX_RPM_DIR: &str = "/var/cache/patchman-tests/rpms";

/// `rpm -q` query format of [`ElSandbox::rpm_query`]: `1.7.1-1`, or
/// `1:1.2.7-1` with an epoch (the fixture's version strings).
pub const EVR_FORMAT: &str = "%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}";

/// The EL release a sandbox pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElRelease {
    /// AlmaLinux 8.9: `/etc/os-release`, dnf.
    AlmaLinux8,
    /// CentOS 7.9: `/etc/os-release`, yum.
    CentOS7,
    /// CentOS 6.10: only `/etc/redhat-release`, yum.
    CentOS6,
}

impl ElRelease {
    /// `system-release(releasever)`.
    pub fn releasever(self) -> u32 {
        match self {
            ElRelease::AlmaLinux8 => 8,
            ElRelease::CentOS7 => 7,
            ElRelease::CentOS6 => 6,
        }
    }

    /// `/etc/os-release`, `None` for CentOS 6 (it has none).
    pub fn os_release(self) -> Option<&'static str> {
        match self {
            ElRelease::AlmaLinux8 => Some(
                "NAME=\"AlmaLinux\"\nVERSION=\"8.9 (Midnight Oncilla)\"\nID=\"almalinux\"\n\
                 ID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.9\"\nPLATFORM_ID=\"platform:el8\"\n\
                 PRETTY_NAME=\"AlmaLinux 8.9 (Midnight Oncilla)\"\nANSI_COLOR=\"0;34\"\n\
                 CPE_NAME=\"cpe:/o:almalinux:almalinux:8::baseos\"\n",
            ),
            ElRelease::CentOS7 => Some(
                "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\n\
                 ID_LIKE=\"rhel fedora\"\nVERSION_ID=\"7\"\n\
                 PRETTY_NAME=\"CentOS Linux 7 (Core)\"\nANSI_COLOR=\"0;31\"\n\
                 CPE_NAME=\"cpe:/o:centos:centos:7\"\n",
            ),
            ElRelease::CentOS6 => None,
        }
    }

    /// `/etc/redhat-release`.
    pub fn redhat_release(self) -> &'static str {
        match self {
            ElRelease::AlmaLinux8 => "AlmaLinux release 8.9 (Midnight Oncilla)\n",
            ElRelease::CentOS7 => "CentOS Linux release 7.9.2009 (Core)\n",
            ElRelease::CentOS6 => "CentOS release 6.10 (Final)\n",
        }
    }
}

/// EL's `dnf.conf` defaults (as AlmaLinux 8 ships them, plus the paths).
pub const EL_DNF_CONF: &str = "[main]\ngpgcheck=1\ninstallonly_limit=3\n\
clean_requirements_on_remove=True\nbest=True\nskip_if_unavailable=False\n\
cachedir=/var/cache/dnf\nreposdir=/etc/yum.repos.d\n";

/// `/etc/rpm/macros` inside.
pub const RPM_MACROS: &str = "%_dbpath /var/lib/rpm\n%_tmppath /var/tmp\n";

/// The EL setup, run inside as root: `$1` os-release or empty, `$2`
/// redhat-release, `$3` the base package, `$4` the key.
const SETUP: &str = r#"set -e
rm -f /etc/os-release /usr/lib/os-release
if [ -n "$1" ]; then printf '%s' "$1" > /etc/os-release; fi
printf '%s' "$2" > /etc/redhat-release
mkdir -p /etc/rpm /etc/dnf /etc/yum.repos.d /etc/pki/rpm-gpg /var/lib/rpm /var/tmp \
    /var/cache/dnf /var/lib/dnf
printf '%s' "$RPM_MACROS" > /etc/rpm/macros
printf '%s' "$DNF_CONF" > /etc/dnf/dnf.conf
find /etc/yum.repos.d /var/lib/rpm /var/cache/dnf /var/lib/dnf -mindepth 1 -maxdepth 1 \
    -exec rm -rf {} +
rm -rf /root/.rpmdb
test "$(rpm --eval '%_dbpath')" = /var/lib/rpm
rpm -i --justdb --nodeps "$3" 2>/dev/null
cp "$4" "$KEY_PATH"
rpm --import "$KEY_PATH"
ln -sf dnf-3 /usr/bin/yum
rm -f "$3" "$4"
"#;

/// EL helpers on a [`Sandbox`]; see the module documentation.
pub trait ElSandbox {
    /// Makes the sandbox the EL system `release`, with the fixture's base
    /// package and key; see the module documentation.
    fn make_el(&self, release: ElRelease, fx: &ElFixture) -> Result<()>;

    /// Writes `/etc/yum.repos.d/<repo_id>.repo` for `repo` served at
    /// `server_url` (`gpgcheck=1`) and returns its path.
    fn add_rpm_repo(&self, repo_id: &str, repo: &RpmRepo, server_url: &str) -> Result<String>;

    /// The installed version of `package` as `1.7.1-1` / `1:1.2.7-1`, or
    /// `None` when rpm says it is not installed.
    fn rpm_query(&self, package: &str) -> Result<Option<String>>;

    /// The whole rpm database, one `NAME EPOCH:VERSION-RELEASE.ARCH` line
    /// per package, sorted, for before/after comparisons.
    fn rpm_db_snapshot(&self) -> Result<String>;

    /// Copies the host files into [`SANDBOX_RPM_DIR`] and installs them in
    /// one `rpm -U`; fails unless rpm exits 0.
    fn install_rpms(&self, rpms: &[&Path]) -> Result<Output>;
}

impl ElSandbox for Sandbox {
    fn make_el(&self, release: ElRelease, fx: &ElFixture) -> Result<()> {
        let base = fx.base(release.releasever());
        let base_inside = "/var/tmp/patchman-tests-el-base.rpm";
        let key_inside = "/var/tmp/patchman-tests-key.asc";
        self.copy_in(base, base_inside)?;
        self.copy_in(&fx.patchman_key_file, key_inside)?;
        let mut c = self.command(&[
            "sh",
            "-c",
            SETUP,
            "sh",
            release.os_release().unwrap_or(""),
            release.redhat_release(),
            base_inside,
            key_inside,
        ]);
        c.env("RPM_MACROS", RPM_MACROS)
            .env("DNF_CONF", EL_DNF_CONF)
            .env("KEY_PATH", SANDBOX_RPM_KEY);
        crate::cmd::output(&mut c)
            .with_context(|| format!("making the sandbox an EL system ({release:?})"))?;
        Ok(())
    }

    fn add_rpm_repo(&self, repo_id: &str, repo: &RpmRepo, server_url: &str) -> Result<String> {
        if repo_id.is_empty()
            || !repo_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            bail!("{repo_id:?} is not a usable repository id");
        }
        let path = format!("/etc/yum.repos.d/{repo_id}.repo");
        self.write_file(&path, repo.repo_file(repo_id, server_url))?;
        Ok(path)
    }

    fn rpm_query(&self, package: &str) -> Result<Option<String>> {
        let out = self.run_unchecked(&["rpm", "-q", "--queryformat", EVR_FORMAT, "--", package])?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() {
            if text.ends_with("is not installed") {
                return Ok(None);
            }
            bail!(
                "rpm -q {package} failed ({}): {}{}",
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Some(text))
    }

    fn rpm_db_snapshot(&self) -> Result<String> {
        let listing = self.run_stdout(&[
            "rpm",
            "-qa",
            "--queryformat",
            "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\\n",
        ])?;
        let mut lines: Vec<&str> = listing.lines().collect();
        lines.sort_unstable();
        Ok(lines.iter().map(|l| format!("{l}\n")).collect())
    }

    fn install_rpms(&self, rpms: &[&Path]) -> Result<Output> {
        self.install_package_files(&["rpm", "-U"], rpms, SANDBOX_RPM_DIR)
    }
}
