//! Test support for the dnf/yum/rpm parsers: the captured fixtures of
//! `helper/tests/fixtures/dnf/` (re-created by its `capture.sh`) and the
//! published yum 3 transcripts of `helper/tests/fixtures/yum/`.

use super::test_support::{fixture_dir, fixture_in, fixture_rc_in};

/// `helper/tests/fixtures/dnf/<name>`.
pub fn dnf_fixture(name: &str) -> String {
    fixture_in("dnf", name)
}

/// The exit code recorded beside a dnf/rpm fixture (`<name>.rc`).
pub fn dnf_fixture_rc(name: &str) -> i32 {
    fixture_rc_in("dnf", name)
}

/// `helper/tests/fixtures/yum/<name>`.
pub fn yum_fixture(name: &str) -> String {
    fixture_in("yum", name)
}

/// `helper/tests/fixtures/rpmkeys/<name>`: `rpmkeys --checksig` of rpm
/// 4.11 to 4.20.
pub fn rpmkeys_fixture(name: &str) -> String {
    fixture_in("rpmkeys", name)
}

/// The names (without `.out`) of the fixtures in `helper/tests/fixtures/<dir>/`.
pub fn fixture_names(dir: &str) -> Vec<String> {
    let path = fixture_dir(dir);
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
    fixture_in("rpm", name)
}

/// The rpm versions `helper/tests/fixtures/rpm/` was captured from.
pub const CAPTURED_RPM_VERSIONS: [&str; 3] = ["4.16", "4.18", "4.20"];
