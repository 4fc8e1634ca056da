//! The sandbox for end-to-end tests of the apt family: test packages
//! ([`deb`]), signed repositories ([`apt_repo`]) served over HTTP
//! ([`http`]), a private mount namespace to run dpkg and apt in
//! ([`namespace`]), and the shared package set ([`fixture`]).

pub mod agent_fixture;
pub mod apt_repo;
pub mod attack_fixture;
pub mod deb;
pub mod el;
pub mod el_fixture;
pub mod fixture;
pub mod http;
pub mod namespace;
pub mod rpm;
pub mod rpm_repo;

pub use apt_repo::{AptRepo, RepoLayout, SourceFormat};
pub use deb::DebSpec;
pub use el::{ElRelease, ElSandbox};
pub use http::HttpServer;
pub use namespace::Sandbox;
pub use rpm::RpmSpec;
pub use rpm_repo::RpmRepo;

/// `cell`'s value, built by `build` on the first call in this test process
/// and shared by every call after: how each fixture is made once.
///
/// # Panics
/// When `build` fails: "building `what`: " and the reason (a fixture that
/// cannot be built is an error, never a skip).
pub fn built_once<T>(
    cell: &'static std::sync::OnceLock<T>,
    what: &str,
    build: impl FnOnce() -> anyhow::Result<T>,
) -> &'static T {
    cell.get_or_init(|| build().unwrap_or_else(|e| panic!("building {what}: {e:#}")))
}
