//! Test `.rpm` packages built at test time with `rpmbuild` from an
//! [`RpmSpec`], and signed with a throwaway gpg key by `rpmsign --addsign`.
//!
//! Every rpm tool run on the host goes through [`host_rpm_command`], which
//! pins `%_dbpath`, `%_tmppath` and `%_topdir` into a private directory:
//! Debian's rpm otherwise opens (and creates) `~/.rpmdb` on the host even
//! for `rpm --eval`, `rpmbuild` or `rpmsign`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use super::apt_repo::SigningKey;
use crate::cmd;

/// What to put in a test package (always `BuildArch: noarch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmSpec {
    /// `Name:`.
    pub name: String,
    /// `[epoch:]version-release`, e.g. `1:1.2.7-1`.
    pub evr: String,
    /// One `Requires:` each, e.g. `patchman-client = 1.7.1-1`.
    pub requires: Vec<String>,
    /// One `Provides:` each, e.g. `/bin/sh`.
    pub provides: Vec<String>,
    /// Regular files (mode 0644): absolute path and contents.
    pub files: Vec<(String, String)>,
    /// Config files (`%config(noreplace)`, mode 0644).
    pub config_files: Vec<(String, String)>,
    /// The `%post` scriptlet's body (run by `/bin/sh`), if any.
    pub post: Option<String>,
    /// Other dependency tags, as written: `("Obsoletes", "victim")`.
    pub tags: Vec<(String, String)>,
}

impl RpmSpec {
    /// A package with nothing in it.
    pub fn new(name: &str, evr: &str) -> Self {
        RpmSpec {
            name: name.to_owned(),
            evr: evr.to_owned(),
            requires: Vec::new(),
            provides: Vec::new(),
            files: Vec::new(),
            config_files: Vec::new(),
            post: None,
            tags: Vec::new(),
        }
    }

    /// Adds a `Requires:`.
    pub fn requires(mut self, req: &str) -> Self {
        self.requires.push(req.to_owned());
        self
    }

    /// Adds a `Provides:`.
    pub fn provides(mut self, what: &str) -> Self {
        self.provides.push(what.to_owned());
        self
    }

    /// Adds a dependency tag: `tag("Obsoletes", "victim")`.
    pub fn tag(mut self, tag: &str, value: &str) -> Self {
        self.tags.push((tag.to_owned(), value.to_owned()));
        self
    }

    /// Adds a file.
    pub fn file(mut self, path: &str, contents: &str) -> Self {
        self.files.push((path.to_owned(), contents.to_owned()));
        self
    }

    /// Adds a `%config(noreplace)` file.
    pub fn config_file(mut self, path: &str, contents: &str) -> Self {
        self.config_files
            .push((path.to_owned(), contents.to_owned()));
        self
    }

    /// Sets the `%post` scriptlet.
    pub fn post(mut self, script: &str) -> Self {
        self.post = Some(script.to_owned());
        self
    }

    /// `(epoch, version, release)` of [`evr`](Self::evr).
    pub fn split_evr(&self) -> Result<(Option<&str>, &str, &str)> {
        let (epoch, rest) = match self.evr.split_once(':') {
            Some((e, r)) => (Some(e), r),
            None => (None, self.evr.as_str()),
        };
        let (version, release) = rest
            .rsplit_once('-')
            .with_context(|| format!("{:?} has no release", self.evr))?;
        Ok((epoch, version, release))
    }

    /// The file name rpmbuild writes: `NAME-VERSION-RELEASE.noarch.rpm`
    /// (no epoch), as dnf also saves it.
    pub fn file_name(&self) -> Result<String> {
        let (_, v, r) = self.split_evr()?;
        Ok(format!("{}-{v}-{r}.noarch.rpm", self.name))
    }

    /// The spec file's text.
    pub fn spec_text(&self) -> Result<String> {
        let (epoch, version, release) = self.split_evr()?;
        let safe = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-/ =<>():".contains(&b))
        };
        for s in [&self.name, &self.evr]
            .into_iter()
            .chain(&self.requires)
            .chain(&self.provides)
            .chain(self.tags.iter().flat_map(|(t, v)| [t, v]))
        {
            if !safe(s) {
                bail!("{s:?} is not usable in a test spec");
            }
        }
        let mut t = format!(
            "Name: {}\nVersion: {version}\nRelease: {release}\n",
            self.name
        );
        if let Some(e) = epoch {
            t.push_str(&format!("Epoch: {e}\n"));
        }
        t.push_str(
            "Summary: patchman test package\nLicense: MIT\nBuildArch: noarch\n\
             AutoReqProv: no\n",
        );
        for r in &self.requires {
            t.push_str(&format!("Requires: {r}\n"));
        }
        for p in &self.provides {
            t.push_str(&format!("Provides: {p}\n"));
        }
        for (tag, value) in &self.tags {
            t.push_str(&format!("{tag}: {value}\n"));
        }
        t.push_str(&format!(
            "\n%description\n{} test package {}, built by the patchman-tests sandbox.\n\n%install\n",
            self.name, self.evr
        ));
        let all = self.files.iter().chain(&self.config_files);
        for (i, (path, contents)) in all.enumerate() {
            if !path.starts_with('/') || path.contains("..") || !safe(path) {
                bail!("package file path {path:?} must be absolute, plain and without `..`");
            }
            if contents.contains('%') || contents.contains("PATCHMAN_EOF") {
                bail!("file contents of {path} must not contain `%` or the heredoc marker");
            }
            t.push_str(&format!(
                "mkdir -p \"$(dirname %{{buildroot}}{path})\"\n\
                 cat > %{{buildroot}}{path} <<'PATCHMAN_EOF{i}'\n{contents}PATCHMAN_EOF{i}\n"
            ));
            if !contents.ends_with('\n') {
                bail!("file contents of {path} must end with a newline");
            }
        }
        if let Some(post) = &self.post {
            if post.contains('%') {
                bail!("the %post of {} must not contain `%`", self.name);
            }
            t.push_str(&format!("\n%post\n{post}\n"));
        }
        t.push_str("\n%files\n");
        for (path, _) in &self.files {
            t.push_str(&format!("{path}\n"));
        }
        for (path, _) in &self.config_files {
            t.push_str(&format!("%config(noreplace) {path}\n"));
        }
        Ok(t)
    }
}

/// A `Command` for an rpm tool (`rpm`, `rpmbuild`, `rpmsign`, `rpmkeys`)
/// run on the host, with `%_dbpath`, `%_tmppath` and `%_topdir` under
/// `private_dir` (created), `LC_ALL=C`, stdin `/dev/null`.
pub fn host_rpm_command(tool: &str, private_dir: &Path) -> Result<Command> {
    for d in ["db", "tmp", "top"] {
        std::fs::create_dir_all(private_dir.join(d))
            .with_context(|| format!("creating {}", private_dir.join(d).display()))?;
    }
    let mut c = Command::new(tool);
    for (macro_name, sub) in [("_dbpath", "db"), ("_tmppath", "tmp"), ("_topdir", "top")] {
        c.arg("--define")
            .arg(format!("{macro_name} {}", private_dir.join(sub).display()));
    }
    c.env("LC_ALL", "C").stdin(Stdio::null());
    Ok(c)
}

/// Builds every spec with its own `rpmbuild` process, all at once (each
/// takes about half a second, mostly start-up), and returns the built
/// files in `out_dir`, in the order of `specs`.
pub fn build_rpms(specs: &[RpmSpec], out_dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)?;
    let work = tempfile::Builder::new()
        .prefix(".rpmbuild-")
        .tempdir_in(out_dir)
        .context("creating rpmbuild's work directory")?;
    let mut children: Vec<(Child, Command, PathBuf)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let dir = work.path().join(i.to_string());
        std::fs::create_dir_all(&dir)?;
        let spec_file = dir.join(format!("{}.spec", spec.name));
        std::fs::write(&spec_file, spec.spec_text()?)?;
        let mut c = host_rpm_command("rpmbuild", &dir)?;
        c.arg("--define")
            .arg(format!("_rpmdir {}", dir.join("out").display()))
            .args(["--quiet", "-bb"])
            .arg(&spec_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot run rpmbuild ({e}): install Debian's `rpm` package (it ships rpmbuild)"
            )
        })?;
        children.push((child, c, dir));
    }
    let mut built = Vec::new();
    for ((child, c, dir), spec) in children.into_iter().zip(specs) {
        let out = child.wait_with_output()?;
        cmd::check(&c, &out).with_context(|| format!("building {} {}", spec.name, spec.evr))?;
        let name = spec.file_name()?;
        let dest = out_dir.join(&name);
        std::fs::rename(dir.join("out").join("noarch").join(&name), &dest)
            .with_context(|| format!("rpmbuild wrote no {name}"))?;
        built.push(dest);
    }
    Ok(built)
}

/// Signs `rpms` in place with `key`, whose secret half is in the gpg home
/// directory `gpg_home` (a [`GpgHome`](super::apt_repo::GpgHome)'s), with
/// `rpmsign --addsign` and gpg found as `/usr/bin/gpg` (rpm's default
/// `%__gpg` is `/usr/bin/gpg2`, which Debian does not ship).
pub fn sign_rpms(gpg_home: &Path, key: &SigningKey, rpms: &[PathBuf]) -> Result<()> {
    if rpms.is_empty() {
        return Ok(());
    }
    let private = tempfile::tempdir()?;
    let mut c = host_rpm_command("rpmsign", private.path())?;
    c.arg("--define")
        .arg("__gpg /usr/bin/gpg")
        .arg("--define")
        .arg(format!("_gpg_path {}", gpg_home.display()))
        .arg("--define")
        .arg(format!("_gpg_name {}", key.fingerprint))
        .arg("--addsign")
        .args(rpms);
    cmd::output(&mut c).with_context(|| format!("signing packages with the key {}", key.name))?;
    Ok(())
}

/// Exports `key` from the gpg home `gpg_home`, ASCII-armored (what
/// `rpm --import` and dnf's `gpgkey=` read), to `path`.
pub fn export_armored(gpg_home: &Path, key: &SigningKey, path: &Path) -> Result<()> {
    let out = cmd::output(
        Command::new("gpg")
            .arg("--homedir")
            .arg(gpg_home)
            .args(["--batch", "--quiet", "--armor", "--export", "--"])
            .arg(&key.fingerprint)
            .env("LC_ALL", "C"),
    )?;
    if out.stdout.is_empty() {
        bail!("gpg exported nothing for {}", key.fingerprint);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, out.stdout)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_text_has_epoch_requires_and_files() {
        let s = RpmSpec::new("patchman-client", "1:1.2.7-1")
            .requires("libpatchman-new >= 1.0")
            .config_file("/etc/patchman/patchman.ini", "[updates]\n")
            .file("/usr/share/patchman-client/VERSION", "1:1.2.7-1\n")
            .post("echo hi");
        let t = s.spec_text().unwrap();
        for want in [
            "Version: 1.2.7\n",
            "Release: 1\n",
            "Epoch: 1\n",
            "Requires: libpatchman-new >= 1.0\n",
            "%config(noreplace) /etc/patchman/patchman.ini\n",
            "%post\necho hi\n",
        ] {
            assert!(t.contains(want), "{want:?} in\n{t}");
        }
        assert_eq!(s.file_name().unwrap(), "patchman-client-1.2.7-1.noarch.rpm");
        assert!(RpmSpec::new("a", "1.0").spec_text().is_err());
        assert!(RpmSpec::new("a;b", "1.0-1").spec_text().is_err());
        assert!(RpmSpec::new("a", "1.0-1")
            .file("/x", "100%\n")
            .spec_text()
            .is_err());
    }
}
