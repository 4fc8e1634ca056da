//! The gates of unattended updates (`run` only; a person's `update` is not
//! gated): the local switch (`[updates] automatic`), the server group's
//! switch (`/etc/patchman/server-group.json`, delivered by the portal), and
//! the vendor's version gate (the installed client is at least 1.7.0-1,
//! ordered as the host's package manager orders versions).

use std::cmp::Ordering;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use patchman_shared::{Evr, Family, Installed};

/// The server group's file (`--server-group` overrides it). Root writes
/// it (the portal integration), in a directory only root can write, by
/// renaming a complete temporary file over it; the agent only reads it.
/// It used to live in the agent's own state directory, where a planted
/// symlink turns root's plain `open(O_CREAT|O_TRUNC)` into overwriting
/// any file: that path is no longer read.
pub const DEFAULT_SERVER_GROUP: &str = "/etc/patchman/server-group.json";
/// The vendor's gate: below this, unattended updates need a manual upgrade
/// first.
pub const MINIMUM_CLIENT: &str = "1.7.0-1";
/// The server-group file is a few bytes; more is not read.
const MAX_SERVER_GROUP: u64 = 64 * 1024;

/// The portal's settings for this host's server group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerGroup {
    /// `automatic_updates` (required).
    pub automatic_updates: bool,
    /// `rollout_window` (optional): a duration string (`"24h"`) or a whole
    /// number of seconds. Absent or zero: no phased rollout.
    pub rollout_window: Option<Duration>,
}

/// What `server-group.json` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSetting {
    /// No file: the portal has not restricted this host; allowed.
    Absent,
    Valid(ServerGroup),
    /// Unreadable or malformed: not allowed (fail closed), with the reason.
    Invalid(String),
}

impl GroupSetting {
    pub fn rollout_window(&self) -> Option<Duration> {
        match self {
            GroupSetting::Valid(g) => g.rollout_window.filter(|w| !w.is_zero()),
            _ => None,
        }
    }
}

/// Parses the server group's JSON: `{"automatic_updates": bool,
/// "rollout_window": "24h" | 86400}`; other keys are ignored (the portal
/// may add some).
pub fn parse_server_group(text: &str) -> Result<ServerGroup, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let automatic_updates = match obj.get("automatic_updates") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "\"automatic_updates\" is {other}, not true or false"
            ))
        }
        None => return Err("\"automatic_updates\" is missing".into()),
    };
    let rollout_window = match obj.get("rollout_window") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            patchman_shared::parse_duration(s).map_err(|e| format!("\"rollout_window\": {e}"))?,
        ),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(secs) if secs <= 10 * 365 * 86400 => Some(Duration::from_secs(secs)),
            _ => return Err(format!("\"rollout_window\" {n} is not a number of seconds")),
        },
        Some(other) => return Err(format!("\"rollout_window\" is {other}, not a duration")),
    };
    Ok(ServerGroup {
        automatic_updates,
        rollout_window,
    })
}

/// Reads the server group's file at `path`. Never fails: an unreadable,
/// malformed or unsafe file (a link, not root's, writable by others: then
/// it is not the portal's word) is [`GroupSetting::Invalid`], which keeps
/// automatic updates off until it is fixed.
pub fn read_server_group(path: &Path) -> GroupSetting {
    let text = match patchman_shared::config_file::read_root_file(path, MAX_SERVER_GROUP) {
        Ok(Some(text)) => text,
        Ok(None) => return GroupSetting::Absent,
        Err(e) => return GroupSetting::Invalid(e.to_string()),
    };
    match parse_server_group(&text) {
        Ok(g) => GroupSetting::Valid(g),
        Err(e) => GroupSetting::Invalid(format!("{}: {e}", path.display())),
    }
}

/// The verdict of the gates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Unattended updates may run.
    Allowed,
    /// `[updates] automatic = no`.
    DisabledLocally,
    /// The server group says `"automatic_updates": false`.
    DisabledByServerGroup,
    /// `server-group.json` could not be used; not allowed until fixed.
    ServerGroupInvalid(String),
    /// No client installed: nothing to update.
    ClientNotInstalled,
    /// The installed client is below [`MINIMUM_CLIENT`].
    ClientTooOld { installed: String },
    /// This family's version ordering is not available in this build, so
    /// the version gate cannot be evaluated; not allowed (never guessed).
    CannotEvaluate { family: Family },
}

impl Gate {
    pub fn allows(&self) -> bool {
        matches!(self, Gate::Allowed)
    }

    /// A stable code for `status --json` and the logs.
    pub fn code(&self) -> &'static str {
        match self {
            Gate::Allowed => "enabled",
            Gate::DisabledLocally => "disabled_locally",
            Gate::DisabledByServerGroup => "disabled_by_server_group",
            Gate::ServerGroupInvalid(_) => "server_group_file_invalid",
            Gate::ClientNotInstalled => "client_not_installed",
            Gate::ClientTooOld { .. } => "client_too_old",
            Gate::CannotEvaluate { .. } => "cannot_evaluate_version",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gate::Allowed => write!(f, "automatic updates are on"),
            Gate::DisabledLocally => write!(
                f,
                "automatic updates are off on this host ([updates] automatic = no in patchman.ini)"
            ),
            Gate::DisabledByServerGroup => write!(
                f,
                "automatic updates are off for this host's server group (server-group.json)"
            ),
            Gate::ServerGroupInvalid(why) => write!(
                f,
                "automatic updates are off: the server group's settings cannot be used ({why})"
            ),
            Gate::ClientNotInstalled => write!(f, "patchman-client is not installed"),
            Gate::ClientTooOld { installed } => write!(
                f,
                "patchman-client {installed} is older than {MINIMUM_CLIENT}: a manual upgrade is needed before automatic updates (run `patchman-agent update` as the patchman user, or upgrade the package as root)"
            ),
            Gate::CannotEvaluate { family } => write!(
                f,
                "automatic updates are off: this build cannot compare {family} versions, so the {MINIMUM_CLIENT} gate cannot be evaluated; run `patchman-agent update` by hand"
            ),
        }
    }
}

/// The version ordering of `family`'s package manager: dpkg's for apt,
/// rpm's (`rpmvercmp`) for dnf and yum. `None` would mean a family whose
/// ordering this build lacks; the gate then answers
/// [`Gate::CannotEvaluate`] instead of guessing with another tool's rules
/// (`~`, `^`, letters against digits order differently).
pub fn version_order(family: Family) -> Option<fn(&Evr, &Evr) -> Ordering> {
    match family {
        Family::Apt => Some(patchman_shared::version::deb::compare),
        Family::Dnf | Family::Yum => Some(patchman_shared::version::rpm::compare),
    }
}

/// The local and server-group switches, which need no helper.
pub fn switches(local_automatic: bool, group: &GroupSetting) -> Gate {
    if !local_automatic {
        return Gate::DisabledLocally;
    }
    match group {
        GroupSetting::Absent => Gate::Allowed,
        GroupSetting::Valid(g) if g.automatic_updates => Gate::Allowed,
        GroupSetting::Valid(_) => Gate::DisabledByServerGroup,
        GroupSetting::Invalid(why) => Gate::ServerGroupInvalid(why.clone()),
    }
}

/// The vendor's version gate on the installed client.
pub fn version_gate(family: Family, client: Option<&Installed>) -> Gate {
    let Some(client) = client else {
        return Gate::ClientNotInstalled;
    };
    let Some(compare) = version_order(family) else {
        return Gate::CannotEvaluate { family };
    };
    let minimum = match Evr::parse(MINIMUM_CLIENT) {
        Ok(m) => m,
        // A constant that parses in the tests below; never reached.
        Err(_) => return Gate::CannotEvaluate { family },
    };
    if compare(&client.evr, &minimum) == Ordering::Less {
        Gate::ClientTooOld {
            installed: client.evr.to_string(),
        }
    } else {
        Gate::Allowed
    }
}

/// All gates, in the order they are checked.
pub fn evaluate(
    local_automatic: bool,
    group: &GroupSetting,
    family: Family,
    client: Option<&Installed>,
) -> Gate {
    match switches(local_automatic, group) {
        Gate::Allowed => version_gate(family, client),
        closed => closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(v: &str) -> Installed {
        Installed {
            evr: Evr::parse(v).unwrap(),
            complete: true,
        }
    }

    #[test]
    fn server_group_file_forms() {
        assert_eq!(
            parse_server_group(r#"{"automatic_updates": true}"#),
            Ok(ServerGroup {
                automatic_updates: true,
                rollout_window: None
            })
        );
        assert_eq!(
            parse_server_group(r#"{"automatic_updates": false, "rollout_window": "24h", "x": 1}"#),
            Ok(ServerGroup {
                automatic_updates: false,
                rollout_window: Some(Duration::from_secs(86400))
            })
        );
        assert_eq!(
            parse_server_group(r#"{"automatic_updates": true, "rollout_window": 600}"#)
                .unwrap()
                .rollout_window,
            Some(Duration::from_secs(600))
        );
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{}"#,
            r#"{"automatic_updates": "yes"}"#,
            r#"{"automatic_updates": 1}"#,
            r#"{"automatic_updates": true, "rollout_window": "soon"}"#,
            r#"{"automatic_updates": true, "rollout_window": -5}"#,
            r#"{"automatic_updates": true, "rollout_window": 1.5}"#,
            r#"{"automatic_updates": true, "rollout_window": [1]}"#,
        ] {
            assert!(parse_server_group(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reading_the_file_fails_closed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server-group.json");
        assert_eq!(read_server_group(&file), GroupSetting::Absent);
        std::fs::write(&file, "{\"automatic_updates\": tru").unwrap();
        assert!(matches!(
            read_server_group(&file),
            GroupSetting::Invalid(why) if why.contains("not valid JSON")
        ));
        std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(read_server_group(&file), GroupSetting::Invalid(_)));
        std::fs::write(&file, "{\"automatic_updates\": false}").unwrap();
        assert_eq!(
            switches(true, &read_server_group(&file)),
            Gate::DisabledByServerGroup
        );
        // Allowed, but writable by others: not the portal's word.
        std::fs::write(&file, "{\"automatic_updates\": true}").unwrap();
        assert!(read_server_group(&file).rollout_window().is_none());
        assert!(matches!(read_server_group(&file), GroupSetting::Valid(_)));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            read_server_group(&file),
            GroupSetting::Invalid(why) if why.contains("group- or world-writable")
        ));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            read_server_group(&link),
            GroupSetting::Invalid(why) if why.contains("symbolic link")
        ));
    }

    #[test]
    fn both_switches_must_allow() {
        let on = GroupSetting::Valid(ServerGroup {
            automatic_updates: true,
            rollout_window: None,
        });
        let off = GroupSetting::Valid(ServerGroup {
            automatic_updates: false,
            rollout_window: None,
        });
        let bad = GroupSetting::Invalid("x".into());
        assert_eq!(switches(true, &GroupSetting::Absent), Gate::Allowed);
        assert_eq!(switches(true, &on), Gate::Allowed);
        assert_eq!(switches(true, &off), Gate::DisabledByServerGroup);
        assert_eq!(switches(true, &bad), Gate::ServerGroupInvalid("x".into()));
        for g in [&GroupSetting::Absent, &on, &off, &bad] {
            assert_eq!(switches(false, g), Gate::DisabledLocally);
        }
    }

    #[test]
    fn the_version_gate_uses_dpkg_ordering_on_apt() {
        let gate = |v: &str| version_gate(Family::Apt, Some(&installed(v)));
        assert_eq!(gate("1.7.0-1"), Gate::Allowed);
        assert_eq!(gate("1.7.1-1"), Gate::Allowed);
        assert_eq!(gate("1.10.0-1"), Gate::Allowed); // not a string comparison
        assert_eq!(gate("1:1.2.7-1"), Gate::Allowed); // the epoch wins
        assert_eq!(gate("1.7.0-1.1"), Gate::Allowed);
        assert_eq!(
            gate("1.6.9-1"),
            Gate::ClientTooOld {
                installed: "1.6.9-1".into()
            }
        );
        assert!(!gate("1.7.0-0").allows());
        assert!(!gate("1.7.0~rc1-1").allows()); // ~ sorts before the release
        assert_eq!(version_gate(Family::Apt, None), Gate::ClientNotInstalled);
    }

    #[test]
    fn rpm_families_use_rpm_ordering() {
        for family in [Family::Dnf, Family::Yum] {
            let gate = |v: &str| version_gate(family, Some(&installed(v)));
            assert_eq!(gate("1.7.0-1"), Gate::Allowed);
            assert_eq!(gate("1.7.1-1.el8"), Gate::Allowed);
            assert_eq!(gate("1.10.0-1"), Gate::Allowed);
            assert_eq!(gate("1:1.2.7-1"), Gate::Allowed);
            assert!(!gate("1.6.9-1").allows());
            assert!(!gate("1.7.0~rc1-1").allows());
            assert_eq!(gate("1.6.9-1").code(), "client_too_old");
        }
        let g = Gate::CannotEvaluate {
            family: Family::Dnf,
        };
        assert!(!g.allows());
        assert!(g.to_string().contains("cannot compare"), "{g}");
    }

    #[test]
    fn every_gate_has_a_code_and_a_reason() {
        let on = GroupSetting::Absent;
        assert!(evaluate(true, &on, Family::Apt, Some(&installed("1.7.0-1"))).allows());
        let g = evaluate(false, &on, Family::Apt, Some(&installed("1.6.9-1")));
        assert_eq!(g.code(), "disabled_locally");
        let g = evaluate(true, &on, Family::Apt, Some(&installed("1.6.9-1")));
        assert_eq!(g.code(), "client_too_old");
        assert!(g.to_string().contains("manual upgrade"), "{g}");
        assert!(Evr::parse(MINIMUM_CLIENT).is_ok());
    }
}
