//! One end-to-end scenario: the host's package state before, an
//! [`Updater`] sandbox with the helper running, and the sandbox's package
//! database before, so a test can assert what changed — in the sandbox,
//! nothing but the intended packages; on the host, nothing at all.

use std::collections::BTreeSet;
use std::process::Output;

use crate::sandbox::apt_repo::{AptRepo, SourceFormat};
use crate::sandbox::el::{ElRelease, ElSandbox};
use crate::sandbox::fixture::{CLIENT, NEW_DEP, REALTIME};
use crate::sandbox::RpmRepo;
use crate::updater::{changed_packages, db_changes, Binaries, Updater};
use crate::{assert_host_unchanged, host_package_state, AptFixture, ElFixture, Sandbox};

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

    /// An apt sandbox whose `patchman` source (one-line format) is `repo`
    /// under `repos_root`, with the package files `installed` installed,
    /// started after `prepare`.
    pub fn apt(
        repos_root: &std::path::Path,
        repo: &AptRepo,
        installed: &[&std::path::Path],
        prepare: impl FnOnce(&Updater),
    ) -> Scenario {
        let host_before = host_package_state();
        let u = Updater::new(repos_root, repo, SourceFormat::List, installed).expect("sandbox");
        Scenario::start(Db::Dpkg, u, host_before, prepare)
    }

    /// The standard apt repository, client 1.7.0-1 installed (1.7.1-1
    /// offered).
    pub fn standard_apt(prepare: impl FnOnce(&Updater)) -> Scenario {
        let fx = crate::apt_fixture();
        Scenario::apt(
            &fx.repos_root,
            &fx.patchman,
            &[fx.client("1.7.0-1")],
            prepare,
        )
    }

    /// An AlmaLinux 8 sandbox with client 1.7.0-1 and the standard EL
    /// repository (1.7.1-1 offered), started after `prepare`.
    pub fn standard_el(prepare: impl FnOnce(&Updater)) -> Scenario {
        let fx = crate::el_fixture();
        let host_before = host_package_state();
        let u = Updater::new_el(ElRelease::AlmaLinux8, &fx.patchman, &[fx.client("1.7.0-1")])
            .expect("EL sandbox");
        Scenario::start(Db::Rpm, u, host_before, prepare)
    }

    /// `patchman-agent --socket … <args>` as `patchman`.
    pub fn agent(&self, args: &[&str]) -> Output {
        self.u.agent(args).expect("running the agent")
    }

    /// Runs the agent with `args` and asserts its exit code, showing its
    /// output and the helper's log when it differs.
    pub fn agent_exits(&self, args: &[&str], code: i32) -> Output {
        self.exited(args, self.agent(args), code)
    }

    /// Asserts that the agent's run with `args` (spawned by the test
    /// itself) ended with exit code `code`, showing its output and the
    /// helper's log when it did not.
    pub fn exited(&self, args: &[&str], out: Output, code: i32) -> Output {
        self.u.assert_agent_exited(args, &out, code);
        out
    }

    /// The installed version of `package` (`install ok installed` for dpkg).
    pub fn version(&self, package: &str) -> Option<String> {
        match self.db {
            Db::Dpkg => self.u.installed(package).expect("dpkg-query"),
            Db::Rpm => self.u.sandbox.rpm_query(package).expect("rpm -q"),
        }
    }

    /// Whether the database knows nothing of `package` (dpkg: no entry or
    /// `not-installed`, not even config files; rpm: not installed).
    pub fn absent(&self, package: &str) -> bool {
        match self.db {
            Db::Dpkg => self.u.dpkg(package).expect("dpkg-query").is_none(),
            Db::Rpm => self.version(package).is_none(),
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

    /// Asserts that `package` is at `version` and that nothing else in the
    /// sandbox's database changed, then [`Scenario::finish`].
    pub fn finish_updated(self, package: &str, version: &str) {
        assert_eq!(self.version(package).as_deref(), Some(version));
        self.assert_only_changed(&[package]);
        self.finish();
    }

    /// Asserts that `package` is still at `version` and that the sandbox's
    /// database did not change, then [`Scenario::finish`].
    pub fn finish_unchanged(self, package: &str, version: &str) {
        assert_eq!(self.version(package).as_deref(), Some(version));
        self.assert_nothing_changed();
        self.finish();
    }

    /// Drops the sandbox and checks that the host never changed.
    pub fn finish(self) {
        let host_before = self.host_before.clone();
        drop(self);
        assert_host_unchanged(&host_before);
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
/// have, and what its output must show.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub args: &'static [&'static str],
    pub exit: i32,
    /// Text its stdout must contain.
    pub stdout: &'static [&'static str],
    /// Text its stderr must contain.
    pub stderr: &'static [&'static str],
    /// Text its stderr must contain as well, in the family's own words:
    /// on a dpkg system (apt) …
    pub stderr_dpkg: &'static [&'static str],
    /// … and on an rpm system (dnf, yum).
    pub stderr_rpm: &'static [&'static str],
    /// `(path, value)` its stdout, a JSON object, must have: `path` is
    /// dotted (`installed.client`), `value` a string's contents or another
    /// value's JSON text (`true`).
    pub json: &'static [(&'static str, &'static str)],
    /// The package database is unchanged after it (since the start).
    pub changes_nothing: bool,
    /// It takes at least this many seconds (a bounded wait is waited).
    pub min_seconds: u64,
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
            stderr_dpkg: &[],
            stderr_rpm: &[],
            json: &[],
            changes_nothing: false,
            min_seconds: 0,
            after_helper_exit: false,
        }
    }

    /// `patchman-agent update` exiting `exit`.
    pub const fn update(exit: i32) -> Step {
        Step::new(&["update"], exit)
    }

    /// `patchman-agent check` exiting `exit`.
    pub const fn check(exit: i32) -> Step {
        Step::new(&["check"], exit)
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

    /// … whose stderr contains each of `dpkg` on a dpkg system and each of
    /// `rpm` on an rpm system (a row of every family where their words
    /// differ).
    pub const fn stderr_per_family(
        self,
        dpkg: &'static [&'static str],
        rpm: &'static [&'static str],
    ) -> Step {
        Step {
            stderr_dpkg: dpkg,
            stderr_rpm: rpm,
            ..self
        }
    }

    /// … whose stdout is JSON with these `(dotted path, value)`.
    pub const fn json(self, fields: &'static [(&'static str, &'static str)]) -> Step {
        Step {
            json: fields,
            ..self
        }
    }

    /// … after which the package database is as at the start.
    pub const fn changes_nothing(self) -> Step {
        Step {
            changes_nothing: true,
            ..self
        }
    }

    /// … which takes at least `seconds`.
    pub const fn at_least(self, seconds: u64) -> Step {
        Step {
            min_seconds: seconds,
            ..self
        }
    }

    /// … run once the helper has exited (and been started again).
    pub const fn after_helper_exit(self) -> Step {
        Step {
            after_helper_exit: true,
            ..self
        }
    }
}

/// `check` with client 1.7.0-1 installed and 1.7.1-1 offered: exit 100,
/// the update named, and nothing changed by looking.
///
/// As a row's first request it refreshes the repository; an update right
/// after it then uses that metadata (at most one refresh per `[updates]
/// refresh_interval`).
pub const CHECK_FINDS_1_7_1: Step = Step::new(&["check"], 100)
    .stdout(&[
        "Refreshing the patchman repository metadata…",
        "1.7.0-1 → 1.7.1-1 available",
    ])
    .changes_nothing();

/// What a [`Row`] expects of a path inside the sandbox at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Absent,
    Exists,
    /// A directory with nothing in it.
    EmptyDir,
    /// A directory holding exactly these names (in `ls -A` order).
    DirWithOnly(&'static [&'static str]),
    /// A file with exactly these contents.
    Contents(&'static str),
}

/// A scenario as data: the repository (a name the family's fixture
/// resolves), the packages installed at the start, a preparation, the
/// agent's runs, and the state expected at the end. [`run_table`] runs a
/// table of them; build one from [`Row::standard`] (or [`Row::new`]) with
/// the methods below, which say only what differs from it:
/// `Row::standard(name).steps(&[Step::update(0)]).updates_to(&[(CLIENT,
/// "1.7.1-1")])`; or as `Row { …, ..Row::new(name, repo) }`.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub name: &'static str,
    /// The fixture repository serving as the `patchman` source.
    pub repo: &'static str,
    /// `(package, version)` installed before the helper starts.
    pub installed: &'static [(&'static str, &'static str)],
    /// Run on the sandbox after the installs, before the database snapshot
    /// and the helper (it may assert, too).
    pub prepare: Option<fn(&Updater)>,
    /// A file whose fcntl lock another process holds (as apt's and rpm's
    /// own locks are held by another frontend) during the steps.
    pub lock_held: Option<&'static str>,
    pub steps: &'static [Step],
    /// `(package, installed version)` at the end; `None`: the database
    /// knows nothing of it ([`Scenario::absent`]).
    pub expect: &'static [(&'static str, Option<&'static str>)],
    /// The packages whose database entry changed (none: nothing changed),
    /// besides those of [`Row::updated`](Row#structfield.updated).
    pub changed: &'static [&'static str],
    /// `(package, version)`: at `version` at the end, its entry changed
    /// (an update's end state: [`Row::expect`](Row#structfield.expect) and
    /// [`Row::changed`](Row#structfield.changed) in one).
    pub updated: &'static [(&'static str, &'static str)],
    /// Every package of [`Row::installed`](Row#structfield.installed) is
    /// still at its version at the end (a refusal's end state).
    pub keeps_installed: bool,
    /// Whether the helper must have exited (after a changing update) or
    /// still run at the end; `None`: not checked.
    pub helper_exits: Option<bool>,
    /// Text the helper's log must contain.
    pub helper_log: &'static [&'static str],
    /// Text the helper's log must not contain.
    pub helper_log_lacks: &'static [&'static str],
    /// `(command, texts)`: exactly one line of the helper's log contains
    /// `command`, and it contains each of `texts` (one transaction).
    pub one_run_of: Option<(&'static str, &'static [&'static str])>,
    /// `(package, version)` installed in one transaction: what
    /// [`Row::one_run_of`] says in the family's words, for a row of every
    /// family: one `dpkg -i` naming each package's `.deb`, or one `rpm -U`
    /// naming each `<package>-<version>` (rpm's file names carry no epoch).
    pub installs_at_once: &'static [(&'static str, &'static str)],
    /// Paths inside the sandbox and what they must be at the end.
    pub files: &'static [(&'static str, FileState)],
}

impl Row {
    /// A row with nothing installed, no step and nothing expected to change.
    pub const fn new(name: &'static str, repo: &'static str) -> Row {
        Row {
            name,
            repo,
            installed: &[],
            prepare: None,
            lock_held: None,
            steps: &[],
            expect: &[],
            changed: &[],
            updated: &[],
            keeps_installed: false,
            helper_exits: None,
            helper_log: &[],
            helper_log_lacks: &[],
            one_run_of: None,
            installs_at_once: &[],
            files: &[],
        }
    }

    /// A row from the standard start (as [`Scenario::standard_apt`]): the
    /// `patchman` repository, which offers 1.7.1-1, and client 1.7.0-1
    /// installed.
    pub const fn standard(name: &'static str) -> Row {
        Row {
            installed: &[(CLIENT, "1.7.0-1")],
            ..Row::new(name, "patchman")
        }
    }

    /// … with the fixture's repository `repo` as the `patchman` source.
    pub const fn repo(self, repo: &'static str) -> Row {
        Row { repo, ..self }
    }

    /// … with `(package, version)` of `packages` installed at the start.
    pub const fn installed(self, packages: &'static [(&'static str, &'static str)]) -> Row {
        Row {
            installed: packages,
            ..self
        }
    }

    /// … prepared by `prepare` ([`Row::prepare`](Row#structfield.prepare)).
    pub const fn prepare(self, prepare: fn(&Updater)) -> Row {
        Row {
            prepare: Some(prepare),
            ..self
        }
    }

    /// … with the fcntl lock on `path` held by another process during the steps.
    pub const fn lock_held(self, path: &'static str) -> Row {
        Row {
            lock_held: Some(path),
            ..self
        }
    }

    /// … whose agent runs are `steps`.
    pub const fn steps(self, steps: &'static [Step]) -> Row {
        Row { steps, ..self }
    }

    /// … ending with `(package, version)` of `packages` (`None`: absent).
    pub const fn expect(self, packages: &'static [(&'static str, Option<&'static str>)]) -> Row {
        Row {
            expect: packages,
            ..self
        }
    }

    /// … in which `packages` changed in the database (with those of
    /// [`Row::updates_to`], and no other).
    pub const fn changed(self, packages: &'static [&'static str]) -> Row {
        Row {
            changed: packages,
            ..self
        }
    }

    /// … after which the helper must have exited (`true`) or still run.
    pub const fn helper_exits(self, exits: bool) -> Row {
        Row {
            helper_exits: Some(exits),
            ..self
        }
    }

    /// … after which the helper's log contains each of `texts`.
    pub const fn helper_log(self, texts: &'static [&'static str]) -> Row {
        Row {
            helper_log: texts,
            ..self
        }
    }

    /// … after which the helper's log contains none of `texts`.
    pub const fn helper_log_lacks(self, texts: &'static [&'static str]) -> Row {
        Row {
            helper_log_lacks: texts,
            ..self
        }
    }

    /// … which installs `packages` in one transaction ([`Row::installs_at_once`](Row#structfield.installs_at_once)).
    pub const fn installs_at_once(self, packages: &'static [(&'static str, &'static str)]) -> Row {
        Row {
            installs_at_once: packages,
            ..self
        }
    }

    /// … ending with each path of `files` in its state.
    pub const fn files(self, files: &'static [(&'static str, FileState)]) -> Row {
        Row { files, ..self }
    }

    /// … ending with each of `packages` at its version, those entries
    /// changed (and no other but [`Row::changed`](Row#structfield.changed)).
    pub const fn updates_to(self, packages: &'static [(&'static str, &'static str)]) -> Row {
        Row {
            updated: packages,
            ..self
        }
    }

    /// … ending as it started: every installed package at its version,
    /// nothing changed in the database.
    pub const fn unchanged(self) -> Row {
        Row {
            keeps_installed: true,
            changed: &[],
            ..self
        }
    }

    /// Runs the row's steps in `s` and asserts its end state, then that the
    /// host's package state did not change ([`Scenario::finish`]).
    pub fn run(&self, mut s: Scenario) {
        let name = self.name;
        let lock = self.lock_held.map(|path| {
            s.u.sandbox
                .hold_lock(path)
                .unwrap_or_else(|e| panic!("{name}: holding the lock on {path}: {e:#}"))
        });
        for step in self.steps {
            self.run_step(&mut s, step);
        }
        drop(lock);
        let kept = if self.keeps_installed {
            self.installed
        } else {
            &[]
        };
        for (package, version) in kept.iter().chain(self.updated) {
            assert_eq!(
                s.version(package).as_deref(),
                Some(*version),
                "{name}: the installed version of {package}"
            );
        }
        for (package, version) in self.expect {
            match version {
                Some(_) => assert_eq!(
                    s.version(package).as_deref(),
                    *version,
                    "{name}: the installed version of {package}"
                ),
                None => assert!(s.absent(package), "{name}: {package} is not absent"),
            }
        }
        let updated = self.updated.iter().map(|(p, _)| p);
        let want: BTreeSet<String> = self
            .changed
            .iter()
            .chain(updated)
            .map(|p| p.to_string())
            .collect();
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
        for unwanted in self.helper_log_lacks {
            assert!(
                !log.contains(unwanted),
                "{name}: the helper's log has {unwanted:?}:\n{log}"
            );
        }
        if let Some((command, texts)) = self.one_run_of {
            assert_one_run_of(name, &log, command, texts);
        }
        if !self.installs_at_once.is_empty() {
            let (command, files) = install_transaction(s.db, self.installs_at_once);
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            assert_one_run_of(name, &log, command, &files);
        }
        for (path, state) in self.files {
            check_file(&s, name, path, *state);
        }
        s.finish();
    }

    fn run_step(&self, s: &mut Scenario, step: &Step) {
        let name = self.name;
        if step.after_helper_exit {
            s.u.restart_helper()
                .unwrap_or_else(|e| panic!("{name}: restarting the helper: {e:#}"));
        }
        let t0 = std::time::Instant::now();
        let out = s.agent_exits(step.args, step.exit);
        let took = t0.elapsed();
        let command = step.args.join(" ");
        let shown = || crate::cmd::output_text(&out);
        let family_stderr = match s.db {
            Db::Dpkg => step.stderr_dpkg,
            Db::Rpm => step.stderr_rpm,
        };
        let streams = [
            (&out.stdout, step.stdout),
            (&out.stderr, step.stderr),
            (&out.stderr, family_stderr),
        ];
        for (stream, texts) in streams {
            let text = String::from_utf8_lossy(stream);
            for want in texts {
                assert!(
                    text.contains(want),
                    "{name}: `{command}` does not say {want:?}:\n{}\n--- helper log\n{}",
                    shown(),
                    s.u.helper_log()
                );
            }
        }
        if !step.json.is_empty() {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{name}: `{command}` is not JSON ({e}):\n{}", shown()));
            for (path, want) in step.json {
                let got = path.split('.').fold(&json, |v, key| &v[key]);
                let got = got.as_str().map_or_else(|| got.to_string(), str::to_owned);
                assert_eq!(got, *want, "{name}: `{command}`'s {path}: {json}");
            }
        }
        if step.changes_nothing {
            assert!(
                s.changed().is_empty(),
                "{name}: `{command}` changed the package database: {:?}",
                s.changed()
            );
        }
        assert!(
            took.as_secs() >= step.min_seconds,
            "{name}: `{command}` took {took:?}, less than the bound of {} s it must wait",
            step.min_seconds
        );
    }
}

/// Exactly one line of `log` contains `command`, and it contains each of
/// `texts`.
fn assert_one_run_of(name: &str, log: &str, command: &str, texts: &[&str]) {
    let runs: Vec<&str> = log.lines().filter(|l| l.contains(command)).collect();
    assert_eq!(runs.len(), 1, "{name}: one {command}:\n{log}");
    for t in texts {
        assert!(runs[0].contains(t), "{name}: {t:?} not in {}", runs[0]);
    }
}

/// The helper's log's command of one install transaction in `db`'s family,
/// and the text naming each of `packages` on its line.
fn install_transaction(db: Db, packages: &[(&str, &str)]) -> (&'static str, Vec<String>) {
    match db {
        // apt's archive names write the epoch's colon as `%3a`.
        Db::Dpkg => (
            "command=dpkg -i",
            packages
                .iter()
                .map(|(p, v)| format!("{p}_{}_all.deb", v.replace(':', "%3a")))
                .collect(),
        ),
        Db::Rpm => (
            "command=rpm -U",
            packages
                .iter()
                .map(|(p, v)| {
                    let without_epoch = v.split_once(':').map_or(*v, |(_, rest)| rest);
                    format!("{p}-{without_epoch}")
                })
                .collect(),
        ),
    }
}

fn check_file(s: &Scenario, name: &str, path: &str, state: FileState) {
    let sandbox = &s.u.sandbox;
    let exists = sandbox.exists(path).expect("test -e");
    match state {
        FileState::Absent => assert!(!exists, "{name}: {path} exists"),
        FileState::Exists => assert!(exists, "{name}: {path} does not exist"),
        FileState::EmptyDir => {
            let left = sandbox
                .run_stdout(&["ls", "-A", "--", path])
                .unwrap_or_else(|e| panic!("{name}: ls {path}: {e:#}"));
            assert_eq!(left.trim(), "", "{name}: left behind in {path}: {left}");
        }
        FileState::DirWithOnly(names) => {
            let left = sandbox
                .run_stdout(&["ls", "-A", "--", path])
                .unwrap_or_else(|e| panic!("{name}: ls {path}: {e:#}"));
            let left: Vec<&str> = left.lines().collect();
            assert_eq!(&left, names, "{name}: what is left in {path}");
        }
        FileState::Contents(want) => {
            let got = sandbox
                .read_to_string(path)
                .unwrap_or_else(|e| panic!("{name}: reading {path}: {e:#}"));
            assert_eq!(got, want, "{name}: the contents of {path}");
        }
    }
}

/// Runs every row of `rows` with a scenario from `start`, each to its end
/// even when an earlier one failed; fails with the names of those that
/// failed (each one's own message is printed as it fails).
pub fn run_table(rows: &[Row], start: impl Fn(&Row) -> Scenario + Sync) {
    // Two rows at a time: a row waits on its tools more than it computes.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..TABLE_WORKERS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(row) = rows.get(i) else { break };
                let t0 = std::time::Instant::now();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| row.run(start(row))));
                eprintln!(
                    "row {}: {} in {:.1} s",
                    row.name,
                    if result.is_ok() { "ok" } else { "FAILED" },
                    t0.elapsed().as_secs_f64()
                );
                if result.is_err() {
                    failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(row.name);
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(failed.is_empty(), "rows failed: {}", failed.join(", "));
}

/// How many rows of a table [`run_table`] runs at once.
const TABLE_WORKERS: usize = 2;

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
/// packages `row.installed` installed, `row.prepare`, the database
/// snapshot, the helper.
///
/// # Panics
/// When any of it fails, with the reason.
pub fn start_row(
    family: Family,
    row: &Row,
    sandbox: impl FnOnce() -> anyhow::Result<(Sandbox, Binaries)>,
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
    Scenario::start(db, u, host_before, |u| {
        if let Some(prepare) = row.prepare {
            prepare(u);
        }
    })
}

/// A host-mode sandbox and this workspace's binaries, for [`start_row`].
pub fn host_sandbox() -> anyhow::Result<(Sandbox, Binaries)> {
    Ok((Sandbox::new()?, Binaries::workspace()?))
}

/// The rows every family's table has: the same repository, start,
/// commands and end state for apt as for dnf (each family's fixture serves
/// the same versions under the same repository names); an install
/// transaction is named by its packages ([`Row::installs_at_once`]), which
/// each family's log writes its own way.
pub const EVERY_FAMILY_ROWS: &[Row] = &[
    Row::new("up_to_date_changes_nothing", "patchman")
        .installed(&[(CLIENT, "1.7.1-1")])
        .steps(&[
            Step::check(0),
            Step::update(0).stdout(&["Already up to date"]),
        ])
        .unchanged()
        // Nothing changed: the helper stays.
        .helper_exits(false),
    Row::new("client_not_installed_installs_nothing", "patchman")
        .steps(&[
            Step::update(1).stderr(&["patchman-client is not installed"]),
            Step::check(1),
        ])
        .expect(&[(CLIENT, None), (REALTIME, None)]),
    Row::new("realtime_installed_moves_in_one_transaction", "patchman")
        .installed(&[(CLIENT, "1.7.0-1"), (REALTIME, "1.7.0-1")])
        .steps(&[Step::update(0)])
        .updates_to(&[(CLIENT, "1.7.1-1"), (REALTIME, "1.7.1-1")])
        .installs_at_once(&[(CLIENT, "1.7.1-1"), (REALTIME, "1.7.1-1")]),
    // The epoch survives the whole way: found, downloaded (apt's archive
    // name `patchman-client_1%3a1.2.7-1_all.deb`), installed.
    Row::new(
        "an_epoch_version_is_found_downloaded_and_installed",
        "epoch",
    )
    .installed(&[(CLIENT, "1.7.1-1")])
    .steps(&[Step::update(0)])
    .updates_to(&[(CLIENT, "1:1.2.7-1")])
    .installs_at_once(&[(CLIENT, "1:1.2.7-1")]),
    Row::new(
        "a_new_dependency_missing_from_the_repository_is_refused",
        "newdep",
    )
    .installed(&[(CLIENT, "1.7.1-1")])
    .steps(&[Step::update(1)
        .stderr(&["manual upgrade required", NEW_DEP])
        // The exact manual command.
        .stderr_per_family(
            &["apt-get install patchman-client"],
            &["dnf install patchman-client"],
        )])
    .unchanged(),
    Row::new(
        "a_new_dependency_present_in_the_repository_is_still_refused",
        "newdep_lib",
    )
    .installed(&[(CLIENT, "1.7.1-1")])
    .steps(&[Step::update(1).stderr_per_family(
        &["would also change libpatchman-new"],
        &["would also install libpatchman-new"],
    )])
    .unchanged()
    .expect(&[(NEW_DEP, None)]),
    Row::standard("an_unsigned_repository_is_a_typed_error")
        .repo("unsigned")
        .steps(&[Step::update(1).stderr_per_family(
            &[
                "refreshing the patchman repository metadata failed",
                "not signed",
            ],
            &["signature"],
        )])
        .unchanged(),
    Row::standard("realtime_in_the_repository_but_not_installed_stays_absent")
        .steps(&[Step::update(0)])
        .updates_to(&[(CLIENT, "1.7.1-1")])
        .expect(&[(REALTIME, None)]),
];

/// Runs `rows` for `family` in host-mode sandboxes ([`host_sandbox`]),
/// then [`EVERY_FAMILY_ROWS`] too when `with_every_family_rows`.
pub fn run_host_table(family: Family, rows: &[Row], with_every_family_rows: bool) {
    let mut all = rows.to_vec();
    if with_every_family_rows {
        all.extend_from_slice(EVERY_FAMILY_ROWS);
    }
    run_table(&all, |row| start_row(family, row, host_sandbox));
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
