//! Protocol between `patchman-agent` (unprivileged) and `patchman-helper`
//! (root): the typed requests and replies, and the length-prefixed frame
//! codec that carries them. Nothing else lives here.
#![forbid(unsafe_code)]

pub mod frame;
pub mod protocol;

pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use protocol::*;
