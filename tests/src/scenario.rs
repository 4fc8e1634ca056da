//! One end-to-end scenario: the host's package state before, an
//! [`Updater`] sandbox with the helper running, and the sandbox's package
//! database before, so a test can assert what changed — in the sandbox,
//! nothing but the intended packages; on the host, nothing at all.

use std::collections::BTreeSet;
use std::process::Output;

use crate::host_package_state;
use crate::sandbox::el::ElSandbox;
use crate::updater::{changed_packages, db_changes, Updater};

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
