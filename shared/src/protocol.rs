//! Requests and replies. The agent's requests carry no free-form data: no
//! string it sends can reach an argv or a path in the helper. Package names
//! exist only in the helper, mapped from [`Package`].
//!
//! Compatibility: `Request::Hello` and `Reply::Welcome` / `Reply::Unsupported`
//! keep their variant numbers (0) and shapes forever, so an old agent and a
//! new helper (or the reverse), as they meet during every self-update, always
//! get a typed answer to the first exchange. Add variants at the end only.

use std::fmt;

use bincode::{Decode, Encode};

/// `Display` of each type as the `&'static str` its method names it by.
macro_rules! display_by {
    ($($ty:ident: $method:ident),* $(,)?) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.$method())
            }
        }
    )*};
}

display_by!(
    ConfirmOutcome: as_str,
    Family: as_str,
    Package: name,
    Step: describe,
);

/// The protocol spoken by this build. Bump on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// What the agent may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Request {
    /// First message on every connection.
    Hello { protocol: u32 },
    /// Installed versions, family, lock state.
    Status,
    /// Refresh only the patchman repository and report candidates.
    Check,
    /// The whole update procedure, for the client and, if installed, the
    /// realtime package. Answered by `Progress` frames, then one final reply.
    Update,
    /// The new agent, after an update, is healthy: it started, read its
    /// configuration and state, and saw `Status` report the new versions.
    /// Carries no data; it can only end a pending probation, never start a
    /// rollback. Answered by `Confirmed`.
    Confirm,
}

impl Request {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Status => "status",
            Request::Check => "check",
            Request::Update => "update",
            Request::Confirm => "confirm",
        }
    }
}

/// Everything the helper may answer.
// A reply lives for one frame; boxing the large Status would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Reply {
    /// Answer to a compatible `Hello`.
    Welcome {
        protocol: u32,
        helper_version: String,
        family: Family,
    },
    /// Answer to a `Hello` whose protocol this helper does not speak.
    Unsupported { helper_protocol: u32 },
    /// The peer is not the configured agent user. Nothing else is said.
    Denied,
    /// Another `Update` is running; try again later.
    Busy,
    /// Answer to `Status`.
    Status(StatusReport),
    /// Answer to `Check`.
    Check(CheckReport),
    /// A step of `Update` (or `Check`) is starting. Zero or more precede the
    /// final reply.
    Progress(Step),
    /// Final answer to a successful `Update`.
    Updated(UpdateReport),
    /// Final answer to any request that failed.
    Failed(Failure),
    /// Answer to `Confirm`.
    Confirmed(ConfirmOutcome),
}

/// What a `Confirm` came to. Every case but `Confirmed` changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum ConfirmOutcome {
    /// The probation ended: the new versions stay.
    Confirmed,
    /// No probation is pending (a typed no-op).
    NothingPending,
    /// What is installed is not what the probation is for (or not
    /// complete): nothing was confirmed.
    VersionsDiffer,
    /// The deadline passed: the rollback is due and cannot be called off.
    PastDeadline,
}

impl ConfirmOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConfirmOutcome::Confirmed => "confirmed",
            ConfirmOutcome::NothingPending => "nothing pending",
            ConfirmOutcome::VersionsDiffer => "installed versions differ from the probation record",
            ConfirmOutcome::PastDeadline => "past the probation deadline",
        }
    }
}

/// A pending probation, as `Status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Probation {
    /// The versions on probation (installed by the last update).
    pub versions: Vec<(Package, Evr)>,
    /// Unix seconds; past it, without `Confirm`, the helper rolls back.
    pub deadline: u64,
}

/// One rollback the helper performed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RollbackEvent {
    pub from: Vec<(Package, Evr)>,
    pub to: Vec<(Package, Evr)>,
    /// Unix seconds.
    pub at: u64,
    pub why: String,
}

/// The rollback side of `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct RollbackStatus {
    pub probation: Option<Probation>,
    /// Whether the helper holds a verified way back for what is installed.
    pub available: bool,
    /// Why not (or how, when available), for a person.
    pub reason: String,
    pub last: Option<RollbackEvent>,
    /// `patchman-client` versions rolled back from.
    pub quarantined: Vec<Evr>,
}

/// The package-manager family of the host, as the helper detected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Family {
    /// Debian, Ubuntu and derivatives: apt-get, apt-cache, dpkg.
    Apt,
    /// Enterprise Linux 8 and later: dnf, rpm.
    Dnf,
    /// Enterprise Linux 6 and 7: yum, rpm.
    Yum,
}

impl Family {
    pub fn as_str(&self) -> &'static str {
        match self {
            Family::Apt => "apt",
            Family::Dnf => "dnf",
            Family::Yum => "yum",
        }
    }
}

/// The only two packages the helper ever touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Package {
    /// `patchman-client`
    Client,
    /// `patchman-client-realtime`, updated only where already installed.
    Realtime,
}

impl Package {
    pub const ALL: [Package; 2] = [Package::Client, Package::Realtime];

    /// The package name. Used by the helper to build argv; never received
    /// from the agent.
    pub fn name(&self) -> &'static str {
        match self {
            Package::Client => "patchman-client",
            Package::Realtime => "patchman-client-realtime",
        }
    }

    /// The reverse of [`Package::name`], for parsers of tool output.
    pub fn from_name(name: &str) -> Option<Package> {
        Package::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A parsed package version: `[epoch:]version[-release]`. For Debian,
/// `release` is the Debian revision (empty for native packages).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Evr {
    pub epoch: u32,
    pub version: String,
    pub release: String,
}

/// Why a version string is not a valid `[epoch:]version[-release]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvrError {
    Empty,
    BadEpoch(String),
    EmptyVersion,
    EmptyRelease,
    BadCharacter(char),
    TooLong(usize),
}

impl fmt::Display for EvrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvrError::Empty => write!(f, "empty version"),
            EvrError::BadEpoch(e) => write!(f, "epoch {e:?} is not a number"),
            EvrError::EmptyVersion => write!(f, "no upstream version"),
            EvrError::EmptyRelease => write!(f, "empty release after '-'"),
            EvrError::BadCharacter(c) => write!(f, "character {c:?} is not allowed in a version"),
            EvrError::TooLong(n) => write!(f, "version of {n} bytes is too long"),
        }
    }
}

impl std::error::Error for EvrError {}

/// Longest version string accepted from any tool's output.
pub const MAX_VERSION_LEN: usize = 256;

impl Evr {
    /// Parses `[epoch:]version[-release]`, splitting at the first `:` and
    /// the last `-`, as dpkg and rpm both do. Accepts only the characters
    /// either tool allows in a version (`[A-Za-z0-9.+~^_-]`, `:` for the
    /// epoch), so a parsed version is always safe to print and to compare.
    pub fn parse(s: &str) -> Result<Evr, EvrError> {
        if s.is_empty() {
            return Err(EvrError::Empty);
        }
        if s.len() > MAX_VERSION_LEN {
            return Err(EvrError::TooLong(s.len()));
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                let epoch = if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    e.parse::<u32>().ok()
                };
                (
                    epoch.ok_or_else(|| EvrError::BadEpoch(e.to_string()))?,
                    rest,
                )
            }
            None => (0, s),
        };
        if let Some(c) = rest.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '^' | '_' | '-'))
        }) {
            return Err(EvrError::BadCharacter(c));
        }
        let (version, release) = match rest.rsplit_once('-') {
            // A '-' promises a release: "1.0-" is not a version.
            Some((_, "")) => return Err(EvrError::EmptyRelease),
            Some((v, r)) => (v, r),
            None => (rest, ""),
        };
        // Both tools want the version to start with an alphanumeric (dpkg:
        // a digit); it also keeps a version from ever reading as an option.
        match version.chars().next() {
            None => return Err(EvrError::EmptyVersion),
            Some(c) if !c.is_ascii_alphanumeric() => return Err(EvrError::BadCharacter(c)),
            Some(_) => {}
        }
        Ok(Evr {
            epoch,
            version: version.to_string(),
            release: release.to_string(),
        })
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
        }
        Ok(())
    }
}

/// An installed package as the package database records it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Installed {
    pub evr: Evr,
    /// False when the database shows an interrupted install (dpkg
    /// `half-configured`, `unpacked`, …): the helper finishes it first.
    pub complete: bool,
}

/// Whether another program holds the package manager's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum LockState {
    Free,
    /// Held by another process, with its pid where the lock says.
    Held {
        pid: Option<u32>,
    },
}

/// Answer to `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StatusReport {
    pub family: Family,
    pub client: Option<Installed>,
    pub realtime: Option<Installed>,
    pub lock: LockState,
    pub helper_version: String,
    /// Probation, the way back, the last rollback, the quarantine.
    pub rollback: RollbackStatus,
}

/// What the repository offers for one installed package.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Candidate {
    pub package: Package,
    pub installed: Evr,
    /// `None` when nothing newer than `installed` is offered.
    pub candidate: Option<Evr>,
}

/// Answer to `Check`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct CheckReport {
    /// One entry per installed package of ours.
    pub packages: Vec<Candidate>,
    /// True when this answer did not refresh the repository's metadata:
    /// the helper refreshes it at most once per `[updates]
    /// refresh_interval` and answers from what it fetched last.
    pub cached: bool,
    /// Seconds since this helper last refreshed the metadata successfully
    /// (0 when this request did); `None`: not since it started.
    pub metadata_age_secs: Option<u64>,
}

impl CheckReport {
    pub fn update_available(&self) -> bool {
        self.packages.iter().any(|c| c.candidate.is_some())
    }
}

/// One package moved from one version to another.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Change {
    pub package: Package,
    pub from: Evr,
    pub to: Evr,
}

/// Answer to a successful `Update`. Empty `changes`: already up to date.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct UpdateReport {
    pub changes: Vec<Change>,
    /// The helper exits after this reply when `changes` is not empty, so
    /// the next connection runs the newly installed helper.
    pub helper_restarting: bool,
}

/// The steps of the procedure, reported as `Progress` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Step {
    /// Finish an install an earlier run left interrupted.
    FinishInterrupted,
    /// apt: `apt-config dump`.
    ReadAptConfig,
    /// apt: `apt-get update` of the patchman source; dnf/yum: `clean all`.
    RefreshMetadata,
    /// apt: `apt-cache policy`.
    QueryCandidate,
    /// Decide whether anything but our packages would change.
    CheckDependencies,
    /// `apt-get -d install` / `dnf install --downloadonly`.
    Download,
    /// Find the downloaded file.
    LocateFile,
    /// Ownership, mode, embedded metadata, checksum or signature.
    Verify,
    /// `dpkg -i` / `rpm -U`.
    Install,
    /// `dpkg-query` / `rpm -q` (and `apt-get check`).
    Confirm,
    /// Remove what was downloaded and not installed.
    Cleanup,
}

impl Step {
    pub fn describe(&self) -> &'static str {
        match self {
            Step::FinishInterrupted => "finishing an interrupted install",
            Step::ReadAptConfig => "reading apt's configuration",
            Step::RefreshMetadata => "refreshing the patchman repository metadata",
            Step::QueryCandidate => "looking up the candidate version",
            Step::CheckDependencies => "checking that nothing else would change",
            Step::Download => "downloading",
            Step::LocateFile => "locating the downloaded file",
            Step::Verify => "verifying the downloaded package",
            Step::Install => "installing",
            Step::Confirm => "confirming the installed version",
            Step::Cleanup => "cleaning up",
        }
    }
}

/// Why a downloaded package file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum VerificationFailure {
    /// No file of the expected name and shape was found.
    Missing,
    /// A symlink, device, directory … where a regular file should be.
    NotRegularFile,
    /// Not owned by root, or writable by group or others.
    UnsafeOwnerOrMode,
    /// The file's embedded name or version is not the one expected.
    MetadataMismatch { expected: String, found: String },
    /// Not newer than what is installed.
    NotNewer { installed: Evr, offered: Evr },
    /// SHA-256 differs from the repository index.
    ChecksumMismatch,
    /// The signature is missing or not trusted.
    BadSignature,
    /// The file changed between verification and install.
    Changed,
    /// Signed with a key the rpm database does not hold (`key_id`, as rpm
    /// prints it). The helper never imports a key, whatever the
    /// repository's `gpgkey=` says: an administrator must.
    KeyNotImported { key_id: String },
}

impl fmt::Display for VerificationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerificationFailure::Missing => write!(f, "the downloaded file was not found"),
            VerificationFailure::NotRegularFile => {
                write!(f, "the downloaded file is not a regular file")
            }
            VerificationFailure::UnsafeOwnerOrMode => {
                write!(
                    f,
                    "the downloaded file is not root-owned or is group/world-writable"
                )
            }
            VerificationFailure::MetadataMismatch { expected, found } => {
                write!(f, "the file contains {found}, expected {expected}")
            }
            VerificationFailure::NotNewer { installed, offered } => {
                write!(
                    f,
                    "offered version {offered} is not newer than installed {installed}"
                )
            }
            VerificationFailure::ChecksumMismatch => {
                write!(f, "the file's SHA-256 does not match the repository index")
            }
            VerificationFailure::BadSignature => {
                write!(f, "the package signature is missing or not trusted")
            }
            VerificationFailure::Changed => write!(f, "the file changed after it was verified"),
            VerificationFailure::KeyNotImported { key_id } => write!(
                f,
                "the package's signature is by key {key_id}, which is not in the rpm database; \
                 the helper never imports keys: if the key is the vendor's, an administrator \
                 must import it (rpm --import <key file>)"
            ),
        }
    }
}

/// Every way a request can fail. This enum is the error vocabulary of the
/// whole system: the agent prints it, logs it, and schedules retries by it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Failure {
    /// The helper does not implement this request for this family yet.
    NotSupported { family: Family, request: String },
    /// `patchman-client` is not installed: nothing to update.
    NotInstalled,
    /// The update needs something other than our packages to change; a
    /// person must upgrade by hand (`command` says how).
    DependencyProblem { detail: String, command: String },
    /// Another program holds the package manager's lock.
    LockHeld { pid: Option<u32> },
    /// A step ran past its time limit.
    Timeout { step: Step },
    /// The downloaded file was refused.
    Verification {
        package: Package,
        reason: VerificationFailure,
    },
    /// A command exited unsuccessfully.
    CommandFailed {
        step: Step,
        exit_code: Option<i32>,
        excerpt: String,
    },
    /// The candidate does not come from the patchman repository.
    WrongSource { package: Package },
    /// The repository is not configured on this host.
    RepositoryMissing { repository: String },
    /// The helper's configuration or the host is not usable.
    Config { detail: String },
    /// The request arrived out of order (anything before `Hello`).
    Protocol { detail: String },
    /// A tool's output could not be understood.
    UnexpectedOutput { step: Step, detail: String },
    /// Something on the helper's side failed (I/O, spawning).
    Internal { detail: String },
    /// The request was not due to refresh the repository's metadata (the
    /// rate limit, backed off after failed refreshes) and there is none
    /// cached to answer from; the next refresh may run in
    /// `next_refresh_secs` (`None`: one is running now).
    MetadataUnavailable {
        repository: String,
        next_refresh_secs: Option<u64>,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotSupported { family, request } => {
                write!(
                    f,
                    "{request} is not supported on the {family} family by this helper yet"
                )
            }
            Failure::NotInstalled => write!(f, "patchman-client is not installed"),
            Failure::DependencyProblem { detail, command } => {
                write!(f, "manual upgrade required: {detail}; run: {command}")
            }
            Failure::LockHeld { pid: Some(pid) } => {
                write!(
                    f,
                    "the package manager's lock is held by process {pid}; will retry later"
                )
            }
            Failure::LockHeld { pid: None } => {
                write!(
                    f,
                    "the package manager's lock is held by another program; will retry later"
                )
            }
            Failure::Timeout { step } => write!(f, "timed out while {step}"),
            Failure::Verification { package, reason } => {
                write!(f, "refused {package}: {reason}")
            }
            Failure::CommandFailed {
                step,
                exit_code,
                excerpt,
            } => {
                match exit_code {
                    Some(c) => write!(f, "{step} failed with exit code {c}")?,
                    None => write!(f, "{step} failed: killed by a signal")?,
                }
                if !excerpt.is_empty() {
                    write!(f, ": {excerpt}")?;
                }
                Ok(())
            }
            Failure::WrongSource { package } => {
                write!(
                    f,
                    "the candidate for {package} does not come from the patchman repository"
                )
            }
            Failure::RepositoryMissing { repository } => {
                write!(
                    f,
                    "repository {repository:?} is not configured on this host"
                )
            }
            Failure::Config { detail } => write!(f, "configuration problem: {detail}"),
            Failure::Protocol { detail } => write!(f, "protocol error: {detail}"),
            Failure::UnexpectedOutput { step, detail } => {
                write!(f, "unexpected output while {step}: {detail}")
            }
            Failure::Internal { detail } => write!(f, "helper error: {detail}"),
            Failure::MetadataUnavailable {
                repository,
                next_refresh_secs,
            } => {
                write!(
                    f,
                    "no metadata of repository {repository:?} is cached (the last refresh failed or was cut short); "
                )?;
                match next_refresh_secs {
                    Some(s) => write!(f, "the next refresh may run in {s} s"),
                    None => write!(f, "a refresh is running now"),
                }
            }
        }
    }
}

impl std::error::Error for Failure {}
