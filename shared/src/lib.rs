//! Protocol between `patchman-agent` (unprivileged) and `patchman-helper`
//! (root): the typed requests and replies, and the length-prefixed frame
//! codec that carries them; and what both halves must agree on beyond the
//! wire: the duration syntax of the configuration file they both read, and
//! the package managers' version ordering. Nothing else lives here.
#![forbid(unsafe_code)]

pub mod config_file;
pub mod frame;
pub mod protocol;
pub mod sanitize;
pub mod version;

pub use config_file::{load_config, parse_duration, read_config, DurationError};
pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use protocol::*;
pub use sanitize::escape_controls;
