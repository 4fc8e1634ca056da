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

/// The agent's own privilege state, as the kernel reports it in
/// `/proc/self/status`: shown by `status --json`, so an operator (and a
/// test) can see that nothing is held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivState {
    pub no_new_privs: bool,
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub ambient: u64,
    pub bounding: u64,
}

impl PrivState {
    /// Parses the `Cap*:` and `NoNewPrivs:` lines of `/proc/<pid>/status`.
    pub fn parse(status: &str) -> PrivState {
        let mut s = PrivState::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let hex = || u64::from_str_radix(value, 16).unwrap_or(u64::MAX);
            match key {
                "NoNewPrivs" => s.no_new_privs = value == "1",
                "CapInh" => s.inheritable = hex(),
                "CapPrm" => s.permitted = hex(),
                "CapEff" => s.effective = hex(),
                "CapAmb" => s.ambient = hex(),
                "CapBnd" => s.bounding = hex(),
                _ => {}
            }
        }
        s
    }

    pub fn current() -> PrivState {
        PrivState::parse(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
    }

    /// No capability in any set a process can use or pass on.
    pub fn holds_none(&self) -> bool {
        self.inheritable == 0 && self.permitted == 0 && self.effective == 0 && self.ambient == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000400\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        let s = PrivState::parse(text);
        assert!(s.no_new_privs);
        assert_eq!(s.permitted, 0x400);
        assert_eq!(s.bounding, 0x1ff_ffff_ffff);
        assert!(!s.holds_none());
        assert!(PrivState::parse("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapAmb:\t0\n").holds_none());
    }
}
