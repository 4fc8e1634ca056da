//! Command-line arguments of `patchman-agent`.

use std::fmt;
use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: patchman-agent [--socket PATH] [--config PATH] [--state-dir PATH]
                      [--server-group PATH] COMMAND

The unprivileged half of the patchman updater. It decides when to update
patchman-client and asks patchman-helper (root) to do it.

Commands:
  run              the daemon: check and update on a schedule ([updates]
                   interval plus a random delay up to jitter), only while
                   automatic updates are allowed: [updates] automatic = yes,
                   the server group's file (--server-group) allows it, and
                   the installed client is at least 1.7.0-1.
                   SIGHUP re-reads the configuration; SIGTERM stops it.
  update           update now, showing each step (exit 0 updated or up to
                   date, 1 failed); not gated: a person is watching
  check            is an update available? (exit 0 no, 100 yes, 1 error)
  status [--json]  installed versions, family, helper and lock state,
                   automatic updates on/off and why, last check, its result
                   and error, next check; probation, rollback, quarantine
  confirm          end a pending probation: this (new) agent starts, reads
                   its configuration and state, and the helper's Status
                   shows the versions on probation installed (`update` and
                   the daemon run it after an update; exit 0 confirmed or
                   nothing pending, 1 not confirmed)

Options:
  --socket PATH     the helper's socket (default /run/patchman/helper.sock)
  --config PATH     configuration (default /etc/patchman/patchman.ini)
  --state-dir PATH  state directory (default /var/lib/patchman)
  --server-group PATH
                    the server group's settings, written by root
                    (default /etc/patchman/server-group.json)
  -h, --help        this text
  -V, --version     the version

Configuration (/etc/patchman/patchman.ini):
  [updates]
  automatic = yes   # unattended updates by `run` (default yes)
  interval = 6h     # between checks (default 6h; 30s, 15m, 6h, 1d)
  jitter = 1h       # random delay added to each (default 1h)
  probation = 10m   # the new version must confirm within it, or the
                    # helper rolls it back (default 10m; 0: off)

Examples:
  sudo -u patchman patchman-agent status
  sudo -u patchman patchman-agent status --json | jq .automatic
  sudo -u patchman patchman-agent check; echo $?
  sudo -u patchman patchman-agent update
  sudo -u patchman patchman-agent --state-dir /var/lib/patchman run
  systemctl reload patchman-agent     # SIGHUP: re-read patchman.ini
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run,
    Update,
    Check,
    Status { json: bool },
    Confirm,
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub socket: PathBuf,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub server_group: PathBuf,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n\n{USAGE}", self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, UsageError> {
    let mut socket = PathBuf::from(crate::DEFAULT_SOCKET);
    let mut config = PathBuf::from(crate::DEFAULT_CONFIG);
    let mut state_dir = PathBuf::from(crate::DEFAULT_STATE_DIR);
    let mut server_group = PathBuf::from(crate::policy::DEFAULT_SERVER_GROUP);
    let mut command: Option<Command> = None;
    let mut json = false;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<PathBuf, UsageError> {
            inline
                .clone()
                .or_else(|| it.next())
                .map(PathBuf::from)
                .ok_or_else(|| UsageError(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--socket" => socket = value("--socket")?,
            "--config" => config = value("--config")?,
            "--state-dir" => state_dir = value("--state-dir")?,
            "--server-group" => server_group = value("--server-group")?,
            "--json" => json = true,
            "-h" | "--help" | "help" => {
                return Ok(Args {
                    socket,
                    config,
                    state_dir,
                    server_group,
                    command: Command::Help,
                })
            }
            "-V" | "--version" => {
                return Ok(Args {
                    socket,
                    config,
                    state_dir,
                    server_group,
                    command: Command::Version,
                })
            }
            "run" | "update" | "check" | "status" | "confirm" if command.is_none() => {
                command = Some(match flag.as_str() {
                    "run" => Command::Run,
                    "update" => Command::Update,
                    "check" => Command::Check,
                    "confirm" => Command::Confirm,
                    _ => Command::Status { json: false },
                })
            }
            other => return Err(UsageError(format!("unexpected argument {other:?}"))),
        }
    }
    let command = match command {
        Some(Command::Status { .. }) => Command::Status { json },
        Some(_) if json => return Err(UsageError("--json goes with status".into())),
        Some(c) => c,
        None => return Err(UsageError("no command given".into())),
    };
    Ok(Args {
        socket,
        config,
        state_dir,
        server_group,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, UsageError> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn interface_of_design_md() {
        let a = p("--socket /tmp/s --config /tmp/c --state-dir /tmp/d status --json").unwrap();
        assert_eq!(a.socket, PathBuf::from("/tmp/s"));
        assert_eq!(a.config, PathBuf::from("/tmp/c"));
        assert_eq!(a.state_dir, PathBuf::from("/tmp/d"));
        assert_eq!(a.command, Command::Status { json: true });
        assert_eq!(
            a.server_group,
            PathBuf::from("/etc/patchman/server-group.json")
        );
        let a = p("--server-group /srv/g.json run").unwrap();
        assert_eq!(a.server_group, PathBuf::from("/srv/g.json"));
        assert_eq!(a.command, Command::Run);
        assert_eq!(p("update --socket=/x").unwrap().socket, PathBuf::from("/x"));
        for (line, command) in [
            ("check", Command::Check),
            ("run", Command::Run),
            ("confirm", Command::Confirm),
        ] {
            assert_eq!(p(line).unwrap().command, command, "{line:?}");
        }
        assert_eq!(
            p("update").unwrap().socket,
            PathBuf::from(crate::DEFAULT_SOCKET)
        );
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for bad in [
            "",
            "update check",
            "check --json",
            "status --socket",
            "frobnicate",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
