//! The root half of the patchman updater. It decides nothing: it answers a
//! few typed requests from one authenticated peer and runs the fixed command
//! lines of the vendor's update procedure on two allow-listed packages.
#![forbid(unsafe_code)]

pub mod os_release;
pub mod parse;
