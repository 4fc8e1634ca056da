//! Test support for the dnf/yum/rpm parsers: the captured fixtures of
//! `helper/tests/fixtures/dnf/` (re-created by its `capture.sh`) and the
//! published yum 3 transcripts of `helper/tests/fixtures/yum/`.

use std::path::PathBuf;

fn read(dir: &str, name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", dir, name]
        .iter()
        .collect();
    match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => panic!("fixture {} unreadable: {e}", path.display()),
    }
}

/// `helper/tests/fixtures/dnf/<name>`.
pub fn dnf_fixture(name: &str) -> String {
    read("dnf", name)
}

/// The exit code recorded beside a dnf/rpm fixture (`<name>.rc`).
pub fn dnf_fixture_rc(name: &str) -> i32 {
    let rc = dnf_fixture(&format!("{name}.rc"));
    match rc.trim().parse() {
        Ok(n) => n,
        Err(e) => panic!("{name}.rc is not a number: {e}"),
    }
}

/// `helper/tests/fixtures/yum/<name>`.
pub fn yum_fixture(name: &str) -> String {
    read("yum", name)
}

/// `helper/tests/fixtures/rpmkeys/<name>`: `rpmkeys --checksig` of rpm
/// 4.11 to 4.20.
pub fn rpmkeys_fixture(name: &str) -> String {
    read("rpmkeys", name)
}

/// The names (without `.out`) of the fixtures in `helper/tests/fixtures/<dir>/`.
pub fn fixture_names(dir: &str) -> Vec<String> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", dir]
        .iter()
        .collect();
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".out").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// `helper/tests/fixtures/rpm/<name>`: `rpm -q`, `-qp` and `-U` of rpm
/// 4.16, 4.18 and 4.20 (its `capture.sh`).
pub fn rpm_fixture(name: &str) -> String {
    read("rpm", name)
}

/// The rpm versions `helper/tests/fixtures/rpm/` was captured from.
pub const CAPTURED_RPM_VERSIONS: [&str; 3] = ["4.16", "4.18", "4.20"];
