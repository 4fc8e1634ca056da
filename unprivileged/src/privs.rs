//! Giving up privilege at start: no_new_privs, then every capability in
//! every set. The agent needs none; holding none means a compromised agent
//! can do no more than the `patchman` user could.

use std::fmt;

use caps::CapSet;

#[derive(Debug)]
pub enum PrivError {
    Root,
    NoNewPrivs(nix::Error),
    Caps(String),
    StillHeld(CapSet, String),
}

impl fmt::Display for PrivError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivError::Root => write!(
                f,
                "patchman-agent must not run as root; run it as the patchman user (the root work is done by patchman-helper)"
            ),
            PrivError::NoNewPrivs(e) => write!(f, "cannot set no_new_privs: {e}"),
            PrivError::Caps(e) => write!(f, "cannot drop capabilities: {e}"),
            PrivError::StillHeld(set, caps) => {
                write!(f, "capabilities still held in the {set:?} set after dropping: {caps}")
            }
        }
    }
}

impl std::error::Error for PrivError {}

/// Refuses root (real or effective uid 0).
pub fn refuse_root() -> Result<(), PrivError> {
    if nix::unistd::getuid().is_root() || nix::unistd::geteuid().is_root() {
        return Err(PrivError::Root);
    }
    Ok(())
}

/// Sets no_new_privs and drops every capability: bounding (where we may),
/// ambient, inheritable, effective, permitted. Verifies the result.
pub fn drop_all() -> Result<(), PrivError> {
    nix::sys::prctl::set_no_new_privs().map_err(PrivError::NoNewPrivs)?;
    let caps_err = |e: caps::errors::CapsError| PrivError::Caps(e.to_string());
    // The bounding set can only shrink with CAP_SETPCAP in effect; without
    // it (the normal case for a non-root user) no_new_privs already stops
    // any exec from gaining what the bounding set would allow, and systemd's
    // empty CapabilityBoundingSet= clears it before we start.
    if caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).map_err(caps_err)? {
        for cap in caps::read(None, CapSet::Bounding).map_err(caps_err)? {
            caps::drop(None, CapSet::Bounding, cap).map_err(caps_err)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err)?;
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).map_err(caps_err)?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        let left = caps::read(None, set).map_err(caps_err)?;
        if !left.is_empty() {
            let mut names: Vec<String> = left.iter().map(|c| c.to_string()).collect();
            names.sort();
            return Err(PrivError::StillHeld(set, names.join(",")));
        }
    }
    Ok(())
}
