//! Apt repositories written with `apt-ftparchive` from a set of `.deb`s,
//! flat or `dists/`-style, signed with a throwaway gpg key (`InRelease` and
//! `Release.gpg`) or left unsigned.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// A throwaway gpg home (`gpg --batch --homedir`) holding unprotected
/// signing keys. Dropping it stops its gpg-agent; the directory itself is
/// whatever the caller gave and is not removed.
#[derive(Debug)]
pub struct GpgHome {
    dir: PathBuf,
}

/// One signing key of a [`GpgHome`], with its public half exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// A short name, used in file names (`patchman`, `other`).
    pub name: String,
    /// The primary key's fingerprint, as `gpg --local-user` takes it.
    pub fingerprint: String,
    /// The exported public key (binary OpenPGP), usable as apt's `signed-by=`.
    pub keyring: PathBuf,
}

impl GpgHome {
    /// Creates (mode 0700) and uses the directory `dir` as gpg's home. Keep
    /// the path short: gpg-agent's socket lives there.
    pub fn new(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating gpg home {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(GpgHome {
            dir: dir.to_path_buf(),
        })
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir")
            .arg(&self.dir)
            .args(["--batch", "--quiet", "--no-tty"])
            .env("LC_ALL", "C");
        c
    }

    /// Generates an unprotected ed25519 signing key named `name` and exports
    /// its public key to `keyring_dir/<name>.gpg` (mode 0644).
    pub fn generate_key(&self, name: &str, keyring_dir: &Path) -> Result<SigningKey> {
        let email = format!("{name}@patchman-tests.invalid");
        let params = format!(
            "%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n\
             Name-Real: patchman tests {name} repository\nName-Email: {email}\n\
             Expire-Date: 0\n%commit\n"
        );
        let params_file = self.dir.join(format!("{name}.params"));
        fs::write(&params_file, params)?;
        cmd::output(self.gpg().arg("--generate-key").arg(&params_file))
            .with_context(|| format!("generating the gpg key `{name}`"))?;
        let listing = cmd::stdout(
            self.gpg()
                .args(["--with-colons", "--list-secret-keys", "--"])
                .arg(format!("<{email}>")),
        )?;
        let fingerprint = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').find(|f| !f.is_empty()))
            .with_context(|| format!("no fingerprint for {email} in:\n{listing}"))?
            .to_owned();
        fs::create_dir_all(keyring_dir)?;
        let keyring = keyring_dir.join(format!("{name}.gpg"));
        let exported = cmd::output(self.gpg().args(["--export", "--", &fingerprint]))?;
        if exported.stdout.is_empty() {
            bail!("gpg exported nothing for {fingerprint}");
        }
        fs::write(&keyring, exported.stdout)?;
        Ok(SigningKey {
            name: name.to_owned(),
            fingerprint,
            keyring,
        })
    }

    /// Writes `InRelease` (clear-signed) and `Release.gpg` (detached, armored)
    /// beside `release`.
    pub fn sign_release(&self, key: &SigningKey, release: &Path) -> Result<()> {
        let dir = release.parent().context("Release has no parent")?;
        for (mode, out) in [
            ("--clearsign", "InRelease"),
            ("--detach-sign", "Release.gpg"),
        ] {
            cmd::output(
                self.gpg()
                    .args([
                        "--yes",
                        "--armor",
                        "--digest-algo",
                        "SHA512",
                        "--local-user",
                    ])
                    .arg(&key.fingerprint)
                    .arg(mode)
                    .arg("--output")
                    .arg(dir.join(out))
                    .arg(release),
            )
            .with_context(|| format!("signing {} with {}", release.display(), key.name))?;
        }
        Ok(())
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        // gpg starts an agent per home; leave no process behind.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.dir)
            .args(["--kill", "all"])
            .output();
    }
}

/// How a repository is laid out on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLayout {
    /// Everything in one directory; the source line's suite is `./`.
    Flat,
    /// `dists/<suite>/<component>/binary-<arch>/Packages` and `pool/`.
    Dists {
        /// e.g. `stable`.
        suite: String,
        /// e.g. `main`.
        component: String,
    },
}

impl RepoLayout {
    /// `dists/`-style, suite `stable`, component `main`.
    pub fn stable_main() -> Self {
        RepoLayout::Dists {
            suite: "stable".to_owned(),
            component: "main".to_owned(),
        }
    }
}

/// The format of an apt source definition file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// One-line `deb …` in a `.list` file.
    List,
    /// deb822 stanza in a `.sources` file.
    Deb822,
}

impl SourceFormat {
    /// The file extension apt uses to pick the parser: `list` or `sources`.
    pub fn extension(self) -> &'static str {
        match self {
            SourceFormat::List => "list",
            SourceFormat::Deb822 => "sources",
        }
    }
}

/// What to build: see [`build_repo`].
#[derive(Debug, Clone)]
pub struct RepoSpec<'a> {
    /// Short name, also the `Origin`/`Label` in `Release`.
    pub name: &'a str,
    /// Layout.
    pub layout: RepoLayout,
    /// The packages to publish (copied, or hard-linked, into the repository).
    pub debs: &'a [PathBuf],
    /// The signing key; `None` for an unsigned repository.
    pub key: Option<&'a SigningKey>,
}

/// A repository on disk, ready to be served by
/// [`HttpServer`](super::http::HttpServer) from its parent directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptRepo {
    /// Short name.
    pub name: String,
    /// The repository's directory (holding `dists/`+`pool/`, or flat files).
    pub dir: PathBuf,
    /// Its path under the served root: the directory's name.
    pub url_path: String,
    /// Layout.
    pub layout: RepoLayout,
    /// The signing key's exported public keyring on the host; `None` when
    /// unsigned.
    pub keyring: Option<PathBuf>,
    /// The name of the signing key (`patchman`, `other`), when signed.
    pub key_name: Option<String>,
}

impl AptRepo {
    /// Where [`Sandbox::add_apt_repo`](super::namespace::Sandbox::add_apt_repo)
    /// installs the keyring inside the sandbox, and so what `signed-by`
    /// names: `/etc/apt/keyrings/patchman-tests-<key>.gpg`.
    pub fn sandbox_keyring_path(&self) -> Option<String> {
        self.key_name
            .as_ref()
            .map(|k| format!("/etc/apt/keyrings/patchman-tests-{k}.gpg"))
    }

    /// The repository's URI given the server's base URL
    /// (`http://127.0.0.1:PORT`).
    pub fn uri(&self, base_url: &str) -> String {
        format!("{}/{}", base_url.trim_end_matches('/'), self.url_path)
    }

    /// The one-line source:
    /// `deb [signed-by=KEY] http://127.0.0.1:PORT/<path> <suite> <component>`,
    /// or `… ./` for a flat repository; no option for an unsigned one.
    pub fn list_line(&self, base_url: &str) -> String {
        let options = self
            .sandbox_keyring_path()
            .map(|k| format!("[signed-by={k}] "))
            .unwrap_or_default();
        let dist = match &self.layout {
            RepoLayout::Flat => "./".to_owned(),
            RepoLayout::Dists { suite, component } => format!("{suite} {component}"),
        };
        format!("deb {options}{} {dist}\n", self.uri(base_url))
    }

    /// The same source in deb822 form (for a `.sources` file).
    pub fn deb822(&self, base_url: &str) -> String {
        let mut s = format!("Types: deb\nURIs: {}\n", self.uri(base_url));
        match &self.layout {
            RepoLayout::Flat => s.push_str("Suites: ./\n"),
            RepoLayout::Dists { suite, component } => {
                s.push_str(&format!("Suites: {suite}\nComponents: {component}\n"))
            }
        }
        if let Some(k) = self.sandbox_keyring_path() {
            s.push_str(&format!("Signed-By: {k}\n"));
        }
        s
    }

    /// The source in the given format.
    pub fn source(&self, base_url: &str, format: SourceFormat) -> String {
        match format {
            SourceFormat::List => self.list_line(base_url),
            SourceFormat::Deb822 => self.deb822(base_url),
        }
    }
}

/// dpkg's native architecture (`amd64`, …), where apt looks for
/// `binary-<arch>/Packages`.
pub fn native_arch() -> Result<String> {
    Ok(
        cmd::stdout(Command::new("dpkg").arg("--print-architecture"))?
            .trim()
            .to_owned(),
    )
}

/// Writes the repository `spec` into `served_root/<spec.name>` (which must
/// not exist yet), signs it with `gpg` when it has a key, and returns it.
pub fn build_repo(
    served_root: &Path,
    spec: &RepoSpec<'_>,
    gpg: Option<&GpgHome>,
    arch: &str,
) -> Result<AptRepo> {
    let dir = served_root.join(spec.name);
    fs::create_dir_all(served_root)?;
    fs::create_dir(&dir).with_context(|| format!("creating repository {}", dir.display()))?;
    let (pool, index_dir, scan, release_dir) = match &spec.layout {
        RepoLayout::Flat => (dir.clone(), dir.clone(), ".".to_owned(), dir.clone()),
        RepoLayout::Dists { suite, component } => {
            let dist = dir.join("dists").join(suite);
            (
                dir.join("pool"),
                dist.join(component).join(format!("binary-{arch}")),
                "pool".to_owned(),
                dist,
            )
        }
    };
    fs::create_dir_all(&pool)?;
    fs::create_dir_all(&index_dir)?;
    for deb in spec.debs {
        let name = deb.file_name().context("a .deb path without a file name")?;
        let dest = pool.join(name);
        if fs::hard_link(deb, &dest).is_err() {
            fs::copy(deb, &dest)
                .with_context(|| format!("copying {} into {}", deb.display(), pool.display()))?;
        }
    }
    let packages = cmd::output(
        Command::new("apt-ftparchive")
            .current_dir(&dir)
            .args(["packages", &scan]),
    )
    .with_context(|| format!("indexing repository {}", spec.name))?;
    fs::write(index_dir.join("Packages"), packages.stdout)?;

    let mut release_cmd = Command::new("apt-ftparchive");
    release_cmd.current_dir(&release_dir);
    let field = |k: &str, v: &str| format!("APT::FTPArchive::Release::{k}={v}");
    for (k, v) in [
        ("Origin", spec.name),
        ("Label", spec.name),
        ("Architectures", arch),
    ] {
        release_cmd.arg("-o").arg(field(k, v));
    }
    if let RepoLayout::Dists { suite, component } = &spec.layout {
        for (k, v) in [
            ("Suite", suite),
            ("Codename", suite),
            ("Components", component),
        ] {
            release_cmd.arg("-o").arg(field(k, v));
        }
    }
    release_cmd.args(["release", "."]);
    let release = cmd::output(&mut release_cmd)
        .with_context(|| format!("writing Release of repository {}", spec.name))?;
    let release_path = release_dir.join("Release");
    fs::write(&release_path, release.stdout)?;

    if let Some(key) = spec.key {
        let gpg = gpg.context("a signed repository needs a GpgHome")?;
        gpg.sign_release(key, &release_path)?;
    }
    Ok(AptRepo {
        name: spec.name.to_owned(),
        url_path: spec.name.to_owned(),
        dir,
        layout: spec.layout.clone(),
        keyring: spec.key.map(|k| k.keyring.clone()),
        key_name: spec.key.map(|k| k.name.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(layout: RepoLayout, key: Option<&str>) -> AptRepo {
        AptRepo {
            name: "patchman".into(),
            dir: "/x/patchman".into(),
            url_path: "patchman".into(),
            layout,
            keyring: key.map(|k| PathBuf::from(format!("/x/{k}.gpg"))),
            key_name: key.map(str::to_owned),
        }
    }

    #[test]
    fn renders_signed_dists_source() {
        let r = repo(RepoLayout::stable_main(), Some("patchman"));
        assert_eq!(
            r.list_line("http://127.0.0.1:8080"),
            "deb [signed-by=/etc/apt/keyrings/patchman-tests-patchman.gpg] \
             http://127.0.0.1:8080/patchman stable main\n"
        );
        assert_eq!(
            r.deb822("http://127.0.0.1:8080/"),
            "Types: deb\nURIs: http://127.0.0.1:8080/patchman\nSuites: stable\n\
             Components: main\nSigned-By: /etc/apt/keyrings/patchman-tests-patchman.gpg\n"
        );
    }

    #[test]
    fn renders_unsigned_flat_source() {
        let r = repo(RepoLayout::Flat, None);
        assert_eq!(r.list_line("http://h:1"), "deb http://h:1/patchman ./\n");
        assert_eq!(
            r.source("http://h:1", SourceFormat::Deb822),
            "Types: deb\nURIs: http://h:1/patchman\nSuites: ./\n"
        );
    }
}
