//! rpm repositories written with `createrepo_c` from a set of `.rpm`s, to
//! be served by [`HttpServer`](super::http::HttpServer) and named in a
//! `/etc/yum.repos.d/*.repo` file inside the sandbox.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd;

/// Where [`Sandbox::add_rpm_repo`](super::el::ElSandbox::add_rpm_repo)
/// and the EL setup install the patchman test key inside the sandbox: the
/// `gpgkey=` of every repository file.
pub const SANDBOX_RPM_KEY: &str = "/etc/pki/rpm-gpg/RPM-GPG-KEY-patchman-tests";

/// A repository on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmRepo {
    /// Short name (also the directory's name).
    pub name: String,
    /// The repository's directory (the packages and `repodata/`).
    pub dir: PathBuf,
    /// Its path under the served root.
    pub url_path: String,
    /// The name of the key its packages are signed with (`patchman`,
    /// `other`); `None` when unsigned.
    pub key_name: Option<String>,
    /// The packages' file names, sorted.
    pub files: Vec<String>,
}

impl RpmRepo {
    /// The `baseurl` for the server's base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self, server_url: &str) -> String {
        format!("{}/{}", server_url.trim_end_matches('/'), self.url_path)
    }

    /// A `.repo` file defining this repository under the id `repo_id`
    /// (`patchman`), `enabled=1`, `gpgcheck=1` (the EL way; dnf then checks
    /// every package against [`SANDBOX_RPM_KEY`]).
    pub fn repo_file(&self, repo_id: &str, server_url: &str) -> String {
        repo_file(repo_id, &self.base_url(server_url), true)
    }
}

/// A `.repo` file: `[repo_id]`, `baseurl`, `enabled=1`, `gpgcheck`, and
/// `gpgkey=file://`[`SANDBOX_RPM_KEY`].
pub fn repo_file(repo_id: &str, base_url: &str, gpgcheck: bool) -> String {
    format!(
        "[{repo_id}]\nname=patchman tests ({repo_id})\nbaseurl={base_url}\nenabled=1\n\
         gpgcheck={}\ngpgkey=file://{SANDBOX_RPM_KEY}\n",
        u8::from(gpgcheck)
    )
}

/// Writes the repository `name` into `served_root/<name>` (which must not
/// exist yet) from `rpms` (hard-linked or copied) with `createrepo_c`, and
/// returns it. `key_name` only records how its packages were signed.
pub fn build_rpm_repo(
    served_root: &Path,
    name: &str,
    rpms: &[PathBuf],
    key_name: Option<&str>,
) -> Result<RpmRepo> {
    let dir = served_root.join(name);
    fs::create_dir_all(served_root)?;
    fs::create_dir(&dir).with_context(|| format!("creating repository {}", dir.display()))?;
    let mut files = Vec::new();
    for rpm in rpms {
        let file = rpm
            .file_name()
            .context("an .rpm path without a file name")?;
        let dest = dir.join(file);
        if fs::hard_link(rpm, &dest).is_err() {
            fs::copy(rpm, &dest)
                .with_context(|| format!("copying {} into {}", rpm.display(), dir.display()))?;
        }
        files.push(file.to_string_lossy().into_owned());
    }
    files.sort();
    cmd::output(
        Command::new("createrepo_c")
            .args(["--quiet", "--no-database", "--workers", "1"])
            .arg(&dir)
            .env("LC_ALL", "C"),
    )
    .with_context(|| {
        format!("indexing rpm repository {name} (createrepo_c, Debian's createrepo-c)")
    })?;
    Ok(RpmRepo {
        name: name.to_owned(),
        url_path: name.to_owned(),
        dir,
        key_name: key_name.map(str::to_owned),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_repo_file() {
        let r = RpmRepo {
            name: "newdep".into(),
            dir: "/x/newdep".into(),
            url_path: "newdep".into(),
            key_name: Some("patchman".into()),
            files: vec![],
        };
        assert_eq!(
            r.repo_file("patchman", "http://127.0.0.1:8080/"),
            "[patchman]\nname=patchman tests (patchman)\n\
             baseurl=http://127.0.0.1:8080/newdep\nenabled=1\ngpgcheck=1\n\
             gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-patchman-tests\n"
        );
    }
}
