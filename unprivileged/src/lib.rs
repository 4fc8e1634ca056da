//! The unprivileged half of the patchman updater: it decides *when* to
//! update and asks the root helper to do it. It never runs a package
//! manager and holds no capability.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod policy;
pub mod privs;
pub mod restart;
pub mod rollout;
pub mod schedule;
pub mod state;
pub mod time;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const DEFAULT_SOCKET: &str = "/run/patchman/helper.sock";
pub const DEFAULT_CONFIG: &str = "/etc/patchman/patchman.ini";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/patchman";
