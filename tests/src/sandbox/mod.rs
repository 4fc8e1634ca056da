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
