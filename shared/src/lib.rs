//! Protocol between `patchman-agent` (unprivileged) and `patchman-helper`
//! (root): the typed requests and replies, and the length-prefixed frame
//! codec that carries them, and the duration syntax of the configuration
//! file both halves read. Nothing else lives here.
#![forbid(unsafe_code)]

pub mod duration;
pub mod frame;
pub mod protocol;

pub use duration::{parse_duration, DurationError};
pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use protocol::*;
