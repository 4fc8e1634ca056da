//! One end-to-end scenario: the host's package state before, an
//! [`Updater`] sandbox with the helper running, and the sandbox's package
//! database before, so a test can assert what changed — in the sandbox,
//! nothing but the intended packages; on the host, nothing at all.

use std::collections::BTreeSet;
use std::process::Output;

use crate::sandbox::apt_repo::{AptRepo, SourceFormat};
use crate::sandbox::el::{ElRelease, ElSandbox};
use crate::sandbox::RpmRepo;
use crate::updater::{changed_packages, db_changes, Binaries, Updater};
use crate::{host_package_state, AptFixture, ElFixture, Sandbox};

/// Which package database the sandbox's system has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Dpkg,
    Rpm,
}

pub struct Scenario {
    host_before: String,
    db_before: String,
    db: Db,
    pub u: Updater,
}

impl Scenario {
    /// Records the states, lets `prepare` change the sandbox (before the
    /// database snapshot), then starts the helper.
    pub fn start(
        db: Db,
        mut u: Updater,
        host_before: String,
        prepare: impl FnOnce(&Updater),
    ) -> Scenario {
        prepare(&u);
        let db_before = snapshot(db, &u);
        u.start_helper().expect("starting the helper");
        Scenario {
            host_before,
            db_before,
            db,
            u,
        }
    }

    /// `patchman-agent --socket … <args>` as `patchman`.
    pub fn agent(&self, args: &[&str]) -> Output {
        self.u.agent(args).expect("running the agent")
    }

    /// Runs the agent with `args` and asserts its exit code, showing its
    /// output and the helper's log when it differs.
    pub fn agent_exits(&self, args: &[&str], code: i32) -> Output {
        let out = self.agent(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "patchman-agent {}: {}\n--- helper log\n{}",
            args.join(" "),
            crate::cmd::output_text(&out),
            self.u.helper_log()
        );
        out
    }

    /// The installed version of `package` (`install ok installed` for dpkg).
    pub fn version(&self, package: &str) -> Option<String> {
        match self.db {
            Db::Dpkg => self.u.installed(package).expect("dpkg-query"),
            Db::Rpm => self.u.sandbox.rpm_query(package).expect("rpm -q"),
        }
    }

    /// Package names whose line in the database changed since the start.
    pub fn changed(&self) -> BTreeSet<String> {
        changed_packages(&db_changes(&self.db_before, &snapshot(self.db, &self.u)))
    }

    pub fn assert_nothing_changed(&self) {
        assert!(
            self.changed().is_empty(),
            "the package database changed: {:?}",
            self.changed()
        );
    }

    pub fn assert_only_changed(&self, packages: &[&str]) {
        let want: BTreeSet<String> = packages.iter().map(|s| s.to_string()).collect();
        assert_eq!(self.changed(), want);
    }

    /// Drops the sandbox and checks that the host never changed.
    pub fn finish(self) {
        let host_before = self.host_before.clone();
        drop(self);
        assert_eq!(
            host_package_state(),
            host_before,
            "the host's package state changed"
        );
    }
}

fn snapshot(db: Db, u: &Updater) -> String {
    match db {
        Db::Dpkg => u.sandbox.package_db_snapshot(),
        Db::Rpm => u.sandbox.rpm_db_snapshot(),
    }
    .expect("package database snapshot")
}

/// One run of the agent in a [`Row`]: its arguments, the exit code it must
/// have, and text its stdout and stderr must contain.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub args: &'static [&'static str],
    pub exit: i32,
    pub stdout: &'static [&'static str],
    pub stderr: &'static [&'static str],
    /// The helper must have exited before this step (after a changing
    /// update): it is started again, as its socket would start it.
    pub after_helper_exit: bool,
}

impl Step {
    /// `patchman-agent <args>` exiting `exit`.
    pub const fn new(args: &'static [&'static str], exit: i32) -> Step {
        Step {
            args,
            exit,
            stdout: &[],
            stderr: &[],
            after_helper_exit: false,
        }
    }

    /// … run once the helper has exited (and been started again).
    pub const fn after_helper_exit(self) -> Step {
        Step {
            after_helper_exit: true,
            ..self
        }
    }

    /// … whose stdout contains each of `texts`.
    pub const fn stdout(self, texts: &'static [&'static str]) -> Step {
        Step {
            stdout: texts,
            ..self
        }
    }

    /// … whose stderr contains each of `texts`.
    pub const fn stderr(self, texts: &'static [&'static str]) -> Step {
        Step {
            stderr: texts,
            ..self
        }
    }
}

/// A scenario as data: the repository (a name the family's fixture
/// resolves), the packages installed at the start, the agent's runs, and
/// the state expected at the end. [`run_table`] runs a table of them.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub name: &'static str,
    /// The fixture repository serving as the `patchman` source.
    pub repo: &'static str,
    /// `(package, version)` installed before the helper starts.
    pub installed: &'static [(&'static str, &'static str)],
    pub steps: &'static [Step],
    /// `(package, installed version or None)` at the end.
    pub expect: &'static [(&'static str, Option<&'static str>)],
    /// The packages whose database entry changed (none: nothing changed).
    pub changed: &'static [&'static str],
    /// Whether the helper must have exited (after a changing update) or
    /// still run at the end; `None`: not checked.
    pub helper_exits: Option<bool>,
    /// Text the helper's log must contain.
    pub helper_log: &'static [&'static str],
}

impl Row {
    /// Runs the row's steps in `s` and asserts its end state, then that the
    /// host's package state did not change ([`Scenario::finish`]).
    pub fn run(&self, mut s: Scenario) {
        let name = self.name;
        for step in self.steps {
            if step.after_helper_exit {
                s.u.restart_helper()
                    .unwrap_or_else(|e| panic!("{name}: restarting the helper: {e:#}"));
            }
            let out = s.agent_exits(step.args, step.exit);
            for (stream, texts) in [(&out.stdout, step.stdout), (&out.stderr, step.stderr)] {
                let text = String::from_utf8_lossy(stream);
                for want in texts {
                    assert!(
                        text.contains(want),
                        "{name}: `{}` does not say {want:?}:\n{}",
                        step.args.join(" "),
                        crate::cmd::output_text(&out)
                    );
                }
            }
        }
        for (package, version) in self.expect {
            assert_eq!(
                s.version(package).as_deref(),
                *version,
                "{name}: the installed version of {package}"
            );
        }
        let want: BTreeSet<String> = self.changed.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            s.changed(),
            want,
            "{name}: what changed in the package database"
        );
        if let Some(exits) = self.helper_exits {
            let wait = if exits { 5_000 } else { 300 };
            let exited =
                s.u.helper_exited_within(std::time::Duration::from_millis(wait));
            assert_eq!(exited, exits, "{name}: whether the helper exited");
        }
        let log = s.u.helper_log();
        for want in self.helper_log {
            assert!(
                log.contains(want),
                "{name}: the helper's log lacks {want:?}:\n{log}"
            );
        }
        s.finish();
    }
}

/// Runs every row of `rows` with a scenario from `start`, each to its end
/// even when an earlier one failed; fails with the names of those that
/// failed (each one's own message is printed as it fails).
pub fn run_table(rows: &[Row], start: impl Fn(&Row) -> Scenario) {
    let mut failed = Vec::new();
    for row in rows {
        let t0 = std::time::Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| row.run(start(row))));
        eprintln!(
            "row {}: {} in {:.1} s",
            row.name,
            if result.is_ok() { "ok" } else { "FAILED" },
            t0.elapsed().as_secs_f64()
        );
        if result.is_err() {
            failed.push(row.name);
        }
    }
    assert!(failed.is_empty(), "rows failed: {}", failed.join(", "));
}

/// The family (and, for EL, the release it pretends to be) a table runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// dpkg and apt, the apt fixture.
    Apt,
    /// dnf or yum and rpm on an EL system made by `ElSandbox::make_el`,
    /// the EL fixture.
    El(ElRelease),
}

/// Starts `row`'s scenario: the host's state recorded, then the sandbox
/// and the binaries from `sandbox` (either mode), user `patchman`, the
/// family's fixture repository `row.repo` as the `patchman` source and its
/// packages `row.installed` installed, `prepare`, the database snapshot,
/// the helper.
///
/// # Panics
/// When any of it fails, with the reason.
pub fn start_row(
    family: Family,
    row: &Row,
    sandbox: impl FnOnce() -> anyhow::Result<(Sandbox, Binaries)>,
    prepare: impl FnOnce(&Updater),
) -> Scenario {
    let host_before = host_package_state();
    let (sandbox, bins) = sandbox().expect("the scenario's sandbox");
    let (db, u) = match family {
        Family::Apt => {
            let fx = crate::apt_fixture();
            let debs: Vec<_> = row.installed.iter().map(|(p, v)| fx.deb(p, v)).collect();
            let repo = apt_repo(fx, row.repo);
            let u = Updater::apt_in(
                sandbox,
                bins,
                &fx.repos_root,
                repo,
                SourceFormat::List,
                &debs,
            );
            (Db::Dpkg, u)
        }
        Family::El(release) => {
            let fx = crate::el_fixture();
            let rpms: Vec<_> = row.installed.iter().map(|(p, v)| fx.rpm(p, v)).collect();
            let u = Updater::el_in(sandbox, bins, release, rpm_repo(fx, row.repo), &rpms);
            (Db::Rpm, u)
        }
    };
    let u = u.unwrap_or_else(|e| panic!("{}: setting up {family:?}: {e:#}", row.name));
    Scenario::start(db, u, host_before, prepare)
}

/// The apt fixture's repository named `name` (its field name, as a [`Row`]
/// names it).
///
/// # Panics
/// On a name the fixture does not have (a typo in a table).
pub fn apt_repo<'a>(fx: &'a AptFixture, name: &str) -> &'a AptRepo {
    match name {
        "patchman" => &fx.patchman,
        "newdep" => &fx.newdep,
        "newdep_lib" => &fx.newdep_lib,
        "extras" => &fx.extras,
        "other" => &fx.other,
        "unsigned" => &fx.unsigned,
        "epoch" => &fx.epoch,
        "flat" => &fx.flat,
        _ => panic!("the apt fixture has no repository {name:?}"),
    }
}

/// The EL fixture's repository named `name` (as [`apt_repo`]; the apt
/// fixture's `unsigned` is `unsigned_repo` here, `foreign` `foreign_repo`).
///
/// # Panics
/// On a name the fixture does not have.
pub fn rpm_repo<'a>(fx: &'a ElFixture, name: &str) -> &'a RpmRepo {
    match name {
        "patchman" => &fx.patchman,
        "newdep" => &fx.newdep,
        "newdep_lib" => &fx.newdep_lib,
        "other" => &fx.other,
        "unsigned" => &fx.unsigned_repo,
        "epoch" => &fx.epoch,
        "foreign" => &fx.foreign_repo,
        _ => panic!("the EL fixture has no repository {name:?}"),
    }
}
