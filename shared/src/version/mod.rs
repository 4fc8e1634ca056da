//! Version ordering, as the package managers themselves order versions:
//! used by the helper for "never downgrade" and by the agent for its
//! version gate. Each algorithm is tested against the real tool.

pub mod deb;
pub mod rpm;
