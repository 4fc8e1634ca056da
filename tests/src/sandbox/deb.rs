//! Test `.deb` packages built at test time with
//! `dpkg-deb --build --root-owner-group` from a [`DebSpec`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Where the bytes of a packaged file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// These bytes.
    Bytes(Vec<u8>),
    /// A copy of this host file (a built binary, for instance).
    Copy(PathBuf),
}

/// One regular file of the package's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebFile {
    /// Absolute path where dpkg installs it, e.g. `/usr/share/foo/VERSION`.
    pub path: String,
    /// Its contents.
    pub source: FileSource,
    /// Its permission bits, e.g. `0o644` or `0o755`.
    pub mode: u32,
}

/// What to put in a test package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebSpec {
    /// `Package:`.
    pub name: String,
    /// `Version:`, epoch included, e.g. `1:1.7.1-1`.
    pub version: String,
    /// `Architecture:`, `all` unless set.
    pub arch: String,
    /// One `Depends:` entry each, e.g. `patchman-client (= 1.7.1-1)`.
    pub depends: Vec<String>,
    /// Conffiles: absolute path and contents (mode 0644), listed in
    /// `DEBIAN/conffiles`.
    pub conffiles: Vec<(String, String)>,
    /// Other files.
    pub files: Vec<DebFile>,
    /// The `postinst` maintainer script (mode 0755), if any.
    pub postinst: Option<String>,
    /// More control fields (`Provides`, `Conflicts`, …), written as given.
    pub extra_fields: Vec<(String, String)>,
}

impl DebSpec {
    /// A package with no dependency, no file and no script, architecture `all`.
    pub fn new(name: &str, version: &str) -> Self {
        DebSpec {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: "all".to_owned(),
            depends: Vec::new(),
            conffiles: Vec::new(),
            files: Vec::new(),
            postinst: None,
            extra_fields: Vec::new(),
        }
    }

    /// Adds one `Depends:` entry.
    pub fn depends(mut self, dep: &str) -> Self {
        self.depends.push(dep.to_owned());
        self
    }

    /// Adds a conffile.
    pub fn conffile(mut self, path: &str, content: &str) -> Self {
        self.conffiles.push((path.to_owned(), content.to_owned()));
        self
    }

    /// Adds a file with these bytes and mode.
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push(DebFile {
            path: path.to_owned(),
            source: FileSource::Bytes(bytes.into()),
            mode,
        });
        self
    }

    /// Adds a file copied from the host path `source`, with this mode.
    pub fn file_from(mut self, path: &str, source: impl Into<PathBuf>, mode: u32) -> Self {
        self.files.push(DebFile {
            path: path.to_owned(),
            source: FileSource::Copy(source.into()),
            mode,
        });
        self
    }

    /// Sets the `postinst` script.
    pub fn postinst(mut self, script: &str) -> Self {
        self.postinst = Some(script.to_owned());
        self
    }

    /// Adds a control field.
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.extra_fields.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The conventional file name, `<name>_<version without epoch>_<arch>.deb`
    /// (as `dpkg-name` writes it; apt's archive copy keeps the epoch as `%3a`).
    pub fn file_name(&self) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(self.version.as_str(), |(_, v)| v);
        format!("{}_{}_{}.deb", self.name, version, self.arch)
    }

    /// The control file's text.
    pub fn control(&self) -> String {
        let mut c = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\n\
             Maintainer: patchman tests <tests@patchman.invalid>\n\
             Section: admin\nPriority: optional\n",
            self.name, self.version, self.arch
        );
        if !self.depends.is_empty() {
            c.push_str(&format!("Depends: {}\n", self.depends.join(", ")));
        }
        for (name, value) in &self.extra_fields {
            c.push_str(&format!("{name}: {value}\n"));
        }
        c.push_str(&format!(
            "Description: {} test package {}\n built by the patchman-tests sandbox\n",
            self.name, self.version
        ));
        c
    }

    /// Builds the package into `out_dir` and returns the `.deb`'s path
    /// (`out_dir/`[`file_name`](Self::file_name)).
    pub fn build(&self, out_dir: &Path) -> Result<PathBuf> {
        let staging = tempfile::Builder::new()
            .prefix(".debroot-")
            .tempdir_in(out_dir)
            .with_context(|| format!("creating a staging dir in {}", out_dir.display()))?;
        let root = staging.path();
        // The tree's root becomes `./` in data.tar: keep it 0755, not the
        // temp dir's 0700.
        set_mode(root, 0o755)?;
        let debian = root.join("DEBIAN");
        fs::create_dir(&debian)?;
        set_mode(&debian, 0o755)?;
        write_with_mode(&debian.join("control"), self.control().as_bytes(), 0o644)?;
        if !self.conffiles.is_empty() {
            let list: String = self
                .conffiles
                .iter()
                .map(|(p, _)| format!("{p}\n"))
                .collect();
            write_with_mode(&debian.join("conffiles"), list.as_bytes(), 0o644)?;
        }
        if let Some(script) = &self.postinst {
            write_with_mode(&debian.join("postinst"), script.as_bytes(), 0o755)?;
        }
        for (path, content) in &self.conffiles {
            write_with_mode(&under(root, path)?, content.as_bytes(), 0o644)?;
        }
        for file in &self.files {
            let dest = under(root, &file.path)?;
            let bytes = match &file.source {
                FileSource::Bytes(b) => b.clone(),
                FileSource::Copy(src) => {
                    fs::read(src).with_context(|| format!("reading {}", src.display()))?
                }
            };
            write_with_mode(&dest, &bytes, file.mode)?;
        }
        let out = out_dir.join(self.file_name());
        cmd::output(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zgzip", "-z1", "--build"])
                .arg(root)
                .arg(&out),
        )
        .with_context(|| format!("building {} {}", self.name, self.version))?;
        Ok(out)
    }
}

/// `path` (absolute, without `..`) inside the staging `root`.
fn under(root: &Path, path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        bail!("package file path {path:?} must be absolute and without `.`/`..`");
    }
    Ok(root.join(p.strip_prefix("/")?))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Writes `bytes` to `path` (creating 0755 parents) and sets `mode`.
fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_drops_the_epoch() {
        assert_eq!(
            DebSpec::new("patchman-client", "1:1.2.7-1").file_name(),
            "patchman-client_1.2.7-1_all.deb"
        );
    }

    #[test]
    fn control_lists_dependencies() {
        let c = DebSpec::new("a", "1.0-1")
            .depends("b (= 1)")
            .depends("c")
            .control();
        assert!(c.contains("Depends: b (= 1), c\n"), "{c}");
    }

    #[test]
    fn relative_or_dotted_paths_are_refused() {
        assert!(under(Path::new("/x"), "etc/a").is_err());
        assert!(under(Path::new("/x"), "/etc/../a").is_err());
        assert_eq!(
            under(Path::new("/x"), "/etc/a").unwrap(),
            Path::new("/x/etc/a")
        );
    }
}
