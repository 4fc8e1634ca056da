//! The dnf (EL 8+) and yum (EL 6/7) families. `Check` and `Update` come
//! with their own issue; `Status` is here.

use std::time::Duration;

use patchman_shared::{Evr, Failure, Installed, Package, StatusReport};

use crate::exec::{Cmd, Tool};
use crate::lock;
use crate::Helper;

const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// `rpm -q` output for our two packages → what is installed.
///
/// With `--queryformat '%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\n'`
/// rpm prints one line per installed package, and `package X is not
/// installed` for each missing one (exit 1 then).
pub fn parse_rpm_query(stdout: &str) -> Result<Vec<(Package, Evr)>, String> {
    let mut found = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("package ") && line.ends_with(" is not installed") {
            continue;
        }
        let Some((name, evr)) = line.split_once('\t') else {
            return Err(format!("unexpected line {line:?}"));
        };
        let Some(package) = Package::from_name(name) else {
            return Err(format!("unexpected package {name:?}"));
        };
        let evr = Evr::parse(evr).map_err(|e| format!("{name}: {e}"))?;
        found.push((package, evr));
    }
    Ok(found)
}

pub fn status(h: &Helper) -> Result<StatusReport, Failure> {
    let cmd = Cmd::new(Tool::Rpm, QUERY_TIMEOUT)
        .args([
            "-q",
            "--queryformat",
            "%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\n",
        ])
        .args(Package::ALL.map(|p| p.name()));
    let out = h.programs.run(&cmd).map_err(|e| Failure::Internal {
        detail: e.to_string(),
    })?;
    // Exit 1 only means "some package is not installed".
    if !matches!(out.code(), Some(0 | 1)) || out.timed_out {
        return Err(Failure::CommandFailed {
            step: patchman_shared::Step::Confirm,
            exit_code: out.code(),
            excerpt: out.excerpt(400),
        });
    }
    let found = parse_rpm_query(&out.stdout).map_err(|detail| Failure::UnexpectedOutput {
        step: patchman_shared::Step::Confirm,
        detail,
    })?;
    let get = |p| {
        found
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, evr)| Installed {
                evr: evr.clone(),
                complete: true,
            })
    };
    Ok(StatusReport {
        family: h.family,
        client: get(Package::Client),
        realtime: get(Package::Realtime),
        lock: lock::probe_all(&[lock::RPM_LOCK]),
        helper_version: crate::VERSION.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_installed_and_missing() {
        let out = "patchman-client\t0:1.7.0-1\npackage patchman-client-realtime is not installed\n";
        let got = parse_rpm_query(out).unwrap();
        assert_eq!(got, vec![(Package::Client, Evr::parse("1.7.0-1").unwrap())]);
        let out = "patchman-client\t1:1.2.7-1.el8\npatchman-client-realtime\t1:1.2.7-1.el8\n";
        assert_eq!(parse_rpm_query(out).unwrap().len(), 2);
    }

    #[test]
    fn refuses_what_it_did_not_ask_for() {
        assert!(parse_rpm_query("bash\t0:5.1-1\n").is_err());
        assert!(parse_rpm_query("patchman-client 0:1\n").is_err());
        assert!(parse_rpm_query("patchman-client\t0:1 -o x\n").is_err());
    }
}
